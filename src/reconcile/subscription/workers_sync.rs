//! Applies (or removes) a Subscription's worker Deployment and reports its availability:
//! WorkersAvailable, and Ready only once the workers are.
//!
//! The Deployment is written only when it would change: the reconciler remembers, per
//! Subscription, a fingerprint of what it last applied and the Deployment generation that
//! produced, and compares both with the cached Deployment. A resync with nothing new sends no
//! request; a hand edit of the Deployment's spec (a new generation) is applied over.

use std::{
    collections::{HashMap, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::Mutex,
};

use k8s_openapi::api::apps::v1::Deployment;

use super::{
    Layout, SubscriptionFigures, SubscriptionReason, SubscriptionReconciler, autoscale::Policy,
    consumer_config::TopicView, identity, lag_loop::Scale, status, workers,
};
use crate::{
    api::{Subscription, subscription::Ordering},
    conditions::{ConditionType, Verdict},
    runtime::{Context, Error, driver::Outcome, driver::Reconciler, kube_events::KubeEvent},
};

/// What was last applied per Subscription: (fingerprint of the desired Deployment, the
/// Deployment's generation after applying it).
#[derive(Default)]
pub struct AppliedDeployments(Mutex<HashMap<String, (u64, Option<i64>)>>);

impl AppliedDeployments {
    fn get(&self, key: &str) -> Option<(u64, Option<i64>)> {
        self.0
            .lock()
            .expect("applied deployments")
            .get(key)
            .copied()
    }

    fn set(&self, key: String, applied: (u64, Option<i64>)) {
        self.0
            .lock()
            .expect("applied deployments")
            .insert(key, applied);
    }

    fn forget(&self, key: &str) {
        self.0.lock().expect("applied deployments").remove(key);
    }
}

fn fingerprint(deployment: &Deployment) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(deployment)
        .unwrap_or_default()
        .hash(&mut hasher);
    hasher.finish()
}

pub async fn sync(
    reconciler: &SubscriptionReconciler,
    ctx: &Context,
    sub: &Subscription,
    mut outcome: Outcome<SubscriptionReconciler>,
) -> Result<Outcome<SubscriptionReconciler>, Error> {
    let (namespace, name) = identity(sub);
    let key = format!("{namespace}/{name}");
    let deployment_name = workers::deployment_name(sub);
    let cached = reconciler.caches.deployment(&namespace, &deployment_name);
    // The Topic was found by this reconcile's dereference; gone since, the next one says so.
    let Some(topic) = reconciler
        .caches
        .topic(&namespace, &sub.spec.topic_ref.name)
    else {
        return Ok(outcome);
    };
    let mut target =
        workers::DispatchTarget::of(&namespace, &name, &TopicView::of(&topic, &namespace));
    target.per_key = sub
        .spec
        .worker
        .as_ref()
        .is_some_and(|w| w.ordering == Ordering::PerKey);
    // Only a Limits stream keeps what a refusal acknowledges, for the relay to copy.
    target.hold_rejections = topic.spec.retention != crate::api::topic::Retention::Limits;
    // The binding this reconcile found (it is in sync only with one, where the spec asks).
    target.schema_key = outcome
        .figures
        .as_ref()
        .and_then(|f| f.schema.as_ref())
        .map(|bound| bound.key.clone());
    if super::layout(sub) == Layout::PerPartition {
        // The consumers this reconcile brought in sync (partitions no filter matches have none).
        let Some(consumers) = outcome.figures.as_ref().and_then(|f| f.consumers.as_ref()) else {
            return Ok(outcome);
        };
        target.partition_consumers = consumers.iter().map(|c| c.name.clone()).collect();
        target.partition_consumers.sort();
    }
    let dispatcher = workers::DispatcherSettings {
        image: ctx.config.dispatcher_image.clone(),
        nats_url: ctx.config.broker.url.clone(),
        env: Vec::new(),
        credentials_secret: ctx.config.worker_nats_secret.clone(),
    };
    let scale: Option<Scale> = sub
        .spec
        .worker
        .as_ref()
        .and_then(|w| w.autoscaling.as_ref())
        .and_then(|a| Policy::of(a).ok())
        .map(|policy| {
            let reported = sub.status.as_ref().and_then(|s| s.desired_workers);
            reconciler
                .autoscaler
                .scale(&namespace, &name, &policy, reported)
        });
    if scale.is_none() {
        reconciler.autoscaler.forget(&namespace, &name);
    }
    let replicas = sub.spec.worker.as_ref().map_or(0, |worker| {
        worker
            .replicas
            .or(scale.as_ref().map(|s| s.replicas))
            .unwrap_or(1)
    });
    let Some(deployment) = workers::desired_deployment(sub, &target, replicas, &dispatcher) else {
        // No worker (any more): remove a Deployment left from an earlier spec.
        reconciler.workers.forget(&key);
        if let Some(gone) = cached
            && ctx
                .writer
                .delete_child(SubscriptionReconciler::KIND, gone.as_ref())
                .await?
        {
            outcome.event = Some(KubeEvent::normal(
                "WorkersRemoved",
                format!("deleted Deployment {deployment_name} as spec.worker was removed"),
            ));
        }
        return Ok(outcome);
    };
    let wanted = fingerprint(&deployment);
    let current = match &cached {
        Some(found)
            if reconciler.workers.get(&key) == Some((wanted, found.metadata.generation)) =>
        {
            found.as_ref().clone()
        }
        _ => {
            let applied = ctx
                .writer
                .apply_child(SubscriptionReconciler::KIND, &deployment)
                .await?;
            reconciler
                .workers
                .set(key, (wanted, applied.metadata.generation));
            let before = cached.as_ref().map(|c| c.metadata.generation);
            if before != Some(applied.metadata.generation) && outcome.event.is_none() {
                outcome.event = Some(applied_event(
                    &deployment_name,
                    cached.as_ref().and_then(|c| c.spec.replicas),
                    replicas,
                    scale.as_ref(),
                ));
            }
            applied
        }
    };
    let mut state = status::worker_figures(&current, replicas);
    state.scaling = scale.map(|s| (s.reason, s.last_scale_time));
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
                "{} of {} worker pods available; Deployment {deployment_name} is rolling out",
                state.available, state.desired,
            ),
        )
    };
    if !verdict.status {
        outcome.ready = Verdict::not_ready(
            SubscriptionReason::WorkersProgressing,
            verdict.message.clone(),
        );
    }
    outcome.conditions.push(verdict);
    match outcome.figures.as_mut() {
        Some(figures) => figures.workers = Some(state),
        None => {
            outcome.figures = Some(SubscriptionFigures {
                workers: Some(state),
                ..SubscriptionFigures::default()
            });
        }
    }
    Ok(outcome)
}

/// The Event for a Deployment whose spec the apply changed: scaled by the autoscaler, or
/// applied for a new worker spec.
fn applied_event(
    deployment: &str,
    replicas_before: Option<i32>,
    replicas: i32,
    scale: Option<&Scale>,
) -> KubeEvent {
    match (replicas_before, scale) {
        (Some(before), Some(scale)) if before != replicas => KubeEvent::normal(
            "WorkersScaled",
            format!(
                "scaled Deployment {deployment} from {before} to {replicas} pods: {}",
                scale.reason
            ),
        ),
        _ => KubeEvent::normal(
            "WorkersApplied",
            format!("applied Deployment {deployment} ({replicas} replicas)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscaler_changes_are_told_apart_from_spec_changes() {
        let scale = Scale {
            replicas: 5,
            reason: "lag 450 needs 5 pods at lagPerReplica 100".into(),
            last_scale_time: None,
        };
        let scaled = applied_event("billing-worker", Some(0), 5, Some(&scale));
        assert_eq!(scaled.reason, "WorkersScaled");
        assert_eq!(
            scaled.note,
            "scaled Deployment billing-worker from 0 to 5 pods: lag 450 needs 5 pods at lagPerReplica 100"
        );
        assert_eq!(
            applied_event("billing-worker", Some(5), 5, Some(&scale)).reason,
            "WorkersApplied",
            "an image change under autoscaling"
        );
        assert_eq!(
            applied_event("billing-worker", None, 1, None).note,
            "applied Deployment billing-worker (1 replicas)"
        );
    }

    #[test]
    fn the_fingerprint_follows_the_deployment() {
        let mut deployment = Deployment::default();
        let before = fingerprint(&deployment);
        assert_eq!(before, fingerprint(&deployment.clone()));
        deployment.metadata.name = Some("billing-worker".into());
        assert_ne!(before, fingerprint(&deployment));
    }
}
