//! What a Subscription's status shows besides its conditions. Pure.

use async_nats::jetstream::consumer::Info as ConsumerInfo;
use k8s_openapi::{api::apps::v1::Deployment, apimachinery::pkg::apis::meta::v1::Time};

use crate::api::SubscriptionStatus;

/// How the worker Deployment stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerFigures {
    pub desired: i32,
    pub available: i32,
    /// The Deployment controller has seen the latest spec and replaced every old pod.
    pub rolled_out: bool,
    /// With autoscaling: why `desired` is what it is, and when it last changed.
    pub scaling: Option<(String, Option<Time>)>,
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
        scaling: None,
    }
}

/// Writes the worker figures; `None` clears them (no worker declared).
pub fn project_workers(status: &mut SubscriptionStatus, workers: Option<&WorkerFigures>) {
    status.desired_workers = workers.map(|w| w.desired);
    status.available_workers = workers.map(|w| w.available);
    let scaling = workers.and_then(|w| w.scaling.clone());
    status.scaling = scaling.as_ref().map(|(reason, _)| reason.clone());
    status.last_scale_time = scaling.and_then(|(_, at)| at);
}

/// The consumers a Subscription reads through, as the status names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumerLayout<'a> {
    /// WorkerGroup: one durable consumer of this name.
    Shared(&'a str),
    /// Broadcast: one consumer per worker pod, named `<prefix><pod>`.
    PerPod { prefix: &'a str },
    /// Per-key order: one consumer per partition, named `<prefix>p<partition>`.
    PerPartition { prefix: &'a str },
}

/// Writes the consumer name and, when the broker answered, its figures; without an answer the
/// figures stay as last seen. Lag is what is still to handle: pending plus unacknowledged. In
/// Broadcast mode the figures are those of the pod furthest behind, and `consumers` counts the
/// per-pod consumers.
pub fn project(
    status: &mut SubscriptionStatus,
    layout: ConsumerLayout<'_>,
    infos: Option<&[ConsumerInfo]>,
) {
    match layout {
        ConsumerLayout::Shared(name) => {
            status.consumer_name = Some(name.to_string());
            status.consumers = None;
        }
        ConsumerLayout::PerPod { prefix } | ConsumerLayout::PerPartition { prefix } => {
            let part = match layout {
                ConsumerLayout::PerPod { .. } => "<pod>",
                _ => "p<partition>",
            };
            status.consumer_name = Some(format!("{prefix}{part}"));
            if let Some(infos) = infos {
                status.consumers = Some(i32::try_from(infos.len()).unwrap_or(i32::MAX));
            }
        }
    }
    let Some(infos) = infos else { return };
    if let ConsumerLayout::PerPartition { .. } = layout {
        // The partitions' consumers share the work: their figures add up.
        let sum = |f: fn(&ConsumerInfo) -> i64| infos.iter().map(f).fold(0i64, i64::saturating_add);
        let pending = sum(|i| count(i.num_pending));
        let ack_pending = sum(|i| count(i.num_ack_pending as u64));
        status.pending = Some(pending);
        status.ack_pending = Some(ack_pending);
        status.redelivered = Some(sum(|i| count(i.num_redelivered as u64)));
        status.lag = Some(pending.saturating_add(ack_pending));
        return;
    }
    let slowest = infos.iter().max_by_key(|info| lag(info));
    let (pending, ack_pending, redelivered) = slowest.map_or((0, 0, 0), |info| {
        (
            count(info.num_pending),
            count(info.num_ack_pending as u64),
            count(info.num_redelivered as u64),
        )
    });
    status.pending = Some(pending);
    status.ack_pending = Some(ack_pending);
    status.redelivered = Some(redelivered);
    status.lag = Some(pending.saturating_add(ack_pending));
}

fn lag(info: &ConsumerInfo) -> i64 {
    count(info.num_pending).saturating_add(count(info.num_ack_pending as u64))
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(pending: u64, ack_pending: usize, redelivered: usize) -> ConsumerInfo {
        serde_json::from_value(serde_json::json!({
            "type": "io.nats.jetstream.api.v1.consumer_info_response",
            "stream_name": "shop_orders",
            "name": "c",
            "created": "2024-05-01T00:00:00Z",
            "config": {"ack_policy": "explicit", "deliver_policy": "all", "replay_policy": "instant"},
            "delivered": {"consumer_seq": 0, "stream_seq": 0},
            "ack_floor": {"consumer_seq": 0, "stream_seq": 0},
            "num_ack_pending": ack_pending,
            "num_redelivered": redelivered,
            "num_waiting": 0,
            "num_pending": pending,
            "cluster": null,
            "push_bound": false,
            "ts": "2024-05-01T00:00:00Z"
        }))
        .expect("consumer info")
    }

    #[test]
    fn a_shared_consumer_shows_its_own_figures() {
        let mut status = SubscriptionStatus::default();
        project(
            &mut status,
            ConsumerLayout::Shared("sub_shop_billing"),
            Some(&[info(7, 3, 1)]),
        );
        assert_eq!(status.consumer_name.as_deref(), Some("sub_shop_billing"));
        assert_eq!(
            (
                status.pending,
                status.ack_pending,
                status.redelivered,
                status.lag
            ),
            (Some(7), Some(3), Some(1), Some(10))
        );
        assert_eq!(status.consumers, None);
        // No answer from the broker: the figures stay as last seen.
        project(
            &mut status,
            ConsumerLayout::Shared("sub_shop_billing"),
            None,
        );
        assert_eq!(status.lag, Some(10));
    }

    #[test]
    fn per_pod_consumers_show_the_pod_furthest_behind() {
        let mut status = SubscriptionStatus::default();
        let infos = [info(1, 0, 0), info(40, 2, 5), info(0, 3, 0)];
        project(
            &mut status,
            ConsumerLayout::PerPod {
                prefix: "sub_shop_cache_",
            },
            Some(&infos),
        );
        assert_eq!(
            status.consumer_name.as_deref(),
            Some("sub_shop_cache_<pod>")
        );
        assert_eq!(status.consumers, Some(3));
        assert_eq!((status.lag, status.redelivered), (Some(42), Some(5)));
        project(
            &mut status,
            ConsumerLayout::PerPod {
                prefix: "sub_shop_cache_",
            },
            Some(&[]),
        );
        assert_eq!((status.consumers, status.lag), (Some(0), Some(0)));
    }

    #[test]
    fn per_partition_consumers_add_up() {
        let mut status = SubscriptionStatus::default();
        project(
            &mut status,
            ConsumerLayout::PerPartition {
                prefix: "sub_shop_billing_",
            },
            Some(&[info(1, 2, 0), info(10, 0, 3)]),
        );
        assert_eq!(
            status.consumer_name.as_deref(),
            Some("sub_shop_billing_p<partition>")
        );
        assert_eq!(status.consumers, Some(2));
        assert_eq!(
            (status.pending, status.lag, status.redelivered),
            (Some(11), Some(13), Some(3))
        );
    }

    #[test]
    fn scaling_reasons_are_shown_with_the_worker_figures() {
        let mut status = SubscriptionStatus::default();
        let at = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let figures = WorkerFigures {
            desired: 5,
            available: 2,
            rolled_out: false,
            scaling: Some(("lag 450 needs 5 pods".into(), Some(at.clone()))),
        };
        project_workers(&mut status, Some(&figures));
        assert_eq!(
            (status.desired_workers, status.available_workers),
            (Some(5), Some(2))
        );
        assert_eq!(status.scaling.as_deref(), Some("lag 450 needs 5 pods"));
        assert_eq!(status.last_scale_time, Some(at));
        project_workers(&mut status, None);
        assert_eq!(status.scaling, None);
        assert_eq!(status.desired_workers, None);
    }
}
