//! Live JetStream advisories: a core-NATS subscription, kept alive by a task, feeding a bounded
//! channel. Hides the subscription's lifecycle (resubscribing when it ends, stopping when the
//! receiver is dropped), the protection of the client from a slow reader (advisories that do not
//! fit in the channel are dropped and counted) and the advisory payload formats.
//!
//! Advisories are sent only while someone listens, so this path sees those published while it
//! runs; capturing them durably takes a stream on their subjects.

use std::time::{Duration, Instant};

use async_nats::{Client, Subscriber};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{info, warn};

use super::{
    Broker, Bytes,
    throttle::{LOG_INTERVAL, Throttle},
};

const MAX_DELIVERIES_PREFIX: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.";
const MSG_TERMINATED_PREFIX: &str = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.";
/// Pause before subscribing again after the subscription ended or could not be made.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// One advisory as received.
#[derive(Clone, Debug, PartialEq)]
pub struct Advisory {
    pub subject: String,
    pub body: AdvisoryBody,
}

/// An advisory's payload: typed for the kinds Switchyard acts on, JSON for the others, raw bytes
/// when it is not JSON (or not the expected shape).
#[derive(Clone, Debug, PartialEq)]
pub enum AdvisoryBody {
    MaxDeliveries(MaxDeliveries),
    MsgTerminated(MsgTerminated),
    Json(serde_json::Value),
    Raw(Bytes),
}

/// A message reached its consumer's `max_deliver` without being acknowledged.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MaxDeliveries {
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    pub deliveries: u64,
}

/// A message was terminated: by a client (`+TERM`, with its reason) or by the server.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct MsgTerminated {
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    pub deliveries: u64,
    #[serde(default)]
    pub reason: Option<String>,
}

impl AdvisoryBody {
    /// Parses a payload by the kind of advisory its subject names.
    pub fn parse(subject: &str, payload: Bytes) -> Self {
        let typed = if subject.starts_with(MAX_DELIVERIES_PREFIX) {
            serde_json::from_slice(&payload)
                .ok()
                .map(Self::MaxDeliveries)
        } else if subject.starts_with(MSG_TERMINATED_PREFIX) {
            serde_json::from_slice(&payload)
                .ok()
                .map(Self::MsgTerminated)
        } else {
            serde_json::from_slice(&payload).ok().map(Self::Json)
        };
        typed.unwrap_or(Self::Raw(payload))
    }
}

impl Broker {
    /// Advisories on subjects matching `subject_filter` (e.g.
    /// `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>`), at most `capacity` waiting. The
    /// subscription is live when this returns if NATS is connected, and made as soon as it is
    /// otherwise. Delivery stops when the receiver is dropped.
    pub async fn advisories(
        &self,
        subject_filter: &str,
        capacity: usize,
    ) -> mpsc::Receiver<Advisory> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let first = self.client.subscribe(subject_filter.to_string()).await.ok();
        if first.is_some() && self.is_connected() {
            // The subscription reaches the server with the next flush; waiting for it lets the
            // caller trigger advisories right away. Without it they are merely a little later.
            let _ = tokio::time::timeout(self.request_timeout, self.client.flush()).await;
        }
        tokio::spawn(supervise(
            self.client.clone(),
            subject_filter.to_string(),
            first,
            tx,
        ));
        rx
    }
}

async fn supervise(
    client: Client,
    filter: String,
    mut subscription: Option<Subscriber>,
    tx: mpsc::Sender<Advisory>,
) {
    let mut dropped = 0u64;
    let mut drop_log = Throttle::new(LOG_INTERVAL);
    loop {
        let Some(mut subscriber) = subscription.take() else {
            tokio::select! {
                _ = tx.closed() => return,
                made = client.subscribe(filter.clone()) => match made {
                    Ok(s) => {
                        info!(subject = %filter, "subscribed to NATS advisories again");
                        subscription = Some(s);
                    }
                    Err(e) => {
                        warn!(subject = %filter, error = %e, "cannot subscribe to NATS advisories");
                        tokio::select! {
                            _ = tx.closed() => return,
                            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
                        }
                    }
                },
            }
            continue;
        };
        loop {
            let message = tokio::select! {
                _ = tx.closed() => {
                    let _ = subscriber.unsubscribe().await;
                    return;
                }
                message = subscriber.next() => message,
            };
            let Some(message) = message else {
                warn!(subject = %filter, "NATS advisory subscription ended; subscribing again");
                break;
            };
            let subject = message.subject.to_string();
            let advisory = Advisory {
                body: AdvisoryBody::parse(&subject, message.payload),
                subject,
            };
            match tx.try_send(advisory) {
                Ok(()) => {}
                Err(TrySendError::Closed(_)) => {
                    let _ = subscriber.unsubscribe().await;
                    return;
                }
                Err(TrySendError::Full(advisory)) => {
                    dropped += 1;
                    if drop_log.hit(Instant::now()).is_some() {
                        warn!(
                            subject = %advisory.subject,
                            dropped_total = dropped,
                            "advisory reader is behind; dropping advisories"
                        );
                    }
                }
            }
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_max_deliveries() {
        let payload = r#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x",
            "timestamp":"2025-01-01T00:00:00Z","stream":"shop_orders","consumer":"c",
            "stream_seq":7,"deliveries":3}"#;
        let body = AdvisoryBody::parse(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.shop_orders.c",
            Bytes::from(payload),
        );
        assert_eq!(
            body,
            AdvisoryBody::MaxDeliveries(MaxDeliveries {
                stream: "shop_orders".into(),
                consumer: "c".into(),
                stream_seq: 7,
                deliveries: 3,
            })
        );
    }

    #[test]
    fn parses_terminated_with_and_without_reason() {
        let subject = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.s.c";
        let with = r#"{"stream":"s","consumer":"c","stream_seq":1,"consumer_seq":2,
            "deliveries":1,"reason":"bad payload"}"#;
        let AdvisoryBody::MsgTerminated(t) = AdvisoryBody::parse(subject, Bytes::from(with)) else {
            panic!("not parsed as terminated");
        };
        assert_eq!(t.reason.as_deref(), Some("bad payload"));
        assert_eq!((t.stream_seq, t.consumer_seq, t.deliveries), (1, 2, 1));
        let without = r#"{"stream":"s","consumer":"c","stream_seq":1,"consumer_seq":2,
            "deliveries":1}"#;
        let AdvisoryBody::MsgTerminated(t) = AdvisoryBody::parse(subject, Bytes::from(without))
        else {
            panic!("not parsed as terminated");
        };
        assert_eq!(t.reason, None);
    }

    #[test]
    fn other_advisories_stay_json_and_garbage_stays_raw() {
        let other = AdvisoryBody::parse(
            "$JS.EVENT.ADVISORY.STREAM.CREATED.s",
            Bytes::from(r#"{"stream":"s"}"#),
        );
        assert_eq!(
            other,
            AdvisoryBody::Json(serde_json::json!({"stream": "s"}))
        );
        let garbage = AdvisoryBody::parse(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.s.c",
            Bytes::from_static(b"{not json"),
        );
        assert_eq!(garbage, AdvisoryBody::Raw(Bytes::from_static(b"{not json")));
    }
}
