//! What a Topic's status shows besides Ready: the stream's figures, and on a clustered broker
//! where its replicas are and whether they keep up (Replicated). Pure.
//!
//! Replication is read from the stream info, which the stream's leader answers: only the
//! leader knows whether a follower is current (a follower's own monitoring endpoint says its
//! peers are not).

use async_nats::jetstream::stream::{ClusterInfo, Info as StreamInfo};

use super::TopicReason;
use crate::{
    api::{TopicReplication, TopicStatus},
    conditions::{ConditionType, Verdict},
};

/// Writes the stream name and, when the broker answered, the stream's figures; without an
/// answer the figures stay as last seen.
pub fn project(status: &mut TopicStatus, stream_name: &str, info: Option<&StreamInfo>) {
    status.stream_name = Some(stream_name.to_string());
    if let Some(info) = info {
        let state = &info.state;
        status.messages = Some(count(state.messages));
        status.bytes = Some(count(state.bytes));
        status.first_sequence = Some(count(state.first_sequence));
        status.last_sequence = Some(count(state.last_sequence));
        status.consumer_count = Some(count(state.consumer_count as u64));
        status.replication = replication(info);
    }
}

/// The stream's cluster when the broker is clustered (a single server names none).
fn clustered(info: &StreamInfo) -> Option<(&str, &ClusterInfo)> {
    let cluster = info.cluster.as_ref()?;
    Some((cluster.name.as_deref()?, cluster))
}

/// Where the replicas are: every peer, sorted, without saying which one leads.
fn replication(info: &StreamInfo) -> Option<TopicReplication> {
    let (name, cluster) = clustered(info)?;
    let mut peers: Vec<String> = cluster
        .leader
        .iter()
        .cloned()
        .chain(cluster.replicas.iter().map(|peer| peer.name.clone()))
        .collect();
    peers.sort();
    peers.dedup();
    Some(TopicReplication {
        cluster: name.to_string(),
        peers,
        current_replicas: count(current_replicas(cluster) as u64),
    })
}

/// The leader, if there is one, and the followers current with it.
fn current_replicas(cluster: &ClusterInfo) -> usize {
    cluster.leader.is_some() as usize
        + cluster
            .replicas
            .iter()
            .filter(|peer| peer.current && !peer.offline)
            .count()
}

/// Replicated: True while the leader and every replica the stream asks for are there and
/// current; False names each one that is not. `None` on a broker that is not clustered.
///
/// The messages leave out figures that move by themselves (how far behind a follower is,
/// which server leads), so a status is rewritten when replication changes, not at every look.
pub fn replicated(info: &StreamInfo) -> Option<Verdict<TopicReason>> {
    let (name, cluster) = clustered(info)?;
    let wanted = info.config.num_replicas.max(1);
    let verdict = |ok: bool, reason: TopicReason, message: String| {
        Some(Verdict::new(ConditionType::Replicated, ok, reason, message))
    };
    if cluster.leader.is_none() {
        return verdict(
            false,
            TopicReason::NoStreamLeader,
            format!(
                "the stream has no leader in cluster {name}: JetStream is electing one, or too few of its {wanted} replicas are reachable"
            ),
        );
    }
    let mut problems: Vec<String> = cluster
        .replicas
        .iter()
        .filter(|peer| peer.offline || !peer.current)
        .map(|peer| {
            let state = if peer.offline {
                "offline"
            } else {
                "catching up"
            };
            format!("{} is {state}", peer.name)
        })
        .collect();
    let placed = 1 + cluster.replicas.len();
    if placed < wanted {
        problems.push(format!(
            "{} of {wanted} replicas are not placed",
            wanted - placed
        ));
    }
    let current = current_replicas(cluster);
    if problems.is_empty() {
        verdict(
            true,
            TopicReason::ReplicasCurrent,
            format!("{wanted} of {wanted} replicas current in cluster {name}"),
        )
    } else {
        verdict(
            false,
            TopicReason::ReplicasBehind,
            format!(
                "{current} of {wanted} replicas current in cluster {name}: {}",
                problems.join("; ")
            ),
        )
    }
}

/// Kubernetes APIs carry counts as int64; JetStream's never come near its limit.
fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::ReasonCode;

    fn info(messages: u64) -> StreamInfo {
        let config = async_nats::jetstream::stream::Config {
            name: "ns_t".into(),
            ..Default::default()
        };
        serde_json::from_value(serde_json::json!({
            "config": config,
            "created": "2026-11-24T00:00:00Z",
            "state": {
                "messages": messages, "bytes": 10 * messages, "first_seq": 1, "last_seq": messages,
                "first_ts": "2026-11-24T00:00:00Z", "last_ts": "2026-11-24T00:00:00Z",
                "consumer_count": 2
            }
        }))
        .expect("a stream info")
    }

    #[test]
    fn figures_come_from_the_broker() {
        let mut status = TopicStatus::default();
        project(&mut status, "ns_t", Some(&info(42)));
        assert_eq!(status.stream_name.as_deref(), Some("ns_t"));
        assert_eq!(status.messages, Some(42));
        assert_eq!(status.bytes, Some(420));
        assert_eq!(status.last_sequence, Some(42));
        assert_eq!(status.consumer_count, Some(2));
    }

    /// A stream info as the leader `n1` of an R3 stream in cluster `c1` answers it, with the
    /// followers' (name, current, offline).
    fn clustered_info(leader: Option<&str>, followers: &[(&str, bool, bool)]) -> StreamInfo {
        let mut info = serde_json::to_value(info(1).config).map(|config| {
            serde_json::json!({
                "config": config,
                "created": "2026-11-24T00:00:00Z",
                "state": {
                    "messages": 1, "bytes": 10, "first_seq": 1, "last_seq": 1,
                    "first_ts": "2026-11-24T00:00:00Z", "last_ts": "2026-11-24T00:00:00Z",
                    "consumer_count": 0
                },
                "cluster": {
                    "name": "c1",
                    "leader": leader,
                    "replicas": followers.iter().map(|(name, current, offline)| serde_json::json!({
                        "name": name, "current": current, "offline": offline, "active": 1_000_000, "lag": 7
                    })).collect::<Vec<_>>()
                }
            })
        })
        .unwrap();
        info["config"]["num_replicas"] = 3.into();
        serde_json::from_value(info).expect("a stream info")
    }

    fn condition(info: &StreamInfo) -> (bool, String, String) {
        let verdict = replicated(info).expect("clustered");
        assert_eq!(verdict.type_, ConditionType::Replicated);
        (
            verdict.status,
            verdict.reason.as_str().to_string(),
            verdict.message,
        )
    }

    #[test]
    fn a_single_server_has_no_replication_to_report() {
        let mut single = info(1);
        single.cluster = serde_json::from_value(serde_json::json!({"leader": "nats-1"})).unwrap();
        assert!(replicated(&single).is_none());
        let mut status = TopicStatus::default();
        project(&mut status, "ns_t", Some(&single));
        assert_eq!(status.replication, None);
    }

    #[test]
    fn every_replica_current_is_replicated() {
        let healthy = clustered_info(Some("n2"), &[("n3", true, false), ("n1", true, false)]);
        assert_eq!(
            condition(&healthy),
            (
                true,
                "ReplicasCurrent".into(),
                "3 of 3 replicas current in cluster c1".into()
            )
        );
        let mut status = TopicStatus::default();
        project(&mut status, "ns_t", Some(&healthy));
        assert_eq!(
            status.replication,
            Some(TopicReplication {
                cluster: "c1".into(),
                peers: vec!["n1".into(), "n2".into(), "n3".into()],
                current_replicas: 3,
            })
        );
    }

    #[test]
    fn a_replica_that_is_offline_or_behind_is_named() {
        let degraded = clustered_info(Some("n1"), &[("n2", false, true), ("n3", true, false)]);
        assert_eq!(
            condition(&degraded),
            (
                false,
                "ReplicasBehind".into(),
                "2 of 3 replicas current in cluster c1: n2 is offline".into()
            )
        );
        let catching_up = clustered_info(Some("n1"), &[("n2", false, false), ("n3", false, true)]);
        assert_eq!(
            condition(&catching_up).2,
            "1 of 3 replicas current in cluster c1: n2 is catching up; n3 is offline"
        );
        let mut status = TopicStatus::default();
        project(&mut status, "ns_t", Some(&degraded));
        assert_eq!(status.replication.unwrap().current_replicas, 2);
    }

    #[test]
    fn a_stream_short_of_peers_or_leader_says_so() {
        let short = clustered_info(Some("n1"), &[("n2", true, false)]);
        assert_eq!(
            condition(&short).2,
            "2 of 3 replicas current in cluster c1: 1 of 3 replicas are not placed"
        );
        let leaderless = clustered_info(None, &[("n2", true, false), ("n3", true, false)]);
        let (ok, reason, message) = condition(&leaderless);
        assert!(!ok);
        assert_eq!(reason, "NoStreamLeader");
        assert!(message.contains("no leader in cluster c1"), "{message}");
    }

    #[test]
    fn a_new_leader_changes_nothing_the_status_shows() {
        let before = clustered_info(Some("n1"), &[("n2", true, false), ("n3", true, false)]);
        let after = clustered_info(Some("n3"), &[("n1", true, false), ("n2", true, false)]);
        assert_eq!(condition(&before), condition(&after));
        let (mut a, mut b) = (TopicStatus::default(), TopicStatus::default());
        project(&mut a, "ns_t", Some(&before));
        project(&mut b, "ns_t", Some(&after));
        assert_eq!(a, b);
    }

    #[test]
    fn figures_survive_an_unanswered_broker() {
        let mut status = TopicStatus::default();
        project(&mut status, "ns_t", Some(&info(42)));
        project(&mut status, "ns_t", None);
        assert_eq!(status.messages, Some(42));
    }
}
