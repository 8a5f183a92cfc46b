//! Single messages of a stream: read one by its sequence, store one and wait until its stream
//! (or a given stream) has it, delete one, and release one on behalf of the consumer that gave
//! up on it. Hides the `STREAM.MSG.*` and `DIRECT.GET` requests, the publish acknowledgement
//! and the ack protocol.

use async_nats::{
    HeaderMap, HeaderName, HeaderValue, StatusCode,
    jetstream::{
        context::PublishErrorKind,
        message::PublishMessage,
        message::StreamMessage,
        stream::{DirectGetErrorKind, RawMessage},
    },
};
use serde::{Deserialize, Serialize};

use super::{Broker, BrokerError, Bytes, Success, codes};

/// A message as its stream stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    pub subject: String,
    pub sequence: u64,
    pub headers: HeaderMap,
    pub payload: Bytes,
    /// When the stream stored it.
    pub time: time::OffsetDateTime,
}

/// How to read a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    /// A direct get, which any replica answers; only streams with `allow_direct` serve it.
    Direct,
    /// Through the stream leader (`STREAM.MSG.GET`), which every stream serves.
    Leader,
}

/// What a read found.
#[derive(Clone, Debug, PartialEq)]
pub enum Lookup {
    Found(StoredMessage),
    /// The message, or its whole stream, no longer exists.
    Gone,
    /// A direct get nobody answered: the stream does not allow direct gets (or does not exist).
    NotServed,
}

/// Where a published message was stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub stream: String,
    pub sequence: u64,
    /// The stream already had a message with the same `Nats-Msg-Id` within its duplicate
    /// window: it kept that one, and `sequence` is that one's.
    pub duplicate: bool,
}

/// `JSNoMessageFoundErr`: no message with that sequence.
const NO_MESSAGE_FOUND: u64 = 10037;
/// `JSStreamMsgDeleteFailedF`: a deletion failed; "no message found" when there was nothing to
/// delete, another description when the stream refused (`deny_delete`).
const DELETE_FAILED: u64 = 10057;

#[derive(Serialize)]
struct BySequence {
    seq: u64,
}

#[derive(Deserialize)]
struct GetAnswer {
    message: RawMessage,
}

impl Broker {
    /// The message `sequence` of `stream`.
    pub async fn stream_message(
        &self,
        stream: &str,
        sequence: u64,
        read: Read,
    ) -> Result<Lookup, BrokerError> {
        match read {
            Read::Direct => self.direct_get(stream, sequence).await,
            Read::Leader => self.leader_get(stream, sequence).await,
        }
    }

    async fn leader_get(&self, stream: &str, sequence: u64) -> Result<Lookup, BrokerError> {
        let answer: GetAnswer = match self
            .request(
                format!("STREAM.MSG.GET.{stream}"),
                &BySequence { seq: sequence },
            )
            .await
        {
            Ok(answer) => answer,
            Err(e) if matches!(e.code(), Some(NO_MESSAGE_FOUND | codes::STREAM_NOT_FOUND)) => {
                return Ok(Lookup::Gone);
            }
            Err(e) => return Err(e),
        };
        let header_block = answer.message.headers.clone();
        let mut message = StreamMessage::try_from(answer.message)
            .map_err(|e| BrokerError::Protocol(format!("unreadable stored message: {e}")))?;
        // The client library keeps only the last value of a repeated header here; a copy must
        // keep them all.
        if let Some(block) = header_block {
            message.headers = all_headers(&block)
                .map_err(|e| BrokerError::Protocol(format!("unreadable stored headers: {e}")))?;
        }
        Ok(Lookup::Found(stored(message)))
    }

    async fn direct_get(&self, stream: &str, sequence: u64) -> Result<Lookup, BrokerError> {
        self.ensure_connected()?;
        let handle = self
            .jetstream
            .get_stream_no_info(stream)
            .await
            .map_err(|e| BrokerError::Config(format!("stream name {stream:?}: {e}")))?;
        match handle.direct_get(sequence).await {
            Ok(message) => Ok(Lookup::Found(stored(message))),
            Err(e) => match e.kind() {
                DirectGetErrorKind::NotFound => Ok(Lookup::Gone),
                DirectGetErrorKind::ErrorResponse(StatusCode::NO_RESPONDERS, _) => {
                    Ok(Lookup::NotServed)
                }
                DirectGetErrorKind::TimedOut => Err(BrokerError::Unavailable(format!(
                    "direct get from stream {stream} timed out"
                ))),
                _ => Err(BrokerError::Protocol(format!(
                    "direct get from stream {stream}: {e}"
                ))),
            },
        }
    }

    /// Publishes a message and waits until a stream has stored it. A subject no stream takes is
    /// refused with [`codes::STREAM_NOT_FOUND`]; the stream's own refusals (an expected stream
    /// that is another, a message too large) come with the server's code.
    pub async fn store(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Stored, BrokerError> {
        self.ensure_connected()?;
        let publish = PublishMessage::build().headers(headers).payload(payload);
        let failed = |e: async_nats::jetstream::context::PublishError, subject: &str| match e.kind()
        {
            PublishErrorKind::StreamNotFound => BrokerError::Rejected {
                code: codes::STREAM_NOT_FOUND,
                description: format!("no stream takes subject {subject}"),
            },
            PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
                BrokerError::from_client(&e, true)
            }
            PublishErrorKind::MaxPayloadExceeded => {
                BrokerError::Config(format!("message for {subject} is too large: {e}"))
            }
            _ => BrokerError::from_client(&e, false),
        };
        let ack = self
            .jetstream
            .send_publish(subject.clone(), publish)
            .await
            .map_err(|e| failed(e, &subject))?
            .await
            .map_err(|e| failed(e, &subject))?;
        Ok(Stored {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// Like [`Broker::store`], but the server refuses the message unless `stream` is the
    /// stream taking `subject`: a subject another stream has taken over since never receives it.
    pub async fn store_into(
        &self,
        stream: &str,
        subject: String,
        mut headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Stored, BrokerError> {
        headers.insert(async_nats::header::NATS_EXPECTED_STREAM, stream);
        self.store(subject, headers, payload).await
    }

    /// Deletes the message `sequence` of `stream`; `false` if it (or the stream) was already
    /// gone.
    pub async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool, BrokerError> {
        match self
            .request::<_, Success>(
                format!("STREAM.MSG.DELETE.{stream}"),
                &BySequence { seq: sequence },
            )
            .await
        {
            Ok(answer) => Ok(answer.success),
            Err(e) if matches!(e.code(), Some(NO_MESSAGE_FOUND | codes::STREAM_NOT_FOUND)) => {
                Ok(false)
            }
            Err(BrokerError::Rejected { code, description })
                if code == DELETE_FAILED && description.contains("no message found") =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Acknowledges the message `sequence` of `stream` on behalf of `consumer`, which gave up on
    /// it after `deliveries` deliveries, and waits until the consumer confirms. A consumer
    /// keeps its interest in a message that reached its maximum deliveries: in WorkQueue and
    /// Interest streams such a message would stay forever. Acknowledged, it is removed as soon
    /// as no other consumer still needs it, which a deletion could not respect. `false` if the
    /// consumer does not exist.
    pub async fn release(
        &self,
        stream: &str,
        consumer: &str,
        sequence: u64,
        deliveries: u64,
    ) -> Result<bool, BrokerError> {
        self.ensure_connected()?;
        // The ack reply subject's fields: deliveries, stream and consumer sequence, timestamp,
        // pending. The consumer acts on the stream sequence; a consumer sequence of 0 matches
        // none of its deliveries, so its acknowledgement floor is left as it is.
        let subject = format!("$JS.ACK.{stream}.{consumer}.{deliveries}.{sequence}.0.0.0");
        let asked = self.client.request(subject, Bytes::from_static(b"+ACK"));
        match tokio::time::timeout(self.request_timeout, asked).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(false),
            Ok(Err(e)) => Err(BrokerError::Unavailable(format!(
                "acknowledging {stream} {sequence} for {consumer}: {e}"
            ))),
            Err(_) => Err(BrokerError::Unavailable(format!(
                "consumer {consumer} did not confirm the acknowledgement of {stream} {sequence}"
            ))),
        }
    }
}

/// Reads a stored message's header block (base64 of `NATS/1.0` and `Name: value` lines, as
/// `STREAM.MSG.GET` answers it) with every value of a repeated header, in order.
fn all_headers(block: &str) -> Result<HeaderMap, String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(block)
        .map_err(|e| e.to_string())?;
    let text = std::str::from_utf8(&bytes).map_err(|e| e.to_string())?;
    let mut lines = text.split("\r\n").skip(1).filter(|line| !line.is_empty());
    let mut headers = HeaderMap::new();
    for line in lines.by_ref() {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("malformed header line {line:?}"))?;
        let name: HeaderName = name.trim().parse().map_err(|e| format!("{e}"))?;
        let value: HeaderValue = value.trim().parse().map_err(|e| format!("{e}"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

fn stored(message: StreamMessage) -> StoredMessage {
    StoredMessage {
        subject: message.subject.to_string(),
        sequence: message.sequence,
        headers: message.headers,
        payload: message.payload,
        time: message.time,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;

    #[test]
    fn every_value_of_a_repeated_header_is_kept() {
        let block = base64::engine::general_purpose::STANDARD
            .encode("NATS/1.0\r\nX-Tag: a\r\nce-type: order.placed\r\nX-Tag: b\r\n\r\n");
        let headers = all_headers(&block).unwrap();
        let tags: Vec<&str> = headers.get_all("X-Tag").map(HeaderValue::as_str).collect();
        assert_eq!(tags, ["a", "b"]);
        assert_eq!(
            headers.get("ce-type").map(HeaderValue::as_str),
            Some("order.placed")
        );
        assert!(all_headers("not base64!").is_err());
        let broken =
            base64::engine::general_purpose::STANDARD.encode("NATS/1.0\r\nno colon\r\n\r\n");
        assert!(all_headers(&broken).unwrap_err().contains("no colon"));
    }
}
