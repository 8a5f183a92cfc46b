//! Topic spec → JetStream stream configuration. Pure: everything here is decided from the spec and
//! the object's identity alone, so it is unit-tested without a server.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType, SubjectTransform,
};

use crate::{
    api::{
        ByteSize, GoDuration,
        topic::{
            DEFAULT_PARTITION_TYPE_TOKENS, Discard, MAX_PARTITIONS, Retention, Storage, TopicSpec,
        },
    },
    naming,
    reconcile::InvalidSpec,
    subjects::{check_subject, subjects_overlap},
};

pub use crate::naming::metadata;

/// The server's default duplicate window, written explicitly so what we read back is what we sent.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// The server refuses shorter duplicate windows.
pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);

/// Which object a stream is built for.
#[derive(Clone, Copy, Debug)]
pub struct TopicIdentity<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub generation: i64,
}

impl TopicIdentity<'_> {
    pub fn owner_id(&self) -> String {
        naming::owner_id("Topic", self.namespace, self.name)
    }

    pub fn stream_name(&self) -> String {
        naming::stream_name(self.namespace, self.name)
    }
}

/// The stream configuration a Topic asks for.
pub fn desired_stream(
    id: TopicIdentity<'_>,
    spec: &TopicSpec,
) -> Result<StreamConfig, InvalidSpec> {
    let base = format!("{}.{}", id.namespace, id.name);
    let partitioning = Partitioning::from_spec(spec)?;
    let subjects = match &partitioning {
        Some(p) => vec![p.subject(&base)],
        None => subjects(id, spec)?,
    };
    let max_age =
        optional_duration("spec.maxAge", spec.max_age.as_ref())?.unwrap_or(Duration::ZERO);
    let duplicate_window = duplicate_window(spec, max_age)?;
    let subject_transform = partitioning.as_ref().map(|p| p.transform(&base));

    let mut metadata = HashMap::new();
    metadata.insert(metadata::OWNER.to_string(), id.owner_id());
    metadata.insert(metadata::GENERATION.to_string(), id.generation.to_string());

    Ok(StreamConfig {
        name: id.stream_name(),
        description: spec.description.clone().filter(|d| !d.is_empty()),
        subjects,
        retention: match spec.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::WorkQueue => RetentionPolicy::WorkQueue,
        },
        storage: match spec.storage {
            Storage::File => StorageType::File,
            Storage::Memory => StorageType::Memory,
        },
        num_replicas: usize::try_from(spec.replicas)
            .ok()
            .filter(|r| (1..=5).contains(r))
            .ok_or_else(|| {
                InvalidSpec::new(
                    "spec.replicas",
                    format!("{} is not between 1 and 5", spec.replicas),
                )
            })?,
        max_age,
        max_bytes: optional_size_i64("spec.maxBytes", spec.max_bytes.as_ref())?,
        max_messages: match spec.max_messages {
            None => -1,
            Some(n) if n >= 1 => n,
            Some(n) => {
                return Err(InvalidSpec::new(
                    "spec.maxMessages",
                    format!("{n} is not a positive count"),
                ));
            }
        },
        max_message_size: optional_size_i32("spec.maxMessageSize", spec.max_message_size.as_ref())?,
        max_messages_per_subject: -1,
        max_consumers: -1,
        discard: match spec.discard {
            Discard::Old => DiscardPolicy::Old,
            Discard::New => DiscardPolicy::New,
        },
        duplicate_window,
        subject_transform,
        deny_delete: spec.deny_delete,
        deny_purge: spec.deny_purge,
        metadata,
        ..StreamConfig::default()
    })
}

fn subjects(id: TopicIdentity<'_>, spec: &TopicSpec) -> Result<Vec<String>, InvalidSpec> {
    let Some(declared) = spec.subjects.as_ref() else {
        return Ok(vec![naming::default_subject(id.namespace, id.name)]);
    };
    if declared.is_empty() {
        return Err(InvalidSpec::new(
            "spec.subjects",
            "list at least one subject, or leave the field out for the default",
        ));
    }
    let prefix = format!("{}.", id.namespace);
    for (i, subject) in declared.iter().enumerate() {
        let field = format!("spec.subjects[{i}]");
        check_subject(subject)
            .map_err(|why| InvalidSpec::new(&field, format!("{subject:?} {why}")))?;
        if !subject.starts_with(&prefix) || subject.len() == prefix.len() {
            return Err(InvalidSpec::new(
                field,
                format!(
                    "{subject:?} must start with \"{prefix}\": a Topic may only own subjects of its own namespace"
                ),
            ));
        }
        for (j, earlier) in declared[..i].iter().enumerate() {
            if subjects_overlap(subject, earlier) {
                return Err(InvalidSpec::new(
                    field,
                    format!(
                        "{subject:?} overlaps spec.subjects[{j}] {earlier:?}; list each subject space once"
                    ),
                ));
            }
        }
    }
    Ok(declared.clone())
}

pub(crate) fn optional_duration(
    field: &str,
    value: Option<&GoDuration>,
) -> Result<Option<Duration>, InvalidSpec> {
    value
        .map(|d| {
            d.parse()
                .map_err(|e| InvalidSpec::new(field, e.to_string()))
        })
        .transpose()
}

fn duplicate_window(spec: &TopicSpec, max_age: Duration) -> Result<Duration, InvalidSpec> {
    let field = "spec.duplicateWindow";
    match optional_duration(field, spec.duplicate_window.as_ref())? {
        Some(w) if w < MIN_DUPLICATE_WINDOW => {
            Err(InvalidSpec::new(field, "must be at least 100ms"))
        }
        Some(w) if !max_age.is_zero() && w > max_age => Err(InvalidSpec::new(
            field,
            format!(
                "{} is longer than spec.maxAge ({}); shorten it or raise maxAge",
                spec.duplicate_window
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                spec.max_age
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
        )),
        Some(w) => Ok(w),
        // The server refuses a window longer than maxAge, so a short maxAge shortens the default.
        None if !max_age.is_zero() => Ok(DEFAULT_DUPLICATE_WINDOW.min(max_age)),
        None => Ok(DEFAULT_DUPLICATE_WINDOW),
    }
}

pub(crate) fn optional_size_i64(field: &str, value: Option<&ByteSize>) -> Result<i64, InvalidSpec> {
    let Some(size) = value else { return Ok(-1) };
    let bytes = size
        .parse()
        .map_err(|e| InvalidSpec::new(field, e.to_string()))?;
    match i64::try_from(bytes) {
        Ok(b) if b > 0 => Ok(b),
        Ok(_) => Err(InvalidSpec::new(
            field,
            "must be larger than 0; leave it out for no limit",
        )),
        Err(_) => Err(InvalidSpec::new(field, format!("{size} is too large"))),
    }
}

fn optional_size_i32(field: &str, value: Option<&ByteSize>) -> Result<i32, InvalidSpec> {
    let bytes = optional_size_i64(field, value)?;
    i32::try_from(bytes).map_err(|_| {
        InvalidSpec::new(
            field,
            format!(
                "{} is larger than JetStream's limit of 2Gi - 1 bytes",
                value.map(ToString::to_string).unwrap_or_default()
            ),
        )
    })
}

/// The partition layout of a Topic: events arrive on `<ns>.<topic>.<type>.<key>` and are stored
/// with the partition number (a hash of the key) inserted after the topic token.
struct Partitioning {
    partitions: i32,
    type_tokens: i32,
}

impl Partitioning {
    fn from_spec(spec: &TopicSpec) -> Result<Option<Self>, InvalidSpec> {
        let Some(partitions) = spec.partitions else {
            if spec.partition_type_tokens.is_some() {
                return Err(InvalidSpec::new(
                    "spec.partitionTypeTokens",
                    "only applies together with spec.partitions",
                ));
            }
            return Ok(None);
        };
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(InvalidSpec::new(
                "spec.partitions",
                format!("{partitions} is not between 1 and {MAX_PARTITIONS}"),
            ));
        }
        if spec.subjects.is_some() {
            return Err(InvalidSpec::new(
                "spec.partitions",
                "partitioning needs the default subject layout; remove spec.subjects or spec.partitions",
            ));
        }
        let type_tokens = spec
            .partition_type_tokens
            .unwrap_or(DEFAULT_PARTITION_TYPE_TOKENS);
        if !(1..=6).contains(&type_tokens) {
            return Err(InvalidSpec::new(
                "spec.partitionTypeTokens",
                format!("{type_tokens} is not between 1 and 6"),
            ));
        }
        Ok(Some(Self {
            partitions,
            type_tokens,
        }))
    }

    /// The only subjects a partitioned Topic accepts: publishing anything else fails at once
    /// instead of landing outside every partition.
    fn subject(&self, base: &str) -> String {
        format!("{base}{}", ".*".repeat(self.type_tokens as usize + 1))
    }

    fn transform(&self, base: &str) -> SubjectTransform {
        let wildcards = self.type_tokens + 1;
        let moved: String = (1..=wildcards)
            .map(|i| format!(".{{{{wildcard({i})}}}}"))
            .collect();
        SubjectTransform {
            source: self.subject(base),
            destination: format!(
                "{base}.{{{{partition({},{wildcards})}}}}{moved}",
                self.partitions
            ),
        }
    }
}

/// The partition count a stored transform encodes, if any.
pub fn partitions_of(transform: Option<&SubjectTransform>) -> Option<i32> {
    let dest = &transform?.destination;
    let start = dest.find("{{partition(")? + "{{partition(".len();
    let rest = &dest[start..];
    rest[..rest.find(',')?].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TopicIdentity<'static> {
        TopicIdentity {
            namespace: "shop",
            name: "orders",
            generation: 4,
        }
    }

    fn spec(yaml: &str) -> TopicSpec {
        serde_yaml::from_str(yaml).expect("test spec parses")
    }

    #[test]
    fn minimal_spec_gets_safe_defaults() {
        let c = desired_stream(id(), &spec("{}")).unwrap();
        assert_eq!(c.name, "shop_orders");
        assert_eq!(c.subjects, vec!["shop.orders.>"]);
        assert_eq!(c.storage, StorageType::File);
        assert_eq!(c.retention, RetentionPolicy::Limits);
        assert_eq!(c.discard, DiscardPolicy::Old);
        assert_eq!(c.num_replicas, 1);
        assert_eq!(c.max_age, Duration::ZERO);
        assert_eq!(
            (c.max_bytes, c.max_messages, c.max_message_size),
            (-1, -1, -1)
        );
        assert_eq!(c.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        assert_eq!(c.metadata[metadata::OWNER], "Topic/shop/orders");
        assert_eq!(c.metadata[metadata::GENERATION], "4");
        assert!(c.subject_transform.is_none());
    }

    #[test]
    fn every_declared_field_is_translated() {
        let c = desired_stream(
            id(),
            &spec(
                r#"
subjects: ["shop.orders.>", "shop.legacy.*"]
description: orders
retention: WorkQueue
storage: Memory
replicas: 3
maxAge: 24h
maxBytes: 1Gi
maxMessages: 1000
maxMessageSize: 64Ki
discard: New
duplicateWindow: 5m
denyDelete: true
denyPurge: true
"#,
            ),
        )
        .unwrap();
        assert_eq!(c.subjects, vec!["shop.orders.>", "shop.legacy.*"]);
        assert_eq!(c.description.as_deref(), Some("orders"));
        assert_eq!(c.retention, RetentionPolicy::WorkQueue);
        assert_eq!(c.storage, StorageType::Memory);
        assert_eq!(c.num_replicas, 3);
        assert_eq!(c.max_age, Duration::from_secs(86_400));
        assert_eq!(c.max_bytes, 1 << 30);
        assert_eq!(c.max_messages, 1000);
        assert_eq!(c.max_message_size, 64 << 10);
        assert_eq!(c.discard, DiscardPolicy::New);
        assert_eq!(c.duplicate_window, Duration::from_secs(300));
        assert!(c.deny_delete && c.deny_purge);
    }

    #[test]
    fn short_max_age_shortens_the_default_duplicate_window() {
        let c = desired_stream(id(), &spec("maxAge: 30s")).unwrap();
        assert_eq!(c.duplicate_window, Duration::from_secs(30));
    }

    #[test]
    fn partitions_become_a_subject_transform() {
        let c = desired_stream(id(), &spec("partitions: 8")).unwrap();
        assert_eq!(c.subjects, vec!["shop.orders.*.*.*"]);
        let t = c.subject_transform.as_ref().unwrap();
        assert_eq!(t.source, "shop.orders.*.*.*");
        assert_eq!(
            t.destination,
            "shop.orders.{{partition(8,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}"
        );
        let three = desired_stream(id(), &spec("partitions: 2\npartitionTypeTokens: 3")).unwrap();
        assert_eq!(three.subjects, vec!["shop.orders.*.*.*.*"]);
        assert_eq!(partitions_of(three.subject_transform.as_ref()), Some(2));
        assert_eq!(partitions_of(Some(t)), Some(8));
        assert_eq!(partitions_of(None), None);
    }

    #[test]
    fn invalid_values_name_their_field() {
        let cases = [
            ("maxAge: soon", "spec.maxAge"),
            ("maxAge: 1h\nduplicateWindow: 2h", "spec.duplicateWindow"),
            ("duplicateWindow: 10ms", "spec.duplicateWindow"),
            ("maxBytes: 10MB", "spec.maxBytes"),
            ("maxBytes: 0", "spec.maxBytes"),
            ("maxMessageSize: 4Gi", "spec.maxMessageSize"),
            ("maxMessages: 0", "spec.maxMessages"),
            ("replicas: 7", "spec.replicas"),
            ("subjects: []", "spec.subjects"),
            ("subjects: [\"other.orders.>\"]", "spec.subjects[0]"),
            ("subjects: [\"shop.\"]", "spec.subjects[0]"),
            ("subjects: [\"shop.>.x\"]", "spec.subjects[0]"),
            ("subjects: [\"shop.a b\"]", "spec.subjects[0]"),
            ("subjects: [\"shop.a.>\", \"shop.a.b\"]", "spec.subjects[1]"),
            ("subjects: [\"shop.a.>\"]\npartitions: 2", "spec.partitions"),
            ("partitions: 0", "spec.partitions"),
            ("partitionTypeTokens: 3", "spec.partitionTypeTokens"),
            (
                "partitions: 2\npartitionTypeTokens: 9",
                "spec.partitionTypeTokens",
            ),
        ];
        for (yaml, field) in cases {
            let err = desired_stream(id(), &spec(yaml)).expect_err(yaml);
            assert_eq!(err.field, field, "{yaml}: {err}");
            assert!(!err.message.is_empty());
        }
    }
}
