//! Subscription → durable JetStream pull consumer on its Topic's stream. The stages: the Topic
//! and DeadLetterPolicy it names (dereference), the consumer configuration (pure,
//! [`consumer_config`]), the consumer found, the plan (pure, [`plan`]), applying it, and the
//! figures the status shows (pure, [`status`]); then the worker Deployment ([`workers`]).
//! Not yet: Broadcast mode (refused with a clear reason) and lag-based autoscaling (the
//! Deployment runs `minReplicas`).

pub mod consumer_config;
pub mod plan;
pub mod status;
pub mod workers;

use async_nats::jetstream::consumer::{
    Config as ConsumerConfig, Info as ConsumerInfo, IntoConsumerConfig,
};
use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Api, ResourceExt,
    core::DeserializeGuard,
    runtime::{Controller, reflector::Store, watcher},
};
use tracing::info;

use self::consumer_config::{
    DesiredConsumer, RetryDefaults, SubscriptionIdentity, TopicView, desired_consumer, metadata,
};
use crate::{
    api::{
        DeadLetterPolicy, DeadLetterPolicySpec, Subscription, SubscriptionStatus, Topic,
        subscription::SubscriptionMode,
    },
    broker::{BrokerError, codes},
    condition_reasons,
    conditions::{ConditionType, ReasonCode, Verdict},
    naming,
    reconcile::plan::{Plan as ConsumerPlan, PlanInputs, UpdateCause, plan},
    runtime::{
        Context, Error, api_for,
        driver::{Outcome, Reconciler, common_broker_failure},
        kube_events::KubeEvent,
        relations::referrers,
    },
};

/// Held on every Subscription: its consumer holds no data and goes with it.
pub const FINALIZER: &str = "switchyard.dev/consumer-cleanup";

condition_reasons! {
    /// Why a Subscription is (not) Ready.
    pub enum SubscriptionReason {
        /// The durable consumer exists and matches the spec.
        ConsumerInSync,
        /// The Topic named by spec.topicRef does not exist (yet).
        TopicNotFound,
        /// The Topic exists but its stream does not (yet): the Topic is not Ready.
        TopicNotReady,
        /// The DeadLetterPolicy named by the Subscription or its Topic does not exist (yet).
        DeadLetterPolicyNotFound,
        /// A consumer with this name exists and was not created for this Subscription.
        ConsumerNotOwned,
        /// The consumer differs in a way JetStream cannot change in place.
        ChangeRefused,
        /// The worker Deployment has all its desired pods available.
        WorkersAvailable,
        /// The worker Deployment is rolling out or short of available pods.
        WorkersProgressing,
    }
}

/// Live figures of a Subscription: its consumer's and its workers'.
#[derive(Debug, Default)]
pub struct SubscriptionFigures {
    pub consumer: Option<ConsumerInfo>,
    pub workers: Option<status::WorkerFigures>,
}

/// What a Subscription refers to.
pub struct SubscriptionRefs {
    topic: TopicView,
    dead_letter_policy: Option<DeadLetterPolicySpec>,
}

/// Reconciles Subscriptions into durable consumers.
pub struct SubscriptionReconciler;

fn identity(sub: &Subscription) -> (String, String) {
    (sub.namespace().unwrap_or_default(), sub.name_any())
}

/// Ready and ConsumerReady say the same while workers are not managed.
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

impl Reconciler for SubscriptionReconciler {
    type Kind = Subscription;
    type Status = SubscriptionStatus;
    type Reason = SubscriptionReason;
    type Refs = SubscriptionRefs;
    type Desired = DesiredConsumer;
    type Actual = Option<ConsumerInfo>;
    type Plan = ConsumerPlan;
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
    ) -> Result<Result<SubscriptionRefs, Outcome<Self>>, Error> {
        let (namespace, _) = identity(sub);
        let topic_name = &sub.spec.topic_ref.name;
        let topics: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace);
        let Some(topic) = topics.get_opt(topic_name).await? else {
            return Ok(Err(waiting(
                SubscriptionReason::TopicNotFound,
                format!(
                    "Topic {topic_name} does not exist in namespace {namespace}; the Subscription becomes Ready by itself once it does"
                ),
            )));
        };
        let policy_ref = sub
            .spec
            .dead_letter_policy_ref
            .as_ref()
            .or(topic.spec.dead_letter_policy_ref.as_ref());
        let dead_letter_policy = match policy_ref {
            None => None,
            Some(policy) => {
                let policies: Api<DeadLetterPolicy> =
                    Api::namespaced(ctx.client.clone(), &namespace);
                match policies.get_opt(&policy.name).await? {
                    Some(found) => Some(found.spec),
                    None => {
                        return Ok(Err(waiting(
                            SubscriptionReason::DeadLetterPolicyNotFound,
                            format!(
                                "DeadLetterPolicy {} does not exist in namespace {namespace}; the Subscription inherits its retry settings and waits for it",
                                policy.name
                            ),
                        )));
                    }
                }
            }
        };
        Ok(Ok(SubscriptionRefs {
            topic: TopicView::of(&topic, &namespace),
            dead_letter_policy,
        }))
    }

    fn desired(sub: &Subscription, refs: &SubscriptionRefs) -> Result<DesiredConsumer, String> {
        // Broadcast needs one consumer per worker replica, made by the dispatcher; until that
        // exists, a single durable would silently give WorkerGroup semantics instead.
        if sub.spec.mode == SubscriptionMode::Broadcast {
            return Err("spec.mode: Broadcast is not supported by this Switchyard version yet; use WorkerGroup".into());
        }
        let (namespace, name) = identity(sub);
        let id = SubscriptionIdentity {
            namespace: &namespace,
            name: &name,
            generation: sub.metadata.generation.unwrap_or_default(),
        };
        let inherited: Vec<RetryDefaults<'_>> = refs
            .dead_letter_policy
            .iter()
            .map(|policy| RetryDefaults {
                max_deliveries: policy.max_deliveries,
                backoff: policy.backoff.as_ref(),
                ack_wait: None,
            })
            .collect();
        desired_consumer(id, &sub.spec, &refs.topic, &inherited).map_err(|e| e.to_string())
    }

    async fn observe(
        &self,
        ctx: &Context,
        desired: &DesiredConsumer,
    ) -> Result<Option<ConsumerInfo>, BrokerError> {
        let name = desired.config.durable_name.as_deref().unwrap_or_default();
        ctx.broker.consumer_info(&desired.stream, name).await
    }

    fn plan(
        desired: &DesiredConsumer,
        actual: &Option<ConsumerInfo>,
        inputs: PlanInputs,
    ) -> ConsumerPlan {
        let desired: ConsumerConfig = (&desired.config).into_consumer_config();
        plan(&desired, actual.as_ref().map(|i| &i.config), inputs)
    }

    async fn apply(
        &self,
        ctx: &Context,
        sub: &Subscription,
        desired: &DesiredConsumer,
        actual: Option<ConsumerInfo>,
        plan: ConsumerPlan,
    ) -> Outcome<Self> {
        let stream = &desired.stream;
        let consumer = desired.config.durable_name.clone().unwrap_or_default();
        let (namespace, name) = identity(sub);
        let in_sync = || {
            verdicts(Verdict::ready(
                SubscriptionReason::ConsumerInSync,
                format!("consumer {consumer} on stream {stream} matches the spec"),
            ))
        };
        match plan {
            ConsumerPlan::InSync => in_sync().with_figures(Some(figures(actual))),
            ConsumerPlan::Create | ConsumerPlan::Recreate => {
                match ctx
                    .broker
                    .create_consumer(stream, desired.config.clone())
                    .await
                {
                    Ok(info) => {
                        info!(subscription = %name, %namespace, consumer, ?plan, "consumer created");
                        // Its own reason: Kubernetes folds repeated Events of one reason into a
                        // series that keeps the first note.
                        let event = if plan == ConsumerPlan::Recreate {
                            KubeEvent::warning(
                                "ConsumerRecreated",
                                format!(
                                    "consumer {consumer} was deleted outside Switchyard; recreated it on stream {stream}"
                                ),
                            )
                        } else {
                            KubeEvent::normal(
                                "ConsumerCreated",
                                format!("created consumer {consumer} on stream {stream}"),
                            )
                        };
                        in_sync()
                            .with_figures(Some(figures(Some(info))))
                            .with_event(event)
                    }
                    Err(e) => self.broker_failure(ctx, desired, e).await,
                }
            }
            ConsumerPlan::Update { cause, changed } => {
                match ctx
                    .broker
                    .update_consumer(stream, desired.config.clone())
                    .await
                {
                    Ok(info) => {
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
                        in_sync()
                            .with_figures(Some(figures(Some(info))))
                            .with_event(event)
                    }
                    Err(e) => self.broker_failure(ctx, desired, e).await,
                }
            }
            ConsumerPlan::NotOwned { owner } => {
                let found = owner
                    .map(|o| format!("its metadata names {o} as owner"))
                    .unwrap_or_else(|| "it records no Switchyard owner".into());
                waiting(
                    SubscriptionReason::ConsumerNotOwned,
                    format!(
                        "consumer {consumer} on stream {stream} already exists and was not created for this Subscription ({found}); it is left untouched"
                    ),
                )
            }
            ConsumerPlan::Refused { field, message } => waiting(
                SubscriptionReason::ChangeRefused,
                format!("{field}: {message}"),
            )
            .with_figures(Some(figures(actual))),
        }
    }

    async fn broker_failure(
        &self,
        ctx: &Context,
        desired: &DesiredConsumer,
        error: BrokerError,
    ) -> Outcome<Self> {
        if error.code() == Some(codes::STREAM_NOT_FOUND) {
            return waiting(
                SubscriptionReason::TopicNotReady,
                format!(
                    "stream {} of the Topic does not exist yet; see the Topic's status",
                    desired.stream
                ),
            );
        }
        let outcome: Outcome<Self> = common_broker_failure(ctx, &error);
        let consumer = Verdict {
            type_: ConditionType::ConsumerReady,
            ..outcome.ready.clone()
        };
        outcome.with_condition(consumer)
    }

    async fn apply_children(
        &self,
        ctx: &Context,
        sub: &Subscription,
        outcome: Outcome<Self>,
    ) -> Result<Outcome<Self>, Error> {
        // Workers follow a consumer in sync; otherwise they are left as they are.
        if !outcome.ready.status {
            return Ok(outcome);
        }
        sync_workers(ctx, sub, outcome).await
    }

    fn project(
        status: &mut SubscriptionStatus,
        sub: &Subscription,
        figures: Option<&SubscriptionFigures>,
    ) {
        let (namespace, name) = identity(sub);
        status::project(
            status,
            &naming::subscription_consumer_name(&namespace, &name),
            figures.and_then(|f| f.consumer.as_ref()),
        );
        if sub.spec.worker.is_none() {
            status::project_workers(status, None);
        } else if let Some(workers) = figures.and_then(|f| f.workers.as_ref()) {
            status::project_workers(status, Some(workers));
        }
    }

    async fn cleanup(&self, ctx: &Context, sub: &Subscription) -> Result<KubeEvent, BrokerError> {
        let (namespace, name) = identity(sub);
        let stream = naming::stream_name(&namespace, &sub.spec.topic_ref.name);
        let consumer = naming::subscription_consumer_name(&namespace, &name);
        let ours = naming::owner_id("Subscription", &namespace, &name);
        let note = match ctx.broker.consumer_info(&stream, &consumer).await {
            Ok(None) => format!("consumer {consumer} was already gone"),
            Err(e) if e.code() == Some(codes::STREAM_NOT_FOUND) => {
                format!("stream {stream} is gone, and with it consumer {consumer}")
            }
            Err(e) => return Err(e),
            Ok(Some(info)) if info.config.metadata.get(metadata::OWNER) != Some(&ours) => {
                format!(
                    "consumer {consumer} is not owned by this Subscription and was left untouched"
                )
            }
            Ok(Some(_)) => {
                ctx.broker.delete_consumer(&stream, &consumer).await?;
                info!(consumer, stream, "consumer deleted");
                format!("deleted consumer {consumer}")
            }
        };
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

    /// A Topic appearing, changing or going away wakes the Subscriptions naming it.
    fn watch_related(
        &self,
        controller: Controller<DeserializeGuard<Subscription>>,
        store: Store<DeserializeGuard<Subscription>>,
        ctx: &Context,
    ) -> Controller<DeserializeGuard<Subscription>> {
        let namespace = ctx.config.namespace.as_deref();
        let topics: Api<Topic> = api_for(&ctx.client, namespace);
        let deployments: Api<Deployment> = api_for(&ctx.client, namespace);
        controller
            .owns(deployments, watcher::Config::default().any_semantic())
            .watches(
                topics,
                watcher::Config::default().any_semantic(),
                referrers(store, |guard: &DeserializeGuard<Subscription>| {
                    guard
                        .0
                        .as_ref()
                        .map(|sub| vec![sub.spec.topic_ref.name.clone()])
                        .unwrap_or_default()
                }),
            )
    }
}

fn figures(consumer: Option<ConsumerInfo>) -> SubscriptionFigures {
    SubscriptionFigures {
        consumer,
        workers: None,
    }
}

/// Applies (or removes) the worker Deployment and reports its availability: WorkersAvailable,
/// and Ready only once the workers are.
async fn sync_workers(
    ctx: &Context,
    sub: &Subscription,
    mut outcome: Outcome<SubscriptionReconciler>,
) -> Result<Outcome<SubscriptionReconciler>, Error> {
    let (namespace, name) = identity(sub);
    let consumer = naming::subscription_consumer_name(&namespace, &name);
    let stream = naming::stream_name(&namespace, &sub.spec.topic_ref.name);
    let dispatcher = workers::DispatcherSettings {
        image: ctx.config.dispatcher_image.clone(),
        nats_url: ctx.config.broker.url.clone(),
        env: Vec::new(),
        credentials_secret: ctx.config.worker_nats_secret.clone(),
    };
    let replicas = sub.spec.worker.as_ref().map_or(0, |worker| {
        worker
            .replicas
            .or(worker.autoscaling.as_ref().map(|a| a.min_replicas))
            .unwrap_or(1)
    });
    let Some(deployment) =
        workers::desired_deployment(sub, &stream, &consumer, replicas, &dispatcher)
    else {
        // No worker (any more): remove a Deployment left from an earlier spec.
        if sub
            .status
            .as_ref()
            .and_then(|s| s.desired_workers)
            .is_some()
        {
            let mut gone = Deployment::default();
            gone.metadata.name = Some(workers::deployment_name(sub));
            gone.metadata.namespace = Some(namespace);
            if ctx
                .writer
                .delete_child(SubscriptionReconciler::KIND, &gone)
                .await?
            {
                outcome.event = Some(KubeEvent::normal(
                    "WorkersRemoved",
                    format!(
                        "deleted Deployment {} as spec.worker was removed",
                        workers::deployment_name(sub)
                    ),
                ));
            }
        }
        return Ok(outcome);
    };
    let unchanged = status::deployment_matches(sub, &deployment);
    let applied = ctx
        .writer
        .apply_child(SubscriptionReconciler::KIND, &deployment)
        .await?;
    let state = status::worker_figures(&applied, replicas);
    let verdict = if state.available >= state.desired && state.rolled_out {
        Verdict::new(
            ConditionType::WorkersAvailable,
            true,
            SubscriptionReason::WorkersAvailable,
            format!(
                "{} of {} worker pods available",
                state.available, state.desired
            ),
        )
    } else {
        Verdict::new(
            ConditionType::WorkersAvailable,
            false,
            SubscriptionReason::WorkersProgressing,
            format!(
                "{} of {} worker pods available; Deployment {} is rolling out",
                state.available,
                state.desired,
                workers::deployment_name(sub)
            ),
        )
    };
    if !verdict.status {
        outcome.ready = Verdict::not_ready(
            SubscriptionReason::WorkersProgressing,
            verdict.message.clone(),
        );
    }
    if !unchanged && outcome.event.is_none() {
        outcome.event = Some(KubeEvent::normal(
            "WorkersApplied",
            format!(
                "applied Deployment {} ({replicas} replicas)",
                workers::deployment_name(sub)
            ),
        ));
    }
    outcome.conditions.push(verdict);
    if let Some(figures) = outcome.figures.as_mut() {
        figures.workers = Some(state);
    } else {
        outcome.figures = Some(SubscriptionFigures {
            consumer: None,
            workers: Some(state),
        });
    }
    Ok(outcome)
}
