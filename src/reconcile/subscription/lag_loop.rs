//! The lag loop behind `worker.autoscaling`. Every `--autoscale-interval` (default 2 s, far
//! below the resync, so a backlog is answered within seconds) it reads the lag of each
//! autoscaled Subscription's consumer, lets [`super::autoscale`] decide the pod count, and asks
//! for a reconcile of the Subscriptions whose count changed. The reconcile writes the worker
//! Deployment's replicas (only then) and the status explains the choice: one writer for the
//! Deployment, one place deciding what it says.
//!
//! Cost: one consumer info request per autoscaled Subscription per interval, answered by the
//! consumer's leader; Subscriptions without autoscaling are read at the resync only.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{
    ResourceExt,
    core::DeserializeGuard,
    runtime::reflector::{ObjectRef, Store},
};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info};

use super::autoscale::{Policy, ScaleState};
use crate::{
    api::{Subscription, annotation_is_true, annotations, subscription::SubscriptionMode},
    broker::Broker,
    conditions::Clock,
    naming,
};

/// Lag readings in flight at once.
const PARALLEL_READINGS: usize = 16;

/// The pod count in force for one Subscription and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Scale {
    pub replicas: i32,
    pub reason: String,
    /// When the autoscaler last changed the count (not since this operator started: none).
    pub last_scale_time: Option<Time>,
}

struct Tracked {
    state: ScaleState,
    last_scale_time: Option<Time>,
}

/// What the autoscaler knows, shared by the lag loop (which decides) and the reconciles (which
/// apply the decision).
#[derive(Clone, Default)]
pub struct Autoscaler {
    tracked: Arc<Mutex<HashMap<String, Tracked>>>,
}

/// An autoscaled Subscription the loop reads.
struct Candidate {
    key: String,
    object: ObjectRef<DeserializeGuard<Subscription>>,
    stream: String,
    consumer: String,
    policy: Policy,
    reported: Option<i32>,
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl Autoscaler {
    /// The pod count for the Subscription `namespace/name` now: the last decision or, before
    /// the first lag reading, the count its status reported (clamped to the policy).
    pub fn scale(
        &self,
        namespace: &str,
        name: &str,
        policy: &Policy,
        reported: Option<i32>,
    ) -> Scale {
        let mut tracked = self.tracked.lock().expect("autoscaler state");
        let entry = tracked
            .entry(key(namespace, name))
            .or_insert_with(|| Tracked {
                state: ScaleState::carried_over(policy, reported, Instant::now()),
                last_scale_time: None,
            });
        Scale {
            replicas: entry.state.replicas.clamp(policy.min, policy.max),
            reason: entry.state.reason.clone(),
            last_scale_time: entry.last_scale_time.clone(),
        }
    }

    /// Forgets a Subscription that no longer autoscales.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.tracked
            .lock()
            .expect("autoscaler state")
            .remove(&key(namespace, name));
    }

    /// The lag loop: yields the Subscriptions to reconcile because their pod count changed.
    /// It runs as long as the stream is polled (the controller's run).
    pub fn readings(
        &self,
        subscriptions: Store<DeserializeGuard<Subscription>>,
        broker: Broker,
        clock: Arc<dyn Clock>,
        interval: Duration,
    ) -> impl Stream<Item = ObjectRef<DeserializeGuard<Subscription>>> + Send + 'static {
        let autoscaler = self.clone();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        futures::stream::unfold(ticker, move |mut ticker| {
            let (autoscaler, subscriptions, broker, clock) = (
                autoscaler.clone(),
                subscriptions.clone(),
                broker.clone(),
                clock.clone(),
            );
            async move {
                loop {
                    ticker.tick().await;
                    let changed = autoscaler.read_once(&subscriptions, &broker, &*clock).await;
                    if !changed.is_empty() {
                        return Some((changed, ticker));
                    }
                }
            }
        })
        .flat_map(futures::stream::iter)
    }

    /// One round of lag readings; the Subscriptions whose pod count (or its explanation) changed.
    async fn read_once(
        &self,
        subscriptions: &Store<DeserializeGuard<Subscription>>,
        broker: &Broker,
        clock: &dyn Clock,
    ) -> Vec<ObjectRef<DeserializeGuard<Subscription>>> {
        let candidates: Vec<Candidate> = subscriptions
            .state()
            .iter()
            .filter_map(|guard| candidate(guard.0.as_ref().ok()?))
            .collect();
        self.tracked
            .lock()
            .expect("autoscaler state")
            .retain(|k, _| candidates.iter().any(|c| &c.key == k));
        let readings: Vec<(Candidate, Option<i64>)> = futures::stream::iter(candidates)
            .map(|c| async move {
                let lag = match broker.consumer_info(&c.stream, &c.consumer).await {
                    Ok(Some(info)) => Some(
                        i64::try_from(info.num_pending)
                            .unwrap_or(i64::MAX)
                            .saturating_add(info.num_ack_pending as i64),
                    ),
                    // A missing consumer or an unreachable broker is the reconcile's to report;
                    // the pod count stays as it is.
                    Ok(None) => None,
                    Err(e) => {
                        debug!(consumer = c.consumer, error = %e, "lag reading failed");
                        None
                    }
                };
                (c, lag)
            })
            .buffer_unordered(PARALLEL_READINGS)
            .collect()
            .await;
        let now = Instant::now();
        let mut tracked = self.tracked.lock().expect("autoscaler state");
        let mut changed = Vec::new();
        for (c, lag) in readings {
            let Some(lag) = lag else { continue };
            let entry = tracked.entry(c.key.clone()).or_insert_with(|| Tracked {
                state: ScaleState::carried_over(&c.policy, c.reported, now),
                last_scale_time: None,
            });
            if let Some(decision) = entry.state.observe(&c.policy, lag, now) {
                if decision.from != decision.to {
                    info!(
                        subscription = c.key,
                        from = decision.from,
                        to = decision.to,
                        reason = decision.reason,
                        "autoscaling workers"
                    );
                    entry.last_scale_time = Some(Time(clock.now()));
                }
                changed.push(c.object);
            }
        }
        changed
    }
}

/// The Subscription as the lag loop reads it, if it autoscales and is being reconciled.
fn candidate(sub: &Subscription) -> Option<Candidate> {
    let autoscaling = sub.spec.worker.as_ref()?.autoscaling.as_ref()?;
    if sub.spec.mode != SubscriptionMode::WorkerGroup
        || sub.metadata.deletion_timestamp.is_some()
        || annotation_is_true(&sub.metadata, annotations::PAUSED)
    {
        return None;
    }
    let namespace = sub.namespace()?;
    let name = sub.name_any();
    Some(Candidate {
        key: key(&namespace, &name),
        object: ObjectRef::new(&name).within(&namespace),
        stream: naming::stream_name(&namespace, &sub.spec.topic_ref.name),
        consumer: naming::subscription_consumer_name(&namespace, &name),
        policy: Policy::of(autoscaling).ok()?,
        reported: sub.status.as_ref().and_then(|s| s.desired_workers),
    })
}
