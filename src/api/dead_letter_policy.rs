//! `DeadLetterPolicy`: where events that Subscriptions give up on are kept, and the retry
//! defaults of the Subscriptions that use it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    common::{ByteSize, GoDuration, LocalObjectRef, RetryBackoff},
    subscription::{
        MAX_DELIVERIES_LIMIT, backoff_fits_max_deliveries_rule, backoff_order_rule,
        backoff_shape_rule,
    },
    topic::DeletionPolicy,
};

/// How long a managed dead-letter stream keeps dead letters unless told otherwise: 14 days.
pub const DEFAULT_DEAD_LETTER_MAX_AGE: &str = "336h";

/// A DeadLetterPolicy keeps a copy of every event a Subscription gives up on (too many
/// deliveries, rejected by its handler, or failing its schema), with headers naming the original
/// subject, stream, sequence, consumer, delivery count, reason and time. Subscriptions use it
/// through their own `deadLetterPolicyRef` or their Topic's. Dead letters can be listed and
/// replayed with `switchyard dlq`, or replayed by annotating this object.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "DeadLetterPolicy",
    namespaced,
    doc = "A DeadLetterPolicy: where failed events are kept, and the retry defaults of the Subscriptions that use it.",
    status = "DeadLetterPolicyStatus",
    shortname = "dlp",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Dead letters","type":"integer","jsonPath":".status.deadLetters"}"#,
    printcolumn = r#"{"name":"Last","type":"date","jsonPath":".status.lastDeadLetterTime"}"#,
    printcolumn = r#"{"name":"Stream","type":"string","priority":1,"jsonPath":".status.streamName"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && self.metadata.name.size() <= 63").message("a DeadLetterPolicy name must be a DNS label (lowercase letters, digits and '-', starting with a letter, at most 63 characters) because it becomes a subject token and part of the dead-letter stream name").reason(Reason::FieldValueInvalid),
)]
#[x_kube(validation = backoff_fits_max_deliveries_rule("spec"))]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPolicySpec {
    /// Where dead letters are stored: an existing Topic (`topicRef`), or a dead-letter stream
    /// Switchyard creates for this policy (`managed`). Default: a managed stream keeping dead
    /// letters for 14 days.
    #[serde(default)]
    pub target: DeadLetterTarget,

    /// Which failures are dead-lettered: MaxDeliveries (the event reached its maximum number
    /// of deliveries), Terminated (a handler rejected it, e.g. with an HTTP 4xx other than 408
    /// and 429, or a consumer terminated it), SchemaViolation (its data failed the EventSchema
    /// its Subscription is bound to). Default: all three.
    #[serde(default = "default_capture")]
    #[schemars(length(min = 1, max = 3))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub capture: Vec<CaptureReason>,

    /// Deliveries of one event, the first included, for Subscriptions using this policy that
    /// do not set their own retry.maxDeliveries (1 to 1000). Unset: the EventSchema's default,
    /// else 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_DELIVERIES_LIMIT))]
    pub max_deliveries: Option<i32>,

    /// Redelivery backoff for Subscriptions using this policy that do not set their own
    /// retry.backoff: either a list (`delays`) or an exponential rule (`initial`, `max`,
    /// `multiplier`). Unset: the EventSchema's default, else redelivery after ackWait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = backoff_shape_rule("spec.backoff"), validation = backoff_order_rule("spec.backoff"))]
    pub backoff: Option<RetryBackoff>,

    /// Dead letters held at which the condition DeadLettersAccumulating turns True (default 1:
    /// any dead letter).
    #[serde(default = "default_alert_threshold")]
    #[schemars(range(min = 1))]
    pub alert_threshold: i64,
}

fn default_capture() -> Vec<CaptureReason> {
    vec![
        CaptureReason::MaxDeliveries,
        CaptureReason::Terminated,
        CaptureReason::SchemaViolation,
    ]
}

fn default_alert_threshold() -> i64 {
    1
}

/// A failure that makes an event a dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum CaptureReason {
    MaxDeliveries,
    Terminated,
    SchemaViolation,
}

/// Where dead letters are stored: exactly one of topicRef and managed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.topicRef) != has(self.managed)").message("spec.target takes exactly one of topicRef (an existing Topic) and managed (a stream Switchyard creates)").reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterTarget {
    /// An existing Topic (same namespace) that receives the dead letters. Give it Limits
    /// retention so dead letters can be browsed and replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_ref: Option<LocalObjectRef>,

    /// A dead-letter stream Switchyard creates and owns for this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedDeadLetterStream>,
}

impl Default for DeadLetterTarget {
    fn default() -> Self {
        Self {
            topic_ref: None,
            managed: Some(ManagedDeadLetterStream::default()),
        }
    }
}

/// Limits of the dead-letter stream Switchyard creates (file storage, Limits retention).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedDeadLetterStream {
    /// Oldest dead letter kept (default 336h, i.e. 14 days).
    #[serde(default = "default_max_age")]
    pub max_age: GoDuration,

    /// Total size of dead letters kept (e.g. 1Gi); when reached, the oldest are removed.
    /// Unset: no size limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<ByteSize>,

    /// Copies of each dead letter in a clustered JetStream (1 to 5, default 1).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: i32,

    /// What deleting the DeadLetterPolicy does to the stream: Retain (default) keeps it and
    /// its dead letters; Delete removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

impl Default for ManagedDeadLetterStream {
    fn default() -> Self {
        Self {
            max_age: default_max_age(),
            max_bytes: None,
            replicas: default_replicas(),
            deletion_policy: DeletionPolicy::default(),
        }
    }
}

fn default_max_age() -> GoDuration {
    GoDuration::new(DEFAULT_DEAD_LETTER_MAX_AGE)
}

fn default_replicas() -> i32 {
    1
}

/// Observed state of a DeadLetterPolicy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {}))]
pub struct DeadLetterPolicyStatus {
    /// Ready says whether dead letters are being captured as the spec says;
    /// DeadLettersAccumulating turns True when the dead letters held reach alertThreshold.
    /// Reasons and messages say why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec these conditions describe; 0 until the operator saw it.
    // Defaulted by the API server, so health checks never take a new object for a reconciled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub observed_generation: Option<i64>,
    /// Name of the JetStream stream holding the dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_name: Option<String>,
    /// Dead letters currently held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<i64>,
    /// When the most recent dead letter was captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_dead_letter_time: Option<Time>,
    /// Dead letters stored since the policy was created, per reason. Counted from the stream
    /// itself, so every dead letter counts once, also across operator restarts; dead letters
    /// purged or expired stay counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub captured: Option<CapturedCounts>,
    /// Dead letters stored per Subscription (those with at least one), counted like `captured`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionDeadLetters>,
    /// The dead-letter stream sequence up to which `captured` and `subscriptions` have counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_through_sequence: Option<i64>,
    /// The most recent replay of dead letters to their original subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_replay: Option<ReplayStatus>,
}

/// Dead letters stored, per reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapturedCounts {
    /// Events that reached their maximum number of deliveries.
    #[serde(default)]
    pub max_deliveries: i64,
    /// Events a handler refused (an HTTP 4xx other than 408 and 429).
    #[serde(default)]
    pub handler_rejected: i64,
    /// Events failing their Topic's EventSchema.
    #[serde(default)]
    pub schema_violation: i64,
    /// Events a consumer terminated for another reason.
    #[serde(default)]
    pub terminated: i64,
}

/// How many of one Subscription's events were dead-lettered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionDeadLetters {
    /// The Subscription (same namespace as its events' consumer).
    pub name: String,
    /// Its events dead-lettered through this policy.
    pub dead_letters: i64,
}

/// One replay of dead letters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStatus {
    /// When the replay finished.
    pub time: Time,
    /// Dead letters republished.
    pub count: i64,
    /// Dead letters that could not be republished (see `failures`); replay them again with a
    /// new annotation value or `switchyard dlq replay`.
    #[serde(default)]
    pub failed: i64,
    /// The first failures, each naming the dead letter's sequence and the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
    /// Value of the replay annotation this replay answered, so one request is never replayed
    /// twice. Unset for replays started with `switchyard dlq replay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_support::*;

    #[test]
    fn crd_names_and_columns() {
        assert_kind_basics::<DeadLetterPolicy>(
            "deadletterpolicies",
            "DeadLetterPolicy",
            "dlp",
            &["Ready", "Reason", "Dead letters", "Last", "Stream", "Age"],
        );
        let columns = printer_columns::<DeadLetterPolicy>();
        assert!(columns.contains(&("Dead letters".into(), ".status.deadLetters".into())));
        assert!(columns.contains(&("Last".into(), ".status.lastDeadLetterTime".into())));
    }

    #[test]
    fn schema_is_structural_and_documented() {
        assert_eq!(
            schema_problems(&schema_of::<DeadLetterPolicy>()),
            Vec::<String>::new()
        );
        // The apiserver refuses a root rule whose fieldPath points into metadata.
        assert_eq!(
            root_rules_with_field_path(&schema_of::<DeadLetterPolicy>()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let dlp: DeadLetterPolicy = serde_yaml::from_str(
            "apiVersion: switchyard.dev/v1alpha1\nkind: DeadLetterPolicy\nmetadata: {name: dlq}\nspec: {}\n",
        )
        .unwrap();
        let spec = dlp.spec;
        assert_eq!(spec.target.topic_ref, None);
        let managed = spec.target.managed.unwrap();
        assert_eq!(managed.max_age, GoDuration::new("336h"));
        assert_eq!(managed.max_bytes, None);
        assert_eq!(managed.replicas, 1);
        assert_eq!(managed.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(
            spec.capture,
            [
                CaptureReason::MaxDeliveries,
                CaptureReason::Terminated,
                CaptureReason::SchemaViolation
            ]
        );
        assert_eq!(spec.max_deliveries, None);
        assert_eq!(spec.backoff, None);
        assert_eq!(spec.alert_threshold, 1);
    }

    #[test]
    fn topic_target_gets_no_managed_stream() {
        let dlp: DeadLetterPolicy = serde_yaml::from_str(
            "apiVersion: switchyard.dev/v1alpha1\nkind: DeadLetterPolicy\nmetadata: {name: dlq}\nspec:\n  target: {topicRef: {name: dead}}\n  capture: [MaxDeliveries]\n",
        )
        .unwrap();
        assert_eq!(dlp.spec.target.topic_ref.unwrap().name, "dead");
        assert_eq!(dlp.spec.target.managed, None);
        assert_eq!(dlp.spec.capture, [CaptureReason::MaxDeliveries]);
    }

    #[test]
    fn schema_defaults_match_serde_defaults() {
        let schema = schema_of::<DeadLetterPolicy>();
        let target = at(&schema, "spec.target");
        assert_eq!(target["default"]["managed"]["maxAge"], "336h");
        assert!(target["default"].get("topicRef").is_none());
        assert_eq!(
            at(&schema, "spec.capture")["default"],
            serde_json::json!(["MaxDeliveries", "Terminated", "SchemaViolation"])
        );
        assert_eq!(at(&schema, "spec.capture")["x-kubernetes-list-type"], "set");
        assert_eq!(at(&schema, "spec.alertThreshold")["default"], 1);
        assert_eq!(
            at(&schema, "spec.target.managed.deletionPolicy")["default"],
            "Retain"
        );
    }

    #[test]
    fn cel_rules_are_in_the_schema() {
        let schema = schema_of::<DeadLetterPolicy>();
        assert!(has_rule(&schema, "self.metadata.name.matches("));
        assert!(has_rule(
            at(&schema, "spec"),
            "self.backoff.delays.size() <= self.maxDeliveries"
        ));
        assert!(has_rule(
            at(&schema, "spec.target"),
            "has(self.topicRef) != has(self.managed)"
        ));
        let backoff = at(&schema, "spec.backoff");
        assert!(has_rule(backoff, "has(self.delays) ?"));
        assert!(has_rule(
            backoff,
            "duration(self.initial) <= duration(self.max)"
        ));
    }
}
