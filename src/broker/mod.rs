//! The one place that speaks to NATS. Everything above it talks in streams, consumers, buckets,
//! advisories and typed errors (with the few server error codes worth reacting to named in
//! [`codes`]); nothing above it builds JetStream API subjects or payloads.
//!
//! One module per job: [`credentials`] decides which credential and TLS files to use,
//! [`connect`] turns settings into a logged, observable connection,
//! [`streams`], [`consumers`] and [`kv`] wrap the JetStream API calls, [`messages`] reads, stores
//! and settles single messages, [`browse`] reads ranges of a stream and purges it,
//! [`transform`] undoes a stream's subject transform, [`advisories`] delivers live server
//! advisories, [`error`] classifies failures. This module
//! holds the [`Broker`] handle and the JetStream request every API call goes through.

mod advisories;
mod browse;
mod connect;
mod consumers;
pub mod credentials;
pub mod delivery;
mod error;
mod kv;
mod messages;
mod streams;
mod throttle;
mod transform;

use async_nats::{
    connection::State,
    jetstream::{self, context::RequestErrorKind},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

pub use advisories::{Advisory, AdvisoryBody, MaxDeliveries, MsgTerminated};
pub use browse::{MAX_BATCH, READER_INACTIVE_THRESHOLD, StreamBounds, StreamReader};
pub use connect::{BrokerAuth, BrokerOptions, BrokerTls};
pub use error::{BrokerError, codes};
pub use kv::{Entry, Kv};
pub use messages::{Lookup, Read, Stored, StoredMessage};
pub use transform::SubjectMapping;

/// Byte buffers as the NATS client hands them out (the `bytes` crate's type; reached through
/// axum's re-export so the crate needs no direct dependency on `bytes`).
pub use bytes::Bytes;

/// A connection to NATS JetStream.
#[derive(Clone)]
pub struct Broker {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    connected: watch::Receiver<bool>,
    request_timeout: std::time::Duration,
}

/// A JetStream API answer. Our own type because the library's error type hides its description.
#[derive(Deserialize)]
#[serde(untagged)]
enum ApiResponse<V> {
    Err { error: ApiError },
    Ok(V),
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// The empty JSON object some API calls (deletes) insist on; `()` would send `null`.
#[derive(Serialize)]
struct Empty {}

/// The answer of API calls that only report success (deletes).
#[derive(Deserialize)]
struct Success {
    success: bool,
}

/// One page of a paged name listing (`STREAM.NAMES`, `CONSUMER.NAMES`).
#[derive(Serialize)]
struct NamesRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    offset: usize,
}

impl Broker {
    /// Connects in the background: the call returns at once even when NATS is down, and the
    /// client keeps reconnecting for as long as the process lives, logging what happens.
    pub async fn connect(options: &BrokerOptions) -> Result<Self, BrokerError> {
        let (client, connected) = options.connect().await?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());
        Ok(Self {
            client,
            jetstream,
            connected,
            request_timeout: options.request_timeout,
        })
    }

    /// Whether the client currently holds a connection. Requests made while it does not would
    /// only wait for their timeout, so callers check this first.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    /// Follows the connection: `true` while connected. For readiness probes and metrics.
    pub fn connection_state(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// The JetStream context, for the callers (tests, tools) that need the full API.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    fn ensure_connected(&self) -> Result<(), BrokerError> {
        if self.is_connected() {
            Ok(())
        } else {
            Err(BrokerError::Unavailable(
                "not connected to any NATS server".into(),
            ))
        }
    }

    /// Sends one JetStream API request (`$JS.API.<subject>`) and types its answer.
    async fn request<T, V>(&self, subject: String, payload: &T) -> Result<V, BrokerError>
    where
        T: ?Sized + Serialize,
        V: serde::de::DeserializeOwned,
    {
        self.ensure_connected()?;
        let response: ApiResponse<V> =
            self.jetstream
                .request(subject, payload)
                .await
                .map_err(|e| match e.kind() {
                    RequestErrorKind::NoResponders => BrokerError::Unavailable(
                        "JetStream is not enabled or not answering (no responders)".into(),
                    ),
                    RequestErrorKind::TimedOut => {
                        BrokerError::Unavailable("JetStream request timed out".into())
                    }
                    _ => BrokerError::Protocol(e.to_string()),
                })?;
        match response {
            ApiResponse::Ok(value) => Ok(value),
            ApiResponse::Err { error } => Err(BrokerError::Rejected {
                code: error.err_code,
                description: error.description,
            }),
        }
    }

    /// Collects a paged name listing; `page` extracts (names, total) from one answer.
    async fn names<P>(
        &self,
        subject: String,
        filter: Option<&str>,
        page: impl Fn(P) -> (Option<Vec<String>>, usize),
    ) -> Result<Vec<String>, BrokerError>
    where
        P: serde::de::DeserializeOwned,
    {
        let mut names = Vec::new();
        loop {
            let answer: P = self
                .request(
                    subject.clone(),
                    &NamesRequest {
                        subject: filter,
                        offset: names.len(),
                    },
                )
                .await?;
            let (batch, total) = page(answer);
            let batch = batch.unwrap_or_default();
            if batch.is_empty() {
                return Ok(names);
            }
            names.extend(batch);
            if names.len() >= total {
                return Ok(names);
            }
        }
    }
}
