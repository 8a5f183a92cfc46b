//! What a Subscription's status shows besides its conditions. Pure.

use async_nats::jetstream::consumer::Info as ConsumerInfo;

use crate::api::SubscriptionStatus;

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
