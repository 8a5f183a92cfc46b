//! Reading events from a durable pull consumer and telling JetStream what became of each: the
//! dispatcher's whole conversation with NATS.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{
        self, AckKind,
        consumer::{PriorityPolicy, PullConsumer, pull},
    },
};
use futures::{Stream, StreamExt};

use super::{Broker, BrokerError};

/// A durable consumer the dispatcher reads, with its settings as the server reported them.
pub struct BoundConsumer {
    consumer: PullConsumer,
    pub config: pull::Config,
}

impl BoundConsumer {
    /// The priority group of a consumer JetStream pins to one client at a time, if it is one.
    pub fn pinned_group(&self) -> Option<&str> {
        (self.config.priority_policy == PriorityPolicy::PinnedClient)
            .then(|| self.config.priority_groups.first().map(String::as_str))
            .flatten()
    }
}

/// One event handed out by JetStream, to be acknowledged one way or another.
pub struct Delivered {
    message: jetstream::Message,
}

/// Where an event stands in its stream and its redeliveries.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryInfo {
    pub stream_sequence: u64,
    /// 1 on the first delivery.
    pub delivered: i64,
    pub published: time::OffsetDateTime,
}

impl Broker {
    /// Binds to an existing durable consumer; `Ok(None)` if it does not exist (yet).
    pub async fn bind(
        &self,
        stream: &str,
        consumer: &str,
    ) -> Result<Option<BoundConsumer>, BrokerError> {
        let Some(info) = self.consumer_info(stream, consumer).await? else {
            return Ok(None);
        };
        let consumer: PullConsumer = self
            .jetstream
            .get_consumer_from_stream(consumer, stream)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let config = pull::Config {
            durable_name: info.config.durable_name.clone(),
            ack_wait: info.config.ack_wait,
            backoff: info.config.backoff.clone(),
            max_deliver: info.config.max_deliver,
            max_ack_pending: info.config.max_ack_pending,
            priority_policy: info.config.priority_policy,
            priority_groups: info.config.priority_groups.clone(),
            ..Default::default()
        };
        Ok(Some(BoundConsumer { consumer, config }))
    }
}

impl BoundConsumer {
    /// Asks for up to `max` events; the stream yields them as they arrive and ends when `max`
    /// came or `expires` passed.
    pub async fn fetch(
        &self,
        max: usize,
        expires: Duration,
    ) -> Result<impl Stream<Item = Result<Delivered, BrokerError>> + use<>, BrokerError> {
        let batch = self
            .consumer
            .batch()
            .max_messages(max)
            .expires(expires)
            .messages()
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        Ok(delivered(batch))
    }
}

impl BoundConsumer {
    /// A continuous pull in the consumer's priority group: JetStream hands this client the
    /// events while it holds the pin (one-off fetches cannot carry the pin), keeping up to
    /// `batch` on their way.
    pub async fn pinned(
        &self,
        group: &str,
        batch: usize,
    ) -> Result<impl Stream<Item = Result<Delivered, BrokerError>> + use<>, BrokerError> {
        let messages = self
            .consumer
            .stream()
            .max_messages_per_batch(batch)
            .expires(PINNED_PULL_EXPIRES)
            .group(group)
            .messages()
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        Ok(delivered(messages))
    }
}

/// The client's message stream as deliveries.
fn delivered<E: std::fmt::Display>(
    messages: impl Stream<Item = Result<jetstream::Message, E>>,
) -> impl Stream<Item = Result<Delivered, BrokerError>> {
    messages.map(|item| {
        item.map(|message| Delivered { message })
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    })
}

/// Pull requests of a pinned client expire well within the pin's time to live, so a live
/// client keeps its pin.
const PINNED_PULL_EXPIRES: Duration = Duration::from_secs(3);

impl Delivered {
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    pub fn headers(&self) -> Option<&HeaderMap> {
        self.message.headers.as_ref()
    }

    pub fn payload(&self) -> &bytes::Bytes {
        &self.message.payload
    }

    pub fn info(&self) -> Result<DeliveryInfo, BrokerError> {
        let info = self
            .message
            .info()
            .map_err(|e| BrokerError::Protocol(format!("not a JetStream delivery: {e}")))?;
        Ok(DeliveryInfo {
            stream_sequence: info.stream_sequence,
            delivered: info.delivered,
            published: info.published,
        })
    }

    pub async fn ack(&self) -> Result<(), BrokerError> {
        self.reply(AckKind::Ack).await
    }

    /// Redeliver after `delay`.
    pub async fn nak(&self, delay: Duration) -> Result<(), BrokerError> {
        self.reply(AckKind::Nak(Some(delay))).await
    }

    /// Still being handled: restart the ackWait.
    pub async fn in_progress(&self) -> Result<(), BrokerError> {
        self.reply(AckKind::Progress).await
    }

    /// Never redeliver; the reason travels in the server's terminated advisory (the client's
    /// `Term` carries none).
    pub async fn term(&self, reason: &str) -> Result<(), BrokerError> {
        let reply =
            self.message.reply.clone().ok_or_else(|| {
                BrokerError::Protocol("a delivery without a reply subject".into())
            })?;
        let reason: String = reason.chars().filter(|c| !c.is_control()).collect();
        self.message
            .context
            .client()
            .publish(reply, format!("+TERM {reason}").into())
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    async fn reply(&self, kind: AckKind) -> Result<(), BrokerError> {
        self.message
            .ack_with(kind)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }
}
