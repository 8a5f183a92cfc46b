//! When each event first reached the handler, for the `firstdeliverytime` extension.
//!
//! JetStream tells a consumer how often it delivered an event and when the stream stored it,
//! not when it first delivered it. So the dispatcher notes the time itself: a first delivery
//! happens now, and when an event goes back to JetStream to be redelivered later (a negative
//! acknowledgement), the time of its first delivery is kept here until the redelivery comes
//! back and is settled. Only events that failed are kept, so the cost per event is nil on the
//! path that succeeds.
//!
//! The memory is this process's and bounded: a redelivery that reaches another replica, a
//! restarted dispatcher, or an event pushed out by [`CAPACITY`] newer failures, has no known
//! first delivery, and its request carries no `firstdeliverytime` rather than a guess.

use std::{collections::BTreeMap, sync::Mutex};

use time::OffsetDateTime;

/// The most failed events remembered. When more fail, the oldest (the lowest stream sequence)
/// are forgotten first.
pub const CAPACITY: usize = 16_384;

/// First-delivery times of events handed back to JetStream, by stream sequence.
pub struct FirstDeliveries {
    capacity: usize,
    times: Mutex<BTreeMap<u64, OffsetDateTime>>,
}

impl Default for FirstDeliveries {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

impl FirstDeliveries {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            times: Mutex::default(),
        }
    }

    /// The first-delivery time of the event at `sequence`, delivered for the `delivered`-th time
    /// (JetStream's count) `now`: `now` on its first delivery, else what was remembered.
    pub fn of(&self, sequence: u64, delivered: i64, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if delivered <= 1 {
            return Some(now);
        }
        self.lock().get(&sequence).copied()
    }

    /// Keeps the first-delivery time of an event going back to JetStream for redelivery. An
    /// unknown time is not noted: a later time would pass for the first.
    pub fn remember(&self, sequence: u64, first: Option<OffsetDateTime>) {
        let Some(first) = first else {
            return;
        };
        let mut times = self.lock();
        times.entry(sequence).or_insert(first);
        while times.len() > self.capacity {
            times.pop_first();
        }
    }

    /// Forgets a settled event. Only a redelivery can have been remembered, so first
    /// deliveries cost nothing here.
    pub fn settled(&self, sequence: u64, delivered: i64) {
        if delivered > 1 {
            self.lock().remove(&sequence);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, OffsetDateTime>> {
        // The map holds plain values: one left by a panicking holder is still consistent.
        self.times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn a_first_delivery_is_now_and_costs_no_memory() {
        let memory = FirstDeliveries::default();
        assert_eq!(memory.of(7, 1, at(0)), Some(at(0)));
        memory.settled(7, 1);
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn a_redelivery_gets_the_time_of_the_first_delivery() {
        let memory = FirstDeliveries::default();
        let first = memory.of(7, 1, at(0));
        memory.remember(7, first);
        assert_eq!(memory.of(7, 2, at(5)), Some(at(0)));
        // Failing again keeps the first time, not the second.
        memory.remember(7, memory.of(7, 2, at(5)));
        assert_eq!(memory.of(7, 3, at(9)), Some(at(0)));
        memory.settled(7, 3);
        assert_eq!(memory.of(7, 4, at(12)), None, "forgotten once settled");
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn a_redelivery_first_delivered_elsewhere_has_no_time() {
        let memory = FirstDeliveries::default();
        assert_eq!(memory.of(9, 2, at(3)), None);
        memory.remember(9, None);
        assert_eq!(
            memory.of(9, 3, at(6)),
            None,
            "a later time never passes for the first"
        );
    }

    #[test]
    fn the_oldest_events_are_forgotten_beyond_the_capacity() {
        let memory = FirstDeliveries::with_capacity(3);
        for sequence in [5, 1, 9, 3] {
            memory.remember(sequence, Some(at(sequence as i64)));
        }
        assert_eq!(memory.len(), 3);
        assert_eq!(memory.of(1, 2, at(20)), None, "lowest sequence went first");
        for sequence in [3, 5, 9] {
            assert_eq!(memory.of(sequence, 2, at(20)), Some(at(sequence as i64)));
        }
    }
}
