//! `Topic`: a subject space backed by one JetStream stream.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ByteSize, GoDuration, LocalObjectRef, ObjectRefWithVersion};

/// Upper bound on `partitions`; each partition is a subject a consumer can be pinned to.
pub const MAX_PARTITIONS: i32 = 1024;
/// Event type tokens of a partitioned Topic's subjects unless `partitionTypeTokens` says otherwise.
pub const DEFAULT_PARTITION_TYPE_TOKENS: i32 = 2;

/// A Topic declares a subject space (by default `<namespace>.<name>.>`) and the JetStream stream
/// that stores every event published into it. Events of CloudEvents type `a.b.c` travel on the
/// subject `<namespace>.<name>.a.b.c`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    doc = "A Topic: a subject space and the JetStream stream that stores its events.",
    status = "TopicStatus",
    shortname = "top",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Stream","type":"string","jsonPath":".status.streamName"}"#,
    printcolumn = r#"{"name":"Messages","type":"integer","jsonPath":".status.messages"}"#,
    printcolumn = r#"{"name":"Retention","type":"string","priority":1,"jsonPath":".spec.retention"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && self.metadata.name.size() <= 63").message("metadata.name: a Topic name must be a DNS label (lowercase letters, digits and '-', starting with a letter, at most 63 characters) because it becomes a subject token and part of the stream name").reason(Reason::FieldValueInvalid),
)]
#[x_kube(
    validation = Rule::new("!has(self.partitionTypeTokens) || has(self.partitions)").message("spec.partitionTypeTokens only applies together with spec.partitions").reason(Reason::FieldValueInvalid).field_path(".partitionTypeTokens"),
    validation = Rule::new("(has(oldSelf.partitionTypeTokens) ? oldSelf.partitionTypeTokens : 2) == (has(self.partitionTypeTokens) ? self.partitionTypeTokens : 2) || !has(oldSelf.partitions)").message("spec.partitionTypeTokens cannot change once the Topic is partitioned: subjects would map to other partitions; create a new Topic instead").reason(Reason::FieldValueForbidden).field_path(".partitionTypeTokens"),
    validation = Rule::new("!has(oldSelf.partitions) || has(self.partitions)").message("spec.partitions cannot be removed once set: events are already spread over partitions; create a new Topic to change the layout").reason(Reason::FieldValueForbidden).field_path(".partitions"),
    validation = Rule::new("!has(oldSelf.retention) || (self.retention == 'WorkQueue') == (oldSelf.retention == 'WorkQueue')").message("spec.retention cannot change to or from WorkQueue (JetStream refuses it); create a new Topic instead").reason(Reason::FieldValueForbidden).field_path(".retention"),
    validation = Rule::new("!has(self.maxAge) || !has(self.duplicateWindow) || duration(self.duplicateWindow) <= duration(self.maxAge)").message("spec.duplicateWindow must not be longer than spec.maxAge").reason(Reason::FieldValueInvalid).field_path(".duplicateWindow"),
)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Subjects the stream captures. Default: `<namespace>.<name>.>`. Every subject must start
    /// with `<namespace>.` so that namespaces never read each other's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        inner(
            regex(pattern = r"^([^.\s*>]+|\*)(\.([^.\s*>]+|\*))*(\.>)?$"),
            length(max = 255)
        )
    )]
    pub subjects: Option<Vec<String>>,

    /// Free text stored with the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,

    /// When stored events are removed: Limits keeps them until a limit (maxAge, maxBytes,
    /// maxMessages) is reached; Interest keeps them while a subscription has not acknowledged
    /// them; WorkQueue removes each event once one subscription acknowledges it.
    /// Cannot change to or from WorkQueue.
    #[serde(default)]
    pub retention: Retention,

    /// Where the stream keeps events: File (durable, the default) or Memory. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.storage is immutable: JetStream cannot move a stream between File and Memory; create a new Topic and move producers to it").reason(Reason::FieldValueForbidden))]
    pub storage: Storage,

    /// Copies of each event kept in a clustered JetStream (1 to 5).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,

    /// Oldest event kept, as a duration (e.g. 24h, 7d is written 168h). Unset: no age limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<GoDuration>,

    /// Total size the stream may hold (e.g. 10Gi). Unset: no size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,

    /// Number of events the stream may hold. Unset: no count limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_messages: Option<i64>,

    /// Largest single event accepted (e.g. 1Mi). Unset: the server's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<ByteSize>,

    /// What happens when a limit is reached: Old removes the oldest events, New refuses new ones.
    #[serde(default)]
    pub discard: Discard,

    /// Window in which a second event with the same `Nats-Msg-Id` is dropped as a duplicate.
    /// Unset: 2m. Must not exceed maxAge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_window: Option<GoDuration>,

    /// Spread events over this many partitions by key, keeping per-key order. A partitioned Topic
    /// accepts events on `<namespace>.<name>.<type>.<key>`, where `<type>` has exactly
    /// partitionTypeTokens tokens (e.g. `order.placed`) and `<key>` is one token; the stream stores
    /// them as `<namespace>.<name>.<partition>.<type>.<key>`. May grow, never shrink or be removed.
    /// Needs the default subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("self >= oldSelf").message("spec.partitions cannot decrease: keys would move to other partitions and lose their order; create a new Topic instead").reason(Reason::FieldValueForbidden))]
    pub partitions: Option<i32>,

    /// Number of tokens of the event type in a partitioned Topic's subjects (default 2, as in
    /// `order.placed`). Fixed once the Topic is partitioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 6))]
    pub partition_type_tokens: Option<i32>,

    /// Forbid deleting single events from the stream. Once true, stays true.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self || !oldSelf").message("spec.denyDelete cannot be turned off once on (JetStream refuses it)").reason(Reason::FieldValueForbidden))]
    pub deny_delete: bool,

    /// Forbid purging the stream. Once true, stays true.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self || !oldSelf").message("spec.denyPurge cannot be turned off once on (JetStream refuses it)").reason(Reason::FieldValueForbidden))]
    pub deny_purge: bool,

    /// EventSchema (same namespace) that every event on this Topic must satisfy, optionally
    /// pinned to one registered version (unset: the latest registered). Enforced by the worker
    /// dispatchers of the Topic's Subscriptions, each of which may name its own schemaRef
    /// instead; its processing defaults become theirs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<ObjectRefWithVersion>,

    /// DeadLetterPolicy used by this Topic's Subscriptions unless they name their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_policy_ref: Option<LocalObjectRef>,

    /// What deleting the Topic does to the stream: Retain (default) keeps the stream and its
    /// events; Delete removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

fn default_replicas() -> i32 {
    1
}

/// How long the stream keeps events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    WorkQueue,
}

/// Where the stream keeps events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Storage {
    #[default]
    File,
    Memory,
}

/// Which events give way when a limit is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Discard {
    #[default]
    Old,
    New,
}

/// What deleting the Kubernetes object does to the broker object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// Observed state of a Topic.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {}))]
pub struct TopicStatus {
    /// Ready says whether the stream matches the spec; its reason and message say why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec these conditions describe; 0 until the operator saw it.
    // Defaulted by the API server, so health checks never take a new object for a reconciled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub observed_generation: Option<i64>,
    /// Name of the JetStream stream backing this Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// Events currently stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<i64>,
    /// Bytes currently stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// Sequence number of the oldest stored event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_sequence: Option<i64>,
    /// Sequence number of the newest stored event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sequence: Option<i64>,
    /// Durable consumers reading the stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_count: Option<i64>,
    /// Where the stream's replicas are, on a clustered broker; the condition Replicated says
    /// whether they keep up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<TopicReplication>,
}

/// Where a Topic's stream lives in a NATS cluster, as the stream's leader reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicReplication {
    /// The NATS cluster holding the stream.
    pub cluster: String,
    /// The servers holding a replica, by name. The leader is one of them; which one is left
    /// out, as elections move it without anything being wrong.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Replicas current with the leader, the leader included.
    pub current_replicas: i64,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;

    use super::*;
    use crate::api::test_support::*;

    #[test]
    fn crd_names_and_columns() {
        assert_kind_basics::<Topic>(
            "topics",
            "Topic",
            "top",
            &["Ready", "Reason", "Stream", "Messages", "Retention", "Age"],
        );
    }

    #[test]
    fn schema_is_structural_and_fully_described() {
        let schema = schema_of::<Topic>();
        assert_eq!(schema_problems(&schema), Vec::<String>::new());
        assert!(root_rules_with_field_path(&schema).is_empty());
    }

    #[test]
    fn immutable_and_one_way_fields_carry_transition_rules() {
        let schema = schema_of::<Topic>();
        assert!(has_rule(at(&schema, "spec.storage"), "self == oldSelf"));
        assert!(has_rule(at(&schema, "spec.partitions"), "self >= oldSelf"));
        assert!(has_rule(at(&schema, "spec.denyDelete"), "!oldSelf"));
        assert!(has_rule(at(&schema, "spec.denyPurge"), "!oldSelf"));
        let spec = at(&schema, "spec");
        assert!(has_rule(spec, "WorkQueue"));
        assert!(has_rule(spec, "has(self.partitions)"));
        assert!(has_rule(spec, "partitionTypeTokens"));
        assert!(has_rule(&schema, "self.metadata.name.matches"));
    }

    #[test]
    fn minimal_manifest_gets_safe_defaults() {
        let spec: TopicSpec = serde_yaml::from_str("{}").unwrap();
        assert_eq!(spec.storage, Storage::File);
        assert_eq!(spec.retention, Retention::Limits);
        assert_eq!(spec.discard, Discard::Old);
        assert_eq!(spec.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(spec.replicas, 1);
        assert!(!spec.deny_delete && !spec.deny_purge);
        let crd = serde_json::to_value(Topic::crd()).unwrap();
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"];
        assert_eq!(props["storage"]["default"], "File");
        assert_eq!(props["deletionPolicy"]["default"], "Retain");
    }
}
