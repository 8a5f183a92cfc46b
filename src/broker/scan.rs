//! Reading a stretch of a stream in order without leaving anything behind on the server: an
//! ephemeral consumer without acknowledgements, deleted once the stretch is read (and removed by
//! the server after a short inactivity should the reader die first).

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull},
};
use futures::StreamExt;

use super::{Broker, BrokerError, codes};

/// How long the server keeps a reader's consumer once nobody uses it.
const READER_INACTIVITY: Duration = Duration::from_secs(30);
/// How long one batch request waits for messages the stream does have.
const BATCH_WAIT: Duration = Duration::from_secs(2);
/// Messages asked for in one request.
const BATCH: usize = 1000;

/// One message's place and headers.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredHeaders {
    pub sequence: u64,
    pub headers: HeaderMap,
}

impl Broker {
    /// The headers of the messages of `stream` from sequence `start` up to `last` (inclusive),
    /// at most `max` of them, in stream order; payloads are not transferred. An empty answer if
    /// the stream does not exist. Deleted messages are skipped.
    pub async fn headers_between(
        &self,
        stream: &str,
        start: u64,
        last: u64,
        max: usize,
    ) -> Result<Vec<StoredHeaders>, BrokerError> {
        self.ensure_connected()?;
        if start > last || max == 0 {
            return Ok(Vec::new());
        }
        let handle = match self.jetstream.get_stream_no_info(stream).await {
            Ok(handle) => handle,
            Err(e) => return Err(BrokerError::Config(format!("stream name {stream:?}: {e}"))),
        };
        let config = pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: start,
            },
            ack_policy: AckPolicy::None,
            headers_only: true,
            memory_storage: true,
            num_replicas: 1,
            inactive_threshold: READER_INACTIVITY,
            ..Default::default()
        };
        let consumer = match handle.create_consumer(config).await {
            Ok(consumer) => consumer,
            Err(e) => {
                let error = BrokerError::from_client(&e, false);
                return match error.code() {
                    Some(codes::STREAM_NOT_FOUND) => Ok(Vec::new()),
                    _ => Err(error),
                };
            }
        };
        let name = consumer.cached_info().name.clone();
        let read = read_until(&consumer, last, max).await;
        // Best effort: the inactivity threshold removes it anyway.
        let _ = handle.delete_consumer(&name).await;
        read
    }
}

async fn read_until(
    consumer: &PullConsumer,
    last: u64,
    max: usize,
) -> Result<Vec<StoredHeaders>, BrokerError> {
    let mut read = Vec::new();
    loop {
        let wanted = (max - read.len()).min(BATCH);
        let mut batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(BATCH_WAIT)
            .messages()
            .await
            .map_err(|e| BrokerError::Unavailable(format!("reading stream: {e}")))?;
        let before = read.len();
        while let Some(message) = batch.next().await {
            let message =
                message.map_err(|e| BrokerError::Unavailable(format!("reading stream: {e}")))?;
            let sequence = message
                .info()
                .map_err(|e| BrokerError::Protocol(format!("unreadable message metadata: {e}")))?
                .stream_sequence;
            if sequence > last {
                return Ok(read);
            }
            read.push(StoredHeaders {
                sequence,
                headers: message.headers.clone().unwrap_or_default(),
            });
            if sequence == last || read.len() >= max {
                return Ok(read);
            }
        }
        // Nothing came within the wait: the messages up to `last` are gone (deleted, expired).
        if read.len() == before {
            return Ok(read);
        }
    }
}
