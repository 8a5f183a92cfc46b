//! The advisory stream: one per installation, capturing the server's max-deliveries and
//! terminated advisories (and consumers' [`Rejection`]s) so that none is lost while the relay is
//! down or a policy cannot take dead letters; and reading one captured advisory as a
//! [`Failure`].

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{AckPolicy, DeliverPolicy, pull},
    stream::{Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType},
};
use serde::{Deserialize, Serialize};

use super::format::Reason;
use crate::{
    broker::{AdvisoryBody, Broker, BrokerError, Bytes, codes},
    naming,
};

/// Subject prefix of the advisories the server sends when a message reached its consumer's
/// maximum deliveries: `…MAX_DELIVERIES.<stream>.<consumer>`.
pub const MAX_DELIVERIES_SUBJECT: &str = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES";
/// Subject prefix of the advisories the server sends when a consumer terminated a message (or
/// the server removed one still pending): `…MSG_TERMINATED.<stream>.<consumer>`.
pub const MSG_TERMINATED_SUBJECT: &str = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED";
/// Subject prefix of [`Rejection`]s: `$SWITCHYARD.REJECTED.<stream>.<consumer>`. Namespaces
/// cannot start with `$`, so no Topic's subjects overlap it.
pub const REJECTED_SUBJECT: &str = "$SWITCHYARD.REJECTED";

/// How long advisories wait for the relay unless told otherwise: long enough to outlast a
/// policy broken over a long weekend.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// Whose advisories the stream captures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdvisoryScope {
    /// Every stream of the account: what an installation uses.
    AllStreams,
    /// Only these streams' (several relays on one server, e.g. in tests).
    Streams(Vec<String>),
}

/// The stream capturing advisories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdvisoryStream {
    pub name: String,
    pub scope: AdvisoryScope,
    /// How long a captured advisory waits for the relay.
    pub max_age: Duration,
    pub replicas: usize,
}

impl Default for AdvisoryStream {
    fn default() -> Self {
        Self {
            name: naming::ADVISORY_STREAM.to_string(),
            scope: AdvisoryScope::AllStreams,
            max_age: DEFAULT_MAX_AGE,
            replicas: 1,
        }
    }
}

impl AdvisoryStream {
    pub fn subjects(&self) -> Vec<String> {
        let prefixes = [
            MAX_DELIVERIES_SUBJECT,
            MSG_TERMINATED_SUBJECT,
            REJECTED_SUBJECT,
        ];
        match &self.scope {
            AdvisoryScope::AllStreams => prefixes.iter().map(|p| format!("{p}.>")).collect(),
            AdvisoryScope::Streams(streams) => prefixes
                .iter()
                .flat_map(|p| streams.iter().map(move |s| format!("{p}.{s}.>")))
                .collect(),
        }
    }

    /// Limits retention (advisories are removed by age, never by being read, so a relay that
    /// lost its consumer can start over), file storage.
    pub fn stream_config(&self) -> StreamConfig {
        StreamConfig {
            name: self.name.clone(),
            description: Some(
                "Consumer advisories (max deliveries, terminated and rejected messages) waiting for the dead-letter relay".into(),
            ),
            subjects: self.subjects(),
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            num_replicas: self.replicas.max(1),
            max_age: self.max_age,
            discard: DiscardPolicy::Old,
            duplicate_window: self.max_age.min(Duration::from_secs(120)),
            ..Default::default()
        }
    }

    /// The relay's durable consumer. Unlimited deliveries: an advisory is retried until its
    /// copy is stored. Unlimited acknowledgements pending: advisories waiting for a broken
    /// policy (negatively acknowledged with a delay) must not hold up the others.
    pub fn consumer_config(&self, name: &str, ack_wait: Duration) -> pull::Config {
        pull::Config {
            durable_name: Some(name.to_string()),
            name: Some(name.to_string()),
            description: Some("Dead-letter relay".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            max_ack_pending: -1,
            ..Default::default()
        }
    }

    /// Creates the stream and the relay's consumer, or brings them to this configuration.
    pub async fn ensure(
        &self,
        broker: &Broker,
        consumer: &str,
        ack_wait: Duration,
    ) -> Result<(), BrokerError> {
        let stream = self.stream_config();
        match broker.create_stream(&stream).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(codes::STREAM_NAME_EXISTS) => {
                broker.update_stream(&stream).await?;
            }
            Err(e) => return Err(e),
        }
        let config = self.consumer_config(consumer, ack_wait);
        match broker.create_consumer(&self.name, &config).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some(codes::CONSUMER_ALREADY_EXISTS) => broker
                .update_consumer(&self.name, &config)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        }
    }
}

/// A consumer gave up on a message: what a captured advisory says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub stream: String,
    pub consumer: String,
    pub sequence: u64,
    pub deliveries: u64,
    pub reason: Reason,
    /// The consumer holds the message back, unacknowledged, until the relay settles it (a
    /// [`Rejection`]); otherwise the server settled it already.
    pub held: bool,
}

/// What a consumer publishes on `$SWITCHYARD.REJECTED.<stream>.<consumer>` instead of
/// terminating a message it refuses, where terminating would remove it (WorkQueue and Interest
/// streams): the fields of a terminated advisory. It holds the message back with a long
/// negative acknowledgement; the relay copies it and then acknowledges it on the consumer's
/// behalf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub stream: String,
    pub consumer: String,
    pub stream_seq: u64,
    pub deliveries: u64,
    pub reason: String,
}

impl Rejection {
    pub fn subject(&self) -> String {
        format!("{REJECTED_SUBJECT}.{}.{}", self.stream, self.consumer)
    }

    pub fn payload(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

impl Failure {
    /// Reads a captured advisory. Anything else on its subjects (garbage, another shape, names
    /// that are no valid stream or consumer names) is refused with the reason why.
    pub fn parse(subject: &str, payload: &[u8]) -> Result<Self, String> {
        let failure = if subject.starts_with(&format!("{REJECTED_SUBJECT}.")) {
            let r: Rejection =
                serde_json::from_slice(payload).map_err(|e| format!("not a rejection: {e}"))?;
            Self {
                stream: r.stream,
                consumer: r.consumer,
                sequence: r.stream_seq,
                deliveries: r.deliveries,
                reason: Reason::from_term(Some(&r.reason)),
                held: true,
            }
        } else {
            match AdvisoryBody::parse(subject, Bytes::copy_from_slice(payload)) {
                AdvisoryBody::MaxDeliveries(a) => Self {
                    stream: a.stream,
                    consumer: a.consumer,
                    sequence: a.stream_seq,
                    deliveries: a.deliveries,
                    reason: Reason::MaxDeliveries,
                    held: false,
                },
                AdvisoryBody::MsgTerminated(a) => Self {
                    stream: a.stream,
                    consumer: a.consumer,
                    sequence: a.stream_seq,
                    deliveries: a.deliveries,
                    reason: Reason::from_term(a.reason.as_deref()),
                    held: false,
                },
                AdvisoryBody::Json(_) | AdvisoryBody::Raw(_) => {
                    return Err(format!(
                        "not a max-deliveries, terminated or rejected message advisory: {}",
                        preview(payload)
                    ));
                }
            }
        };
        for (what, name) in [("stream", &failure.stream), ("consumer", &failure.consumer)] {
            if !valid_name(name) {
                return Err(format!("invalid {what} name {name:?}"));
            }
        }
        if failure.sequence == 0 {
            return Err("stream sequence 0".into());
        }
        Ok(failure)
    }
}

/// A name JetStream accepts for a stream or consumer, and that is therefore one subject token.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace() || c.is_control())
}

fn preview(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(120)]);
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installation_stream_captures_every_consumer_advisory_by_age() {
        let stream = AdvisoryStream::default();
        let config = stream.stream_config();
        assert_eq!(config.name, naming::ADVISORY_STREAM);
        assert_eq!(
            config.subjects,
            [
                "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>",
                "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>",
                "$SWITCHYARD.REJECTED.>"
            ]
        );
        assert_eq!(config.retention, RetentionPolicy::Limits);
        assert_eq!(config.storage, StorageType::File);
        assert_eq!(config.max_age, DEFAULT_MAX_AGE);
        assert!(config.duplicate_window <= config.max_age);
    }

    #[test]
    fn scoped_stream_captures_only_its_streams() {
        let stream = AdvisoryStream {
            scope: AdvisoryScope::Streams(vec!["a".into(), "b".into()]),
            max_age: Duration::from_secs(60),
            ..Default::default()
        };
        let subjects = stream.subjects();
        assert_eq!(subjects.len(), 6);
        assert!(subjects.contains(&"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.b.>".into()));
        assert!(subjects.contains(&"$SWITCHYARD.REJECTED.a.>".into()));
        assert_eq!(
            stream.stream_config().duplicate_window,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn relay_consumer_retries_forever_and_never_stalls_on_waiting_advisories() {
        let c = AdvisoryStream::default().consumer_config("relay", Duration::from_secs(30));
        assert_eq!(c.durable_name.as_deref(), Some("relay"));
        assert_eq!(c.ack_policy, AckPolicy::Explicit);
        assert_eq!(c.max_deliver, -1);
        assert_eq!(c.max_ack_pending, -1);
        assert_eq!(c.inactive_threshold, Duration::ZERO);
    }

    #[test]
    fn advisories_become_failures() {
        let max = Failure::parse(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.shop_orders.sub_shop_billing",
            br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","stream":"shop_orders",
                "consumer":"sub_shop_billing","stream_seq":7,"deliveries":5}"#,
        )
        .unwrap();
        assert_eq!(
            max,
            Failure {
                stream: "shop_orders".into(),
                consumer: "sub_shop_billing".into(),
                sequence: 7,
                deliveries: 5,
                reason: Reason::MaxDeliveries,
                held: false,
            }
        );
        let term = Failure::parse(
            "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.s.c",
            br#"{"stream":"s","consumer":"c","stream_seq":3,"consumer_seq":4,"deliveries":1,
                "reason":"HandlerRejected: HTTP 400"}"#,
        )
        .unwrap();
        assert_eq!(term.reason, Reason::HandlerRejected { status: 400 });
        assert!(!term.held);
    }

    #[test]
    fn rejections_round_trip_and_are_held() {
        let rejection = Rejection {
            stream: "shop_jobs".into(),
            consumer: "sub_shop_worker".into(),
            stream_seq: 12,
            deliveries: 2,
            reason: "SchemaViolation: /id: required".into(),
        };
        assert_eq!(
            rejection.subject(),
            "$SWITCHYARD.REJECTED.shop_jobs.sub_shop_worker"
        );
        let failure = Failure::parse(&rejection.subject(), &rejection.payload()).unwrap();
        assert_eq!(
            failure,
            Failure {
                stream: "shop_jobs".into(),
                consumer: "sub_shop_worker".into(),
                sequence: 12,
                deliveries: 2,
                reason: Reason::SchemaViolation {
                    error: "/id: required".into()
                },
                held: true,
            }
        );
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let subject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.s.c";
        let cases: [(&str, &[u8]); 7] = [
            (subject, b"{not json"),
            (subject, b"\xff\xfe\x00"),
            (subject, br#"{"stream":"s"}"#),
            (
                subject,
                br#"{"stream":"a.b","consumer":"c","stream_seq":1,"deliveries":1}"#,
            ),
            (
                subject,
                br#"{"stream":"s","consumer":"","stream_seq":1,"deliveries":1}"#,
            ),
            (
                subject,
                br#"{"stream":"s","consumer":"c","stream_seq":0,"deliveries":1}"#,
            ),
            ("$SWITCHYARD.REJECTED.s.c", b"[]"),
        ];
        for (subject, payload) in cases {
            let problem = Failure::parse(subject, payload).unwrap_err();
            assert!(!problem.is_empty());
        }
        let huge = vec![b'x'; 100_000];
        assert!(Failure::parse(subject, &huge).unwrap_err().len() < 300);
    }
}
