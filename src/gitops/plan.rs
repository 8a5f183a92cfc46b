//! What applying a set of manifests would change on the broker, object by object. Each kind
//! goes through the operator's own stages: its pure translation (`Reconciler::desired`), the
//! broker state read as the operator reads it, its pure planner (`Reconciler::plan`, or
//! [`decide`] for schema versions). What differs from the operator is only what Kubernetes
//! would have supplied: an object's generation (kept as its broker object records it), the
//! objects it refers to (taken from the set) and the registry versions Subscriptions bind to
//! (those the plan registers count as registered).

use std::{collections::HashMap, fmt};

use async_nats::jetstream::{
    consumer::{Info as ConsumerInfo, IntoConsumerConfig, pull},
    stream::{Config as StreamConfig, Info as StreamInfo},
};
use kube::ResourceExt;
use serde::Serialize;

use super::{
    fields::{self, FieldChange},
    manifests::Manifests,
    prune,
    schemas::{Pending, after_registering, histories},
};
use crate::{
    api::{
        DeadLetterPolicy, EventSchema, Subscription, Topic, annotation_is_true, annotations,
        subscription::SubscriptionMode,
    },
    broker::{Broker, BrokerError, codes},
    naming::{self, metadata},
    reconcile::{
        dead_letter_policy::{self, DeadLetterPolicyReconciler, TargetPlan},
        event_schema::{candidate, verdicts},
        plan::{Plan as BrokerPlan, PlanInputs},
        stream_apply::not_owned_message,
        subscription::{
            FoundConsumers, SubscriptionReconciler, SubscriptionRefs, binding, consumer_config,
            consumer_not_owned_message, find_consumers, workers::deployment_name,
        },
        topic::TopicReconciler,
    },
    registry::{Candidate, Decision, Holding, Registry, SchemaRecord, decide},
    runtime::driver::Reconciler,
};

/// The object a step is for: a manifest, or (pruning) the object a broker object records as
/// its owner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn of<K: kube::Resource<DynamicType = ()>>(object: &K) -> Self {
        Self {
            kind: K::kind(&()).into_owned(),
            namespace: object.meta().namespace.clone().unwrap_or_default(),
            name: object.meta().name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The broker object (or Kubernetes object) a step concerns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Target {
    Stream {
        name: String,
    },
    Consumer {
        stream: String,
        name: String,
    },
    #[serde(rename_all = "camelCase")]
    SchemaVersion {
        event_type: String,
        version: i64,
    },
    /// A worker Deployment: Kubernetes only.
    Deployment {
        name: String,
    },
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stream { name } => write!(f, "stream {name}"),
            Self::Consumer { stream, name } => write!(f, "consumer {name} on stream {stream}"),
            Self::SchemaVersion {
                event_type,
                version,
            } => write!(f, "schema {event_type} v{version}"),
            Self::Deployment { name } => write!(f, "worker Deployment {name}"),
        }
    }
}

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Delete,
    /// A change the broker cannot make (or Switchyard will not): nothing is applied.
    Refused,
    /// Not for the broker, or paused.
    Skipped,
}

/// One object's part of the plan.
#[derive(Debug, Serialize)]
pub struct Step {
    pub object: ObjectRef,
    pub target: Target,
    pub action: Action,
    /// The settings that change: every setting of a new object, old → new of an updated one,
    /// the refused one of a refused change.
    pub fields: Vec<FieldChange>,
    /// Why (refused, skipped, deleted), naming the field and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip)]
    pub(crate) work: Work,
}

impl Step {
    fn new(object: ObjectRef, target: Target, action: Action) -> Self {
        Self {
            object,
            target,
            action,
            fields: Vec::new(),
            message: None,
            work: Work::None,
        }
    }

    fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    fn with_fields(mut self, fields: Vec<FieldChange>) -> Self {
        self.fields = fields;
        self
    }

    fn with_work(mut self, work: Work) -> Self {
        self.work = work;
        self
    }

    pub fn refused(object: ObjectRef, target: Target, message: impl Into<String>) -> Self {
        Self::new(object, target, Action::Refused).with_message(message)
    }

    pub fn skipped(object: ObjectRef, target: Target, message: impl Into<String>) -> Self {
        Self::new(object, target, Action::Skipped).with_message(message)
    }

    pub(crate) fn delete(object: ObjectRef, target: Target, message: String, work: Work) -> Self {
        Self::new(object, target, Action::Delete)
            .with_message(message)
            .with_work(work)
    }
}

/// What applying a step writes, with what the plan saw.
#[derive(Debug, Default)]
pub(crate) enum Work {
    #[default]
    None,
    Stream(Box<StreamWork>),
    Consumer(Box<ConsumerWork>),
    /// Registering a version: decided again against the registry when applied, as the
    /// operator does.
    Schema {
        candidate: Box<Candidate>,
    },
    DeleteConsumer {
        stream: String,
        name: String,
    },
    DeleteStream {
        name: String,
    },
}

/// A stream plan to carry out.
#[derive(Debug)]
pub(crate) struct StreamWork {
    pub kind: &'static str,
    pub desired: StreamConfig,
    pub actual: Option<StreamInfo>,
    pub plan: BrokerPlan,
}

/// A consumer plan to carry out.
#[derive(Debug)]
pub(crate) struct ConsumerWork {
    pub stream: String,
    pub config: pull::Config,
    pub found: Option<ConsumerInfo>,
    pub plan: BrokerPlan,
}

/// What would change.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    fn count(&self, action: Action) -> usize {
        self.steps.iter().filter(|s| s.action == action).count()
    }

    /// Steps that change the broker.
    pub fn changes(&self) -> usize {
        self.count(Action::Create) + self.count(Action::Update) + self.count(Action::Delete)
    }

    pub fn refused(&self) -> usize {
        self.count(Action::Refused)
    }

    pub fn summary(&self) -> Summary {
        Summary {
            create: self.count(Action::Create),
            update: self.count(Action::Update),
            delete: self.count(Action::Delete),
            unchanged: self.count(Action::Unchanged),
            refused: self.count(Action::Refused),
            skipped: self.count(Action::Skipped),
        }
    }
}

/// Steps per action.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub refused: usize,
    pub skipped: usize,
}

/// How to plan.
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Also delete the broker objects Switchyard made for the set's namespaces that the set
    /// no longer names.
    pub prune: bool,
}

const PAUSED: &str = "paused (switchyard.dev/paused: \"true\"): left as it is";

/// The plan for `manifests`: schema versions first (Subscriptions bind to them), then
/// dead-letter streams, Topic streams, consumers, and what pruning deletes. Reads the broker
/// and the registry, writes nothing (the registry's bucket is not created either).
pub async fn plan(
    broker: &Broker,
    manifests: &Manifests,
    options: PlanOptions,
) -> Result<Plan, BrokerError> {
    let registry = Registry::open_existing(broker).await?;
    let mut steps = Vec::new();
    let pending = schema_steps(registry.as_ref(), manifests, &mut steps).await?;
    for policy in &manifests.policies {
        steps.push(policy_step(broker, manifests, policy).await?);
    }
    for topic in &manifests.topics {
        steps.push(topic_step(broker, topic).await?);
    }
    let registry_view = RegistryView {
        registry: registry.as_ref(),
        pending: &pending,
    };
    for sub in &manifests.subscriptions {
        steps.extend(subscription_steps(broker, &registry_view, manifests, sub).await?);
    }
    if options.prune {
        steps.extend(prune::steps(broker, manifests).await?);
    }
    Ok(Plan { steps })
}

/// Kubernetes counts spec changes in `metadata.generation`, and Switchyard records it in what
/// it writes. Files have no generation: an object takes the one its broker objects record, so
/// an unchanged spec plans nothing, and 1 (a new Kubernetes object's) when there are none.
fn recorded_generation<'a>(found: impl IntoIterator<Item = &'a HashMap<String, String>>) -> i64 {
    found
        .into_iter()
        .find_map(|m| m.get(metadata::GENERATION)?.parse().ok())
        .unwrap_or(1)
}

fn inputs<K: kube::Resource>(object: &K) -> PlanInputs {
    PlanInputs {
        adopt: annotation_is_true(object.meta(), annotations::ADOPT),
        // No status to remember the broker object by: a missing one is created.
        synced_before: false,
    }
}

fn paused<K: kube::Resource>(object: &K) -> bool {
    annotation_is_true(object.meta(), annotations::PAUSED)
}

async fn topic_step(broker: &Broker, topic: &Topic) -> Result<Step, BrokerError> {
    let id = ObjectRef::of(topic);
    let stream = naming::stream_name(&id.namespace, &id.name);
    let target = Target::Stream {
        name: stream.clone(),
    };
    if paused(topic) {
        return Ok(Step::skipped(id, target, PAUSED));
    }
    let actual = broker.stream_info(&stream).await?;
    let mut topic = topic.clone();
    topic.metadata.generation = Some(recorded_generation(
        actual.iter().map(|i| &i.config.metadata),
    ));
    let desired = match TopicReconciler::desired(&topic, &()) {
        Ok(desired) => desired,
        Err(invalid) => return Ok(Step::refused(id, target, invalid)),
    };
    let plan = TopicReconciler::plan(&desired, &actual, inputs(&topic));
    Ok(stream_step(id, "Topic", desired, actual, plan))
}

async fn policy_step(
    broker: &Broker,
    manifests: &Manifests,
    policy: &DeadLetterPolicy,
) -> Result<Step, BrokerError> {
    let id = ObjectRef::of(policy);
    let managed_stream = Target::Stream {
        name: naming::dead_letter_stream_name(&id.namespace, &id.name),
    };
    let target_topic = match &policy.spec.target.topic_ref {
        None => None,
        Some(reference) => match manifests.topic(&id.namespace, &reference.name) {
            Some(topic) => Some(topic.clone()),
            None => {
                return Ok(Step::refused(
                    id,
                    managed_stream,
                    format!(
                        "spec.target.topicRef: Topic {} is not among the manifests",
                        reference.name
                    ),
                ));
            }
        },
    };
    if let Some(topic) = &target_topic {
        let target = Target::Stream {
            name: naming::stream_name(&id.namespace, &topic.name_any()),
        };
        if let Some(looping) = dead_letter_policy::capturing(
            &id.name,
            topic,
            &manifests.subscriptions_in(&id.namespace),
        ) {
            return Ok(Step::refused(
                id,
                target,
                format!(
                    "spec.target.topicRef: {}",
                    dead_letter_policy::captured_message(&topic.name_any(), &looping)
                ),
            ));
        }
        if paused(policy) {
            return Ok(Step::skipped(id, target, PAUSED));
        }
        return Ok(
            match DeadLetterPolicyReconciler::desired(policy, &target_topic) {
                Ok(desired) => Step::new(id, target, Action::Unchanged).with_message(format!(
                    "dead letters go to Topic {} as {}.<event type>: nothing to create",
                    topic.name_any(),
                    desired.subject_prefix
                )),
                Err(invalid) => Step::refused(id, target, invalid),
            },
        );
    }
    if paused(policy) {
        return Ok(Step::skipped(id, managed_stream, PAUSED));
    }
    let Target::Stream { name: stream } = &managed_stream else {
        unreachable!("a managed target is a stream")
    };
    let actual = broker.stream_info(stream).await?;
    let mut policy = policy.clone();
    policy.metadata.generation = Some(recorded_generation(
        actual.iter().map(|i| &i.config.metadata),
    ));
    let desired = match DeadLetterPolicyReconciler::desired(&policy, &None) {
        Ok(desired) => desired,
        Err(invalid) => return Ok(Step::refused(id, managed_stream, invalid)),
    };
    match (
        DeadLetterPolicyReconciler::plan(&desired, &actual, inputs(&policy)),
        desired.managed,
    ) {
        (TargetPlan::Stream(plan), Some(stream)) => {
            Ok(stream_step(id, "DeadLetterPolicy", stream, actual, plan))
        }
        _ => unreachable!("a policy without a Topic target has a managed stream"),
    }
}

/// The step for a stream the planner planned. Pure.
fn stream_step(
    id: ObjectRef,
    kind: &'static str,
    desired: StreamConfig,
    actual: Option<StreamInfo>,
    plan: BrokerPlan,
) -> Step {
    let target = Target::Stream {
        name: desired.name.clone(),
    };
    match &plan {
        BrokerPlan::Create | BrokerPlan::Recreate => {
            Step::new(id, target, Action::Create).with_fields(fields::stream_settings(&desired))
        }
        BrokerPlan::InSync => Step::new(id, target, Action::Unchanged),
        BrokerPlan::Update { changed, .. } => {
            let before = actual.as_ref().map(|i| &i.config).unwrap_or(&desired);
            let changes = fields::stream_changes(changed, &desired, before);
            Step::new(id, target, Action::Update).with_fields(changes)
        }
        BrokerPlan::NotOwned { owner } => Step::refused(
            id,
            target,
            not_owned_message(kind, &desired.name, owner.as_deref()),
        ),
        BrokerPlan::Refused { field, message } => {
            let before = actual.as_ref().map(|i| &i.config).unwrap_or(&desired);
            let changes = fields::stream_changes(&[*field], &desired, before);
            return Step::refused(id, target, format!("{field}: {message}")).with_fields(changes);
        }
    }
    .with_work(match plan {
        BrokerPlan::Create | BrokerPlan::Recreate | BrokerPlan::Update { .. } => {
            Work::Stream(Box::new(StreamWork {
                kind,
                desired,
                actual,
                plan,
            }))
        }
        _ => Work::None,
    })
}

/// The registry as Subscriptions will find it: what it holds, plus what the plan registers.
struct RegistryView<'a> {
    registry: Option<&'a Registry>,
    pending: &'a Pending,
}

impl RegistryView<'_> {
    /// The version `pinned` (or the latest) of `event_type`; without it, the versions there are.
    async fn bound(
        &self,
        namespace: &str,
        event_type: &str,
        pinned: Option<i64>,
    ) -> Result<(Option<SchemaRecord>, Vec<i64>), BrokerError> {
        let planned = match pinned {
            Some(version) => self.pending.version(namespace, event_type, version),
            None => self.pending.latest(namespace, event_type),
        };
        if let Some(record) = planned {
            return Ok((Some(record.clone()), Vec::new()));
        }
        match self.registry {
            Some(registry) => {
                crate::reconcile::subscription::bound_record(
                    registry, namespace, event_type, pinned,
                )
                .await
            }
            None => Ok((None, Vec::new())),
        }
    }
}

async fn subscription_steps(
    broker: &Broker,
    registry: &RegistryView<'_>,
    manifests: &Manifests,
    sub: &Subscription,
) -> Result<Vec<Step>, BrokerError> {
    let id = ObjectRef::of(sub);
    let (namespace, name) = (id.namespace.clone(), id.name.clone());
    let topic_name = &sub.spec.topic_ref.name;
    let stream = naming::stream_name(&namespace, topic_name);
    let target = Target::Consumer {
        stream: stream.clone(),
        name: naming::subscription_consumer_name(&namespace, &name),
    };
    let mut steps = Vec::new();
    if sub.spec.worker.is_some() {
        steps.push(Step::skipped(
            id.clone(),
            Target::Deployment {
                name: deployment_name(sub),
            },
            "worker Deployments run in Kubernetes only: the consumer is there for any NATS client (or `switchyard dispatch`) to read",
        ));
    }
    if paused(sub) {
        steps.insert(0, Step::skipped(id, target, PAUSED));
        return Ok(steps);
    }
    if sub.spec.mode == SubscriptionMode::Broadcast {
        steps.insert(
            0,
            Step::skipped(
                id,
                target,
                "mode Broadcast gives each worker pod a consumer of its own, and worker pods run in Kubernetes only",
            ),
        );
        return Ok(steps);
    }
    let refs = match refs(registry, manifests, sub).await? {
        Ok(refs) => refs,
        Err(message) => {
            steps.insert(0, Step::refused(id, target, message));
            return Ok(steps);
        }
    };
    let mut sub = sub.clone();
    sub.metadata.generation = Some(1);
    let mut desired = match SubscriptionReconciler::desired(&sub, &refs) {
        Ok(desired) => desired,
        Err(invalid) => {
            steps.insert(0, Step::refused(id, target, invalid));
            return Ok(steps);
        }
    };
    let found = match find_consumers(broker, &desired).await {
        Ok(found) => found,
        // The Topic's stream is still to be created (or cannot be): so are its consumers.
        Err(e) if e.code() == Some(codes::STREAM_NOT_FOUND) => FoundConsumers {
            each: desired.configs().iter().map(|_| None).collect(),
            orphans: Vec::new(),
        },
        Err(e) => return Err(e),
    };
    let generation = recorded_generation(found.each.iter().flatten().map(|i| &i.config.metadata));
    if generation != 1 {
        sub.metadata.generation = Some(generation);
        desired = match SubscriptionReconciler::desired(&sub, &refs) {
            Ok(desired) => desired,
            Err(invalid) => {
                steps.insert(0, Step::refused(id, target, invalid));
                return Ok(steps);
            }
        };
    }
    let plan = SubscriptionReconciler::plan(&desired, &found, inputs(&sub));
    let consumers = desired.configs().into_iter().zip(found.each).zip(plan.each);
    let mut own = Vec::new();
    for ((config, found), step) in consumers {
        own.push(consumer_step(id.clone(), &stream, config, found, step));
    }
    for orphan in plan.remove {
        own.push(Step::delete(
            id.clone(),
            Target::Consumer {
                stream: stream.clone(),
                name: orphan.clone(),
            },
            "a consumer of this Subscription that its spec no longer asks for (a partition it does not read)".into(),
            Work::DeleteConsumer {
                stream: stream.clone(),
                name: orphan,
            },
        ));
    }
    own.extend(steps);
    Ok(own)
}

/// What the Subscription refers to, from the set and the registry (as the plan leaves it), or
/// why it cannot be bound.
async fn refs(
    registry: &RegistryView<'_>,
    manifests: &Manifests,
    sub: &Subscription,
) -> Result<Result<SubscriptionRefs, String>, BrokerError> {
    let namespace = sub.namespace().unwrap_or_default();
    let Some(topic) = manifests.topic(&namespace, &sub.spec.topic_ref.name) else {
        return Ok(Err(format!(
            "spec.topicRef: Topic {} is not among the manifests",
            sub.spec.topic_ref.name
        )));
    };
    let policy_ref = sub
        .spec
        .dead_letter_policy_ref
        .as_ref()
        .or(topic.spec.dead_letter_policy_ref.as_ref());
    let dead_letter_policy = match policy_ref {
        None => None,
        Some(reference) => match manifests.policy(&namespace, &reference.name) {
            Some(policy) => Some(policy.spec.clone()),
            None => {
                return Ok(Err(format!(
                    "spec.deadLetterPolicyRef: DeadLetterPolicy {} is not among the manifests",
                    reference.name
                )));
            }
        },
    };
    let schema = match binding::schema_ref(&sub.spec, &topic.spec) {
        None => None,
        Some((reference, origin)) => {
            let Some(schema) = manifests.schema(&namespace, &reference.name) else {
                return Ok(Err(format!(
                    "{}: EventSchema {} is not among the manifests",
                    origin.field(),
                    reference.name
                )));
            };
            let event_type = &schema.spec.event_type;
            match registry
                .bound(&namespace, event_type, reference.version)
                .await?
            {
                (Some(record), _) => Some(binding::Binding::new(&namespace, reference, record)),
                (None, registered) => {
                    let wanted = reference
                        .version
                        .map_or_else(|| "a version".to_string(), |v| format!("version {v}"));
                    let held = if registered.is_empty() {
                        "none is registered".to_string()
                    } else {
                        format!(
                            "registered: {}",
                            registered
                                .iter()
                                .map(|v| format!("v{v}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    return Ok(Err(format!(
                        "{}: binds to {wanted} of EventSchema {} ({event_type}), which neither the registry holds nor these manifests register ({held}); see the EventSchema's own entry, or pin a registered version",
                        origin.field(),
                        reference.name
                    )));
                }
            }
        }
    };
    Ok(Ok(SubscriptionRefs {
        topic: consumer_config::TopicView::of(topic, &namespace),
        dead_letter_policy,
        // Counted from a DeadLetterPolicy's status, which only Kubernetes has.
        dead_lettered: None,
        schema,
        pods: Vec::new(),
    }))
}

/// The step for a consumer the planner planned. Pure.
fn consumer_step(
    id: ObjectRef,
    stream: &str,
    config: &pull::Config,
    found: Option<ConsumerInfo>,
    plan: BrokerPlan,
) -> Step {
    let name = config.durable_name.clone().unwrap_or_default();
    let target = Target::Consumer {
        stream: stream.to_string(),
        name: name.clone(),
    };
    let desired = config.clone().into_consumer_config();
    let step = match &plan {
        BrokerPlan::Create | BrokerPlan::Recreate => {
            Step::new(id, target, Action::Create).with_fields(fields::consumer_settings(&desired))
        }
        BrokerPlan::InSync => Step::new(id, target, Action::Unchanged),
        BrokerPlan::Update { changed, .. } => {
            let before = found.as_ref().map(|i| &i.config).unwrap_or(&desired);
            Step::new(id, target, Action::Update)
                .with_fields(fields::consumer_changes(changed, &desired, before))
        }
        BrokerPlan::NotOwned { owner } => Step::refused(
            id,
            target,
            consumer_not_owned_message(&name, stream, owner.as_deref()),
        ),
        BrokerPlan::Refused { field, message } => {
            let before = found.as_ref().map(|i| &i.config).unwrap_or(&desired);
            let changes = fields::consumer_changes(&[*field], &desired, before);
            return Step::refused(id, target, format!("{field}: {message}")).with_fields(changes);
        }
    };
    match plan {
        BrokerPlan::Create | BrokerPlan::Recreate | BrokerPlan::Update { .. } => {
            step.with_work(Work::Consumer(Box::new(ConsumerWork {
                stream: stream.to_string(),
                config: config.clone(),
                found,
                plan,
            })))
        }
        _ => step,
    }
}

/// The steps of every EventSchema version, each event type's history lowest version first,
/// each version judged against the registry as the earlier ones leave it. Returns the versions
/// the plan registers.
async fn schema_steps(
    registry: Option<&Registry>,
    manifests: &Manifests,
    steps: &mut Vec<Step>,
) -> Result<Pending, BrokerError> {
    let mut pending = Pending::default();
    for ((namespace, event_type), history) in histories(&manifests.schemas) {
        let mut holding = match registry {
            Some(registry) => registry.holding(&namespace, &event_type, true).await?,
            None => Holding::default(),
        };
        let head = history.last().map(|s| s.spec.version);
        for schema in history {
            let id = ObjectRef::of(schema);
            let target = Target::SchemaVersion {
                event_type: event_type.clone(),
                version: schema.spec.version,
            };
            if paused(schema) {
                steps.push(Step::skipped(id, target, PAUSED));
                continue;
            }
            let candidate = match candidate(schema, String::new()) {
                Ok(candidate) => candidate,
                Err(message) => {
                    steps.push(Step::refused(id, target, message));
                    continue;
                }
            };
            let decision = match holding.latest_version() {
                // An earlier version of the history the set holds (not its highest, which must
                // not be below the registry's): it must be registered, as it is.
                Some(latest) if candidate.version < latest && Some(candidate.version) != head => {
                    let registered = match registry {
                        Some(registry) => {
                            registry
                                .version(&namespace, &event_type, candidate.version)
                                .await?
                        }
                        None => None,
                    }
                    .or_else(|| {
                        pending
                            .version(&namespace, &event_type, candidate.version)
                            .cloned()
                    });
                    match registered {
                        Some(record) if record.fingerprint == candidate.fingerprint => {
                            Decision::Registered
                        }
                        Some(record) => Decision::ContentChanged {
                            registered: record.fingerprint,
                        },
                        None => decide(&candidate, &holding),
                    }
                }
                _ => decide(&candidate, &holding),
            };
            steps.push(schema_step(id, schema, &candidate, &holding, &decision));
            if matches!(decision, Decision::Register { .. }) {
                holding = after_registering(&holding, &candidate);
                pending.add(&namespace, candidate.record.clone());
            }
        }
    }
    Ok(pending)
}

/// The step for a version the registry's rule judged. Pure; refusals in the operator's words.
fn schema_step(
    id: ObjectRef,
    schema: &EventSchema,
    candidate: &Candidate,
    holding: &Holding,
    decision: &Decision,
) -> Step {
    let target = Target::SchemaVersion {
        event_type: candidate.event_type.clone(),
        version: candidate.version,
    };
    let latest = holding.latest.as_ref().map(|(l, _)| &l.record);
    let version = |v: i64| Some(format!("v{v}"));
    match decision {
        Decision::Register { .. } => {
            // Each version is a registry entry of its own, created once; the latest pointer
            // moves to it.
            let mut fields = vec![
                FieldChange::new("version", None, version(candidate.version)),
                FieldChange::new(
                    "compatibility",
                    None,
                    Some(format!("{:?}", candidate.compatibility)),
                ),
                FieldChange::new("fingerprint", None, Some(candidate.fingerprint.clone())),
            ];
            if let Some(latest) = latest {
                fields.push(FieldChange::new(
                    "latest",
                    version(latest.version),
                    version(candidate.version),
                ));
            }
            let message = match latest {
                None => format!("the first version of {}", candidate.event_type),
                Some(_) if candidate.compatibility == crate::schema::Compatibility::None => {
                    "compatibility None: registered without a check".into()
                }
                Some(latest) => format!(
                    "passes the {:?} check against v{}",
                    candidate.compatibility, latest.version
                ),
            };
            Step::new(id, target, Action::Create)
                .with_fields(fields)
                .with_message(message)
                .with_work(Work::Schema {
                    candidate: Box::new(candidate.clone()),
                })
        }
        Decision::Registered => Step::new(id, target, Action::Unchanged),
        refusal => {
            let (ready, _) =
                verdicts::verdicts(schema, refusal, holding.latest.as_ref().map(|(l, _)| l));
            let (field, old, new) = match refusal {
                Decision::Downgrade { latest } => {
                    ("spec.version", version(*latest), version(candidate.version))
                }
                Decision::ContentChanged { registered } => (
                    "spec.schema",
                    Some(registered.clone()),
                    Some(candidate.fingerprint.clone()),
                ),
                _ => ("spec.schema", None, None),
            };
            let message = if ready.message.starts_with(field) {
                ready.message
            } else {
                format!("{field}: {}", ready.message)
            };
            let step = Step::refused(id, target, message);
            if old.is_some() || new.is_some() {
                step.with_fields(vec![FieldChange::new(field, old, new)])
            } else {
                step
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::topic::stream_config::{TopicIdentity, desired_stream};

    fn id() -> ObjectRef {
        ObjectRef {
            kind: "Topic".into(),
            namespace: "shop".into(),
            name: "orders".into(),
        }
    }

    fn stream(yaml: &str) -> StreamConfig {
        let id = TopicIdentity {
            namespace: "shop",
            name: "orders",
            generation: 1,
        };
        desired_stream(id, &serde_yaml::from_str(yaml).unwrap()).unwrap()
    }

    fn info(config: StreamConfig) -> StreamInfo {
        serde_json::from_value(serde_json::json!({
            "config": config,
            "created": "2026-11-24T00:00:00Z",
            "state": {"messages": 0, "bytes": 0, "first_seq": 0, "last_seq": 0,
                      "first_ts": "2026-11-24T00:00:00Z", "last_ts": "2026-11-24T00:00:00Z",
                      "consumer_count": 0}
        }))
        .unwrap()
    }

    #[test]
    fn an_object_keeps_the_generation_its_broker_object_records() {
        let recorded = HashMap::from([(metadata::GENERATION.to_string(), "7".to_string())]);
        assert_eq!(recorded_generation([&recorded]), 7);
        assert_eq!(recorded_generation([]), 1);
    }

    #[test]
    fn stream_plans_become_steps_with_the_settings_that_change() {
        let desired = stream("maxAge: 2h");
        let create = stream_step(id(), "Topic", desired.clone(), None, BrokerPlan::Create);
        assert_eq!(create.action, Action::Create);
        assert!(
            create
                .fields
                .contains(&FieldChange::new("maxAge", None, Some("2h".into())))
        );
        assert!(matches!(create.work, Work::Stream(_)));

        let actual = info(stream("maxAge: 1h"));
        let plan =
            crate::reconcile::plan::plan(&desired, Some(&actual.config), PlanInputs::default());
        let update = stream_step(id(), "Topic", desired.clone(), Some(actual), plan);
        assert_eq!(update.action, Action::Update);
        assert_eq!(
            update.fields,
            vec![FieldChange::new(
                "maxAge",
                Some("1h".into()),
                Some("2h".into())
            )]
        );

        let shrunk = info(stream("partitions: 4"));
        let plan = crate::reconcile::plan::plan(
            &stream("partitions: 2"),
            Some(&shrunk.config),
            PlanInputs::default(),
        );
        let refused = stream_step(id(), "Topic", stream("partitions: 2"), Some(shrunk), plan);
        assert_eq!(refused.action, Action::Refused);
        assert!(matches!(refused.work, Work::None));
        assert!(
            refused
                .message
                .as_deref()
                .unwrap()
                .starts_with("spec.partitions: the stream has 4 partitions"),
            "{:?}",
            refused.message
        );
        assert_eq!(
            refused.fields,
            vec![FieldChange::new(
                "spec.partitions",
                Some("4".into()),
                Some("2".into())
            )]
        );
    }

    fn event_schema(version: i64, required: &[&str]) -> EventSchema {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "switchyard.dev/v1alpha1", "kind": "EventSchema",
            "metadata": {"name": "order-placed", "namespace": "shop"},
            "spec": {"eventType": "order.placed", "version": version, "compatibility": "Backward",
                     "schema": {"type": "object", "additionalProperties": false,
                                "properties": {"id": {"type": "string"}, "total": {"type": "number"}},
                                "required": required}},
        }))
        .unwrap()
    }

    fn judged(registered: &[EventSchema], schema: &EventSchema) -> Step {
        let mut holding = Holding::default();
        for earlier in registered {
            holding = after_registering(&holding, &candidate(earlier, String::new()).unwrap());
        }
        let candidate = candidate(schema, String::new()).unwrap();
        let decision = decide(&candidate, &holding);
        let id = ObjectRef::of(schema);
        schema_step(id, schema, &candidate, &holding, &decision)
    }

    #[test]
    fn schema_versions_are_created_or_refused_in_the_operators_words() {
        let v1 = event_schema(1, &[]);
        let first = judged(&[], &v1);
        assert_eq!(first.action, Action::Create);
        assert!(matches!(first.work, Work::Schema { .. }));
        let next = judged(std::slice::from_ref(&v1), &event_schema(2, &[]));
        assert_eq!(next.action, Action::Create);
        assert!(next.fields.contains(&FieldChange::new(
            "latest",
            Some("v1".into()),
            Some("v2".into())
        )));
        assert_eq!(
            judged(std::slice::from_ref(&v1), &v1).action,
            Action::Unchanged
        );

        let changed = judged(std::slice::from_ref(&v1), &event_schema(1, &["id"]));
        assert_eq!(changed.action, Action::Refused);
        let message = changed.message.unwrap();
        assert!(
            message.starts_with("spec.schema: order.placed v1 is registered with other content"),
            "{message}"
        );

        let breaking = judged(&[v1], &event_schema(2, &["total"]));
        assert_eq!(breaking.action, Action::Refused);
        let message = breaking.message.unwrap();
        assert!(
            message.starts_with("spec.schema: v2 breaks Backward compatibility"),
            "{message}"
        );
        assert!(matches!(breaking.work, Work::None));
    }

    #[test]
    fn a_stream_of_another_owner_is_refused_with_the_way_to_adopt_it() {
        let mut foreign = stream("{}");
        foreign.metadata.clear();
        let step = stream_step(
            id(),
            "Topic",
            stream("{}"),
            Some(info(foreign)),
            BrokerPlan::NotOwned { owner: None },
        );
        assert_eq!(step.action, Action::Refused);
        assert!(
            step.message.unwrap().contains("switchyard.dev/adopt"),
            "names the annotation"
        );
    }
}
