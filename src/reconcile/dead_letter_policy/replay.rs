//! The GitOps replay trigger: a new value of the annotation `switchyard.dev/replay` on a
//! DeadLetterPolicy replays every dead letter it holds, once. Pure: whether a replay is asked
//! for, and what the status and the Event say about it.
//!
//! The value answered is kept in `status.lastReplay.trigger`, and it is part of each replayed
//! event's message id: a reconcile that runs again before its status write landed (a crash, a
//! conflict) republishes nothing twice within the Topics' duplicate windows.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::ResourceExt;

use crate::{
    api::{DeadLetterPolicy, annotations, dead_letter_policy::ReplayStatus},
    deadletter::ReplayReport,
    runtime::kube_events::KubeEvent,
};

/// The annotation's value if it asks for a replay that has not been done yet.
pub fn requested(policy: &DeadLetterPolicy) -> Option<String> {
    let value = policy.annotations().get(annotations::REPLAY)?.trim();
    if value.is_empty() {
        return None;
    }
    let answered = policy
        .status
        .as_ref()
        .and_then(|s| s.last_replay.as_ref())
        .and_then(|r| r.trigger.as_deref());
    (answered != Some(value)).then(|| value.to_string())
}

/// What the status records of a finished replay.
pub fn status(report: &ReplayReport, trigger: &str, now: Timestamp) -> ReplayStatus {
    ReplayStatus {
        time: Time(now),
        count: count(report.replayed + report.duplicates),
        failed: count(report.failed),
        failures: report.failures.clone(),
        trigger: Some(trigger.to_string()),
    }
}

/// The Event of a finished replay: Normal when every dead letter went back, Warning otherwise.
pub fn event(report: &ReplayReport, trigger: &str) -> KubeEvent {
    let done = report.replayed + report.duplicates;
    if report.failed == 0 {
        return KubeEvent::normal(
            "Replayed",
            format!(
                "replayed {done} dead letters to their original subjects ({} annotation {trigger:?})",
                annotations::REPLAY
            ),
        );
    }
    KubeEvent::warning(
        "ReplayIncomplete",
        format!(
            "replayed {done} dead letters, {} could not be replayed (first: {}); see status.lastReplay, then set a new {} value or use `switchyard dlq replay`",
            report.failed,
            report.failures.first().map_or("unknown", String::as_str),
            annotations::REPLAY
        ),
    )
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{DeadLetterPolicyStatus, dead_letter_policy::DeadLetterPolicySpec};

    fn policy(annotation: Option<&str>, answered: Option<&str>) -> DeadLetterPolicy {
        let mut policy = DeadLetterPolicy::new(
            "failures",
            serde_yaml::from_str::<DeadLetterPolicySpec>("{}").unwrap(),
        );
        if let Some(value) = annotation {
            policy
                .annotations_mut()
                .insert(annotations::REPLAY.into(), value.into());
        }
        policy.status = answered.map(|trigger| DeadLetterPolicyStatus {
            last_replay: Some(ReplayStatus {
                time: Time(Timestamp::UNIX_EPOCH),
                count: 3,
                failed: 0,
                failures: Vec::new(),
                trigger: Some(trigger.into()),
            }),
            ..Default::default()
        });
        policy
    }

    #[test]
    fn each_new_annotation_value_asks_for_one_replay() {
        assert_eq!(requested(&policy(None, None)), None);
        assert_eq!(requested(&policy(Some("  "), None)), None);
        assert_eq!(
            requested(&policy(Some("2026-12-04T10:00:00Z"), None)).as_deref(),
            Some("2026-12-04T10:00:00Z")
        );
        assert_eq!(
            requested(&policy(
                Some("2026-12-04T10:00:00Z"),
                Some("2026-12-04T10:00:00Z")
            )),
            None,
            "answered already"
        );
        assert_eq!(
            requested(&policy(
                Some("2026-12-05T08:00:00Z"),
                Some("2026-12-04T10:00:00Z")
            ))
            .as_deref(),
            Some("2026-12-05T08:00:00Z")
        );
    }

    #[test]
    fn the_status_and_event_say_what_the_replay_did() {
        let clean = ReplayReport {
            matched: 5,
            replayed: 4,
            duplicates: 1,
            ..ReplayReport::default()
        };
        let recorded = status(&clean, "t1", Timestamp::UNIX_EPOCH);
        assert_eq!((recorded.count, recorded.failed), (5, 0));
        assert_eq!(recorded.trigger.as_deref(), Some("t1"));
        let normal = event(&clean, "t1");
        assert_eq!(normal.reason, "Replayed");
        assert!(
            normal.note.contains("replayed 5 dead letters"),
            "{}",
            normal.note
        );

        let partial = ReplayReport {
            matched: 3,
            replayed: 2,
            failed: 1,
            failures: vec!["sequence 7: original stream shop_gone does not exist".into()],
            ..ReplayReport::default()
        };
        let recorded = status(&partial, "t2", Timestamp::UNIX_EPOCH);
        assert_eq!((recorded.count, recorded.failed), (2, 1));
        assert_eq!(recorded.failures, partial.failures);
        let warning = event(&partial, "t2");
        assert_eq!(warning.reason, "ReplayIncomplete");
        assert!(warning.note.contains("sequence 7"), "{}", warning.note);
    }
}
