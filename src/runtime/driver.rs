//! The generic controller driver. A kind contributes a [`Reconciler`]: its pure stages (desired
//! state, plan, status figures) and its I/O steps (observe, apply, clean up). The driver owns
//! everything else and does it the same way for every kind: the invalid-object guard, pause and
//! adopt annotations, the finalizer and deletion policy (never wedging when the broker is gone),
//! conditions and `observedGeneration`, Kubernetes Events, the status diff and its single
//! writer, metrics and retry timing, and reporting deletions no finalizer saw.

use std::{fmt::Debug, future::Future, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::Condition,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Resource, ResourceExt,
    core::{DeserializeGuard, NamespaceResourceScope},
    runtime::{Controller, controller::Action, reflector::Store},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::{debug, warn};

use super::{Context, Error, kube_events::KubeEvent, retry::Retry};
use crate::{
    api::{annotation_is_true, annotations},
    broker::BrokerError,
    conditions::{self, CommonReason, ConditionType, ReasonCode, Verdict},
    reconcile::plan::PlanInputs,
};

/// What every kind's status has in common.
pub trait ObjectStatus: Clone + PartialEq + Default + Serialize + Send + Sync {
    fn conditions(&self) -> &[Condition];
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
    fn observed_generation(&self) -> Option<i64>;
    fn set_observed_generation(&mut self, generation: Option<i64>);
}

/// What one pass of a kind's stages produced.
pub struct Outcome<R: Reconciler> {
    /// The Ready condition to report.
    pub ready: Verdict<R::Reason>,
    /// Conditions of other types the kind reports next to Ready (e.g. ConsumerReady).
    pub conditions: Vec<Verdict<R::Reason>>,
    /// Live figures the broker reported, for the status; `None` keeps the last ones.
    pub figures: Option<R::Figures>,
    /// A Kubernetes Event worth recording (see [`super::kube_events::worth_recording`]).
    pub event: Option<KubeEvent>,
}

impl<R: Reconciler> Outcome<R> {
    pub fn new(ready: Verdict<R::Reason>) -> Self {
        Self {
            ready,
            conditions: Vec::new(),
            figures: None,
            event: None,
        }
    }

    pub fn with_condition(mut self, verdict: Verdict<R::Reason>) -> Self {
        self.conditions.push(verdict);
        self
    }

    pub fn with_figures(mut self, figures: Option<R::Figures>) -> Self {
        self.figures = figures;
        self
    }

    pub fn with_event(mut self, event: KubeEvent) -> Self {
        self.event = Some(event);
        self
    }

    /// Not ready for a reason every kind shares, with a Warning Event of the same name.
    pub fn failed(reason: CommonReason, message: String) -> Self {
        let ready: Verdict<R::Reason> = Verdict::common(reason, message.clone());
        let event = KubeEvent::warning(ready.reason.as_str(), message);
        Self::new(ready).with_event(event)
    }
}

/// Why a reconcile cannot go past dereferencing yet.
pub enum Unresolved<R: Reconciler> {
    /// A referred object is missing or unusable; the outcome says so in the status.
    Reported(Outcome<R>),
    /// A referred object is still being set up by its own reconcile, moments away from usable.
    /// Reporting that would cost a status write (and an Event) that is stale a moment later, so
    /// nothing is written; the object is looked at again after the delay, or sooner when the
    /// watch on the referred kind wakes it.
    Settling(Duration),
}

impl<R: Reconciler> From<Outcome<R>> for Unresolved<R> {
    fn from(outcome: Outcome<R>) -> Self {
        Self::Reported(outcome)
    }
}

/// One kind's part of reconciling. Pure stages are plain functions; I/O stages return futures.
/// The pipeline: dereference (other objects the spec names) → desired → observe → plan → apply,
/// then project the status.
pub trait Reconciler: Send + Sync + Sized + 'static {
    type Kind: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Debug
        + DeserializeOwned
        + Serialize
        + Send
        + Sync
        + 'static;
    type Status: ObjectStatus;
    type Reason: ReasonCode;
    /// What the spec refers to (another kind's objects), read before the desired state is built.
    type Refs: Send + Sync;
    /// The broker state the spec asks for.
    type Desired: Send + Sync;
    /// The broker state found.
    type Actual: Send;
    /// What to do about the difference.
    type Plan: Send;
    /// Live broker figures shown in the status.
    type Figures: Send;

    /// The kind, for logs and metric labels.
    const KIND: &'static str;
    /// Held while the object's broker state must be cleaned up on deletion.
    const FINALIZER: &'static str;

    fn status(obj: &Self::Kind) -> Option<&Self::Status>;

    /// Whether deleting the object must clean up the broker (the deletion policy). Only then is
    /// the finalizer held, so objects that keep their broker state never wait for NATS.
    fn cleans_up(obj: &Self::Kind) -> bool;

    /// Reads the objects the spec refers to. `Ok(Err(_))`: the object cannot go on yet (it
    /// waits; a watch on the referred kind wakes it).
    fn dereference(
        &self,
        ctx: &Context,
        obj: &Self::Kind,
    ) -> impl Future<Output = Result<Result<Self::Refs, Unresolved<Self>>, super::Error>> + Send;

    /// Pure: the desired broker state, or a message naming the invalid field.
    fn desired(obj: &Self::Kind, refs: &Self::Refs) -> Result<Self::Desired, String>;

    /// Reads the broker state.
    fn observe(
        &self,
        ctx: &Context,
        desired: &Self::Desired,
    ) -> impl Future<Output = Result<Self::Actual, BrokerError>> + Send;

    /// Pure: what to do, given what is wanted and what is there.
    fn plan(desired: &Self::Desired, actual: &Self::Actual, inputs: PlanInputs) -> Self::Plan;

    /// Carries out the plan.
    fn apply(
        &self,
        ctx: &Context,
        obj: &Self::Kind,
        desired: &Self::Desired,
        actual: Self::Actual,
        plan: Self::Plan,
    ) -> impl Future<Output = Outcome<Self>> + Send;

    /// Turns a failed broker request into an outcome. Kinds override it to explain the server
    /// codes they know better.
    fn broker_failure(
        &self,
        ctx: &Context,
        desired: &Self::Desired,
        error: BrokerError,
    ) -> impl Future<Output = Outcome<Self>> + Send {
        let _ = desired;
        let outcome = common_broker_failure(ctx, &error);
        async move { outcome }
    }

    /// Applies the Kubernetes objects the kind owns (e.g. a worker Deployment) once the broker
    /// is in sync, and folds their state into the outcome. Most kinds own none.
    fn apply_children(
        &self,
        ctx: &Context,
        obj: &Self::Kind,
        outcome: Outcome<Self>,
    ) -> impl Future<Output = Result<Outcome<Self>, super::Error>> + Send {
        let _ = (ctx, obj);
        async move { Ok(outcome) }
    }

    /// Pure: writes what the status shows besides conditions (names, live figures).
    fn project(status: &mut Self::Status, obj: &Self::Kind, figures: Option<&Self::Figures>);

    /// Removes the object's broker state on deletion; the Event says what happened.
    fn cleanup(
        &self,
        ctx: &Context,
        obj: &Self::Kind,
    ) -> impl Future<Output = Result<KubeEvent, BrokerError>> + Send;

    /// The Event for a deletion that keeps the broker state (policy, or paused).
    fn retained(obj: &Self::Kind) -> KubeEvent;

    /// The Event for a deletion that gave up on cleaning the broker.
    fn left_behind(obj: &Self::Kind, error: &BrokerError) -> KubeEvent;

    /// The Event for an object deleted without the finalizer: its deletion policy keeps the
    /// broker state, so no reconcile sees it go, and this is the only chance to say what the
    /// deletion means for others (e.g. objects still referring to it). Called by the leader,
    /// once per deletion the watch reports; objects whose policy cleans up are reported by
    /// [`Self::cleanup`] instead, never here. Most kinds have nothing to say.
    fn deleted(
        &self,
        ctx: &Context,
        obj: &Self::Kind,
    ) -> impl Future<Output = Result<Option<KubeEvent>, super::Error>> + Send {
        let _ = (ctx, obj);
        async { Ok(None) }
    }

    /// Adds the watches through which related kinds wake this kind's objects (see
    /// [`super::relations`]). `store` is this kind's cache.
    fn watch_related(
        &self,
        controller: Controller<DeserializeGuard<Self::Kind>>,
        store: Store<DeserializeGuard<Self::Kind>>,
        ctx: &Context,
    ) -> Controller<DeserializeGuard<Self::Kind>> {
        let _ = (store, ctx);
        controller
    }
}

/// The outcome of a broker failure no kind explains better.
pub fn common_broker_failure<R: Reconciler>(ctx: &Context, error: &BrokerError) -> Outcome<R> {
    match error {
        BrokerError::Unavailable(why) => Outcome::failed(
            CommonReason::BrokerUnavailable,
            format!(
                "cannot reach NATS JetStream ({why}); retrying with backoff (at most every {:?})",
                ctx.config.retry_max_delay
            ),
        ),
        other => Outcome::failed(CommonReason::BrokerRejected, other.to_string()),
    }
}

/// A kind's reconciler with what the driver keeps for it.
pub struct Driven<R> {
    pub reconciler: R,
    pub ctx: Arc<Context>,
    pub retry: Retry,
}

impl<R: Reconciler> Driven<R> {
    pub fn new(reconciler: R, ctx: Arc<Context>) -> Self {
        let retry = Retry::new(ctx.config.retry_backoff());
        Self {
            reconciler,
            ctx,
            retry,
        }
    }
}

fn retry_key<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// One reconcile of one object of kind `R::Kind`.
pub async fn reconcile<R: Reconciler>(
    guard: Arc<DeserializeGuard<R::Kind>>,
    driven: Arc<Driven<R>>,
) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let ctx = &driven.ctx;
    let obj = match &guard.0 {
        Ok(obj) => obj,
        Err(invalid) => {
            // The API server's schema makes this rare (an object stored under an older schema);
            // report it on the object and keep the watch alive.
            let name = invalid.metadata.name.as_deref().unwrap_or("<unnamed>");
            warn!(kind = R::KIND, name, error = %invalid.error, "object cannot be read");
            let note = format!(
                "{} cannot be read by this Switchyard version: {}",
                R::KIND,
                invalid.error
            );
            ctx.writer
                .event(
                    R::KIND,
                    &guard.object_ref(&()),
                    KubeEvent::warning("InvalidObject", note),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
    let paused = annotation_is_true(obj.meta(), annotations::PAUSED);
    if obj.meta().deletion_timestamp.is_some() {
        return finalize(&driven, obj, paused).await;
    }
    sync_finalizer::<R>(ctx, obj).await?;

    let outcome = if paused {
        paused_outcome::<R>(obj)
    } else {
        match run_stages(&driven.reconciler, ctx, obj).await? {
            Ok(outcome) => outcome,
            Err(delay) => return Ok(Action::requeue(delay)),
        }
    };

    let previous_reason = R::status(obj)
        .and_then(|s| conditions::find(s.conditions(), ConditionType::Ready))
        .map(|c| c.reason.as_str());
    let reason_changed = previous_reason != Some(outcome.ready.reason.as_str());
    if let Some(event) = outcome.event.clone()
        && super::kube_events::worth_recording(outcome.ready.status, reason_changed)
    {
        ctx.writer.event(R::KIND, &obj.object_ref(&()), event).await;
    }

    let next = next_status::<R>(
        obj,
        &outcome.ready,
        &outcome.conditions,
        paused,
        outcome.figures.as_ref(),
        ctx.clock.now(),
    );
    if R::status(obj) != Some(&next) {
        ctx.writer.status(R::KIND, obj, &next).await?;
    }
    ctx.metrics
        .observe_reconcile(R::KIND, outcome.ready.reason.as_str(), started.elapsed());

    let key = retry_key(obj);
    Ok(if paused {
        driven.retry.succeeded(&key);
        Action::await_change()
    } else if outcome.ready.reason == R::Reason::common(CommonReason::BrokerUnavailable) {
        let delay = driven.retry.failed(&key);
        ctx.metrics.observe_retry(R::KIND, delay);
        Action::requeue(delay)
    } else {
        driven.retry.succeeded(&key);
        Action::requeue(ctx.config.resync_interval)
    })
}

/// How soon a reconcile that lost a write conflict runs again: time for the watch to deliver
/// the newer object.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// Retries a reconcile that failed with an error, later each time.
pub fn error_policy<R: Reconciler>(
    guard: Arc<DeserializeGuard<R::Kind>>,
    error: &Error,
    driven: Arc<Driven<R>>,
) -> Action {
    driven.ctx.metrics.observe_error(R::KIND, error.category());
    if error.category() == "conflict" {
        // The cached object was older than the stored one (our own write, or someone else's,
        // is on its way through the watch). Normal with caches; no backoff, no alarm.
        debug!(kind = R::KIND, name = %guard.name_any(), "object changed meanwhile; reconciling it again");
        return Action::requeue(CONFLICT_RETRY);
    }
    let delay = driven.retry.failed(&retry_key(guard.as_ref()));
    warn!(
        kind = R::KIND,
        name = %guard.name_any(),
        category = error.category(),
        error = %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    driven.ctx.metrics.observe_retry(R::KIND, delay);
    Action::requeue(delay)
}

async fn run_stages<R: Reconciler>(
    reconciler: &R,
    ctx: &Context,
    obj: &R::Kind,
) -> Result<Result<Outcome<R>, Duration>, Error> {
    let refs = match reconciler.dereference(ctx, obj).await? {
        Ok(refs) => refs,
        Err(Unresolved::Reported(outcome)) => return Ok(Ok(outcome)),
        Err(Unresolved::Settling(delay)) => return Ok(Err(delay)),
    };
    let outcome = sync_broker(reconciler, ctx, obj, &refs).await;
    Ok(Ok(reconciler.apply_children(ctx, obj, outcome).await?))
}

async fn sync_broker<R: Reconciler>(
    reconciler: &R,
    ctx: &Context,
    obj: &R::Kind,
    refs: &R::Refs,
) -> Outcome<R> {
    let desired = match R::desired(obj, refs) {
        Ok(desired) => desired,
        Err(invalid) => return Outcome::failed(CommonReason::InvalidSpec, invalid),
    };
    let actual = match reconciler.observe(ctx, &desired).await {
        Ok(actual) => actual,
        Err(e) => return reconciler.broker_failure(ctx, &desired, e).await,
    };
    let inputs = PlanInputs {
        adopt: annotation_is_true(obj.meta(), annotations::ADOPT),
        synced_before: R::status(obj)
            .and_then(|s| conditions::find(s.conditions(), ConditionType::Ready))
            .is_some_and(|c| c.status == "True"),
    };
    let plan = R::plan(&desired, &actual, inputs);
    reconciler.apply(ctx, obj, &desired, actual, plan).await
}

/// Keeps whatever Ready said before the pause: the broker has not been looked at since.
fn paused_outcome<R: Reconciler>(obj: &R::Kind) -> Outcome<R> {
    let ready = R::status(obj)
        .and_then(|s| conditions::find(s.conditions(), ConditionType::Ready))
        .and_then(Verdict::from_condition)
        .unwrap_or_else(|| {
            Verdict::common(
                CommonReason::Paused,
                "reconciliation is paused before the broker state was ever synced",
            )
        });
    Outcome::new(ready)
}

/// The status to report: the verdicts as conditions, the kstatus conditions following Ready, the
/// pause, `observedGeneration` and the kind's own fields.
fn next_status<R: Reconciler>(
    obj: &R::Kind,
    ready: &Verdict<R::Reason>,
    others: &[Verdict<R::Reason>],
    paused: bool,
    figures: Option<&R::Figures>,
    now: Timestamp,
) -> R::Status {
    // A paused object has not been reconciled at its current generation; say so.
    let generation = if paused {
        R::status(obj).and_then(ObjectStatus::observed_generation)
    } else {
        obj.meta().generation
    };
    let mut status = R::status(obj).cloned().unwrap_or_default();
    let mut updated = conditions::apply(status.conditions(), ready, generation, now);
    for verdict in others {
        updated = conditions::apply(&updated, verdict, generation, now);
    }
    *status.conditions_mut() = if paused {
        // Reconciling and Stalled stay as they were, like Ready: nothing was looked at.
        let verdict = Verdict::new(
            ConditionType::ReconciliationPaused,
            true,
            R::Reason::common(CommonReason::Paused),
            "the switchyard.dev/paused annotation is \"true\"; remove it to resume",
        );
        conditions::apply(&updated, &verdict, generation, now)
    } else {
        let updated = conditions::with_progress(&updated, ready, generation, now);
        conditions::remove(&updated, ConditionType::ReconciliationPaused)
    };
    status.set_observed_generation(generation);
    R::project(&mut status, obj, figures);
    status
}

/// The finalizer is held exactly while deletion must clean up the broker.
async fn sync_finalizer<R: Reconciler>(ctx: &Context, obj: &R::Kind) -> Result<(), Error> {
    let has = obj.finalizers().iter().any(|f| f == R::FINALIZER);
    let wants = R::cleans_up(obj);
    if has == wants {
        return Ok(());
    }
    let mut finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != R::FINALIZER)
        .cloned()
        .collect();
    if wants {
        finalizers.push(R::FINALIZER.to_string());
    }
    ctx.writer.finalizers(R::KIND, obj, finalizers).await
}

async fn finalize<R: Reconciler>(
    driven: &Driven<R>,
    obj: &R::Kind,
    paused: bool,
) -> Result<Action, Error> {
    let ctx = &driven.ctx;
    if !obj.finalizers().iter().any(|f| f == R::FINALIZER) {
        return Ok(Action::await_change());
    }
    let event = if paused || !R::cleans_up(obj) {
        R::retained(obj)
    } else {
        match driven.reconciler.cleanup(ctx, obj).await {
            Ok(event) => event,
            Err(BrokerError::Unavailable(why)) if !deletion_overdue(obj, ctx) => {
                let ready = Verdict::common(
                    CommonReason::Deleting,
                    format!(
                        "waiting for NATS to clean up ({why}); the {} is released without it after {:?}",
                        R::KIND,
                        ctx.config.finalizer_timeout
                    ),
                );
                let next = next_status::<R>(obj, &ready, &[], false, None, ctx.clock.now());
                if R::status(obj) != Some(&next) {
                    ctx.writer.status(R::KIND, obj, &next).await?;
                }
                let delay = driven.retry.failed(&retry_key(obj));
                ctx.metrics.observe_retry(R::KIND, delay);
                return Ok(Action::requeue(delay));
            }
            Err(e) => {
                let event = R::left_behind(obj, &e);
                warn!(kind = R::KIND, name = %obj.name_any(), note = %event.note, "broker state left behind");
                event
            }
        }
    };
    ctx.writer.event(R::KIND, &obj.object_ref(&()), event).await;
    let rest = obj
        .finalizers()
        .iter()
        .filter(|f| *f != R::FINALIZER)
        .cloned()
        .collect();
    ctx.writer.finalizers(R::KIND, obj, rest).await?;
    ctx.writer.forget(obj);
    driven.retry.succeeded(&retry_key(obj));
    Ok(Action::await_change())
}

/// Hands each deletion of `deleted` to [`Reconciler::deleted`] and records the Event it returns,
/// until the stream ends (with the controller's watch). One at a time: deletions are rare, and
/// each may read the API server.
pub async fn report_deletions<R: Reconciler>(
    driven: Arc<Driven<R>>,
    deleted: impl Stream<Item = DeserializeGuard<R::Kind>>,
) {
    let ctx = &driven.ctx;
    let mut deleted = std::pin::pin!(deleted);
    while let Some(guard) = deleted.next().await {
        // An object this version cannot read has no spec to judge: nothing to report.
        let Ok(obj) = &guard.0 else { continue };
        // Its deletion went through the finalizer, whose Event already told the story.
        if R::cleans_up(obj) {
            continue;
        }
        match driven.reconciler.deleted(ctx, obj).await {
            Ok(Some(event)) => ctx.writer.event(R::KIND, &obj.object_ref(&()), event).await,
            Ok(None) => {}
            Err(e) => warn!(
                kind = R::KIND,
                name = %obj.name_any(),
                category = e.category(),
                error = %e,
                "could not report a deletion"
            ),
        }
    }
}

fn deletion_overdue<K: Resource>(obj: &K, ctx: &Context) -> bool {
    let Some(since) = obj.meta().deletion_timestamp.as_ref() else {
        return false;
    };
    let waited = ctx.clock.now().duration_since(since.0);
    let limit =
        SignedDuration::try_from(ctx.config.finalizer_timeout).unwrap_or(SignedDuration::MAX);
    waited >= limit
}

/// Implements [`ObjectStatus`] for status types with `conditions` and `observed_generation`.
macro_rules! object_status {
    ($($status:ty),+ $(,)?) => {$(
        impl ObjectStatus for $status {
            fn conditions(&self) -> &[Condition] {
                &self.conditions
            }
            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.conditions
            }
            fn observed_generation(&self) -> Option<i64> {
                self.observed_generation
            }
            fn set_observed_generation(&mut self, generation: Option<i64>) {
                self.observed_generation = generation;
            }
        }
    )+};
}

object_status!(
    crate::api::TopicStatus,
    crate::api::SubscriptionStatus,
    crate::api::DeadLetterPolicyStatus,
    crate::api::EventSchemaStatus,
);

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::{
        api::{Topic, TopicStatus},
        reconcile::topic::{TopicReason, TopicReconciler},
    };

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    fn topic(generation: i64, status: Option<TopicStatus>) -> Topic {
        let mut topic = Topic::new("orders", serde_yaml::from_str("{}").unwrap());
        topic.metadata.namespace = Some("shop".into());
        topic.metadata.generation = Some(generation);
        topic.status = status;
        topic
    }

    fn next(obj: &Topic, ready: Verdict<TopicReason>, paused: bool) -> TopicStatus {
        next_status::<TopicReconciler>(obj, &ready, &[], paused, None, at(100))
    }

    fn types(status: &TopicStatus) -> Vec<(&str, &str, &str)> {
        status
            .conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn a_failure_is_stalled_and_a_wait_is_reconciling_at_the_current_generation() {
        let failed = next(
            &topic(3, None),
            Verdict::not_ready(TopicReason::SubjectsOverlap, "taken"),
            false,
        );
        assert_eq!(
            types(&failed),
            [
                ("Ready", "False", "SubjectsOverlap"),
                ("Stalled", "True", "SubjectsOverlap")
            ]
        );
        assert_eq!(failed.observed_generation, Some(3));
        assert!(
            failed
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );

        let retrying = next(
            &topic(3, Some(failed)),
            Verdict::not_ready(TopicReason::BrokerUnavailable, "down"),
            false,
        );
        assert_eq!(
            types(&retrying),
            [
                ("Ready", "False", "BrokerUnavailable"),
                ("Reconciling", "True", "BrokerUnavailable")
            ]
        );
    }

    #[test]
    fn a_pause_keeps_the_last_reconciled_generation_and_conditions() {
        let waiting = next(
            &topic(1, None),
            Verdict::not_ready(TopicReason::BrokerUnavailable, "down"),
            false,
        );
        // Edited to generation 2 while paused: the status still describes generation 1.
        let ready = Verdict::from_condition(&waiting.conditions[0]).unwrap();
        let paused = next(&topic(2, Some(waiting.clone())), ready.clone(), true);
        assert_eq!(paused.observed_generation, Some(1));
        assert_eq!(
            types(&paused),
            [
                ("Ready", "False", "BrokerUnavailable"),
                ("Reconciling", "True", "BrokerUnavailable"),
                ("ReconciliationPaused", "True", "Paused")
            ]
        );
        assert_eq!(
            paused.conditions[1].last_transition_time,
            waiting.conditions[1].last_transition_time
        );

        let resumed = next(
            &topic(2, Some(paused)),
            Verdict::ready(TopicReason::StreamReady, "in sync"),
            false,
        );
        assert_eq!(resumed.observed_generation, Some(2));
        assert_eq!(types(&resumed), [("Ready", "True", "StreamReady")]);
        assert_eq!(resumed.conditions[0].last_transition_time, Time(at(100)));
    }

    #[test]
    fn paused_before_any_pass_reports_no_generation() {
        let never = next(
            &topic(1, None),
            paused_outcome::<TopicReconciler>(&topic(1, None)).ready,
            true,
        );
        assert_eq!(never.observed_generation, None);
        assert_eq!(
            types(&never),
            [
                ("Ready", "False", "Paused"),
                ("ReconciliationPaused", "True", "Paused")
            ]
        );
    }
}
