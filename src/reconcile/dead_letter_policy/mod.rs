//! DeadLetterPolicy → where dead letters are kept: a managed dead-letter stream Switchyard
//! creates and keeps as declared, or an existing Topic's stream. The stages: the Topic target
//! (if any) and the Subscriptions that would loop through it, the desired target (pure,
//! [`target`]), the stream as it is, the plan, applying it; and the figures the status shows
//! (pure, [`status`]), including whether dead letters are accumulating past the threshold.

pub mod counts;
pub mod replay;
pub mod routes;
pub mod status;
pub mod target;
pub mod wake;

use async_nats::jetstream::stream::Info as StreamInfo;
use kube::{
    Api, ResourceExt,
    api::ListParams,
    core::DeserializeGuard,
    runtime::{Controller, WatchStreamExt, reflector::Store, watcher},
};
use tracing::info;

use self::target::{DesiredTarget, PolicyIdentity};
use crate::{
    api::{
        DeadLetterPolicy, DeadLetterPolicyStatus, Subscription, Topic,
        dead_letter_policy::ReplayStatus, topic::DeletionPolicy,
    },
    broker::{BrokerError, MAX_BATCH, StoredMessage},
    condition_reasons,
    conditions::{self, ConditionType, ReasonCode, Verdict},
    deadletter::{self, ReplayOptions, Selection},
    naming::{self, metadata},
    reconcile::{
        plan::{Plan as StreamPlan, PlanInputs, plan},
        stream_apply::{self, StreamReasons},
        topic::referred_topic_change,
    },
    runtime::{
        Context, Error, api_for,
        driver::{Outcome, Reconciler, Unresolved},
        kube_events::KubeEvent,
        relations::referrers,
        watch::related_changes,
    },
};

/// Held while a policy whose managed stream has `deletionPolicy: Delete` exists.
pub const FINALIZER: &str = "switchyard.dev/dead-letter-stream-cleanup";

condition_reasons! {
    /// Why a DeadLetterPolicy is (not) Ready, and whether dead letters accumulate.
    pub enum DeadLetterPolicyReason {
        /// The managed dead-letter stream exists and matches the spec.
        StreamReady,
        /// A stream with the managed stream's name exists and was not created for this policy.
        StreamNotOwned,
        /// The spec asks for a change JetStream cannot apply in place.
        ChangeRefused,
        /// The managed stream's subjects overlap those of another stream.
        SubjectsOverlap,
        /// Dead letters go to the target Topic's stream, which exists.
        TargetReady,
        /// The target Topic does not exist.
        TargetNotFound,
        /// The target Topic exists but its stream does not (yet).
        TargetNotReady,
        /// The target Topic's events are themselves dead-lettered by this policy, so a dead
        /// letter could be dead-lettered again, without end.
        TargetCapturedByPolicy,
        /// The dead letters held reached alertThreshold.
        AboveThreshold,
        /// Fewer dead letters are held than alertThreshold.
        BelowThreshold,
    }
    // A target Topic still to come is waited for; the rest needs someone. Dead letters piling
    // up (AboveThreshold) are reported by their own condition, never as Ready=False.
    stalled: [StreamNotOwned, ChangeRefused, SubjectsOverlap, TargetCapturedByPolicy]
}

impl StreamReasons for DeadLetterPolicyReason {
    const IN_SYNC: Self = Self::StreamReady;
    const NOT_OWNED: Self = Self::StreamNotOwned;
    const CHANGE_REFUSED: Self = Self::ChangeRefused;
    const SUBJECTS_OVERLAP: Self = Self::SubjectsOverlap;
}

/// What to do about a policy's target.
#[derive(Debug)]
pub enum TargetPlan {
    /// The managed stream's plan.
    Stream(StreamPlan),
    /// A Topic target: nothing to change, only whether its stream exists.
    Topic { exists: bool },
}

/// What a policy's status shows of its stream: the stream's figures, and the dead letters
/// counted since the last status.
#[derive(Debug)]
pub struct PolicyFigures {
    pub stream: StreamInfo,
    pub counted: Option<counts::Counted>,
    /// A replay the annotation asked for, done in this pass.
    pub replay: Option<ReplayStatus>,
}

impl From<StreamInfo> for PolicyFigures {
    fn from(stream: StreamInfo) -> Self {
        Self {
            stream,
            counted: None,
            replay: None,
        }
    }
}

/// How often the policies that just received dead letters are reconciled at most.
const NEW_DEAD_LETTERS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Reconciles DeadLetterPolicies into their targets.
#[derive(Default)]
pub struct DeadLetterPolicyReconciler {
    /// Policies the relay stored dead letters for, reconciled promptly.
    pub new_dead_letters: wake::NewDeadLetters,
}

fn identity(policy: &DeadLetterPolicy) -> (String, String) {
    (policy.namespace().unwrap_or_default(), policy.name_any())
}

fn waiting(
    reason: DeadLetterPolicyReason,
    message: String,
) -> Unresolved<DeadLetterPolicyReconciler> {
    Outcome::new(Verdict::not_ready(reason, message.clone()))
        .with_event(KubeEvent::warning(reason.as_str(), message))
        .into()
}

impl Reconciler for DeadLetterPolicyReconciler {
    type Kind = DeadLetterPolicy;
    type Status = DeadLetterPolicyStatus;
    type Reason = DeadLetterPolicyReason;
    type Refs = Option<Topic>;
    type Desired = DesiredTarget;
    type Actual = Option<StreamInfo>;
    type Plan = TargetPlan;
    type Figures = PolicyFigures;

    const KIND: &'static str = "DeadLetterPolicy";
    const FINALIZER: &'static str = FINALIZER;

    fn status(policy: &DeadLetterPolicy) -> Option<&DeadLetterPolicyStatus> {
        policy.status.as_ref()
    }

    fn cleans_up(policy: &DeadLetterPolicy) -> bool {
        policy.spec.target.topic_ref.is_none()
            && policy
                .spec
                .target
                .managed
                .as_ref()
                .is_some_and(|m| m.deletion_policy == DeletionPolicy::Delete)
    }

    async fn dereference(
        &self,
        ctx: &Context,
        policy: &DeadLetterPolicy,
    ) -> Result<Result<Option<Topic>, Unresolved<Self>>, Error> {
        let Some(reference) = &policy.spec.target.topic_ref else {
            return Ok(Ok(None));
        };
        let (namespace, name) = identity(policy);
        let topics: Api<Topic> = Api::namespaced(ctx.client.clone(), &namespace);
        let Some(topic) = topics.get_opt(&reference.name).await? else {
            return Ok(Err(waiting(
                DeadLetterPolicyReason::TargetNotFound,
                format!(
                    "Topic {} does not exist in namespace {namespace}; dead letters are held back (their advisories wait) until it does",
                    reference.name
                ),
            )));
        };
        if let Some(looping) = capturing_subscriber(ctx, &namespace, &name, &topic).await? {
            return Ok(Err(waiting(
                DeadLetterPolicyReason::TargetCapturedByPolicy,
                captured_message(&reference.name, &looping),
            )));
        }
        Ok(Ok(Some(topic)))
    }

    fn desired(policy: &DeadLetterPolicy, topic: &Option<Topic>) -> Result<DesiredTarget, String> {
        let (namespace, name) = identity(policy);
        let id = PolicyIdentity {
            namespace: &namespace,
            name: &name,
            generation: policy.metadata.generation.unwrap_or_default(),
        };
        target::desired(id, &policy.spec, topic.as_ref()).map_err(|invalid| invalid.to_string())
    }

    async fn observe(
        &self,
        ctx: &Context,
        desired: &DesiredTarget,
    ) -> Result<Option<StreamInfo>, BrokerError> {
        ctx.broker.stream_info(&desired.stream).await
    }

    fn plan(
        desired: &DesiredTarget,
        actual: &Option<StreamInfo>,
        inputs: PlanInputs,
    ) -> TargetPlan {
        match &desired.managed {
            Some(stream) => {
                TargetPlan::Stream(plan(stream, actual.as_ref().map(|i| &i.config), inputs))
            }
            None => TargetPlan::Topic {
                exists: actual.is_some(),
            },
        }
    }

    async fn apply(
        &self,
        ctx: &Context,
        policy: &DeadLetterPolicy,
        desired: &DesiredTarget,
        actual: Option<StreamInfo>,
        plan: TargetPlan,
    ) -> Outcome<Self> {
        let outcome = match (plan, &desired.managed) {
            (TargetPlan::Stream(plan), Some(stream)) => {
                stream_apply::apply(ctx, stream, actual, plan).await
            }
            (TargetPlan::Topic { exists: true }, _) => Outcome::new(Verdict::ready(
                DeadLetterPolicyReason::TargetReady,
                format!(
                    "dead letters go to Topic {} (stream {}) as {}.<event type>",
                    desired.topic.as_deref().unwrap_or_default(),
                    desired.stream,
                    desired.subject_prefix
                ),
            ))
            .with_figures(actual.map(Into::into)),
            (TargetPlan::Topic { exists: false }, _) | (TargetPlan::Stream(_), None) => {
                let message = format!(
                    "stream {} of the target Topic {} does not exist yet; see the Topic's status",
                    desired.stream,
                    desired.topic.as_deref().unwrap_or_default()
                );
                Outcome::new(Verdict::not_ready(
                    DeadLetterPolicyReason::TargetNotReady,
                    message.clone(),
                ))
                .with_event(KubeEvent::warning("TargetNotReady", message))
            }
        };
        let outcome = count_new_dead_letters(ctx, policy, &self.new_dead_letters, outcome).await;
        let outcome = replay_on_request(ctx, policy, outcome).await;
        with_accumulation(policy, outcome)
    }

    async fn broker_failure(
        &self,
        ctx: &Context,
        desired: &DesiredTarget,
        error: BrokerError,
    ) -> Outcome<Self> {
        match &desired.managed {
            Some(stream) => stream_apply::failure(ctx, stream, error).await,
            None => crate::runtime::driver::common_broker_failure(ctx, &error),
        }
    }

    fn project(
        status: &mut DeadLetterPolicyStatus,
        policy: &DeadLetterPolicy,
        figures: Option<&PolicyFigures>,
    ) {
        status::project(status, &target_stream(policy), figures.map(|f| &f.stream));
        if let Some(counted) = figures.and_then(|f| f.counted.as_ref()) {
            counts::add(status, counted);
        }
        if let Some(replay) = figures.and_then(|f| f.replay.clone()) {
            status.last_replay = Some(replay);
        }
    }

    async fn cleanup(
        &self,
        ctx: &Context,
        policy: &DeadLetterPolicy,
    ) -> Result<KubeEvent, BrokerError> {
        let (namespace, name) = identity(policy);
        let stream = naming::dead_letter_stream_name(&namespace, &name);
        let ours = naming::owner_id("DeadLetterPolicy", &namespace, &name);
        Ok(match ctx.broker.stream_info(&stream).await? {
            None => KubeEvent::normal("StreamDeleted", format!("stream {stream} was already gone")),
            Some(info) if info.config.metadata.get(metadata::OWNER) != Some(&ours) => {
                KubeEvent::normal(
                    "StreamDeleted",
                    format!(
                        "stream {stream} is not owned by this DeadLetterPolicy and was left untouched"
                    ),
                )
            }
            Some(info) => {
                ctx.broker.delete_stream(&stream).await?;
                info!(stream, "dead-letter stream deleted");
                KubeEvent::normal(
                    "StreamDeleted",
                    format!(
                        "deleted dead-letter stream {stream} with its {} dead letters",
                        info.state.messages
                    ),
                )
            }
        })
    }

    fn retained(policy: &DeadLetterPolicy) -> KubeEvent {
        KubeEvent::normal(
            "StreamRetained",
            format!(
                "kept stream {} and its dead letters as the DeadLetterPolicy is deleted",
                target_stream(policy)
            ),
        )
    }

    /// A policy targeting a Topic goes on when the Topic appears or turns Ready; a policy the
    /// relay stored dead letters for is looked at within seconds.
    fn watch_related(
        &self,
        controller: Controller<DeserializeGuard<DeadLetterPolicy>>,
        store: Store<DeserializeGuard<DeadLetterPolicy>>,
        ctx: &Context,
    ) -> Controller<DeserializeGuard<DeadLetterPolicy>> {
        let topics = watcher(
            api_for::<Topic>(&ctx.client, ctx.namespace.as_deref()),
            watcher::Config::default().any_semantic(),
        )
        .default_backoff();
        controller
            .reconcile_on(self.new_dead_letters.wakes(NEW_DEAD_LETTERS_INTERVAL))
            .watches_stream(
                related_changes(topics, referred_topic_change),
                referrers(store, |guard: &DeserializeGuard<DeadLetterPolicy>| {
                    guard
                        .0
                        .as_ref()
                        .ok()
                        .and_then(|policy| policy.spec.target.topic_ref.as_ref())
                        .map(|topic| vec![topic.name.clone()])
                        .unwrap_or_default()
                }),
            )
    }

    fn left_behind(policy: &DeadLetterPolicy, error: &BrokerError) -> KubeEvent {
        KubeEvent::warning(
            "StreamLeftBehind",
            format!(
                "dead-letter stream {} could not be deleted and is left behind: {error}",
                target_stream(policy)
            ),
        )
    }
}

/// Why a policy cannot dead-letter into a Topic that `looping` reads through this very policy.
pub fn captured_message(topic: &str, looping: &str) -> String {
    format!(
        "the target Topic {topic} is read by {looping}, whose failed events this policy dead-letters into that same Topic; target another Topic, or give {looping} another policy"
    )
}

/// The stream a policy's dead letters are kept in, from its spec alone.
fn target_stream(policy: &DeadLetterPolicy) -> String {
    let (namespace, name) = identity(policy);
    match &policy.spec.target.topic_ref {
        Some(topic) => naming::stream_name(&namespace, &topic.name),
        None => naming::dead_letter_stream_name(&namespace, &name),
    }
}

/// A Subscription (or the Topic itself) that reads the target Topic and dead-letters through
/// this very policy: its failures would land in the Topic it reads.
async fn capturing_subscriber(
    ctx: &Context,
    namespace: &str,
    policy: &str,
    topic: &Topic,
) -> Result<Option<String>, Error> {
    let subscriptions: Api<Subscription> = Api::namespaced(ctx.client.clone(), namespace);
    let readers = subscriptions.list(&ListParams::default()).await?;
    Ok(capturing(policy, topic, &readers.items))
}

/// Of `subscriptions` (the target Topic's namespace), one that reads `topic` and dead-letters
/// through `policy`, named for a message. Pure.
pub fn capturing(policy: &str, topic: &Topic, subscriptions: &[Subscription]) -> Option<String> {
    let topic_name = topic.name_any();
    let topic_policy = topic
        .spec
        .dead_letter_policy_ref
        .as_ref()
        .map(|r| r.name.as_str());
    subscriptions
        .iter()
        .filter(|sub| sub.spec.topic_ref.name == topic_name)
        .find(|sub| {
            sub.spec
                .dead_letter_policy_ref
                .as_ref()
                .map(|r| r.name.as_str())
                .or(topic_policy)
                == Some(policy)
        })
        .map(|sub| format!("Subscription {}", sub.name_any()))
}

/// Adds the DeadLettersAccumulating condition when the broker reported the stream's figures,
/// with an Event when it turns.
fn with_accumulation(
    policy: &DeadLetterPolicy,
    outcome: Outcome<DeadLetterPolicyReconciler>,
) -> Outcome<DeadLetterPolicyReconciler> {
    let Some(info) = outcome.figures.as_ref() else {
        return outcome;
    };
    let verdict = status::accumulation(info.stream.state.messages, policy.spec.alert_threshold);
    let was = policy
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, ConditionType::DeadLettersAccumulating))
        .map(|c| c.status == "True");
    let event = match (was, verdict.status) {
        (Some(false) | None, true) => Some(KubeEvent::warning(
            "DeadLettersAccumulating",
            verdict.message.clone(),
        )),
        (Some(true), false) => Some(KubeEvent::normal(
            "DeadLettersBelowThreshold",
            verdict.message.clone(),
        )),
        _ => None,
    };
    let outcome = outcome.with_condition(verdict);
    match event {
        // A stream action's Event (created, drift corrected) is kept; the condition still says it.
        Some(event) if outcome.event.is_none() => outcome.with_event(event),
        _ => outcome,
    }
}

/// Counts the dead letters stored since the status last counted, when the stream's figures are
/// known. A failed read leaves the count for the next reconcile; it never fails this one.
async fn count_new_dead_letters(
    ctx: &Context,
    policy: &DeadLetterPolicy,
    new_dead_letters: &wake::NewDeadLetters,
    mut outcome: Outcome<DeadLetterPolicyReconciler>,
) -> Outcome<DeadLetterPolicyReconciler> {
    let Some(figures) = outcome.figures.as_mut() else {
        return outcome;
    };
    let state = &figures.stream.state;
    let Some((start, last)) = counts::uncounted(
        policy.status.as_ref(),
        state.first_sequence,
        state.last_sequence,
    ) else {
        return outcome;
    };
    let stream = figures.stream.config.name.clone();
    match read_headers(ctx, &stream, start, last).await {
        Ok(read) => {
            let (namespace, name) = identity(policy);
            // A pass that stopped at the bound reaches its last message; the rest is counted
            // by the next pass, moments later.
            let through = if read.len() >= counts::MAX_COUNTED_PER_PASS {
                new_dead_letters.stored(&format!("{namespace}/{name}"));
                read.last().map_or(last, |m| m.sequence)
            } else {
                last
            };
            figures.counted = Some(counts::count(&namespace, &read, through));
        }
        Err(error) => {
            tracing::warn!(policy = %policy.name_any(), stream, %error, "could not count new dead letters; counting them at the next reconcile");
        }
    }
    outcome
}

/// The headers of the messages `start..=last` of `stream`, at most
/// [`counts::MAX_COUNTED_PER_PASS`] of them.
async fn read_headers(
    ctx: &Context,
    stream: &str,
    start: u64,
    last: u64,
) -> Result<Vec<StoredMessage>, BrokerError> {
    let mut reader = ctx.broker.read_stream(stream, start..=last, true).await?;
    let mut read = Vec::new();
    let result = loop {
        match reader.next_batch(MAX_BATCH).await {
            Ok(batch) if batch.is_empty() => break Ok(()),
            Ok(batch) => {
                read.extend(batch);
                if read.len() >= counts::MAX_COUNTED_PER_PASS {
                    break Ok(());
                }
            }
            Err(e) => break Err(e),
        }
    };
    // A reader left behind expires by itself.
    let _ = reader.close().await;
    result.map(|()| read)
}

/// Replays the dead letters held when the replay annotation has a value not answered yet and
/// the target is usable. A replay cut short (NATS went away) records nothing, so the next
/// reconcile replays again under the same trigger, which republishes nothing twice.
async fn replay_on_request(
    ctx: &Context,
    policy: &DeadLetterPolicy,
    mut outcome: Outcome<DeadLetterPolicyReconciler>,
) -> Outcome<DeadLetterPolicyReconciler> {
    let Some(trigger) = replay::requested(policy) else {
        return outcome;
    };
    if !outcome.ready.status {
        return outcome;
    }
    let Some(figures) = outcome.figures.as_mut() else {
        return outcome;
    };
    let stream = figures.stream.config.name.clone();
    let options = ReplayOptions {
        rate: None,
        trigger: trigger.clone(),
    };
    match deadletter::replay(
        &ctx.broker,
        &stream,
        &Selection::default(),
        &options,
        |_| {},
    )
    .await
    {
        Ok(report) => {
            info!(policy = %policy.name_any(), stream, trigger, replayed = report.replayed, duplicates = report.duplicates, failed = report.failed, "replayed dead letters");
            figures.replay = Some(replay::status(&report, &trigger, ctx.clock.now()));
            // The replay is what this pass did; a stream action's Event would have come first.
            if outcome.event.is_none() {
                outcome = outcome.with_event(replay::event(&report, &trigger));
            }
            outcome
        }
        Err(error) => {
            tracing::warn!(policy = %policy.name_any(), stream, trigger, %error, "replay interrupted; retrying at the next reconcile");
            outcome.with_event(KubeEvent::warning(
                "ReplayInterrupted",
                format!("the replay asked for by {} {trigger:?} was interrupted ({error}); it is resumed at the next reconcile without republishing what was done", crate::api::annotations::REPLAY),
            ))
        }
    }
}
