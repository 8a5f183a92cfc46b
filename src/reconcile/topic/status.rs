//! The status a Topic should show. Pure.

use async_nats::jetstream::stream::Info as StreamInfo;
use k8s_openapi::jiff::Timestamp;

use crate::{
    api::TopicStatus,
    conditions::{self, ConditionType, Reason, Verdict},
};

/// Builds the next status from the previous one. Stream figures come from `info` when the
/// broker answered, and are otherwise kept as last seen.
pub fn next_status(
    previous: Option<&TopicStatus>,
    ready: &Verdict,
    paused: bool,
    stream_name: &str,
    info: Option<&StreamInfo>,
    generation: Option<i64>,
    now: Timestamp,
) -> TopicStatus {
    let mut status = previous.cloned().unwrap_or_default();
    status.conditions = conditions::apply(&status.conditions, ready, generation, now);
    status.conditions = if paused {
        let verdict = Verdict::new(
            ConditionType::ReconciliationPaused,
            true,
            Reason::Paused,
            "the switchyard.dev/paused annotation is \"true\"; remove it to resume",
        );
        conditions::apply(&status.conditions, &verdict, generation, now)
    } else {
        conditions::remove(&status.conditions, ConditionType::ReconciliationPaused)
    };
    status.observed_generation = generation;
    status.stream_name = Some(stream_name.to_string());
    if let Some(info) = info {
        let state = &info.state;
        status.messages = Some(count(state.messages));
        status.bytes = Some(count(state.bytes));
        status.first_sequence = Some(count(state.first_sequence));
        status.last_sequence = Some(count(state.last_sequence));
        status.consumer_count = Some(count(state.consumer_count as u64));
    }
    status
}

/// Kubernetes APIs carry counts as int64; JetStream's never come near its limit.
fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_000).unwrap()
    }

    #[test]
    fn same_inputs_give_an_identical_status() {
        let ready = Verdict::ready(Reason::StreamReady, "ok");
        let first = next_status(None, &ready, false, "ns_t", None, Some(1), now());
        let later = Timestamp::from_second(2_000).unwrap();
        let second = next_status(Some(&first), &ready, false, "ns_t", None, Some(1), later);
        assert_eq!(first, second);
    }

    #[test]
    fn pause_adds_and_resume_removes_the_condition() {
        let ready = Verdict::ready(Reason::StreamReady, "ok");
        let paused = next_status(None, &ready, true, "ns_t", None, Some(1), now());
        assert!(
            conditions::find(&paused.conditions, ConditionType::ReconciliationPaused).is_some()
        );
        let resumed = next_status(Some(&paused), &ready, false, "ns_t", None, Some(1), now());
        assert!(
            conditions::find(&resumed.conditions, ConditionType::ReconciliationPaused).is_none()
        );
    }

    #[test]
    fn figures_survive_an_unanswered_broker() {
        let ready = Verdict::ready(Reason::StreamReady, "ok");
        let mut before = next_status(None, &ready, false, "ns_t", None, Some(1), now());
        before.messages = Some(42);
        let down = Verdict::not_ready(Reason::BrokerUnavailable, "down");
        let after = next_status(Some(&before), &down, false, "ns_t", None, Some(1), now());
        assert_eq!(after.messages, Some(42));
        assert_eq!(after.conditions[0].status, "False");
    }
}
