//! Where a DeadLetterPolicy's dead letters go, decided from its spec and, for a Topic target,
//! that Topic. Pure: the managed stream's configuration and the subject prefix dead letters are
//! published under are unit-tested without a server.

use std::collections::HashMap;

use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};

use crate::{
    api::{
        Topic,
        dead_letter_policy::{DeadLetterPolicySpec, ManagedDeadLetterStream},
    },
    naming::{self, metadata},
    reconcile::{
        InvalidSpec,
        topic::stream_config::{DEFAULT_DUPLICATE_WINDOW, optional_duration, optional_size_i64},
    },
};

/// Which policy a target is built for.
#[derive(Clone, Copy, Debug)]
pub struct PolicyIdentity<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: i64,
}

/// The stream dead letters are stored in and the subject prefix they are published under.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredTarget {
    /// The stream holding the dead letters.
    pub stream: String,
    /// Dead letters are published to `<subject_prefix>.<event type tokens>`.
    pub subject_prefix: String,
    /// The stream Switchyard creates and keeps as declared; `None` for a Topic target, whose
    /// stream is its Topic's.
    pub managed: Option<StreamConfig>,
    /// The Topic target's name.
    pub topic: Option<String>,
}

/// The managed dead-letter stream: Limits retention, so dead letters can be browsed and
/// replayed; direct get allowed, so reading them by sequence does not go through the leader.
pub fn managed(
    id: PolicyIdentity<'_>,
    spec: &ManagedDeadLetterStream,
) -> Result<DesiredTarget, InvalidSpec> {
    let max_age =
        optional_duration("spec.target.managed.maxAge", Some(&spec.max_age))?.unwrap_or_default();
    let prefix = naming::dead_letter_subject_prefix(id.namespace, id.name);
    let mut meta = HashMap::new();
    meta.insert(
        metadata::OWNER.to_string(),
        naming::owner_id("DeadLetterPolicy", id.namespace, id.name),
    );
    meta.insert(metadata::GENERATION.to_string(), id.generation.to_string());
    let num_replicas = usize::try_from(spec.replicas)
        .ok()
        .filter(|r| (1..=5).contains(r))
        .ok_or_else(|| {
            InvalidSpec::new(
                "spec.target.managed.replicas",
                format!("{} is not between 1 and 5", spec.replicas),
            )
        })?;
    let stream = StreamConfig {
        name: naming::dead_letter_stream_name(id.namespace, id.name),
        description: Some(format!(
            "dead letters of DeadLetterPolicy {}/{}",
            id.namespace, id.name
        )),
        subjects: vec![format!("{prefix}.>")],
        retention: RetentionPolicy::Limits,
        storage: StorageType::File,
        num_replicas,
        max_age,
        max_bytes: optional_size_i64("spec.target.managed.maxBytes", spec.max_bytes.as_ref())?,
        max_messages: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        discard: DiscardPolicy::Old,
        // The relay's copies carry ids derived from the original; a redone copy lands within
        // this window and is dropped as a duplicate.
        duplicate_window: if max_age.is_zero() {
            DEFAULT_DUPLICATE_WINDOW
        } else {
            DEFAULT_DUPLICATE_WINDOW.min(max_age)
        },
        allow_direct: true,
        metadata: meta,
        ..StreamConfig::default()
    };
    Ok(DesiredTarget {
        stream: stream.name.clone(),
        subject_prefix: prefix,
        managed: Some(stream),
        topic: None,
    })
}

/// A Topic target: its stream, and the subject space dead letters are published under (the
/// Topic's default `<namespace>.<topic>`, or the first of its declared subjects that ends in
/// `.>`).
pub fn topic(namespace: &str, topic: &Topic) -> Result<DesiredTarget, InvalidSpec> {
    let name = topic.metadata.name.clone().unwrap_or_default();
    let subject_prefix = match &topic.spec.subjects {
        None => format!("{namespace}.{name}"),
        Some(subjects) => subjects
            .iter()
            .find_map(|s| s.strip_suffix(".>"))
            .map(str::to_string)
            .ok_or_else(|| {
                InvalidSpec::new(
                    "spec.target.topicRef",
                    format!(
                        "Topic {name} declares no subject space ending in \".>\" (it has {}); dead letters are published as <prefix>.<event type>, so give it one such as {namespace}.{name}.>",
                        subjects.join(", ")
                    ),
                )
            })?,
    };
    Ok(DesiredTarget {
        stream: naming::stream_name(namespace, &name),
        subject_prefix,
        managed: None,
        topic: Some(name),
    })
}

/// The target a policy's spec names: a managed stream unless a Topic is named.
pub fn desired(
    id: PolicyIdentity<'_>,
    spec: &DeadLetterPolicySpec,
    target_topic: Option<&Topic>,
) -> Result<DesiredTarget, InvalidSpec> {
    match (&spec.target.topic_ref, &spec.target.managed, target_topic) {
        (Some(_), _, Some(found)) => topic(id.namespace, found),
        (Some(reference), _, None) => Err(InvalidSpec::new(
            "spec.target.topicRef",
            format!("Topic {} was not read", reference.name),
        )),
        (None, Some(managed_spec), _) => managed(id, managed_spec),
        (None, None, _) => managed(id, &ManagedDeadLetterStream::default()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn id() -> PolicyIdentity<'static> {
        PolicyIdentity {
            namespace: "shop",
            name: "payments",
            generation: 3,
        }
    }

    fn spec(yaml: &str) -> DeadLetterPolicySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn the_default_target_is_a_managed_limits_stream_kept_14_days() {
        let target = desired(id(), &spec("{}"), None).unwrap();
        let stream = target.managed.expect("managed");
        assert_eq!(stream.name, "shop_payments_dlq");
        assert_eq!(target.stream, "shop_payments_dlq");
        assert_eq!(target.subject_prefix, "_dlq.shop.payments");
        assert_eq!(stream.subjects, ["_dlq.shop.payments.>"]);
        assert_eq!(stream.retention, RetentionPolicy::Limits);
        assert_eq!(stream.max_age, Duration::from_secs(14 * 24 * 3600));
        assert_eq!(stream.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        assert!(stream.allow_direct);
        assert_eq!(
            stream.metadata.get(metadata::OWNER).map(String::as_str),
            Some("DeadLetterPolicy/shop/payments")
        );
        assert_eq!(
            stream
                .metadata
                .get(metadata::GENERATION)
                .map(String::as_str),
            Some("3")
        );
    }

    #[test]
    fn managed_limits_are_translated_and_a_short_max_age_shortens_the_duplicate_window() {
        let target = desired(
            id(),
            &spec("target: {managed: {maxAge: 30s, maxBytes: 1Gi, replicas: 3}}"),
            None,
        )
        .unwrap();
        let stream = target.managed.unwrap();
        assert_eq!(stream.max_age, Duration::from_secs(30));
        assert_eq!(stream.duplicate_window, Duration::from_secs(30));
        assert_eq!(stream.max_bytes, 1 << 30);
        assert_eq!(stream.num_replicas, 3);
    }

    #[test]
    fn a_topic_target_uses_the_topics_stream_and_subject_space() {
        let mut orders = Topic::new("dead", serde_yaml::from_str("{}").unwrap());
        orders.metadata.namespace = Some("shop".into());
        let target = desired(
            id(),
            &spec("target: {topicRef: {name: dead}}"),
            Some(&orders),
        )
        .unwrap();
        assert_eq!(target.stream, "shop_dead");
        assert_eq!(target.subject_prefix, "shop.dead");
        assert_eq!(target.managed, None);
        assert_eq!(target.topic.as_deref(), Some("dead"));

        orders.spec.subjects = Some(vec!["shop.failed.exact".into(), "shop.failed.>".into()]);
        let target = desired(
            id(),
            &spec("target: {topicRef: {name: dead}}"),
            Some(&orders),
        )
        .unwrap();
        assert_eq!(target.subject_prefix, "shop.failed");

        orders.spec.subjects = Some(vec!["shop.failed.exact".into()]);
        let error = desired(
            id(),
            &spec("target: {topicRef: {name: dead}}"),
            Some(&orders),
        )
        .unwrap_err();
        assert_eq!(error.field, "spec.target.topicRef");
        assert!(error.message.contains("shop.dead.>"), "{error}");
    }
}
