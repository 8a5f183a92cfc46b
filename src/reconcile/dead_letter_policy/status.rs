//! What a DeadLetterPolicy's status shows besides Ready. Pure.

use async_nats::jetstream::stream::Info as StreamInfo;
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};

use super::DeadLetterPolicyReason;
use crate::{
    api::DeadLetterPolicyStatus,
    conditions::{ConditionType, Verdict},
};

/// Writes the stream name and, when the broker answered, how many dead letters it holds and
/// when the last one arrived; without an answer the figures stay as last seen.
pub fn project(status: &mut DeadLetterPolicyStatus, stream: &str, info: Option<&StreamInfo>) {
    status.stream_name = Some(stream.to_string());
    let Some(info) = info else { return };
    let state = &info.state;
    status.dead_letters = Some(i64::try_from(state.messages).unwrap_or(i64::MAX));
    if state.messages > 0 {
        let nanos = state.last_timestamp.unix_timestamp_nanos();
        if let Ok(last) = Timestamp::from_nanosecond(nanos) {
            status.last_dead_letter_time = Some(Time(last));
        }
    }
}

/// Whether `held` dead letters reached `threshold`.
pub fn accumulation(held: u64, threshold: i64) -> Verdict<DeadLetterPolicyReason> {
    let reached = i64::try_from(held).unwrap_or(i64::MAX) >= threshold;
    let (reason, message) = if reached {
        (
            DeadLetterPolicyReason::AboveThreshold,
            format!(
                "{held} dead letters held, alertThreshold is {threshold}; inspect them with `switchyard dlq list`, replay or purge them"
            ),
        )
    } else {
        (
            DeadLetterPolicyReason::BelowThreshold,
            format!("{held} dead letters held, below alertThreshold {threshold}"),
        )
    };
    Verdict::new(
        ConditionType::DeadLettersAccumulating,
        reached,
        reason,
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(messages: u64) -> StreamInfo {
        let config = async_nats::jetstream::stream::Config {
            name: "shop_payments_dlq".into(),
            ..Default::default()
        };
        serde_json::from_value(serde_json::json!({
            "config": config,
            "created": "2026-11-25T00:00:00Z",
            "state": {
                "messages": messages, "bytes": 10 * messages, "first_seq": 1, "last_seq": messages,
                "first_ts": "2026-11-25T00:00:00Z", "last_ts": "2026-11-25T01:02:03Z",
                "consumer_count": 0
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_status_counts_dead_letters_and_the_time_of_the_last() {
        let mut status = DeadLetterPolicyStatus::default();
        project(&mut status, "shop_payments_dlq", Some(&info(3)));
        assert_eq!(status.stream_name.as_deref(), Some("shop_payments_dlq"));
        assert_eq!(status.dead_letters, Some(3));
        assert_eq!(
            status
                .last_dead_letter_time
                .as_ref()
                .map(|t| t.0.to_string()),
            Some("2026-11-25T01:02:03Z".to_string())
        );
        // Without an answer from the broker the figures stay.
        project(&mut status, "shop_payments_dlq", None);
        assert_eq!(status.dead_letters, Some(3));
    }

    #[test]
    fn accumulating_from_the_threshold_on() {
        assert!(!accumulation(0, 1).status);
        assert!(accumulation(1, 1).status);
        assert!(!accumulation(9, 10).status);
        let above = accumulation(10, 10);
        assert!(above.status);
        assert_eq!(above.reason, DeadLetterPolicyReason::AboveThreshold);
        assert!(
            above.message.contains("10 dead letters"),
            "{}",
            above.message
        );
    }
}
