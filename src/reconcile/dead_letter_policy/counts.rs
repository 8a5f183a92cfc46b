//! Counting dead letters per reason and per Subscription from the dead-letter stream itself.
//! Pure. The status keeps the counts and the stream sequence they reach; each reconcile reads
//! only the dead letters stored after it, so a dead letter counts once however often the
//! operator restarts, and an idle policy costs no reading at all.

use std::collections::BTreeMap;

use async_nats::HeaderMap;

use crate::{
    api::dead_letter_policy::{CapturedCounts, DeadLetterPolicyStatus, SubscriptionDeadLetters},
    broker::StoredMessage,
    deadletter::{ReasonKind, format::header},
    naming,
};

/// Most dead letters read in one reconcile; a larger backlog is counted over the next ones.
pub const MAX_COUNTED_PER_PASS: usize = 10_000;

/// The stretch of the dead-letter stream still to count, or `None` if everything is counted.
/// Dead letters removed before they were counted (expired, purged) are skipped.
pub fn uncounted(
    status: Option<&DeadLetterPolicyStatus>,
    first: u64,
    last: u64,
) -> Option<(u64, u64)> {
    let counted = status
        .and_then(|s| s.counted_through_sequence)
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    let start = counted.saturating_add(1).max(first);
    (last > 0 && start <= last).then_some((start, last))
}

/// What one pass counted: how many dead letters per reason and Subscription, and the stream
/// sequence it reached.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    pub through: u64,
    pub reasons: CapturedCounts,
    /// Subscription name → dead letters.
    pub subscriptions: BTreeMap<String, i64>,
}

/// Counts the dead letters among `read` (messages of the stream in order). Messages that are
/// no dead letters (a Topic target may hold other events too) count for nothing. The counts
/// reach `through` even when no message of the stretch was left to read.
pub fn count(namespace: &str, read: &[StoredMessage], through: u64) -> Counted {
    let mut counted = Counted {
        through: read.last().map_or(through, |m| m.sequence.max(through)),
        ..Counted::default()
    };
    for message in read {
        let Some(kind) = reason_of(&message.headers) else {
            continue;
        };
        let slot = match kind {
            ReasonKind::MaxDeliveries => &mut counted.reasons.max_deliveries,
            ReasonKind::HandlerRejected => &mut counted.reasons.handler_rejected,
            ReasonKind::SchemaViolation => &mut counted.reasons.schema_violation,
            ReasonKind::Terminated => &mut counted.reasons.terminated,
        };
        *slot += 1;
        let subscription = message
            .headers
            .get(header::ORIGINAL_CONSUMER)
            .and_then(|consumer| naming::subscription_of_consumer(consumer.as_str()))
            .filter(|(ns, _)| *ns == namespace);
        if let Some((_, name)) = subscription {
            *counted.subscriptions.entry(name.to_string()).or_default() += 1;
        }
    }
    counted
}

fn reason_of(headers: &HeaderMap) -> Option<ReasonKind> {
    headers.get(header::REASON)?.as_str().parse().ok()
}

/// Adds a pass's counts to the status.
pub fn add(status: &mut DeadLetterPolicyStatus, counted: &Counted) {
    let captured = status.captured.get_or_insert_with(CapturedCounts::default);
    captured.max_deliveries += counted.reasons.max_deliveries;
    captured.handler_rejected += counted.reasons.handler_rejected;
    captured.schema_violation += counted.reasons.schema_violation;
    captured.terminated += counted.reasons.terminated;
    let mut per_subscription: BTreeMap<String, i64> = status
        .subscriptions
        .drain(..)
        .map(|s| (s.name, s.dead_letters))
        .collect();
    for (name, more) in &counted.subscriptions {
        *per_subscription.entry(name.clone()).or_default() += more;
    }
    status.subscriptions = per_subscription
        .into_iter()
        .map(|(name, dead_letters)| SubscriptionDeadLetters { name, dead_letters })
        .collect();
    status.counted_through_sequence = Some(i64::try_from(counted.through).unwrap_or(i64::MAX));
}

/// The dead letters of one Subscription as its policy's status counts them.
pub fn of_subscription(status: Option<&DeadLetterPolicyStatus>, name: &str) -> Option<i64> {
    let status = status?;
    status.counted_through_sequence?;
    Some(
        status
            .subscriptions
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.dead_letters),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(sequence: u64, headers: HeaderMap) -> StoredMessage {
        StoredMessage {
            subject: "_dlq.shop.failures.order.placed".into(),
            sequence,
            headers,
            payload: Default::default(),
            time: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn letter(sequence: u64, reason: &str, consumer: &str) -> StoredMessage {
        let mut headers = HeaderMap::new();
        headers.insert(header::REASON, reason);
        headers.insert(header::ORIGINAL_CONSUMER, consumer);
        message(sequence, headers)
    }

    #[test]
    fn only_the_stretch_not_yet_counted_is_read() {
        assert_eq!(uncounted(None, 1, 10), Some((1, 10)));
        assert_eq!(uncounted(None, 0, 0), None, "an empty stream");
        let status = DeadLetterPolicyStatus {
            counted_through_sequence: Some(10),
            ..Default::default()
        };
        assert_eq!(uncounted(Some(&status), 1, 10), None, "all counted");
        assert_eq!(uncounted(Some(&status), 1, 12), Some((11, 12)));
        // Dead letters that expired before they were counted are skipped.
        assert_eq!(uncounted(Some(&status), 50, 60), Some((50, 60)));
    }

    #[test]
    fn dead_letters_count_per_reason_and_subscription() {
        let read = [
            letter(3, "MaxDeliveries", "sub_shop_billing"),
            letter(
                4,
                "HandlerRejected",
                "sub_shop_billing_billing-worker-7d9-abc",
            ),
            letter(5, "SchemaViolation", "sub_shop_audit"),
            letter(6, "Terminated", "someone-elses-consumer"),
            letter(7, "MaxDeliveries", "sub_other_billing"),
            message(8, HeaderMap::new()),
        ];
        let counted = count("shop", &read, 8);
        assert_eq!(counted.through, 8);
        assert_eq!(
            counted.reasons,
            CapturedCounts {
                max_deliveries: 2,
                handler_rejected: 1,
                schema_violation: 1,
                terminated: 1,
            }
        );
        assert_eq!(
            counted.subscriptions,
            BTreeMap::from([("audit".to_string(), 1), ("billing".to_string(), 2)])
        );
    }

    #[test]
    fn counts_add_up_over_passes() {
        let mut status = DeadLetterPolicyStatus::default();
        add(
            &mut status,
            &count("shop", &[letter(1, "MaxDeliveries", "sub_shop_billing")], 1),
        );
        assert_eq!(of_subscription(Some(&status), "billing"), Some(1));
        assert_eq!(of_subscription(Some(&status), "audit"), Some(0));
        add(
            &mut status,
            &count(
                "shop",
                &[
                    letter(2, "MaxDeliveries", "sub_shop_billing"),
                    letter(3, "HandlerRejected", "sub_shop_audit"),
                ],
                3,
            ),
        );
        assert_eq!(status.counted_through_sequence, Some(3));
        let captured = status.captured.clone().unwrap();
        assert_eq!((captured.max_deliveries, captured.handler_rejected), (2, 1));
        assert_eq!(of_subscription(Some(&status), "billing"), Some(2));
        assert_eq!(of_subscription(Some(&status), "audit"), Some(1));
        // Nothing left to read in the stretch still moves the mark.
        add(&mut status, &count("shop", &[], 9));
        assert_eq!(status.counted_through_sequence, Some(9));
        assert_eq!(status.captured, Some(captured));
    }

    #[test]
    fn a_policy_that_never_counted_knows_no_subscription_figure() {
        assert_eq!(of_subscription(None, "billing"), None);
        assert_eq!(
            of_subscription(Some(&DeadLetterPolicyStatus::default()), "billing"),
            None
        );
    }
}
