//! Browsing a stream: reading a range of its messages in order, and purging it. Hides the
//! short-lived consumer a read goes through and the `STREAM.PURGE` request.

use std::{ops::RangeInclusive, time::Duration};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, ReplayPolicy, pull};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError, StoredMessage, codes};

/// Messages asked for at once, at most.
pub const MAX_BATCH: usize = 256;
/// How long the server keeps the consumer of a reader that vanished (a crashed process) before
/// removing it; a reader that ends deletes it at once. A reader must ask for its next batch
/// within this time, so callers that work slowly through a batch ask for smaller ones.
pub const READER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);

/// Reads the messages of a stream in order, as a snapshot up to the last sequence it was
/// opened for: messages stored later are not read. Deleted messages are skipped. Call
/// [`StreamReader::close`] when done; a reader dropped without it leaves its consumer for the
/// server to remove after a short inactivity.
pub struct StreamReader {
    broker: Broker,
    stream: String,
    consumer_name: String,
    consumer: PullConsumer,
    last: u64,
    finished: bool,
}

/// Where a stream stands: the sequences it holds, at the moment it was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamBounds {
    /// The first sequence still held (the next one to be written when the stream is empty).
    pub first: u64,
    /// The last sequence written (0 if none ever was), even if it was deleted since.
    pub last: u64,
    /// Messages held.
    pub messages: u64,
}

#[derive(Serialize)]
struct PurgeRequest {
    /// Removes the messages below this sequence only.
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct PurgeAnswer {
    success: bool,
    #[serde(default)]
    purged: u64,
}

impl Broker {
    /// The sequences `stream` holds; fails with [`codes::STREAM_NOT_FOUND`] if there is no such
    /// stream.
    pub async fn stream_bounds(&self, stream: &str) -> Result<StreamBounds, BrokerError> {
        let info = self
            .stream_info(stream)
            .await?
            .ok_or_else(|| not_found(stream))?;
        Ok(StreamBounds {
            first: info.state.first_sequence,
            last: info.state.last_sequence,
            messages: info.state.messages,
        })
    }

    /// Opens a reader over the messages of `stream` whose sequences lie in `range`.
    /// `headers_only` leaves the payloads on the server (a listing does not need them). Fails
    /// with [`codes::STREAM_NOT_FOUND`] if there is no such stream.
    pub async fn read_stream(
        &self,
        stream: &str,
        range: RangeInclusive<u64>,
        headers_only: bool,
    ) -> Result<StreamReader, BrokerError> {
        self.ensure_connected()?;
        let consumer_name = format!("switchyard-read-{:016x}", rand::random::<u64>());
        let handle = self
            .jetstream
            .get_stream_no_info(stream)
            .await
            .map_err(|e| BrokerError::Config(format!("stream name {stream:?}: {e}")))?;
        // Ephemeral, unacknowledged and in memory: nothing of the read is kept, and the server
        // forgets the consumer itself should this process go away before deleting it.
        let config = pull::Config {
            name: Some(consumer_name.clone()),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *range.start(),
            },
            ack_policy: AckPolicy::None,
            replay_policy: ReplayPolicy::Instant,
            headers_only,
            inactive_threshold: READER_INACTIVE_THRESHOLD,
            memory_storage: true,
            num_replicas: 1,
            ..Default::default()
        };
        let consumer: PullConsumer = handle.create_consumer(config).await.map_err(|e| {
            match BrokerError::from_client(&e, true) {
                BrokerError::Rejected { code, .. } if code == codes::STREAM_NOT_FOUND => {
                    not_found(stream)
                }
                other => other,
            }
        })?;
        let finished = consumer.cached_info().num_pending == 0;
        Ok(StreamReader {
            broker: self.clone(),
            stream: stream.to_string(),
            consumer_name,
            consumer,
            last: *range.end(),
            finished,
        })
    }

    /// Removes every message of `stream` whose sequence is below `below` (all of them if
    /// `None`); returns how many were removed.
    pub async fn purge_stream(&self, stream: &str, below: Option<u64>) -> Result<u64, BrokerError> {
        let answer: PurgeAnswer = self
            .request(
                format!("STREAM.PURGE.{stream}"),
                &PurgeRequest { seq: below },
            )
            .await
            .map_err(|e| match e.code() {
                Some(codes::STREAM_NOT_FOUND) => not_found(stream),
                _ => e,
            })?;
        if !answer.success {
            return Err(BrokerError::Protocol(format!(
                "purge of stream {stream} reported no success"
            )));
        }
        Ok(answer.purged)
    }
}

/// The error for a stream that does not exist.
fn not_found(stream: &str) -> BrokerError {
    BrokerError::Rejected {
        code: codes::STREAM_NOT_FOUND,
        description: format!("stream {stream} does not exist"),
    }
}

impl StreamReader {
    /// The next messages in sequence order, at most `max` (and [`MAX_BATCH`]); empty once the
    /// range has been read.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<StoredMessage>, BrokerError> {
        if self.finished {
            return Ok(Vec::new());
        }
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(max.clamp(1, MAX_BATCH))
            .messages()
            .await
            .map_err(|e| self.failed(e))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| self.failed(e))?;
            let info = message.info().map_err(|e| {
                BrokerError::Protocol(format!("reading stream {}: {e}", self.stream))
            })?;
            let (sequence, pending, time) = (info.stream_sequence, info.pending, info.published);
            if sequence > self.last {
                self.finished = true;
                break;
            }
            if sequence == self.last || pending == 0 {
                self.finished = true;
            }
            let message = message.message;
            messages.push(StoredMessage {
                subject: message.subject.to_string(),
                sequence,
                headers: message.headers.unwrap_or_default(),
                payload: message.payload,
                time,
            });
            if self.finished {
                break;
            }
        }
        // A batch that brought nothing although messages were pending: they were deleted
        // meanwhile, and nothing is left to read.
        if messages.is_empty() {
            self.finished = true;
        }
        Ok(messages)
    }

    /// Deletes the reader's consumer.
    pub async fn close(self) -> Result<(), BrokerError> {
        self.broker
            .delete_consumer(&self.stream, &self.consumer_name)
            .await
            .map(drop)
    }

    /// A failed fetch: the connection or the server's answer broke off, worth retrying.
    fn failed(&self, error: impl std::fmt::Display) -> BrokerError {
        BrokerError::Unavailable(format!("reading stream {}: {error}", self.stream))
    }
}
