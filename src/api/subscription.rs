//! `Subscription`: a durable JetStream consumer on a Topic, optionally with a worker Deployment
//! that receives each event as a CloudEvents HTTP request.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{
        EnvFromSource, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    },
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
};
use kube::{
    CustomResource, KubeSchema,
    core::{Reason, Rule},
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{GoDuration, LocalObjectRef, ObjectRefWithVersion, RetryBackoff};

/// How long JetStream waits for an acknowledgement when neither the Subscription, nor its bound
/// EventSchema, says otherwise.
pub const DEFAULT_ACK_WAIT: &str = "30s";
/// Deliveries of one event when neither the Subscription, its DeadLetterPolicy, nor its bound
/// EventSchema, says otherwise.
pub const DEFAULT_MAX_DELIVERIES: i32 = 5;
/// Upper bound on `maxDeliveries` wherever it appears: deliveries are always bounded.
pub const MAX_DELIVERIES_LIMIT: i32 = 1000;
/// Upper bound on worker replicas, fixed or autoscaled.
pub const MAX_WORKER_REPLICAS: i32 = 1000;

/// A Subscription selects events of one Topic and reads them through a durable JetStream
/// consumer. With `worker` set, Switchyard also runs a Deployment whose pods receive each event
/// as a CloudEvents 1.0 HTTP request; without it, applications consume the durable consumer
/// named in `status.consumerName` themselves.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "Subscription",
    namespaced,
    doc = "A Subscription: a durable JetStream consumer on a Topic, and optionally the workers that handle its events.",
    status = "SubscriptionStatus",
    shortname = "sub",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Topic","type":"string","jsonPath":".spec.topicRef.name"}"#,
    printcolumn = r#"{"name":"Lag","type":"integer","jsonPath":".status.lag"}"#,
    printcolumn = r#"{"name":"Workers","type":"integer","jsonPath":".status.availableWorkers"}"#,
    printcolumn = r#"{"name":"Dead letters","type":"integer","jsonPath":".status.deadLettered"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","priority":1,"jsonPath":".status.desiredWorkers"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","priority":1,"jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Consumer","type":"string","priority":1,"jsonPath":".status.consumerName"}"#,
    printcolumn = r#"{"name":"Schema","type":"string","priority":1,"jsonPath":".status.schema.eventType"}"#,
    printcolumn = r#"{"name":"Schema version","type":"integer","priority":1,"jsonPath":".status.schema.version"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && self.metadata.name.size() <= 63").message("a Subscription name must be a DNS label (lowercase letters, digits and '-', starting with a letter, at most 63 characters) because it names the JetStream consumer and labels the worker pods").reason(Reason::FieldValueInvalid),
)]
#[x_kube(
    validation = Rule::new("(self.deliverPolicy == 'ByStartTime') == has(self.startTime)").message("spec.startTime is required when spec.deliverPolicy is ByStartTime, and not allowed with any other deliverPolicy").reason(Reason::FieldValueRequired).field_path(".startTime"),
    validation = Rule::new("(self.deliverPolicy == 'ByStartSequence') == has(self.startSequence)").message("spec.startSequence is required when spec.deliverPolicy is ByStartSequence, and not allowed with any other deliverPolicy").reason(Reason::FieldValueRequired).field_path(".startSequence"),
    validation = Rule::new("self.mode != 'Broadcast' || has(self.worker)").message("spec.worker is required with mode Broadcast: every worker pod gets its own consumer, so without workers nothing would receive the events").reason(Reason::FieldValueRequired).field_path(".worker"),
    validation = Rule::new("self.mode != 'Broadcast' || !has(self.worker) || !has(self.worker.autoscaling)").message("spec.worker.autoscaling needs mode WorkerGroup: in Broadcast mode every replica receives every event, so more replicas never reduce lag; set spec.worker.replicas instead").reason(Reason::FieldValueForbidden).field_path(".worker.autoscaling"),
    validation = Rule::new("!has(self.worker) || self.worker.ordering != 'PerKey' || !has(self.worker.autoscaling)").message("spec.worker.autoscaling cannot be combined with ordering PerKey: each partition is read by one pinned worker pod, so more pods than partitions never help; set spec.worker.replicas (at most the Topic's partitions)").reason(Reason::FieldValueForbidden).field_path(".worker.autoscaling"),
    validation = Rule::new("!has(self.worker) || self.worker.concurrency <= self.maxAckPending").message("spec.worker.concurrency must not exceed spec.maxAckPending: JetStream never hands out more unacknowledged events than maxAckPending, so the extra handlers would stay idle").reason(Reason::FieldValueInvalid).field_path(".worker.concurrency"),
)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionSpec {
    /// The Topic (in the same namespace) whose events this Subscription reads. Immutable: a
    /// consumer belongs to one stream; create a new Subscription to read another Topic.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.topicRef is immutable: a JetStream consumer belongs to one stream; create a new Subscription for the other Topic").reason(Reason::FieldValueForbidden))]
    pub topic_ref: LocalObjectRef,

    /// Raw NATS subject filters, each within the Topic's subject space (e.g.
    /// `shop.orders.order.*`; `*` matches one token, a trailing `>` one or more). Combined with
    /// eventTypes, the Subscription receives the events matching any of them. Neither set: every
    /// event of the Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        inner(
            regex(pattern = r"^([^.\s*>]+|\*)(\.([^.\s*>]+|\*))*(\.>)?$"),
            length(max = 255)
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub filter_subjects: Option<Vec<String>>,

    /// CloudEvents types to receive (e.g. `order.placed`). Each is translated to the Topic's
    /// subject for that type; `*` matches one token (`order.*`) and a trailing `>` one or more
    /// (`order.>`). Combined with filterSubjects, the Subscription receives the events matching
    /// any of them. Neither set: every event of the Topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 32),
        inner(
            regex(pattern = r"^([a-z][a-z0-9_-]*|\*)(\.([a-z][a-z0-9_-]*|\*))*(\.>)?$"),
            length(max = 255)
        )
    )]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub event_types: Option<Vec<String>>,

    /// How workers share events. WorkerGroup (default): one durable consumer whose workers
    /// compete, so each event is handled once. Broadcast: every worker replica receives every
    /// event. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.mode is immutable: the consumer layout differs between WorkerGroup and Broadcast; create a new Subscription instead").reason(Reason::FieldValueForbidden))]
    pub mode: SubscriptionMode,

    /// Where in the Topic reading starts when the consumer is first created: All (default,
    /// from the oldest stored event), New (only events published from now on), Last (from the
    /// newest stored event), ByStartTime (from startTime), ByStartSequence (from startSequence).
    /// Immutable: JetStream cannot change it on an existing consumer.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.deliverPolicy is immutable: JetStream cannot change where an existing consumer starts; create a new Subscription instead").reason(Reason::FieldValueForbidden))]
    pub deliver_policy: DeliverPolicy,

    /// Time of the first event to deliver (RFC 3339, e.g. `2024-05-01T00:00:00Z`). Required
    /// with deliverPolicy ByStartTime and only then. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.startTime is immutable: JetStream cannot change where an existing consumer starts; create a new Subscription instead").reason(Reason::FieldValueForbidden))]
    pub start_time: Option<Time>,

    /// Stream sequence number of the first event to deliver. Required with deliverPolicy
    /// ByStartSequence and only then. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.startSequence is immutable: JetStream cannot change where an existing consumer starts; create a new Subscription instead").reason(Reason::FieldValueForbidden))]
    pub start_sequence: Option<i64>,

    /// How long JetStream waits for an acknowledgement before it redelivers an event (e.g.
    /// 30s, 2m). Unset: the ackWait in the defaults of the bound EventSchema (schemaRef),
    /// else 30s.
    /// With a retry backoff, the first backoff delay takes its place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("spec.ackWait must be longer than 0s").reason(Reason::FieldValueInvalid))]
    pub ack_wait: Option<GoDuration>,

    /// Most events handed out and not yet acknowledged at any time, across all workers
    /// (default 1000). Delivery pauses while this many are in flight.
    #[serde(default = "default_max_ack_pending")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub max_ack_pending: i32,

    /// How often and how fast a failed event is delivered again before it is dead-lettered.
    /// Each unset field is inherited from the DeadLetterPolicy, then from the defaults of the
    /// bound EventSchema (schemaRef); without either, 5 deliveries with no backoff (redelivery
    /// after ackWait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,

    /// DeadLetterPolicy (same namespace) that receives events this Subscription gives up on.
    /// Unset: the Topic's deadLetterPolicyRef; if that is unset too, failed events are not
    /// kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_policy_ref: Option<LocalObjectRef>,

    /// EventSchema (same namespace) whose registered schema every event's data must satisfy,
    /// optionally pinned to one registered version; unset: the Topic's schemaRef. Without a
    /// pin, the latest registered version applies, and a newer one takes effect in running
    /// workers without a restart. The dispatcher refuses an event that fails it with reason
    /// SchemaViolation, which dead-letters it like a handler's refusal. The schema's processing
    /// defaults (ackWait, maxDeliveries, backoff) apply to each setting that neither this
    /// Subscription nor its DeadLetterPolicy sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<ObjectRefWithVersion>,

    /// Workers Switchyard runs for this Subscription: a Deployment whose pods run your container
    /// next to the Switchyard dispatcher, which delivers each event to your container as a
    /// CloudEvents HTTP request. Unset: no pods; consume the durable consumer yourself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<WorkerSpec>,
}

fn default_max_ack_pending() -> i32 {
    1000
}

/// How the workers of a Subscription share its events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SubscriptionMode {
    // Variants carry no doc comments: schemars would turn them into a `oneOf` of constants,
    // which a structural CRD schema cannot hold. The field documents them instead.
    #[default]
    WorkerGroup,
    Broadcast,
}

/// Where a new consumer starts reading.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeliverPolicy {
    #[default]
    All,
    New,
    Last,
    ByStartTime,
    ByStartSequence,
}

/// Redelivery of events that failed or were not acknowledged in time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = backoff_fits_max_deliveries_rule("spec.retry"))]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Deliveries of one event, the first included, before it is dead-lettered (1 to 1000).
    /// Unset: inherited from the DeadLetterPolicy, then the EventSchema defaults, else 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_DELIVERIES_LIMIT))]
    pub max_deliveries: Option<i32>,

    /// Delays before successive redeliveries: either a list (`delays`) or an exponential rule
    /// (`initial`, `max`, `multiplier`). At most maxDeliveries delays. Unset: inherited from
    /// the DeadLetterPolicy, then the EventSchema defaults, else redelivery after ackWait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = backoff_shape_rule("spec.retry.backoff"), validation = backoff_order_rule("spec.retry.backoff"))]
    pub backoff: Option<RetryBackoff>,
}

/// The worker Deployment of a Subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("!(has(self.replicas) && has(self.autoscaling))").message("spec.worker takes either replicas (a fixed count) or autoscaling, not both").reason(Reason::FieldValueForbidden).field_path(".autoscaling"),
)]
#[serde(rename_all = "camelCase")]
pub struct WorkerSpec {
    /// Container image of your event handler (e.g. `ghcr.io/acme/order-handler:1.4.2`).
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^\S+$"))]
    pub image: String,

    /// When the kubelet pulls the image: Always, IfNotPresent or Never. Unset: the Kubernetes
    /// default (Always for `:latest` or untagged images, IfNotPresent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Entrypoint of your container. Unset: the image's ENTRYPOINT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub command: Option<Vec<String>>,

    /// Arguments to the entrypoint. Unset: the image's CMD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub args: Option<Vec<String>>,

    /// Fixed number of worker pods (0 to 1000). Unset and no autoscaling: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_WORKER_REPLICAS))]
    pub replicas: Option<i32>,

    /// Scale worker pods by consumer lag (pending plus unacknowledged events), built in: no
    /// extra component to install. Only with mode WorkerGroup; not together with replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<WorkerAutoscaling>,

    /// Where the dispatcher sends events inside the pod (default port 8080, path `/`).
    #[serde(default)]
    pub endpoint: WorkerEndpoint,

    /// Events each pod handles at the same time (1 to 1000, default 1).
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 1000))]
    pub concurrency: i32,

    /// None (default): events are handled in any order. PerKey (partitioned Topics only): the
    /// events of one partition key reach the handler one at a time, in publish order, also
    /// across redeliveries (a failing event holds back the later events of its key, and only
    /// those); different keys run in parallel up to `concurrency`. In WorkerGroup mode each
    /// partition gets its own consumer, pinned by JetStream to one worker pod at a time (another
    /// takes over when that pod goes away). Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.worker.ordering is immutable: PerKey reads through one consumer per partition; create a new Subscription instead").reason(Reason::FieldValueForbidden))]
    pub ordering: Ordering,

    /// How long the dispatcher waits for your handler's HTTP response before it counts as a
    /// failure and the event is redelivered with the retry backoff (e.g. 10s). Unset: the
    /// effective ackWait. Keep it below ackWait so JetStream does not redeliver an event while
    /// its handler still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) > duration('0s')").message("spec.worker.timeout must be longer than 0s").reason(Reason::FieldValueInvalid))]
    pub timeout: Option<GoDuration>,

    /// Environment variables of your container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub env: Option<Vec<EnvVar>>,

    /// ConfigMaps and Secrets whose keys become environment variables of your container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub env_from: Option<Vec<EnvFromSource>>,

    /// CPU and memory requests and limits of your container. The dispatcher sidecar has its
    /// own, set by the operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// ServiceAccount the worker pods run as. Unset: the namespace's `default` ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub service_account_name: Option<String>,

    /// Secrets (same namespace) used to pull the image from a private registry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,

    /// Node labels a node must carry for worker pods to be scheduled on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,

    /// Taints the worker pods tolerate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub tolerations: Option<Vec<Toleration>>,

    /// PriorityClass of the worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,

    /// Seconds a worker pod gets to finish in-flight events after SIGTERM before it is killed.
    /// Unset: the Kubernetes default (30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub termination_grace_period_seconds: Option<i64>,

    /// Extra labels on the worker pods. Switchyard's own `switchyard.dev/*` labels win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,

    /// Extra annotations on the worker pods (e.g. for a service mesh or log collector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_annotations: Option<BTreeMap<String, String>>,
}

fn default_concurrency() -> i32 {
    1
}

/// In which order a worker receives events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Ordering {
    #[default]
    None,
    PerKey,
}

/// When the kubelet pulls a container image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Lag-based scaling of the worker pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(
    validation = Rule::new("self.minReplicas <= self.maxReplicas").message("spec.worker.autoscaling.minReplicas must not exceed maxReplicas").reason(Reason::FieldValueInvalid).field_path(".minReplicas"),
)]
#[serde(rename_all = "camelCase")]
pub struct WorkerAutoscaling {
    /// Fewest worker pods (default 1). 0 lets idle Subscriptions scale to zero; the first
    /// waiting event brings a pod back.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = MAX_WORKER_REPLICAS))]
    pub min_replicas: i32,

    /// Most worker pods (1 to 1000).
    #[schemars(range(min = 1, max = MAX_WORKER_REPLICAS))]
    pub max_replicas: i32,

    /// Target lag (pending plus unacknowledged events) per worker pod (default 100): the
    /// desired pod count is the lag divided by this, rounded up, within min and max.
    #[serde(default = "default_lag_per_replica")]
    #[schemars(range(min = 1))]
    pub lag_per_replica: i64,

    /// How long the lag must stay low before pods are removed (default 5m): the pod count
    /// never falls below the highest count wanted within this window, so a lull between bursts
    /// does not stop and start pods. Scaling up is never delayed.
    #[serde(default = "default_stabilization_window")]
    #[x_kube(validation = Rule::new("duration(self) <= duration('1h')").message("spec.worker.autoscaling.stabilizationWindow must be at most 1h").reason(Reason::FieldValueInvalid))]
    pub stabilization_window: GoDuration,
}

fn default_stabilization_window() -> GoDuration {
    GoDuration::new("5m")
}

fn default_min_replicas() -> i32 {
    1
}

fn default_lag_per_replica() -> i64 {
    100
}

/// The HTTP endpoint of your container that receives events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerEndpoint {
    /// Port your container listens on (default 8080).
    #[serde(default = "default_endpoint_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,

    /// Path events are POSTed to (default `/`).
    #[serde(default = "default_endpoint_path")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/\S*$"))]
    pub path: String,
}

impl Default for WorkerEndpoint {
    fn default() -> Self {
        Self {
            port: default_endpoint_port(),
            path: default_endpoint_path(),
        }
    }
}

fn default_endpoint_port() -> i32 {
    8080
}

fn default_endpoint_path() -> String {
    "/".into()
}

/// Observed state of a Subscription.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("default" = {}))]
pub struct SubscriptionStatus {
    /// Ready sums up the others; ConsumerReady says whether the JetStream consumer matches the
    /// spec; WorkersAvailable whether the desired worker pods are available. Reasons and
    /// messages say why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec these conditions describe; 0 until the operator saw it.
    // Defaulted by the API server, so health checks never take a new object for a reconciled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = 0))]
    pub observed_generation: Option<i64>,
    /// Name of the durable JetStream consumer backing this Subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_name: Option<String>,
    /// Events matching the Subscription not yet delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<i64>,
    /// Events delivered and not yet acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_pending: Option<i64>,
    /// Events currently delivered more than once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redelivered: Option<i64>,
    /// Events still to handle: pending plus ackPending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Worker pods wanted now (fixed replicas, or the autoscaler's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_workers: Option<i32>,
    /// Worker pods available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_workers: Option<i32>,
    /// Broadcast mode: how many per-pod consumers exist (one per worker pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<i32>,
    /// With autoscaling: why desiredWorkers is what it is (the lag read, the pods it needs,
    /// the bounds and the stabilization window that applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<String>,
    /// With autoscaling: when the autoscaler last changed the number of worker pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Events of this Subscription dead-lettered so far, as its DeadLetterPolicy last counted
    /// them (refreshed at the resync).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<i64>,
    /// The schema events are validated against (from spec.schemaRef, else the Topic's), as the
    /// registry held it at the last reconcile. Unset: no schema is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<BoundSchema>,
}

/// The registered schema version a Subscription's events are validated against.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoundSchema {
    /// The EventSchema named by the binding.
    pub name: String,
    /// The CloudEvents type the schema describes.
    pub event_type: String,
    /// The registered version in force: the pinned one, or the latest registered.
    pub version: i64,
    /// True when the binding pins this version; false when it follows the latest registered
    /// version (which may be higher than the EventSchema's own spec.version).
    pub pinned: bool,
    /// Fingerprint (SHA-256 of the canonical form) of that version's schema.
    pub fingerprint: String,
}

/// Rule for any `backoff` field: a list of delays or an exponential rule, not both.
pub(crate) fn backoff_shape_rule(path: &str) -> Rule {
    Rule::new(
        "has(self.delays) ? !has(self.initial) && !has(self.max) && !has(self.multiplier) : has(self.initial)",
    )
    .message(
        format!(
            "{path} takes either delays (a list, e.g. [1s, 5s, 30s]) or an exponential rule (initial, optionally max and multiplier), not both; an exponential rule needs initial"
        )
        .as_str(),
    )
    .reason(Reason::FieldValueInvalid)
}

/// Rule for any `backoff` field: an exponential rule never shrinks.
pub(crate) fn backoff_order_rule(path: &str) -> Rule {
    Rule::new(
        "!has(self.initial) || !has(self.max) || duration(self.initial) <= duration(self.max)",
    )
    .message(format!("{path}.max must not be shorter than {path}.initial").as_str())
    .reason(Reason::FieldValueInvalid)
    .field_path(".max")
}

/// Rule for an object holding both `maxDeliveries` and `backoff`: JetStream refuses more
/// backoff delays than deliveries (error 10116).
pub(crate) fn backoff_fits_max_deliveries_rule(path: &str) -> Rule {
    Rule::new(
        "!has(self.maxDeliveries) || !has(self.backoff) || !has(self.backoff.delays) || self.backoff.delays.size() <= self.maxDeliveries",
    )
    .message(
        format!(
            "{path}.backoff.delays lists more delays than {path}.maxDeliveries allows deliveries (JetStream refuses it); list at most maxDeliveries delays"
        )
        .as_str(),
    )
    .reason(Reason::FieldValueInvalid)
    .field_path(".backoff.delays")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_support::*;

    #[test]
    fn crd_names_and_columns() {
        assert_kind_basics::<Subscription>(
            "subscriptions",
            "Subscription",
            "sub",
            &[
                "Ready",
                "Reason",
                "Topic",
                "Lag",
                "Workers",
                "Dead letters",
                "Desired",
                "Mode",
                "Consumer",
                "Schema",
                "Schema version",
                "Age",
            ],
        );
        let columns = printer_columns::<Subscription>();
        assert!(columns.contains(&("Topic".into(), ".spec.topicRef.name".into())));
        assert!(columns.contains(&("Lag".into(), ".status.lag".into())));
    }

    #[test]
    fn schema_is_structural_and_documented() {
        assert_eq!(
            schema_problems(&schema_of::<Subscription>()),
            Vec::<String>::new()
        );
        // The apiserver refuses a root rule whose fieldPath points into metadata.
        assert_eq!(
            root_rules_with_field_path(&schema_of::<Subscription>()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let sub: Subscription = serde_yaml::from_str(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata: {name: orders, namespace: shop}\nspec:\n  topicRef: {name: orders}\n",
        )
        .unwrap();
        let spec = &sub.spec;
        assert_eq!(spec.topic_ref.name, "orders");
        assert_eq!(spec.mode, SubscriptionMode::WorkerGroup);
        assert_eq!(spec.deliver_policy, DeliverPolicy::All);
        assert_eq!(spec.max_ack_pending, 1000);
        assert_eq!(
            spec.ack_wait, None,
            "unset so that EventSchema defaults can apply"
        );
        assert_eq!(spec.retry, None);
        assert_eq!(spec.worker, None);
        assert!(spec.filter_subjects.is_none() && spec.event_types.is_none());
        assert_eq!(
            GoDuration::new(DEFAULT_ACK_WAIT).parse().unwrap().as_secs(),
            30
        );
    }

    #[test]
    fn worker_defaults() {
        let sub: Subscription = serde_yaml::from_str(
            "apiVersion: switchyard.dev/v1alpha1\nkind: Subscription\nmetadata: {name: orders}\nspec:\n  topicRef: {name: orders}\n  worker:\n    image: ghcr.io/acme/handler:1\n    autoscaling: {maxReplicas: 4}\n",
        )
        .unwrap();
        let worker = sub.spec.worker.unwrap();
        assert_eq!(
            worker.endpoint,
            WorkerEndpoint {
                port: 8080,
                path: "/".into()
            }
        );
        assert_eq!(worker.concurrency, 1);
        assert_eq!(worker.replicas, None);
        let autoscaling = worker.autoscaling.unwrap();
        assert_eq!(
            (
                autoscaling.min_replicas,
                autoscaling.max_replicas,
                autoscaling.lag_per_replica
            ),
            (1, 4, 100)
        );
        assert_eq!(autoscaling.stabilization_window, GoDuration::new("5m"));
    }

    #[test]
    fn schema_defaults_match_serde_defaults() {
        let schema = schema_of::<Subscription>();
        assert_eq!(at(&schema, "spec.mode")["default"], "WorkerGroup");
        assert_eq!(at(&schema, "spec.deliverPolicy")["default"], "All");
        assert_eq!(at(&schema, "spec.maxAckPending")["default"], 1000);
        assert_eq!(at(&schema, "spec.worker.concurrency")["default"], 1);
        assert_eq!(at(&schema, "spec.worker.endpoint")["default"]["port"], 8080);
        assert_eq!(
            at(&schema, "spec.worker.autoscaling.minReplicas")["default"],
            1
        );
        assert_eq!(
            at(&schema, "spec.worker.autoscaling.stabilizationWindow")["default"],
            "5m"
        );
        assert!(at(&schema, "spec.ackWait").get("default").is_none());
        assert_eq!(
            at(&schema, "spec.retry.maxDeliveries")["maximum"],
            f64::from(MAX_DELIVERIES_LIMIT)
        );
    }

    #[test]
    fn cel_rules_are_in_the_schema() {
        let schema = schema_of::<Subscription>();
        assert!(has_rule(&schema, "self.metadata.name.matches("));
        let spec = at(&schema, "spec");
        assert!(has_rule(
            spec,
            "self.deliverPolicy == 'ByStartTime') == has(self.startTime)"
        ));
        assert!(has_rule(
            spec,
            "self.deliverPolicy == 'ByStartSequence') == has(self.startSequence)"
        ));
        assert!(has_rule(spec, "self.mode != 'Broadcast'"));
        assert!(has_rule(
            spec,
            "self.mode != 'Broadcast' || has(self.worker)"
        ));
        assert!(has_rule(
            spec,
            "self.worker.concurrency <= self.maxAckPending"
        ));
        for immutable in [
            "topicRef",
            "mode",
            "deliverPolicy",
            "startTime",
            "startSequence",
        ] {
            let node = at(&schema, &format!("spec.{immutable}"));
            assert_eq!(rules(node), ["self == oldSelf"], "{immutable}");
        }
        assert!(has_rule(
            at(&schema, "spec.retry"),
            "self.backoff.delays.size() <= self.maxDeliveries"
        ));
        let backoff = at(&schema, "spec.retry.backoff");
        assert!(has_rule(backoff, "has(self.delays) ?"));
        assert!(has_rule(
            backoff,
            "duration(self.initial) <= duration(self.max)"
        ));
        assert!(has_rule(
            at(&schema, "spec.worker"),
            "!(has(self.replicas) && has(self.autoscaling))"
        ));
        assert!(has_rule(
            at(&schema, "spec.worker.autoscaling"),
            "self.minReplicas <= self.maxReplicas"
        ));
        assert!(has_rule(
            at(&schema, "spec.ackWait"),
            "duration(self) > duration('0s')"
        ));
    }

    #[test]
    fn lists_have_merge_semantics() {
        let schema = schema_of::<Subscription>();
        assert_eq!(
            at(&schema, "spec.eventTypes")["x-kubernetes-list-type"],
            "set"
        );
        assert_eq!(
            at(&schema, "spec.filterSubjects")["x-kubernetes-list-type"],
            "set"
        );
        let env = at(&schema, "spec.worker.env");
        assert_eq!(env["x-kubernetes-list-type"], "map");
        assert_eq!(
            env["x-kubernetes-list-map-keys"],
            serde_json::json!(["name"])
        );
    }

    #[test]
    fn manifests_round_trip() {
        let yaml = r#"
apiVersion: switchyard.dev/v1alpha1
kind: Subscription
metadata: {name: billing}
spec:
  topicRef: {name: orders}
  eventTypes: [order.placed, payment.*]
  deliverPolicy: ByStartTime
  startTime: "2024-05-01T00:00:00Z"
  ackWait: 1m
  retry:
    maxDeliveries: 4
    backoff: {delays: [1s, 10s, 1m]}
  deadLetterPolicyRef: {name: dlq}
  worker:
    image: ghcr.io/acme/billing:2
    replicas: 3
    env: [{name: LOG_LEVEL, value: debug}]
    resources: {limits: {memory: 128Mi}}
"#;
        let sub: Subscription = serde_yaml::from_str(yaml).unwrap();
        let again: Subscription =
            serde_json::from_value(serde_json::to_value(&sub).unwrap()).unwrap();
        assert_eq!(sub.spec, again.spec);
        assert_eq!(
            sub.spec
                .retry
                .unwrap()
                .backoff
                .unwrap()
                .delays
                .unwrap()
                .len(),
            3
        );
    }
}
