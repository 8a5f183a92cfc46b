//! Reading events from a durable pull consumer and telling JetStream what became of each: the
//! dispatcher's whole conversation with NATS.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::{
    HeaderMap, StatusCode,
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
    jetstream: jetstream::Context,
    stream: String,
    name: String,
    /// The pin JetStream gave this client in the consumer's priority group, if it holds one.
    pin: Arc<Mutex<Option<String>>>,
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
        let pull: PullConsumer = self
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
            priority_timeout: info.config.priority_timeout,
            ..Default::default()
        };
        Ok(Some(BoundConsumer {
            consumer: pull,
            jetstream: self.jetstream.clone(),
            stream: stream.to_string(),
            name: consumer.to_string(),
            pin: Arc::default(),
            config,
        }))
    }

    /// Sends what the client buffered (acknowledgements above all) before the process exits.
    pub async fn flush(&self) {
        let _ = tokio::time::timeout(self.request_timeout, self.client.flush()).await;
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
    /// Asks for up to `max` events in the consumer's priority group, as the client JetStream
    /// pins the consumer to (one client at a time gets its events). The stream ends when `max`
    /// came, the request expired, or another client holds the pin; it fails when the server
    /// does not answer in time. Unlike a continuous pull, nothing more is asked for than the
    /// caller has room for, so no event waits unseen in a client buffer while its ackWait runs
    /// out.
    ///
    /// Only while no other client holds the pin ([`BoundConsumer::pinned_elsewhere`]):
    /// checked against nats-server 2.15, while the pinned client has no request open JetStream
    /// takes the first event queued for redelivery for every request another client sends, and
    /// puts it back only behind the others, or hands it out again only after its ack deadline.
    /// So the events a stopping replica hands back, key by key in order, would reach the next
    /// one out of order, some after newer events of their keys.
    pub async fn fetch_pinned(
        &self,
        group: &str,
        max: usize,
        expires: Duration,
    ) -> Result<impl Stream<Item = Result<Delivered, BrokerError>> + use<>, BrokerError> {
        let client = self.jetstream.client();
        let inbox = client.new_inbox();
        let subscriber = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let pin = self.pin.lock().expect("pin").clone();
        let mut request = serde_json::json!({
            "batch": max,
            "expires": expires.as_nanos() as u64,
            "group": group,
        });
        if let Some(pin) = pin {
            request["id"] = pin.into();
        }
        client
            .publish_with_reply(
                format!("$JS.API.CONSUMER.MSG.NEXT.{}.{}", self.stream, self.name),
                inbox,
                request.to_string().into(),
            )
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        let fetch = PinnedFetch {
            subscriber,
            left: max,
            // The server ends the request when it expires; past that, it is lost (e.g. the
            // connection dropped).
            deadline: tokio::time::Instant::now() + expires + Duration::from_secs(1),
            jetstream: self.jetstream.clone(),
            pin: self.pin.clone(),
        };
        Ok(futures::stream::unfold(fetch, PinnedFetch::next))
    }

    /// Whether this client holds the pin of the consumer's priority group (as far as it knows:
    /// a request tells it when the pin went to another).
    pub fn holds_pin(&self) -> bool {
        self.pin.lock().expect("pin").is_some()
    }

    /// Whether another client holds the pin of the consumer's priority group. A client learns
    /// its pin from the events it is given, and JetStream pins a client only when it gives it
    /// events, so between requests a pin this client does not know is another's.
    pub async fn pinned_elsewhere(&self, group: &str) -> Result<bool, BrokerError> {
        if self.holds_pin() {
            return Ok(false);
        }
        let info = self
            .consumer
            .get_info()
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        Ok(info
            .priority_groups
            .iter()
            .any(|state| state.group == group && state.pinned_client_id.is_some()))
    }

    /// Gives up the pin this client holds, so that another client takes the consumer's events
    /// over at once instead of after the pin's time to live.
    pub async fn unpin(&self, group: &str) -> Result<(), BrokerError> {
        if self.pin.lock().expect("pin").take().is_none() {
            return Ok(());
        }
        let answer: jetstream::response::Response<serde_json::Value> = self
            .jetstream
            .request(
                format!("CONSUMER.UNPIN.{}.{}", self.stream, self.name),
                &serde_json::json!({ "group": group }),
            )
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        match answer {
            jetstream::response::Response::Ok(_) => Ok(()),
            jetstream::response::Response::Err { error } => {
                Err(BrokerError::Protocol(error.to_string()))
            }
        }
    }

    /// How long a pinned client may go without asking for events before JetStream gives the
    /// pin to another (zero if the consumer is not pinned, or the server chose).
    pub fn pin_ttl(&self) -> Duration {
        self.config.priority_timeout
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

struct PinnedFetch {
    subscriber: async_nats::Subscriber,
    left: usize,
    deadline: tokio::time::Instant,
    jetstream: jetstream::Context,
    pin: Arc<Mutex<Option<String>>>,
}

impl PinnedFetch {
    /// The next event of the request; `None` once it is over.
    async fn next(mut self) -> Option<(Result<Delivered, BrokerError>, Self)> {
        if self.left == 0 {
            return None;
        }
        let message = match tokio::time::timeout_at(self.deadline, self.subscriber.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => return None,
            Err(_) => {
                self.left = 0;
                let lost = BrokerError::Unavailable("a pull request went unanswered".into());
                return Some((Err(lost), self));
            }
        };
        match message.status {
            None | Some(StatusCode::OK) => {
                if let Some(id) = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get_last(async_nats::header::NATS_PIN_ID))
                {
                    *self.pin.lock().expect("pin") = Some(id.to_string());
                }
                self.left -= 1;
                let message = jetstream::Message {
                    message,
                    context: self.jetstream.clone(),
                };
                Some((Ok(Delivered { message }), self))
            }
            Some(StatusCode::PIN_ID_MISMATCH) => {
                // Another client holds the pin now: this one stands by until it is free.
                *self.pin.lock().expect("pin") = None;
                None
            }
            // Expired, or ended by the server (leadership change, limits): ask again.
            Some(StatusCode::TIMEOUT | StatusCode::REQUEST_TERMINATED | StatusCode::NOT_FOUND) => {
                None
            }
            Some(status) => {
                self.left = 0;
                let failed = BrokerError::Unavailable(format!(
                    "pull request failed: {status} {}",
                    message.description.unwrap_or_default()
                ));
                Some((Err(failed), self))
            }
        }
    }
}

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

    /// The names of the stream holding the event and of the consumer that delivered it.
    pub fn stream_and_consumer(&self) -> Result<(&str, &str), BrokerError> {
        self.message
            .info()
            .map(|info| (info.stream, info.consumer))
            .map_err(|e| BrokerError::Protocol(format!("not a JetStream delivery: {e}")))
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
