//! What to do with the broker, decided from the desired and the actual stream configuration.
//! Pure: knows the server's refusal rules and which differences are only the server's normalising.

use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy};

use super::stream_config::partitions_of;
use crate::reconcile::plan::{BrokerConfig, owned_metadata};

impl BrokerConfig for StreamConfig {
    fn metadata(&self) -> &std::collections::HashMap<String, String> {
        &self.metadata
    }

    fn refused_change(&self, actual: &Self) -> Option<(&'static str, String)> {
        refused_change(self, actual)
    }

    fn differences(&self, actual: &Self) -> Vec<&'static str> {
        differences(self, actual)
    }
}

/// The first change JetStream would refuse, as (spec field, message for the user).
fn refused_change(desired: &StreamConfig, actual: &StreamConfig) -> Option<(&'static str, String)> {
    if desired.storage != actual.storage {
        return Some((
            "spec.storage",
            format!(
                "the stream uses {:?} storage and JetStream cannot change it to {:?}; restore spec.storage or create a new Topic",
                actual.storage, desired.storage
            ),
        ));
    }
    let is_work_queue = |c: &StreamConfig| c.retention == RetentionPolicy::WorkQueue;
    if is_work_queue(desired) != is_work_queue(actual) {
        return Some((
            "spec.retention",
            format!(
                "the stream has {:?} retention and JetStream cannot switch to or from WorkQueue; restore spec.retention or create a new Topic",
                actual.retention
            ),
        ));
    }
    if actual.deny_delete && !desired.deny_delete {
        return Some(("spec.denyDelete", "the stream already denies deletes and that cannot be undone; set spec.denyDelete to true".into()));
    }
    if actual.deny_purge && !desired.deny_purge {
        return Some(("spec.denyPurge", "the stream already denies purges and that cannot be undone; set spec.denyPurge to true".into()));
    }
    let (was, wants) = (
        partitions_of(actual.subject_transform.as_ref()),
        partitions_of(desired.subject_transform.as_ref()),
    );
    if let (Some(before), Some(after)) = (&actual.subject_transform, &desired.subject_transform)
        && before.source != after.source
    {
        return Some((
            "spec.partitionTypeTokens",
            format!(
                "the stream partitions subjects of the shape {} and cannot switch to {}; restore spec.partitionTypeTokens or create a new Topic",
                before.source, after.source
            ),
        ));
    }
    if let Some(was) = was
        && wants.is_none_or(|w| w < was)
    {
        return Some((
            "spec.partitions",
            format!(
                "the stream has {was} partitions and they cannot be reduced or removed; restore spec.partitions or create a new Topic"
            ),
        ));
    }
    None
}

/// A limit the server reports as -1 when we sent 0, and vice versa.
fn limit(v: i64) -> i64 {
    if v <= 0 { -1 } else { v }
}

/// Names of the stream settings that differ, after the server's normalising is undone.
pub fn differences(desired: &StreamConfig, actual: &StreamConfig) -> Vec<&'static str> {
    let mut sorted_desired = desired.subjects.clone();
    let mut sorted_actual = actual.subjects.clone();
    sorted_desired.sort();
    sorted_actual.sort();
    let description = |c: &StreamConfig| c.description.clone().filter(|d| !d.is_empty());
    let checks = [
        ("subjects", sorted_desired == sorted_actual),
        ("description", description(desired) == description(actual)),
        ("retention", desired.retention == actual.retention),
        ("replicas", desired.num_replicas == actual.num_replicas),
        ("maxAge", desired.max_age == actual.max_age),
        (
            "maxBytes",
            limit(desired.max_bytes) == limit(actual.max_bytes),
        ),
        (
            "maxMessages",
            limit(desired.max_messages) == limit(actual.max_messages),
        ),
        (
            "maxMessageSize",
            limit(desired.max_message_size.into()) == limit(actual.max_message_size.into()),
        ),
        (
            "maxMessagesPerSubject",
            limit(desired.max_messages_per_subject) == limit(actual.max_messages_per_subject),
        ),
        (
            "maxConsumers",
            limit(desired.max_consumers.into()) == limit(actual.max_consumers.into()),
        ),
        ("discard", desired.discard == actual.discard),
        (
            "duplicateWindow",
            desired.duplicate_window == actual.duplicate_window,
        ),
        (
            "partitions",
            desired.subject_transform == actual.subject_transform,
        ),
        ("denyDelete", desired.deny_delete == actual.deny_delete),
        ("denyPurge", desired.deny_purge == actual.deny_purge),
        ("sealed", desired.sealed == actual.sealed),
        ("allowRollup", desired.allow_rollup == actual.allow_rollup),
        ("noAck", desired.no_ack == actual.no_ack),
        (
            "metadata",
            owned_metadata(&desired.metadata) == owned_metadata(&actual.metadata),
        ),
    ];
    checks
        .into_iter()
        .filter(|(_, same)| !same)
        .map(|(name, _)| name)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_nats::jetstream::stream::StorageType;

    use super::*;
    use crate::reconcile::plan::{Plan as StreamPlan, PlanInputs, UpdateCause, plan};

    const ADOPT: PlanInputs = PlanInputs {
        adopt: true,
        synced_before: false,
    };
    use crate::naming::metadata;
    use crate::reconcile::topic::stream_config::{TopicIdentity, desired_stream};

    fn desired(yaml: &str, generation: i64) -> StreamConfig {
        let id = TopicIdentity {
            namespace: "shop",
            name: "orders",
            generation,
        };
        desired_stream(id, &serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    /// What the server sends back for a stream created from `c`: limits as -1, its own metadata.
    fn as_server_returns(c: &StreamConfig) -> StreamConfig {
        let mut out = c.clone();
        out.max_bytes = limit(out.max_bytes);
        out.metadata.insert("_nats.ver".into(), "2.12.1".into());
        out.metadata.insert("_nats.level".into(), "1".into());
        out.description = None;
        out.subjects.reverse();
        out
    }

    #[test]
    fn missing_stream_is_created() {
        assert_eq!(
            plan(&desired("{}", 1), None, PlanInputs::default()),
            StreamPlan::Create
        );
    }

    #[test]
    fn server_normalising_is_not_drift() {
        let d = desired("subjects: [shop.a.>, shop.b.>]\nmaxAge: 1h", 1);
        assert_eq!(
            plan(&d, Some(&as_server_returns(&d)), PlanInputs::default()),
            StreamPlan::InSync
        );
    }

    #[test]
    fn hand_edit_is_drift_and_spec_edit_is_not() {
        let d = desired("maxAge: 1h", 2);
        let mut edited = as_server_returns(&d);
        edited.max_age = Duration::from_secs(60);
        assert_eq!(
            plan(&d, Some(&edited), PlanInputs::default()),
            StreamPlan::Update {
                cause: UpdateCause::Drift,
                changed: vec!["maxAge"]
            }
        );
        let older = as_server_returns(&desired("maxAge: 2h", 1));
        assert_eq!(
            plan(&d, Some(&older), PlanInputs::default()),
            StreamPlan::Update {
                cause: UpdateCause::SpecChanged,
                changed: vec!["maxAge", "metadata"]
            }
        );
    }

    #[test]
    fn foreign_stream_is_left_alone_unless_adopted() {
        let d = desired("{}", 1);
        let mut foreign = as_server_returns(&d);
        foreign.metadata.remove(metadata::OWNER);
        assert_eq!(
            plan(&d, Some(&foreign), PlanInputs::default()),
            StreamPlan::NotOwned { owner: None }
        );
        foreign
            .metadata
            .insert(metadata::OWNER.into(), "Topic/other/orders".into());
        assert_eq!(
            plan(&d, Some(&foreign), PlanInputs::default()),
            StreamPlan::NotOwned {
                owner: Some("Topic/other/orders".into())
            }
        );
        assert!(matches!(
            plan(&d, Some(&foreign), ADOPT),
            StreamPlan::Update {
                cause: UpdateCause::Adoption,
                ..
            }
        ));
    }

    #[test]
    fn changes_jetstream_refuses_are_refused() {
        let cases = [
            ("storage: Memory", "storage: File", "spec.storage"),
            (
                "retention: WorkQueue",
                "retention: Limits",
                "spec.retention",
            ),
            ("denyDelete: true", "denyDelete: false", "spec.denyDelete"),
            ("denyPurge: true", "denyPurge: false", "spec.denyPurge"),
            ("partitions: 4", "partitions: 2", "spec.partitions"),
            ("partitions: 4", "{}", "spec.partitions"),
            (
                "partitions: 4",
                "partitions: 4\npartitionTypeTokens: 3",
                "spec.partitionTypeTokens",
            ),
        ];
        for (was, wants, field) in cases {
            let actual = as_server_returns(&desired(was, 1));
            match plan(&desired(wants, 2), Some(&actual), PlanInputs::default()) {
                StreamPlan::Refused { field: f, message } => {
                    assert_eq!(f, field);
                    assert!(message.contains("cannot"), "{message}");
                }
                other => panic!("{was} -> {wants}: expected refusal, got {other:?}"),
            }
        }
        let memory = as_server_returns(&desired("storage: Memory", 1));
        assert_eq!(memory.storage, StorageType::Memory);
    }

    #[test]
    fn allowed_transitions_are_updates() {
        for (was, wants) in [
            ("retention: Limits", "retention: Interest"),
            ("partitions: 2", "partitions: 4"),
            ("denyDelete: false", "denyDelete: true"),
        ] {
            let actual = as_server_returns(&desired(was, 1));
            assert!(
                matches!(
                    plan(&desired(wants, 2), Some(&actual), PlanInputs::default()),
                    StreamPlan::Update { .. }
                ),
                "{was} -> {wants}"
            );
        }
    }
}
