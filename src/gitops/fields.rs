//! The settings of a stream or consumer as a plan shows them: each setting a planner names
//! (see [`crate::reconcile::topic::plan::differences`] and
//! [`crate::reconcile::subscription::plan::differences`]) with its value before and after.
//! Pure.

use std::time::Duration;

use async_nats::jetstream::{consumer::Config as ConsumerConfig, stream::Config as StreamConfig};
use serde::Serialize;

use crate::reconcile::{plan::owned_metadata, topic::stream_config::partitions_of};

/// One setting that changes; `None` where it has no value (before a create).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Option<String>,
    pub new: Option<String>,
}

impl FieldChange {
    pub fn new(field: impl Into<String>, old: Option<String>, new: Option<String>) -> Self {
        Self {
            field: field.into(),
            old,
            new,
        }
    }
}

/// What a newly created stream is given.
const STREAM_SETTINGS: &[&str] = &[
    "subjects",
    "retention",
    "storage",
    "replicas",
    "maxAge",
    "maxBytes",
    "maxMessages",
    "maxMessageSize",
    "discard",
    "duplicateWindow",
    "partitions",
    "denyDelete",
    "denyPurge",
    "description",
];

/// What a newly created consumer is given.
const CONSUMER_SETTINGS: &[&str] = &[
    "filters",
    "deliverPolicy",
    "ackWait",
    "retry.maxDeliveries",
    "retry.backoff",
    "maxAckPending",
    "description",
];

/// Values a new object's listing leaves out: nothing is set.
const UNSET: &[&str] = &["unlimited", "none", "false"];

/// The settings a new stream gets, those left unset aside.
pub fn stream_settings(desired: &StreamConfig) -> Vec<FieldChange> {
    STREAM_SETTINGS
        .iter()
        .filter_map(|field| {
            let value = stream_field(field, desired).filter(|v| !UNSET.contains(&v.as_str()))?;
            Some(FieldChange::new(*field, None, Some(value)))
        })
        .collect()
}

/// The settings `changed` (as a planner names them, with or without `spec.`) before and after.
pub fn stream_changes(
    changed: &[&str],
    desired: &StreamConfig,
    actual: &StreamConfig,
) -> Vec<FieldChange> {
    changed
        .iter()
        .map(|field| {
            FieldChange::new(
                *field,
                stream_field(field, actual),
                stream_field(field, desired),
            )
        })
        .collect()
}

/// The settings a new consumer gets, those left unset aside.
pub fn consumer_settings(desired: &ConsumerConfig) -> Vec<FieldChange> {
    CONSUMER_SETTINGS
        .iter()
        .filter_map(|field| {
            let value = consumer_field(field, desired).filter(|v| !UNSET.contains(&v.as_str()))?;
            Some(FieldChange::new(*field, None, Some(value)))
        })
        .collect()
}

/// The consumer settings `changed` before and after.
pub fn consumer_changes(
    changed: &[&str],
    desired: &ConsumerConfig,
    actual: &ConsumerConfig,
) -> Vec<FieldChange> {
    changed
        .iter()
        .map(|field| {
            FieldChange::new(
                *field,
                consumer_field(field, actual),
                consumer_field(field, desired),
            )
        })
        .collect()
}

/// A stream setting as text; `None` for a setting this module does not know or a description
/// that is not set.
pub fn stream_field(field: &str, c: &StreamConfig) -> Option<String> {
    let field = field.strip_prefix("spec.").unwrap_or(field);
    Some(match field {
        "subjects" => {
            let mut subjects = c.subjects.clone();
            subjects.sort();
            subjects.join(", ")
        }
        "description" => c.description.clone().filter(|d| !d.is_empty())?,
        "retention" => format!("{:?}", c.retention),
        "storage" => format!("{:?}", c.storage),
        "replicas" => c.num_replicas.to_string(),
        "maxAge" => unlimited_duration(c.max_age),
        "maxBytes" => limit(c.max_bytes),
        "maxMessages" => limit(c.max_messages),
        "maxMessageSize" => limit(c.max_message_size.into()),
        "maxMessagesPerSubject" => limit(c.max_messages_per_subject),
        "maxConsumers" => limit(c.max_consumers.into()),
        "discard" => format!("{:?}", c.discard),
        "duplicateWindow" => duration(c.duplicate_window),
        "partitions" => partitions_of(c.subject_transform.as_ref())
            .map_or_else(|| "none".into(), |p| p.to_string()),
        "partitionTypeTokens" => c
            .subject_transform
            .as_ref()
            .map_or_else(|| "none".into(), |t| t.source.clone()),
        "denyDelete" => c.deny_delete.to_string(),
        "denyPurge" => c.deny_purge.to_string(),
        "sealed" => c.sealed.to_string(),
        "allowRollup" => c.allow_rollup.to_string(),
        "noAck" => c.no_ack.to_string(),
        "metadata" => metadata(&c.metadata),
        _ => return None,
    })
}

/// A consumer setting as text.
pub fn consumer_field(field: &str, c: &ConsumerConfig) -> Option<String> {
    let field = field.strip_prefix("spec.").unwrap_or(field);
    Some(match field {
        "filters" => {
            let mut filters = c.filter_subjects.clone();
            if !c.filter_subject.is_empty() {
                filters.push(c.filter_subject.clone());
            }
            filters.sort();
            if filters.is_empty() {
                "(every event)".into()
            } else {
                filters.join(", ")
            }
        }
        "deliverPolicy" => format!("{:?}", c.deliver_policy),
        "ackPolicy" => format!("{:?}", c.ack_policy),
        "ackWait" => duration(c.ack_wait),
        "retry.maxDeliveries" => limit(c.max_deliver),
        "retry.backoff" => {
            if c.backoff.is_empty() {
                "none".into()
            } else {
                c.backoff
                    .iter()
                    .map(|d| duration(*d))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        }
        "maxAckPending" => limit(c.max_ack_pending),
        "inactiveThreshold" => unlimited_duration(c.inactive_threshold),
        "description" => c.description.clone().filter(|d| !d.is_empty())?,
        "metadata" => metadata(&c.metadata),
        _ => return None,
    })
}

/// The keys Switchyard writes, as `key=value` pairs in key order.
fn metadata(metadata: &std::collections::HashMap<String, String>) -> String {
    owned_metadata(metadata)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A limit the server reports as -1 (or we send as 0) for "none".
fn limit(value: i64) -> String {
    if value <= 0 {
        "unlimited".into()
    } else {
        value.to_string()
    }
}

fn unlimited_duration(value: Duration) -> String {
    if value.is_zero() {
        "unlimited".into()
    } else {
        duration(value)
    }
}

/// A duration as the manifests write it (Go syntax): `168h`, `1h30m`, `90s` is `1m30s`, `500ms`.
pub fn duration(value: Duration) -> String {
    if value.is_zero() {
        return "0s".into();
    }
    let millis = value.as_millis();
    if !millis.is_multiple_of(1000) || value.as_secs() == 0 {
        if value.subsec_nanos().is_multiple_of(1_000_000) {
            return format!("{millis}ms");
        }
        return format!("{}ns", value.as_nanos());
    }
    let seconds = value.as_secs();
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use async_nats::jetstream::consumer::DeliverPolicy;

    use super::*;
    use crate::reconcile::topic::stream_config::{TopicIdentity, desired_stream};

    fn stream(yaml: &str) -> StreamConfig {
        let id = TopicIdentity {
            namespace: "shop",
            name: "orders",
            generation: 1,
        };
        desired_stream(id, &serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    #[test]
    fn durations_read_as_the_manifests_write_them() {
        assert_eq!(duration(Duration::from_secs(7 * 24 * 3600)), "168h");
        assert_eq!(duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(duration(Duration::from_millis(500)), "500ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn a_changed_stream_setting_shows_before_and_after() {
        let before = stream("maxAge: 1h\npartitions: 4");
        let after = stream("maxAge: 2h\npartitions: 2");
        assert_eq!(
            stream_changes(&["maxAge", "spec.partitions"], &after, &before),
            vec![
                FieldChange::new("maxAge", Some("1h".into()), Some("2h".into())),
                FieldChange::new("spec.partitions", Some("4".into()), Some("2".into())),
            ]
        );
    }

    #[test]
    fn every_setting_the_stream_planner_names_can_be_shown() {
        let mut other = stream("maxAge: 1h\nmaxBytes: 1Gi\npartitions: 2\ndenyDelete: true");
        other.description = Some("x".into());
        other.retention = async_nats::jetstream::stream::RetentionPolicy::Interest;
        other.num_replicas = 3;
        other.max_messages = 5;
        other.max_message_size = 5;
        other.max_messages_per_subject = 5;
        other.max_consumers = 5;
        other.discard = async_nats::jetstream::stream::DiscardPolicy::New;
        other.deny_purge = true;
        other.sealed = true;
        other.allow_rollup = true;
        other.no_ack = true;
        other
            .metadata
            .insert("switchyard.dev/owner".into(), "x".into());
        let plain = stream("{}");
        let named = crate::reconcile::topic::plan::differences(&other, &plain);
        assert!(named.len() >= 18, "{named:?}");
        for field in named {
            assert!(
                stream_field(field, &other).is_some() && stream_field(field, &plain).is_some()
                    || field == "description",
                "{field} cannot be shown"
            );
        }
        assert_eq!(
            stream_field("maxBytes", &plain).as_deref(),
            Some("unlimited")
        );
        assert_eq!(stream_field("partitions", &plain).as_deref(), Some("none"));
    }

    #[test]
    fn every_setting_the_consumer_planner_names_can_be_shown() {
        let plain = ConsumerConfig {
            durable_name: Some("sub_shop_billing".into()),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            ..Default::default()
        };
        let other = ConsumerConfig {
            filter_subjects: vec!["shop.orders.b".into(), "shop.orders.a".into()],
            ack_wait: Duration::from_secs(45),
            max_deliver: 7,
            backoff: vec![Duration::from_secs(1), Duration::from_secs(2)],
            max_ack_pending: 10,
            inactive_threshold: Duration::from_secs(60),
            description: Some("d".into()),
            deliver_policy: DeliverPolicy::New,
            metadata: HashMap::from([("switchyard.dev/schema".into(), "a.b v2".into())]),
            ..plain.clone()
        };
        let named = crate::reconcile::subscription::plan::differences(&other, &plain);
        assert_eq!(named.len(), 8, "{named:?}");
        let changes = consumer_changes(&named, &other, &plain);
        assert!(changes.iter().all(|c| c.new.is_some()), "{changes:?}");
        let shown = |field: &str| {
            changes
                .iter()
                .find(|c| c.field == field)
                .map(|c| (c.old.clone(), c.new.clone()))
        };
        assert_eq!(
            shown("retry.maxDeliveries"),
            Some((Some("5".into()), Some("7".into())))
        );
        assert_eq!(
            shown("filters"),
            Some((
                Some("(every event)".into()),
                Some("shop.orders.a, shop.orders.b".into())
            ))
        );
        assert_eq!(
            shown("retry.backoff"),
            Some((Some("none".into()), Some("1s, 2s".into())))
        );
        assert_eq!(
            consumer_field("spec.deliverPolicy", &other).as_deref(),
            Some("New")
        );
    }
}
