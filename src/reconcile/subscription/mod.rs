//! Subscription → durable JetStream pull consumer(s) on its Topic's stream, and the worker
//! Deployment. The stages: the Topic, DeadLetterPolicy, bound schema ([`binding`]) and
//! (Broadcast) worker pods it relates to (dereference, from [`caches`] and the schema
//! registry), the consumer configuration (pure, [`consumer_config`]),
//! the consumers found, the plan (pure, [`plan`]), applying it, and the figures the status
//! shows (pure, [`status`]); then the worker Deployment ([`workers`], [`workers_sync`]), whose
//! pod count the lag loop ([`lag_loop`], deciding with [`autoscale`]) sets when autoscaling.
//!
//! Modes:
//! - WorkerGroup: one durable consumer, `sub_<namespace>_<name>`; the workers compete for its
//!   events, so each is handled once.
//! - Broadcast: one durable consumer per worker pod, `sub_<namespace>_<name>_<pod>`, created
//!   when the pod appears (starting where `deliverPolicy` says) and deleted when the pod is
//!   gone. A container restart inside a pod keeps the pod's consumer, so it resumes where it
//!   stopped and misses nothing; a replaced pod (rollout, eviction, scale-down and up) is a new
//!   reader with a new consumer and starts from `deliverPolicy` again (New: events from its
//!   start on; All: the Topic's retained events). No consumer outlives its pod by more than a
//!   reconcile, also across operator restarts: consumers with the Subscription's prefix and no
//!   pod are removed.

pub mod autoscale;
pub mod binding;
pub mod caches;
pub mod consumer_config;
pub mod lag_loop;
pub mod plan;
pub mod status;
pub mod workers;
pub mod workers_sync;

use std::collections::HashSet;

use async_nats::jetstream::consumer::{
    Config as ConsumerConfig, Info as ConsumerInfo, IntoConsumerConfig, pull,
};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, reflector::Store},
};
use tokio::sync::OnceCell;
use tracing::info;

use self::{
    binding::Binding,
    caches::Caches,
    consumer_config::{
        DesiredConsumer, SubscriptionIdentity, TopicView, desired_consumer, metadata,
        per_partition_consumers, per_pod_consumer,
    },
    lag_loop::Autoscaler,
    status::ConsumerLayout,
};
use crate::{
    api::{
        DeadLetterPolicy, DeadLetterPolicySpec, EventSchema, ObjectRefWithVersion, Subscription,
        SubscriptionStatus, Topic,
        subscription::{Ordering, SubscriptionMode},
    },
    broker::{Broker, BrokerError, codes},
    condition_reasons,
    conditions::{ConditionType, ReasonCode, Verdict},
    naming,
    reconcile::{
        dead_letter_policy,
        plan::{Plan as ConsumerPlan, PlanInputs, UpdateCause, plan},
    },
    registry::{Registry, SchemaRecord},
    runtime::{
        Context, Error,
        driver::{Outcome, Reconciler, Unresolved, common_broker_failure},
        kube_events::KubeEvent,
    },
};

/// How long a reconcile waits for the related caches' first lists before it fails (and is
/// retried with backoff).
const CACHE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// How long after its creation a Topic that has no status yet counts as being set up: a
/// Subscription applied together with its Topic waits this long, quietly, before it reports
/// TopicNotReady.
const TOPIC_SETUP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);
/// How long after its creation a Subscription whose Topic is missing waits, quietly, before it
/// reports TopicNotFound.
const SUBSCRIPTION_APPLY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a Subscription waiting for a Topic being set up looks again, should the watch
/// that reports the Topic's first status be late.
const TOPIC_SETUP_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);
/// How long after its creation an EventSchema that has no status yet counts as registering: a
/// Subscription applied together with it waits this long, quietly, before it reports
/// SchemaNotRegistered.
const SCHEMA_SETUP_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Held on every Subscription: its consumers hold no data and go with it.
pub const FINALIZER: &str = "switchyard.dev/consumer-cleanup";

condition_reasons! {
    /// Why a Subscription is (not) Ready.
    pub enum SubscriptionReason {
        /// The durable consumer(s) exist and match the spec.
        ConsumerInSync,
        /// The Topic named by spec.topicRef does not exist (yet, or any more).
        TopicNotFound,
        /// The Topic exists but its stream does not (yet): the Topic is not Ready.
        TopicNotReady,
        /// The DeadLetterPolicy named by the Subscription or its Topic does not exist (yet).
        DeadLetterPolicyNotFound,
        /// The EventSchema named by the Subscription's or its Topic's schemaRef does not exist.
        SchemaNotFound,
        /// The EventSchema exists, but the registry holds no version of it (or not the pinned
        /// one).
        SchemaNotRegistered,
        /// A consumer with this name exists and was not created for this Subscription.
        ConsumerNotOwned,
        /// The consumer differs in a way JetStream cannot change in place.
        ChangeRefused,
        /// The worker Deployment has all its desired pods available.
        WorkersAvailable,
        /// The worker Deployment is rolling out or short of available pods.
        WorkersProgressing,
    }
    // Missing or unready Topics, policies and schemas are waited for (applied together, they
    // arrive moments later), and so is a rollout; a consumer that is not ours or cannot change
    // needs someone.
    stalled: [ConsumerNotOwned, ChangeRefused]
}

/// Live figures of a Subscription: its consumers' and its workers'.
#[derive(Debug, Default)]
pub struct SubscriptionFigures {
    /// The consumers the broker reported on (one, or one per pod); `None`: no answer.
    pub consumers: Option<Vec<ConsumerInfo>>,
    pub workers: Option<status::WorkerFigures>,
    /// Its events dead-lettered so far (see [`DesiredConsumers::dead_lettered`]).
    pub dead_lettered: Option<i64>,
    /// The schema it is bound to; shown whenever the figures are.
    pub schema: Option<Binding>,
}

/// What a Subscription refers to.
pub struct SubscriptionRefs {
    pub topic: TopicView,
    pub dead_letter_policy: Option<DeadLetterPolicySpec>,
    /// Its events dead-lettered so far, as the policy's status counts them.
    pub dead_lettered: Option<i64>,
    /// The registered schema version its events are validated against.
    pub schema: Option<Binding>,
    /// Broadcast: its worker pods, each of which gets a consumer.
    pub pods: Vec<String>,
}

/// The consumers a Subscription asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredConsumers {
    /// The Subscription's consumer: the one created in WorkerGroup mode, the template of the
    /// per-pod consumers in Broadcast mode.
    pub subscription: DesiredConsumer,
    /// Broadcast: one consumer per worker pod; WorkerGroup with `ordering: PerKey`: one per
    /// partition. The Subscription's own is not created then.
    pub several: Option<Vec<pull::Config>>,
    pub layout: Layout,
    /// Its events dead-lettered so far, as its DeadLetterPolicy's status counts them.
    pub dead_lettered: Option<i64>,
    /// The registered schema version its events are validated against.
    pub schema: Option<Binding>,
}

/// How a Subscription's events are spread over consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Shared,
    PerPod,
    PerPartition,
}

impl DesiredConsumers {
    pub fn stream(&self) -> &str {
        &self.subscription.stream
    }

    /// The Subscription's consumer name (the prefix of its per-pod or per-partition ones).
    pub fn name(&self) -> &str {
        self.subscription
            .config
            .durable_name
            .as_deref()
            .unwrap_or_default()
    }

    /// The consumers to create or keep, in order.
    pub fn configs(&self) -> Vec<&pull::Config> {
        match &self.several {
            None => vec![&self.subscription.config],
            Some(several) => several.iter().collect(),
        }
    }
}

/// The consumers found on the stream.
pub struct FoundConsumers {
    /// Per desired consumer (same order), what the server has.
    pub each: Vec<Option<ConsumerInfo>>,
    /// This Subscription's per-pod (or per-partition) consumers no longer wanted: their pods
    /// (partitions) are gone.
    pub orphans: Vec<String>,
}

/// What to do about each desired consumer, and which orphans to delete.
pub struct ConsumersPlan {
    pub each: Vec<ConsumerPlan>,
    pub remove: Vec<String>,
}

/// What carrying out one consumer's plan did to the broker. The operator turns it into
/// conditions and Events, `switchyard apply` into lines of its report.
#[derive(Debug)]
pub enum ConsumerApplied {
    InSync(ConsumerInfo),
    Created(ConsumerInfo),
    /// Created again after it was deleted behind Switchyard's back.
    Recreated(ConsumerInfo),
    Updated {
        info: ConsumerInfo,
        cause: UpdateCause,
        changed: Vec<&'static str>,
    },
    /// Left alone: it exists and records another owner (or none).
    NotOwned {
        owner: Option<String>,
    },
    /// Left alone: JetStream cannot apply the change in place.
    Refused {
        field: &'static str,
        message: String,
        found: Option<ConsumerInfo>,
    },
}

/// Carries out `step` for the consumer `config` on `stream`: the broker writes a Subscription
/// makes, for the operator and `switchyard apply` alike.
pub async fn carry_out_consumer(
    broker: &Broker,
    stream: &str,
    config: &pull::Config,
    found: Option<ConsumerInfo>,
    step: ConsumerPlan,
) -> Result<ConsumerApplied, BrokerError> {
    Ok(match step {
        ConsumerPlan::InSync => match found {
            Some(info) => ConsumerApplied::InSync(info),
            None => unreachable!("the planner says in sync only for a consumer it found"),
        },
        ConsumerPlan::Create => {
            ConsumerApplied::Created(broker.create_consumer(stream, config.clone()).await?)
        }
        ConsumerPlan::Recreate => {
            ConsumerApplied::Recreated(broker.create_consumer(stream, config.clone()).await?)
        }
        ConsumerPlan::Update { cause, changed } => ConsumerApplied::Updated {
            info: broker.update_consumer(stream, config.clone()).await?,
            cause,
            changed,
        },
        ConsumerPlan::NotOwned { owner } => ConsumerApplied::NotOwned { owner },
        ConsumerPlan::Refused { field, message } => ConsumerApplied::Refused {
            field,
            message,
            found,
        },
    })
}

/// Why a consumer that exists is left alone.
pub fn consumer_not_owned_message(consumer: &str, stream: &str, owner: Option<&str>) -> String {
    let found = owner
        .map(|o| format!("its metadata names {o} as owner"))
        .unwrap_or_else(|| "it records no Switchyard owner".into());
    format!(
        "consumer {consumer} on stream {stream} already exists and was not created for this Subscription ({found}); it is left untouched"
    )
}

/// The consumers `desired` asks for as the stream has them, and (per-pod or per-partition
/// layouts) this Subscription's consumers no longer wanted. Only consumers recording the
/// Subscription as owner count as its own: a look-alike made by hand stays.
pub async fn find_consumers(
    broker: &Broker,
    desired: &DesiredConsumers,
) -> Result<FoundConsumers, BrokerError> {
    let stream = desired.stream();
    let Some(several) = &desired.several else {
        let found = broker.consumer_info(stream, desired.name()).await?;
        return Ok(FoundConsumers {
            each: vec![found],
            orphans: Vec::new(),
        });
    };
    // One listing finds both the consumers wanted and those of pods (or partitions) gone.
    let prefix = naming::per_pod_consumer_prefix(desired.name());
    let existing: HashSet<String> = broker
        .consumer_names(stream)
        .await?
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let mut each = Vec::with_capacity(several.len());
    for config in several {
        let name = config.durable_name.as_deref().unwrap_or_default();
        each.push(if existing.contains(name) {
            broker.consumer_info(stream, name).await?
        } else {
            None
        });
    }
    let wanted: HashSet<&str> = several
        .iter()
        .filter_map(|c| c.durable_name.as_deref())
        .collect();
    let owner = desired.subscription.config.metadata.get(metadata::OWNER);
    let mut orphans = Vec::new();
    for name in existing.iter().filter(|n| !wanted.contains(n.as_str())) {
        if let Some(info) = broker.consumer_info(stream, name).await?
            && info.config.metadata.get(metadata::OWNER) == owner
        {
            orphans.push(name.clone());
        }
    }
    orphans.sort();
    Ok(FoundConsumers { each, orphans })
}

/// Reconciles Subscriptions into durable consumers and worker Deployments.
#[derive(Default)]
pub struct SubscriptionReconciler {
    caches: Caches,
    autoscaler: Autoscaler,
    workers: workers_sync::AppliedDeployments,
    registry: OnceCell<Registry>,
}

/// The consumer layout the spec asks for.
pub fn layout(sub: &Subscription) -> Layout {
    let per_key = sub
        .spec
        .worker
        .as_ref()
        .is_some_and(|w| w.ordering == Ordering::PerKey);
    match (sub.spec.mode, per_key) {
        (SubscriptionMode::Broadcast, _) => Layout::PerPod,
        (SubscriptionMode::WorkerGroup, true) => Layout::PerPartition,
        (SubscriptionMode::WorkerGroup, false) => Layout::Shared,
    }
}

fn identity(sub: &Subscription) -> (String, String) {
    (sub.namespace().unwrap_or_default(), sub.name_any())
}

/// Ready and ConsumerReady say the same while workers are not looked at.
fn verdicts(ready: Verdict<SubscriptionReason>) -> Outcome<SubscriptionReconciler> {
    let consumer = Verdict {
        type_: ConditionType::ConsumerReady,
        ..ready.clone()
    };
    Outcome::new(ready).with_condition(consumer)
}

fn waiting(reason: SubscriptionReason, message: String) -> Outcome<SubscriptionReconciler> {
    let event = KubeEvent::warning(reason.as_str(), message.clone());
    verdicts(Verdict::not_ready(reason, message)).with_event(event)
}

/// Not ready for want of a schema to bind to: waiting, and the status shows no schema.
fn unbound(reason: SubscriptionReason, message: String) -> Outcome<SubscriptionReconciler> {
    waiting(reason, message).with_figures(Some(SubscriptionFigures::default()))
}

/// A broker failure, also as ConsumerReady.
fn broker_outcome(ctx: &Context, error: &BrokerError) -> Outcome<SubscriptionReconciler> {
    let outcome: Outcome<SubscriptionReconciler> = common_broker_failure(ctx, error);
    let consumer = Verdict {
        type_: ConditionType::ConsumerReady,
        ..outcome.ready.clone()
    };
    outcome.with_condition(consumer)
}

fn figures(consumers: Vec<ConsumerInfo>, desired: &DesiredConsumers) -> SubscriptionFigures {
    SubscriptionFigures {
        consumers: Some(consumers),
        workers: None,
        dead_lettered: desired.dead_lettered,
        schema: desired.schema.clone(),
    }
}

/// A Topic created moments ago that its own reconcile has not reported on yet (no Ready
/// condition). Its stream most likely does not exist yet; saying so in the Subscription's status
/// would be stale a second later.
fn topic_being_set_up(topic: &Topic, now: Timestamp) -> bool {
    let reported = topic
        .status
        .as_ref()
        .is_some_and(|s| crate::conditions::find(&s.conditions, ConditionType::Ready).is_some());
    !reported
        && younger_than(
            topic.metadata.creation_timestamp.as_ref(),
            now,
            TOPIC_SETUP_GRACE,
        )
}

/// A Subscription created moments ago and never reported on (no Ready condition: the API
/// server gives a new object a status of its own, `observedGeneration: 0`): when its Topic is
/// missing, the Topic was most likely applied with it and is not in the cache yet.
fn applied_moments_ago(sub: &Subscription, now: Timestamp) -> bool {
    let reported = sub
        .status
        .as_ref()
        .is_some_and(|s| crate::conditions::find(&s.conditions, ConditionType::Ready).is_some());
    !reported
        && younger_than(
            sub.metadata.creation_timestamp.as_ref(),
            now,
            SUBSCRIPTION_APPLY_GRACE,
        )
}

/// An EventSchema created moments ago that its own reconcile has not reported on yet: its
/// version is most likely being registered.
fn schema_being_set_up(schema: &EventSchema, now: Timestamp) -> bool {
    let reported = schema
        .status
        .as_ref()
        .is_some_and(|s| crate::conditions::find(&s.conditions, ConditionType::Ready).is_some());
    !reported
        && younger_than(
            schema.metadata.creation_timestamp.as_ref(),
            now,
            SCHEMA_SETUP_GRACE,
        )
}

fn younger_than(created: Option<&Time>, now: Timestamp, age: std::time::Duration) -> bool {
    let limit = SignedDuration::try_from(age).unwrap_or(SignedDuration::MAX);
    created.is_some_and(|created| now.duration_since(created.0) < limit)
}

/// Whether the Subscription's status shows it read its Topic before (so a missing Topic was
/// deleted, not yet to be created).
fn had_topic(sub: &Subscription) -> bool {
    sub.status
        .as_ref()
        .and_then(|s| crate::conditions::find(&s.conditions, ConditionType::ConsumerReady))
        .is_some_and(|c| {
            c.reason != SubscriptionReason::TopicNotFound.as_str()
                && c.reason != SubscriptionReason::TopicNotReady.as_str()
        })
}

impl Reconciler for SubscriptionReconciler {
    type Kind = Subscription;
    type Status = SubscriptionStatus;
    type Reason = SubscriptionReason;
    type Refs = SubscriptionRefs;
    type Desired = DesiredConsumers;
    type Actual = FoundConsumers;
    type Plan = ConsumersPlan;
    type Figures = SubscriptionFigures;

    const KIND: &'static str = "Subscription";
    const FINALIZER: &'static str = FINALIZER;

    fn status(sub: &Subscription) -> Option<&SubscriptionStatus> {
        sub.status.as_ref()
    }

    fn cleans_up(_: &Subscription) -> bool {
        true
    }

    async fn dereference(
        &self,
        ctx: &Context,
        sub: &Subscription,
    ) -> Result<Result<SubscriptionRefs, Unresolved<Self>>, Error> {
        self.caches.synced(CACHE_PATIENCE).await?;
        let (namespace, name) = identity(sub);
        let topic_name = &sub.spec.topic_ref.name;
        let Some(topic) = self.caches.topic(&namespace, topic_name) else {
            if had_topic(sub) {
                let message = format!(
                    "Topic {topic_name} was deleted while this Subscription read it; the Subscription becomes Ready by itself once a Topic of that name exists again"
                );
                return Ok(Err(verdicts(Verdict::not_ready(
                    SubscriptionReason::TopicNotFound,
                    message.clone(),
                ))
                .with_event(KubeEvent::warning("TopicDeleted", message))
                .into()));
            }
            if applied_moments_ago(sub, ctx.clock.now()) {
                // Most likely applied together with its Topic, which the cache has yet to show.
                return Ok(Err(Unresolved::Settling(TOPIC_SETUP_RECHECK)));
            }
            return Ok(Err(waiting(
                SubscriptionReason::TopicNotFound,
                format!(
                    "Topic {topic_name} does not exist in namespace {namespace}; the Subscription becomes Ready by itself once it does"
                ),
            )
            .into()));
        };
        if topic_being_set_up(&topic, ctx.clock.now()) {
            return Ok(Err(Unresolved::Settling(TOPIC_SETUP_RECHECK)));
        }
        let policy_ref = sub
            .spec
            .dead_letter_policy_ref
            .as_ref()
            .or(topic.spec.dead_letter_policy_ref.as_ref());
        let (dead_letter_policy, dead_lettered) = match policy_ref {
            None => (None, None),
            Some(policy) => {
                let policies: Api<DeadLetterPolicy> =
                    Api::namespaced(ctx.client.clone(), &namespace);
                match policies.get_opt(&policy.name).await? {
                    Some(found) => (
                        Some(found.spec),
                        dead_letter_policy::counts::of_subscription(found.status.as_ref(), &name),
                    ),
                    None => {
                        return Ok(Err(waiting(
                            SubscriptionReason::DeadLetterPolicyNotFound,
                            format!(
                                "DeadLetterPolicy {} does not exist in namespace {namespace}; the Subscription inherits its retry settings and waits for it",
                                policy.name
                            ),
                        )
                        .into()));
                    }
                }
            }
        };
        let schema = match binding::schema_ref(&sub.spec, &topic.spec) {
            None => None,
            Some((reference, origin)) => {
                match self
                    .bind_schema(ctx, sub, &namespace, reference, origin)
                    .await
                {
                    Ok(bound) => Some(bound),
                    Err(unresolved) => return Ok(Err(unresolved)),
                }
            }
        };
        let pods = match sub.spec.mode {
            SubscriptionMode::WorkerGroup => Vec::new(),
            SubscriptionMode::Broadcast => self.caches.broadcast_pods(&namespace, &name),
        };
        Ok(Ok(SubscriptionRefs {
            topic: TopicView::of(&topic, &namespace),
            dead_letter_policy,
            dead_lettered,
            schema,
            pods,
        }))
    }

    fn desired(sub: &Subscription, refs: &SubscriptionRefs) -> Result<DesiredConsumers, String> {
        if let Some(autoscaling) = sub
            .spec
            .worker
            .as_ref()
            .and_then(|w| w.autoscaling.as_ref())
        {
            autoscale::Policy::of(autoscaling)?;
        }
        let (namespace, name) = identity(sub);
        let id = SubscriptionIdentity {
            namespace: &namespace,
            name: &name,
            generation: sub.metadata.generation.unwrap_or_default(),
        };
        let inherited = binding::inherited(refs.dead_letter_policy.as_ref(), refs.schema.as_ref());
        let mut subscription =
            desired_consumer(id, &sub.spec, &refs.topic, &inherited).map_err(|e| e.to_string())?;
        if let Some(bound) = &refs.schema {
            subscription
                .config
                .metadata
                .insert(metadata::SCHEMA.to_string(), bound.metadata_value());
        }
        let layout = layout(sub);
        let several = match layout {
            Layout::Shared => None,
            Layout::PerPod => Some(
                refs.pods
                    .iter()
                    .map(|pod| per_pod_consumer(&subscription, pod))
                    .collect(),
            ),
            Layout::PerPartition => Some(
                per_partition_consumers(&subscription, &refs.topic, &namespace)
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(DesiredConsumers {
            subscription,
            several,
            layout,
            dead_lettered: refs.dead_lettered,
            schema: refs.schema.clone(),
        })
    }

    async fn observe(
        &self,
        ctx: &Context,
        desired: &DesiredConsumers,
    ) -> Result<FoundConsumers, BrokerError> {
        find_consumers(&ctx.broker, desired).await
    }

    fn plan(
        desired: &DesiredConsumers,
        actual: &FoundConsumers,
        inputs: PlanInputs,
    ) -> ConsumersPlan {
        // A per-pod consumer missing is a new pod's, not one deleted by hand.
        let inputs = match desired.layout {
            Layout::PerPod => PlanInputs {
                synced_before: false,
                ..inputs
            },
            Layout::Shared | Layout::PerPartition => inputs,
        };
        let each = desired
            .configs()
            .into_iter()
            .zip(&actual.each)
            .map(|(config, found)| {
                let config: ConsumerConfig = config.into_consumer_config();
                plan(&config, found.as_ref().map(|i| &i.config), inputs)
            })
            .collect();
        ConsumersPlan {
            each,
            remove: actual.orphans.clone(),
        }
    }

    async fn apply(
        &self,
        ctx: &Context,
        sub: &Subscription,
        desired: &DesiredConsumers,
        actual: FoundConsumers,
        plan: ConsumersPlan,
    ) -> Outcome<Self> {
        let stream = desired.stream();
        let mut infos = Vec::new();
        let mut events = Vec::new();
        let steps = desired
            .configs()
            .into_iter()
            .zip(actual.each)
            .zip(plan.each);
        for ((config, found), step) in steps {
            match self
                .apply_consumer(ctx, sub, desired, config, found, step)
                .await
            {
                Ok((info, event)) => {
                    infos.push(info);
                    events.extend(event);
                }
                Err(outcome) => return outcome,
            }
        }
        for orphan in &plan.remove {
            match ctx.broker.delete_consumer(stream, orphan).await {
                Ok(_) => {
                    info!(
                        consumer = orphan,
                        stream, "per-pod consumer deleted: its pod is gone"
                    );
                    events.push(KubeEvent::normal(
                        "ConsumerDeleted",
                        format!("deleted consumer {orphan}: its worker pod is gone"),
                    ));
                }
                Err(e) => return self.broker_failure(ctx, desired, e).await,
            }
        }
        let count = desired.configs().len();
        let message = match desired.layout {
            Layout::Shared => format!(
                "consumer {} on stream {stream} matches the spec",
                desired.name()
            ),
            Layout::PerPod if count == 0 => format!(
                "no worker pods yet; each gets its own consumer on stream {stream} when it appears"
            ),
            Layout::PerPod => format!(
                "{count} per-pod consumers on stream {stream} match the spec, one for each worker pod"
            ),
            Layout::PerPartition => format!(
                "{count} per-partition consumers on stream {stream} match the spec, each pinned to one worker pod at a time"
            ),
        };
        let outcome = verdicts(Verdict::ready(SubscriptionReason::ConsumerInSync, message))
            .with_figures(Some(figures(infos, desired)));
        match one_event(events) {
            Some(event) => outcome.with_event(event),
            None => outcome,
        }
    }

    async fn broker_failure(
        &self,
        ctx: &Context,
        desired: &DesiredConsumers,
        error: BrokerError,
    ) -> Outcome<Self> {
        if error.code() == Some(codes::STREAM_NOT_FOUND) {
            return waiting(
                SubscriptionReason::TopicNotReady,
                format!(
                    "stream {} of the Topic does not exist yet; see the Topic's status",
                    desired.stream()
                ),
            );
        }
        broker_outcome(ctx, &error)
    }

    async fn apply_children(
        &self,
        ctx: &Context,
        sub: &Subscription,
        outcome: Outcome<Self>,
    ) -> Result<Outcome<Self>, Error> {
        // Workers follow consumers in sync; otherwise they are left as they are.
        if !outcome.ready.status {
            return Ok(outcome);
        }
        workers_sync::sync(self, ctx, sub, outcome).await
    }

    fn project(
        status: &mut SubscriptionStatus,
        sub: &Subscription,
        figures: Option<&SubscriptionFigures>,
    ) {
        let (namespace, name) = identity(sub);
        let consumer = naming::subscription_consumer_name(&namespace, &name);
        let prefix = naming::per_pod_consumer_prefix(&consumer);
        let layout = match layout(sub) {
            Layout::Shared => ConsumerLayout::Shared(&consumer),
            Layout::PerPod => ConsumerLayout::PerPod { prefix: &prefix },
            Layout::PerPartition => ConsumerLayout::PerPartition { prefix: &prefix },
        };
        status::project(status, layout, figures.and_then(|f| f.consumers.as_deref()));
        if sub.spec.worker.is_none() {
            status::project_workers(status, None);
        } else if let Some(workers) = figures.and_then(|f| f.workers.as_ref()) {
            status::project_workers(status, Some(workers));
        }
        // Known only alongside the consumers' figures (the policy was read in the same pass).
        if let Some(figures) = figures.filter(|f| f.consumers.is_some()) {
            status.dead_lettered = figures.dead_lettered;
        }
        if let Some(figures) = figures {
            status.schema = figures.schema.as_ref().map(|b| b.shown.clone());
        }
    }

    async fn cleanup(&self, ctx: &Context, sub: &Subscription) -> Result<KubeEvent, BrokerError> {
        let (namespace, name) = identity(sub);
        self.autoscaler.forget(&namespace, &name);
        let stream = naming::stream_name(&namespace, &sub.spec.topic_ref.name);
        let consumer = naming::subscription_consumer_name(&namespace, &name);
        let prefix = naming::per_pod_consumer_prefix(&consumer);
        let ours = naming::owner_id("Subscription", &namespace, &name);
        let names = match ctx.broker.consumer_names(&stream).await {
            Ok(names) => names,
            Err(e) if e.code() == Some(codes::STREAM_NOT_FOUND) => {
                return Ok(KubeEvent::normal(
                    "ConsumerDeleted",
                    format!(
                        "stream {stream} is gone, and with it the consumers of this Subscription"
                    ),
                ));
            }
            Err(e) => return Err(e),
        };
        let (mut deleted, mut foreign) = (Vec::new(), Vec::new());
        for candidate in names
            .into_iter()
            .filter(|n| *n == consumer || n.starts_with(&prefix))
        {
            match ctx.broker.consumer_info(&stream, &candidate).await? {
                None => {}
                Some(info) if info.config.metadata.get(metadata::OWNER) != Some(&ours) => {
                    foreign.push(candidate);
                }
                Some(_) => {
                    ctx.broker.delete_consumer(&stream, &candidate).await?;
                    info!(consumer = candidate, stream, "consumer deleted");
                    deleted.push(candidate);
                }
            }
        }
        let mut note = if deleted.is_empty() {
            format!("consumer {consumer} was already gone")
        } else {
            format!(
                "deleted consumer{} {}",
                plural(deleted.len()),
                deleted.join(", ")
            )
        };
        if !foreign.is_empty() {
            note.push_str(&format!(
                "; left {} untouched: not owned by this Subscription",
                foreign.join(", ")
            ));
        }
        Ok(KubeEvent::normal("ConsumerDeleted", note))
    }

    fn retained(sub: &Subscription) -> KubeEvent {
        let (namespace, name) = identity(sub);
        KubeEvent::normal(
            "ConsumerRetained",
            format!(
                "kept consumer {} as the Subscription is deleted while paused",
                naming::subscription_consumer_name(&namespace, &name)
            ),
        )
    }

    fn left_behind(sub: &Subscription, error: &BrokerError) -> KubeEvent {
        let (namespace, name) = identity(sub);
        KubeEvent::warning(
            "ConsumerLeftBehind",
            format!(
                "consumer {} could not be deleted and is left behind: {error}",
                naming::subscription_consumer_name(&namespace, &name)
            ),
        )
    }

    /// Topics, EventSchemas, worker Deployments and Broadcast worker pods wake the
    /// Subscriptions they concern (see [`caches`]); the lag loop wakes those whose pod count it
    /// changes.
    fn watch_related(
        &self,
        controller: Controller<DeserializeGuard<Subscription>>,
        store: Store<DeserializeGuard<Subscription>>,
        ctx: &Context,
    ) -> Controller<DeserializeGuard<Subscription>> {
        let readings = self.autoscaler.readings(
            store.clone(),
            ctx.broker.clone(),
            ctx.clock.clone(),
            ctx.config.autoscale_interval,
        );
        self.caches
            .watch(controller, store, ctx)
            .reconcile_on(readings)
    }
}

impl SubscriptionReconciler {
    async fn registry(&self, ctx: &Context) -> Result<&Registry, BrokerError> {
        self.registry
            .get_or_try_init(|| Registry::open(&ctx.broker))
            .await
    }

    /// The registered schema version `reference` (written at `origin`) binds the Subscription
    /// to, or why there is none (yet).
    async fn bind_schema(
        &self,
        ctx: &Context,
        sub: &Subscription,
        namespace: &str,
        reference: &ObjectRefWithVersion,
        origin: binding::Origin,
    ) -> Result<Binding, Unresolved<Self>> {
        let now = ctx.clock.now();
        let Some(schema) = self.caches.event_schema(namespace, &reference.name) else {
            if applied_moments_ago(sub, now) {
                // Most likely applied together with its EventSchema.
                return Err(Unresolved::Settling(TOPIC_SETUP_RECHECK));
            }
            return Err(unbound(
                SubscriptionReason::SchemaNotFound,
                binding::not_found(&reference.name, namespace, origin),
            )
            .into());
        };
        let event_type = &schema.spec.event_type;
        let read = async {
            let registry = self.registry(ctx).await?;
            bound_record(registry, namespace, event_type, reference.version).await
        };
        let (record, registered): (Option<SchemaRecord>, Vec<i64>) = match read.await {
            Ok(read) => read,
            Err(error) => return Err(broker_outcome(ctx, &error).into()),
        };
        match record {
            Some(record) => Ok(Binding::new(namespace, reference, record)),
            None if schema_being_set_up(&schema, now) => {
                Err(Unresolved::Settling(TOPIC_SETUP_RECHECK))
            }
            None => Err(unbound(
                SubscriptionReason::SchemaNotRegistered,
                binding::not_registered(
                    &reference.name,
                    event_type,
                    origin,
                    reference.version,
                    &registered,
                ),
            )
            .into()),
        }
    }

    /// Brings one consumer in line with its plan: what the server reports afterwards and the
    /// Event worth recording, or the outcome that stops the reconcile.
    async fn apply_consumer(
        &self,
        ctx: &Context,
        sub: &Subscription,
        desired: &DesiredConsumers,
        config: &pull::Config,
        found: Option<ConsumerInfo>,
        step: ConsumerPlan,
    ) -> Result<(ConsumerInfo, Option<KubeEvent>), Outcome<Self>> {
        let stream = desired.stream();
        let consumer = config.durable_name.clone().unwrap_or_default();
        let (namespace, name) = identity(sub);
        let applied = match carry_out_consumer(&ctx.broker, stream, config, found, step).await {
            Ok(applied) => applied,
            Err(e) => return Err(self.broker_failure(ctx, desired, e).await),
        };
        match applied {
            ConsumerApplied::InSync(info) => Ok((info, None)),
            ConsumerApplied::Created(info) => {
                info!(subscription = %name, %namespace, consumer, "consumer created");
                let event = KubeEvent::normal(
                    "ConsumerCreated",
                    format!("created consumer {consumer} on stream {stream}"),
                );
                Ok((info, Some(event)))
            }
            ConsumerApplied::Recreated(info) => {
                info!(subscription = %name, %namespace, consumer, "consumer recreated");
                // Its own reason: Kubernetes folds repeated Events of one reason into a series
                // that keeps the first note.
                let event = KubeEvent::warning(
                    "ConsumerRecreated",
                    format!(
                        "consumer {consumer} was deleted outside Switchyard; recreated it on stream {stream}"
                    ),
                );
                Ok((info, Some(event)))
            }
            ConsumerApplied::Updated {
                info,
                cause,
                changed,
            } => {
                let fields = changed.join(", ");
                info!(subscription = %name, %namespace, consumer, ?cause, fields, "consumer updated");
                let event = match cause {
                    UpdateCause::SpecChanged => KubeEvent::normal(
                        "ConsumerUpdated",
                        format!("updated consumer {consumer}: {fields}"),
                    ),
                    UpdateCause::Drift => KubeEvent::warning(
                        "DriftCorrected",
                        format!(
                            "consumer {consumer} was changed outside Switchyard ({fields}); restored the declared configuration"
                        ),
                    ),
                    UpdateCause::Adoption => KubeEvent::normal(
                        "ConsumerAdopted",
                        format!(
                            "adopted existing consumer {consumer} and applied the spec ({fields})"
                        ),
                    ),
                };
                Ok((info, Some(event)))
            }
            ConsumerApplied::NotOwned { owner } => Err(waiting(
                SubscriptionReason::ConsumerNotOwned,
                consumer_not_owned_message(&consumer, stream, owner.as_deref()),
            )),
            ConsumerApplied::Refused {
                field,
                message,
                found,
            } => Err(waiting(
                SubscriptionReason::ChangeRefused,
                format!("{field}: {message}"),
            )
            .with_figures(Some(figures(found.into_iter().collect(), desired)))),
        }
    }
}

/// The registered version a schemaRef binds to: the `pinned` one, or the latest. Without
/// one, the versions registered (when a pinned one is missing), to say which exist.
pub async fn bound_record(
    registry: &Registry,
    namespace: &str,
    event_type: &str,
    pinned: Option<i64>,
) -> Result<(Option<SchemaRecord>, Vec<i64>), BrokerError> {
    match pinned {
        Some(version) => {
            if let Some(record) = registry.version(namespace, event_type, version).await? {
                return Ok((Some(record), Vec::new()));
            }
            // The latest version's own key is written just after the pointer moves.
            let latest = registry.holding(namespace, event_type, false).await?.latest;
            Ok(match latest {
                Some((latest, _)) if latest.record.version == version => {
                    (Some(latest.record), Vec::new())
                }
                Some((latest, _)) => (None, latest.versions),
                None => (None, Vec::new()),
            })
        }
        None => {
            let holding = registry.holding(namespace, event_type, false).await?;
            Ok((holding.latest.map(|(latest, _)| latest.record), Vec::new()))
        }
    }
}

/// One Event for what a reconcile did to several consumers: the single one as it is; several
/// under the first one's reason (warnings first), notes joined.
fn one_event(mut events: Vec<KubeEvent>) -> Option<KubeEvent> {
    if events.len() <= 1 {
        return events.pop();
    }
    events.sort_by_key(|e| e.type_ != kube::runtime::events::EventType::Warning);
    let first = &events[0];
    let note = events
        .iter()
        .map(|e| e.note.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Some(KubeEvent {
        type_: first.type_,
        reason: first.reason,
        note,
    })
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::api::TopicStatus;

    fn topic_created(at: Timestamp, ready: Option<&str>) -> Topic {
        let mut topic = Topic::new("orders", serde_yaml::from_str("{}").unwrap());
        topic.metadata.creation_timestamp = Some(Time(at));
        topic.status = ready.map(|status| TopicStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: status.into(),
                reason: "StreamInSync".into(),
                message: String::new(),
                last_transition_time: Time(at),
                observed_generation: Some(1),
            }],
            ..TopicStatus::default()
        });
        topic
    }

    #[test]
    fn a_missing_topic_is_waited_for_quietly_only_just_after_the_subscription_was_applied() {
        let created: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let mut sub = Subscription::new(
            "billing",
            serde_yaml::from_str("topicRef: {name: orders}").unwrap(),
        );
        sub.metadata.creation_timestamp = Some(Time(created));
        let after = |seconds: i64| created + SignedDuration::from_secs(seconds);
        assert!(applied_moments_ago(&sub, after(1)));
        assert!(!applied_moments_ago(&sub, after(6)));
        // The status the API server defaults a new object to is no report of ours.
        sub.status = Some(SubscriptionStatus {
            observed_generation: Some(0),
            ..SubscriptionStatus::default()
        });
        assert!(applied_moments_ago(&sub, after(1)));
        sub.status = Some(SubscriptionStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "TopicNotFound".into(),
                message: String::new(),
                last_transition_time: Time(created),
                observed_generation: Some(1),
            }],
            ..SubscriptionStatus::default()
        });
        assert!(!applied_moments_ago(&sub, after(1)), "reported on before");
    }

    #[test]
    fn a_topic_without_status_is_being_set_up_only_for_a_while() {
        let created: Timestamp = "2026-11-25T10:00:00Z".parse().unwrap();
        let after = |seconds: i64| created + SignedDuration::from_secs(seconds);
        assert!(topic_being_set_up(&topic_created(created, None), after(1)));
        assert!(topic_being_set_up(&topic_created(created, None), after(29)));
        // Past the grace the Subscription reports what it sees (TopicNotReady).
        assert!(!topic_being_set_up(
            &topic_created(created, None),
            after(31)
        ));
        // Once the Topic reported anything, Ready or not, the Subscription acts on it.
        assert!(!topic_being_set_up(
            &topic_created(created, Some("True")),
            after(1)
        ));
        assert!(!topic_being_set_up(
            &topic_created(created, Some("False")),
            after(1)
        ));
    }

    #[test]
    fn several_consumer_events_become_one_with_warnings_first() {
        assert_eq!(one_event(Vec::new()), None);
        let single = KubeEvent::normal("ConsumerCreated", "created consumer a");
        assert_eq!(one_event(vec![single.clone()]), Some(single));
        let merged = one_event(vec![
            KubeEvent::normal("ConsumerCreated", "created consumer a"),
            KubeEvent::warning("DriftCorrected", "consumer b was changed"),
            KubeEvent::normal("ConsumerDeleted", "deleted consumer c"),
        ])
        .unwrap();
        assert_eq!(merged.reason, "DriftCorrected");
        assert_eq!(
            merged.note,
            "consumer b was changed; created consumer a; deleted consumer c"
        );
    }
}
