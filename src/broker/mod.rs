//! The one place that speaks to NATS. Everything above it talks in streams and typed errors
//! (with the few server error codes worth reacting to named in [`codes`]); nothing above it
//! builds JetStream API subjects or payloads.

mod connect;

use async_nats::{
    connection::State,
    jetstream::{
        self,
        context::RequestErrorKind,
        stream::{Config as StreamConfig, Info as StreamInfo},
    },
};
use serde::{Deserialize, Serialize};

pub use connect::{BrokerAuth, BrokerOptions, BrokerTls};

/// JetStream error codes Switchyard reacts to.
pub mod codes {
    pub const STREAM_NOT_FOUND: u64 = 10059;
    pub const STREAM_NAME_EXISTS: u64 = 10058;
    pub const STREAM_SUBJECT_OVERLAP: u64 = 10065;
    pub const STREAM_INVALID_CONFIG: u64 = 10052;
}

/// What went wrong talking to the broker, classified by what the caller can do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// NATS cannot be reached or JetStream did not answer in time: retry later.
    #[error("NATS is unavailable: {0}")]
    Unavailable(String),
    /// JetStream answered with an error: the request must change.
    #[error("JetStream refused the request: {description} (error {code})")]
    Rejected { code: u64, description: String },
    /// JetStream answered something that could not be understood.
    #[error("unexpected answer from JetStream: {0}")]
    Protocol(String),
}

impl BrokerError {
    pub fn code(&self) -> Option<u64> {
        match self {
            Self::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A connection to NATS JetStream.
#[derive(Clone)]
pub struct Broker {
    client: async_nats::Client,
    jetstream: jetstream::Context,
}

#[derive(Serialize)]
struct StreamNamesRequest<'a> {
    subject: &'a str,
    offset: usize,
}

#[derive(Deserialize)]
struct StreamNamesResponse {
    #[serde(default)]
    streams: Option<Vec<String>>,
    #[serde(default)]
    total: usize,
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

impl Broker {
    /// Connects in the background: the call returns at once even when NATS is down, and the
    /// client keeps reconnecting for as long as the process lives.
    pub async fn connect(options: &BrokerOptions) -> Result<Self, BrokerError> {
        let client = options.connect().await?;
        let jetstream = jetstream::ContextBuilder::new()
            .timeout(options.request_timeout)
            .build(client.clone());
        Ok(Self { client, jetstream })
    }

    /// Whether the client currently holds a connection. Requests made while it does not would
    /// only wait for their timeout, so callers check this first.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == State::Connected
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

    /// The stream's configuration and state, or `None` if it does not exist.
    pub async fn stream_info(&self, name: &str) -> Result<Option<StreamInfo>, BrokerError> {
        match self.request(format!("STREAM.INFO.{name}"), &()).await {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.code() == Some(codes::STREAM_NOT_FOUND) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a stream; fails if one with that name exists with another configuration.
    pub async fn create_stream(&self, config: &StreamConfig) -> Result<StreamInfo, BrokerError> {
        self.request(format!("STREAM.CREATE.{}", config.name), config)
            .await
    }

    /// Replaces the configuration of an existing stream.
    pub async fn update_stream(&self, config: &StreamConfig) -> Result<StreamInfo, BrokerError> {
        self.request(format!("STREAM.UPDATE.{}", config.name), config)
            .await
    }

    /// Deletes a stream and its messages; `false` if it did not exist.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, BrokerError> {
        use async_nats::jetstream::context::DeleteStreamErrorKind as Kind;
        self.ensure_connected()?;
        // The server insists on an empty payload here, which the typed call sends.
        match self.jetstream.delete_stream(name).await {
            Ok(status) => Ok(status.success),
            Err(e) => match e.kind() {
                Kind::JetStream(err) if err.error_code().0 == codes::STREAM_NOT_FOUND => Ok(false),
                Kind::JetStream(err) => Err(BrokerError::Rejected {
                    code: err.error_code().0,
                    description: err.to_string(),
                }),
                Kind::Request => Err(BrokerError::Unavailable(e.to_string())),
                _ => Err(BrokerError::Protocol(e.to_string())),
            },
        }
    }

    /// Names of the streams whose subjects overlap `subject`.
    pub async fn streams_overlapping(&self, subject: &str) -> Result<Vec<String>, BrokerError> {
        let mut names = Vec::new();
        loop {
            let page: StreamNamesResponse = self
                .request(
                    "STREAM.NAMES".to_string(),
                    &StreamNamesRequest {
                        subject,
                        offset: names.len(),
                    },
                )
                .await?;
            let batch = page.streams.unwrap_or_default();
            if batch.is_empty() {
                return Ok(names);
            }
            names.extend(batch);
            if names.len() >= page.total {
                return Ok(names);
            }
        }
    }
}
