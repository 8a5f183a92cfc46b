//! What a Subscription's status shows besides its conditions. Pure.

use async_nats::jetstream::consumer::Info as ConsumerInfo;
use k8s_openapi::api::apps::v1::Deployment;

use crate::api::{Subscription, SubscriptionStatus};

/// How the worker Deployment stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerFigures {
    pub desired: i32,
    pub available: i32,
    /// The Deployment controller has seen the latest spec and replaced every old pod.
    pub rolled_out: bool,
}

/// The worker figures of a Deployment as the API server returned it.
pub fn worker_figures(deployment: &Deployment, desired: i32) -> WorkerFigures {
    let status = deployment.status.clone().unwrap_or_default();
    let observed = status.observed_generation >= deployment.metadata.generation;
    let updated = status.updated_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    WorkerFigures {
        desired,
        available: status.available_replicas.unwrap_or(0),
        rolled_out: observed && updated >= desired && total <= desired.max(updated),
    }
}

/// Whether the status already describes this Deployment (same replicas), so applying it again
/// is no news worth an Event.
pub fn deployment_matches(sub: &Subscription, deployment: &Deployment) -> bool {
    sub.status.as_ref().and_then(|s| s.desired_workers) == deployment.spec.replicas
        && sub.status.as_ref().and_then(|s| s.observed_generation) == sub.metadata.generation
}

/// Writes the worker figures; `None` clears them (no worker declared).
pub fn project_workers(status: &mut SubscriptionStatus, workers: Option<&WorkerFigures>) {
    status.desired_workers = workers.map(|w| w.desired);
    status.available_workers = workers.map(|w| w.available);
}

/// Writes the consumer name and, when the broker answered, its figures; without an answer the
/// figures stay as last seen. Lag is what is still to handle: pending plus unacknowledged.
pub fn project(status: &mut SubscriptionStatus, consumer: &str, info: Option<&ConsumerInfo>) {
    status.consumer_name = Some(consumer.to_string());
    if let Some(info) = info {
        let pending = count(info.num_pending);
        let ack_pending = count(info.num_ack_pending as u64);
        status.pending = Some(pending);
        status.ack_pending = Some(ack_pending);
        status.redelivered = Some(count(info.num_redelivered as u64));
        status.lag = Some(pending.saturating_add(ack_pending));
    }
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
