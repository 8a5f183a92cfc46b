//! Per-key order (`ordering: PerKey`): events of one partition key reach the handler one at a
//! time, in stream order; events of different keys run in parallel.
//!
//! The fetch loop, which sees events in stream order, puts each in line behind the earlier
//! events of its key ([`KeyOrder::enqueue`]); a delivery waits for its turn
//! ([`KeyOrder::turn`]) and, once handled, steps aside ([`KeyOrder::done`]). An event that
//! failed and waits for its redelivery keeps its place at the head of the line, so the later
//! events of its key wait for it, and only those: when JetStream redelivers it, it is already
//! first. It steps aside only when it is settled: acknowledged, terminated, or out of
//! deliveries (then dead-lettered by the server).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use tokio::sync::Notify;

/// One event in line, with the signal that its turn has come (a stored permit, so a signal
/// sent before the event waits is not lost). Only the new head is woken when the line moves:
/// waking every waiter would cost the square of a long line.
struct Waiting {
    sequence: u64,
    turn: Arc<Notify>,
    /// The latest delivery of the event seen: an older copy still waiting gives way to it.
    delivery: i64,
}

/// The lines of every key with events in flight.
#[derive(Default)]
pub struct KeyOrder {
    lines: Mutex<HashMap<String, VecDeque<Waiting>>>,
}

impl KeyOrder {
    /// Puts an event in line for its key; `true` if it is new there. A redelivery of an event
    /// still in line keeps its place and becomes the copy to handle. Must be called in stream
    /// order.
    pub fn enqueue(&self, key: &str, sequence: u64, delivery: i64) -> bool {
        let mut lines = self.lines.lock().expect("key lines");
        let line = lines.entry(key.to_string()).or_default();
        match line.iter_mut().find(|w| w.sequence == sequence) {
            Some(waiting) => {
                waiting.delivery = waiting.delivery.max(delivery);
                false
            }
            None => {
                line.push_back(Waiting {
                    sequence,
                    turn: Arc::new(Notify::new()),
                    delivery,
                });
                true
            }
        }
    }

    /// For a redelivery of an event still in line: makes it the copy to handle and says
    /// `true`; `false` if the event is not in line.
    pub fn redelivered(&self, key: &str, sequence: u64, delivery: i64) -> bool {
        let mut lines = self.lines.lock().expect("key lines");
        let Some(waiting) = lines
            .get_mut(key)
            .and_then(|line| line.iter_mut().find(|w| w.sequence == sequence))
        else {
            return false;
        };
        waiting.delivery = waiting.delivery.max(delivery);
        true
    }

    /// Whether `delivery` is the copy of the event to handle (no later redelivery arrived).
    /// A copy that is not steps back and passes its turn on to the current one.
    pub fn current(&self, key: &str, sequence: u64, delivery: i64) -> bool {
        let lines = self.lines.lock().expect("key lines");
        let Some(waiting) = lines
            .get(key)
            .and_then(|line| line.iter().find(|w| w.sequence == sequence))
        else {
            return false;
        };
        let current = waiting.delivery == delivery;
        if !current {
            waiting.turn.notify_one();
        }
        current
    }

    /// Resolves once `sequence` is first in its key's line (at once if it is not in line).
    pub async fn turn(&self, key: &str, sequence: u64) {
        let turn = {
            let lines = self.lines.lock().expect("key lines");
            let Some(line) = lines.get(key) else { return };
            match line.iter().position(|w| w.sequence == sequence) {
                Some(0) | None => return,
                Some(at) => line[at].turn.clone(),
            }
        };
        while !self.is_first(key, sequence) {
            turn.notified().await;
        }
    }

    fn is_first(&self, key: &str, sequence: u64) -> bool {
        let lines = self.lines.lock().expect("key lines");
        lines
            .get(key)
            .is_none_or(|line| line.front().is_none_or(|w| w.sequence == sequence))
    }

    /// The event is settled: the next of its key may go.
    pub fn done(&self, key: &str, sequence: u64) {
        let mut lines = self.lines.lock().expect("key lines");
        let Some(line) = lines.get_mut(key) else {
            return;
        };
        line.retain(|w| w.sequence != sequence);
        match line.front() {
            Some(head) => head.turn.notify_one(),
            None => {
                lines.remove(key);
            }
        }
    }

    /// Keys with events in line (for metrics and tests).
    pub fn keys(&self) -> usize {
        self.lines.lock().expect("key lines").len()
    }
}

/// The partition key of an event on a partitioned Topic: the subject tokens after the
/// prefix, the partition and the type (`<ns>.<topic>.<partition>.<type…>.<key…>`).
pub fn key_of(subject: &str, subject_prefix: &str, type_tokens: usize) -> String {
    let rest = subject
        .strip_prefix(subject_prefix)
        .and_then(|r| r.strip_prefix('.'))
        .unwrap_or(subject);
    rest.split('.')
        .skip(1 + type_tokens)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_come_after_partition_and_type() {
        assert_eq!(
            key_of("shop.orders.3.order.placed.c-42", "shop.orders", 2),
            "c-42"
        );
        assert_eq!(
            key_of("shop.orders.3.order.placed.eu.c-42", "shop.orders", 2),
            "eu.c-42"
        );
        assert_eq!(key_of("shop.orders.0.order.c-1", "shop.orders", 1), "c-1");
        assert_eq!(
            key_of("shop.orders.0.order", "shop.orders", 1),
            "",
            "no key: one line"
        );
    }

    #[tokio::test]
    async fn events_of_a_key_take_turns_in_stream_order() {
        let order = Arc::new(KeyOrder::default());
        for seq in [1, 2, 3] {
            assert!(order.enqueue("k", seq, 1));
        }
        order.enqueue("other", 4, 1);
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // Started in reverse: the turns still go by stream order.
        for seq in [3, 2, 1] {
            let (order, log) = (order.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                order.turn("k", seq).await;
                log.lock().unwrap().push(seq);
                tokio::time::sleep(Duration::from_millis(10)).await;
                order.done("k", seq);
            }));
        }
        // Another key is never held up by k.
        tokio::time::timeout(Duration::from_millis(5), order.turn("other", 4))
            .await
            .expect("independent keys run in parallel");
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), [1, 2, 3]);
        assert_eq!(order.keys(), 1, "only `other` still in line");
    }

    #[tokio::test]
    async fn a_redelivery_keeps_its_place_and_holds_back_its_key_only() {
        let order = KeyOrder::default();
        order.enqueue("k", 1, 1);
        order.enqueue("k", 2, 1);
        // 1 failed and waits for redelivery: 2 must not run.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), order.turn("k", 2))
                .await
                .is_err()
        );
        assert!(!order.enqueue("k", 1, 2), "a redelivery keeps its place");
        order.turn("k", 1).await;
        assert!(!order.current("k", 1, 1), "the first copy gives way");
        assert!(order.current("k", 1, 2));
        order.done("k", 1);
        tokio::time::timeout(Duration::from_millis(20), order.turn("k", 2))
            .await
            .expect("2 goes once 1 is settled");
    }
}
