//! Per-key order (`ordering: PerKey`): events of one partition key reach the handler one at a
//! time, in stream order; events of different keys run in parallel.
//!
//! The fetch loop puts each event in line behind the earlier events of its key
//! ([`KeyOrder::enqueue`]); one task per event waits for its turn ([`KeyOrder::turn`]),
//! handles it (retrying a failure in place, so the key's order never depends on JetStream
//! redelivering it), and steps aside once it is settled ([`KeyOrder::done`]).
//!
//! JetStream redelivers what it hears nothing about within its ack deadline, so events that
//! wait are kept alive ([`KeyOrder::due`], on a [`KeepAlive`] schedule), a key's events
//! together and head first. A redelivered copy of an event still in line keeps the event's
//! place and becomes the copy to answer.
//!
//! When a dispatcher stops or dies, JetStream hands its events to the next one in an order
//! that need not be the stream's: the order their ack deadlines passed (a replica killed
//! halfway through refreshing a key leaves its head fresher than its followers), and a
//! redelivery JetStream could not hand out when it tried (the pinned client had no request
//! open) goes behind the others. So the taker sorts: JetStream hands out every redelivery it
//! has queued before any new event, and while a consumer's redeliveries arrive
//! ([`Handover`]), none of its events start; they line up by sequence, and start once the
//! redeliveries are through.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{Notify, watch};

/// One event in line.
struct Entry<T> {
    sequence: u64,
    /// Signals that its turn has come (a stored permit, so a signal sent before the event
    /// waits is not lost). Only the new head is woken when the line moves: waking every
    /// waiter would cost the square of a long line.
    turn: Arc<Notify>,
    /// Its task took its turn: nothing may be put in line ahead of it any more.
    started: bool,
    /// The latest copy JetStream delivered, and its delivery count.
    copy: T,
    delivered: i64,
    /// When JetStream last heard of it: delivered, or told it is in progress.
    heard: Instant,
}

/// What [`KeyOrder::enqueue`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lined {
    /// It is new in line: it needs a task to handle it.
    New,
    /// A redelivery of an event in line: the waiting entry goes on with this copy.
    Again,
}

/// The lines of every key with events in hand.
pub struct KeyOrder<T> {
    lines: Mutex<HashMap<String, VecDeque<Entry<T>>>>,
}

impl<T> Default for KeyOrder<T> {
    fn default() -> Self {
        Self {
            lines: Mutex::default(),
        }
    }
}

impl<T: Clone> KeyOrder<T> {
    /// Puts an event in line for its key, by stream sequence, but never ahead of an event
    /// already being handled (a redelivery of an older event than those in line can only come
    /// after a handover, and the one being handled cannot be taken back).
    pub fn enqueue(
        &self,
        key: &str,
        sequence: u64,
        delivered: i64,
        copy: T,
        now: Instant,
    ) -> Lined {
        let mut lines = self.lines.lock().expect("key lines");
        let line = lines.entry(key.to_string()).or_default();
        if let Some(entry) = line.iter_mut().find(|e| e.sequence == sequence) {
            if delivered >= entry.delivered {
                entry.copy = copy;
                entry.delivered = delivered;
                entry.heard = now;
            }
            return Lined::Again;
        }
        let at = line
            .iter()
            .position(|e| e.sequence > sequence && !e.started)
            .unwrap_or(line.len());
        line.insert(
            at,
            Entry {
                sequence,
                turn: Arc::new(Notify::new()),
                started: false,
                copy,
                delivered,
                heard: now,
            },
        );
        Lined::New
    }

    /// Resolves once `sequence` is first in its key's line (at once if it is not in line), and
    /// marks it as being handled.
    pub async fn turn(&self, key: &str, sequence: u64) {
        loop {
            let turn = {
                let mut lines = self.lines.lock().expect("key lines");
                let Some(line) = lines.get_mut(key) else {
                    return;
                };
                match line.iter().position(|e| e.sequence == sequence) {
                    None => return,
                    Some(0) => {
                        line[0].started = true;
                        return;
                    }
                    Some(at) => line[at].turn.clone(),
                }
            };
            turn.notified().await;
        }
    }

    /// The copy of the event to answer, and its delivery count; `None` if it is not in line.
    pub fn current(&self, key: &str, sequence: u64) -> Option<(T, i64)> {
        let lines = self.lines.lock().expect("key lines");
        lines
            .get(key)?
            .iter()
            .find(|e| e.sequence == sequence)
            .map(|e| (e.copy.clone(), e.delivered))
    }

    /// The event is settled: the next of its key may go.
    pub fn done(&self, key: &str, sequence: u64) {
        let mut lines = self.lines.lock().expect("key lines");
        let Some(line) = lines.get_mut(key) else {
            return;
        };
        line.retain(|e| e.sequence != sequence);
        match line.front() {
            Some(head) => head.turn.notify_one(),
            None => {
                lines.remove(key);
            }
        }
    }

    /// The copies to tell JetStream "in progress" now: every event of each key whose oldest
    /// word to JetStream is `after` old or more, in line order. They count as heard from
    /// `now`.
    pub fn due(&self, now: Instant, after: Duration) -> Vec<T> {
        let mut lines = self.lines.lock().expect("key lines");
        let mut due = Vec::new();
        for line in lines.values_mut() {
            if line.iter().any(|e| now.duration_since(e.heard) >= after) {
                for entry in line.iter_mut() {
                    entry.heard = now;
                    due.push(entry.copy.clone());
                }
            }
        }
        due
    }

    /// Empties every line, handing back the copies in line order (to return them to JetStream
    /// in that order).
    pub fn drain(&self) -> Vec<T> {
        let mut lines = self.lines.lock().expect("key lines");
        lines
            .drain()
            .flat_map(|(_, line)| line.into_iter().map(|e| e.copy))
            .collect()
    }

    /// Keys with events in line (for metrics and tests).
    pub fn keys(&self) -> usize {
        self.lines.lock().expect("key lines").len()
    }
}

/// A consumer's handover: JetStream is handing this dispatcher events another one held (or
/// this one, before a restart), and none of the consumer's events may start until they are
/// all in line.
pub struct Handover {
    under_way: watch::Sender<bool>,
}

impl Default for Handover {
    fn default() -> Self {
        Self {
            under_way: watch::Sender::new(false),
        }
    }
}

impl Handover {
    /// A redelivered event new to the lines arrived.
    pub fn begin(&self) {
        self.under_way.send_replace(true);
    }

    /// A first delivery arrived, or JetStream had no more to give: the redeliveries are through.
    pub fn end(&self) {
        self.under_way.send_replace(false);
    }

    pub fn under_way(&self) -> bool {
        *self.under_way.borrow()
    }

    /// Resolves once no handover is under way.
    pub async fn over(&self) {
        let _ = self
            .under_way
            .subscribe()
            .wait_for(|under_way| !under_way)
            .await;
    }
}

/// When events in line are kept alive, from the shortest time JetStream waits for word of an
/// event. Looking every eighth of it and refreshing what has gone unheard for three eighths,
/// no event goes unheard for more than half of it (margin for a slow network or a busy
/// machine), events that wait less than three eighths cost nothing, and one that waits long
/// costs one message per three eighths or so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// How often to look.
    pub every: Duration,
    /// How long an event may go unheard before it is refreshed.
    pub after: Duration,
}

impl KeepAlive {
    pub fn within(deadline: Duration) -> Self {
        Self {
            every: (deadline / 8).max(Duration::from_millis(1)),
            after: deadline * 3 / 8,
        }
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
    use super::*;

    fn enqueue(order: &KeyOrder<u64>, key: &str, sequence: u64) -> Lined {
        order.enqueue(key, sequence, 1, sequence, Instant::now())
    }

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
            assert_eq!(enqueue(&order, "k", seq), Lined::New);
        }
        enqueue(&order, "other", 4);
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
    async fn a_redelivery_keeps_its_place_and_becomes_the_copy_to_answer() {
        let order = KeyOrder::default();
        let now = Instant::now();
        order.enqueue("k", 1, 1, "first copy", now);
        order.enqueue("k", 2, 1, "two", now);
        order.turn("k", 1).await;
        assert_eq!(order.current("k", 1), Some(("first copy", 1)));
        assert_eq!(
            order.enqueue("k", 1, 2, "second copy", now),
            Lined::Again,
            "no second task, no second place"
        );
        assert_eq!(order.current("k", 1), Some(("second copy", 2)));
        assert!(
            tokio::time::timeout(Duration::from_millis(20), order.turn("k", 2))
                .await
                .is_err(),
            "2 waits while 1 is in hand"
        );
        order.done("k", 1);
        tokio::time::timeout(Duration::from_millis(20), order.turn("k", 2))
            .await
            .expect("2 goes once 1 is settled");
    }

    #[tokio::test]
    async fn an_older_event_handed_over_goes_ahead_of_waiting_ones_but_not_of_the_one_in_hand() {
        let order = KeyOrder::default();
        for seq in [5, 7, 9] {
            enqueue(&order, "k", seq);
        }
        order.turn("k", 5).await;
        enqueue(&order, "k", 6);
        enqueue(&order, "k", 3);
        assert_eq!(order.drain(), [5, 3, 6, 7, 9]);

        for seq in [5, 7] {
            enqueue(&order, "k", seq);
        }
        enqueue(&order, "k", 4);
        assert_eq!(order.drain(), [4, 5, 7], "5 had not started: 4 goes first");
    }

    #[test]
    fn waiting_keys_are_refreshed_whole_and_head_first_and_fresh_ones_not_at_all() {
        let order = KeyOrder::default();
        let start = Instant::now();
        let after = Duration::from_millis(75);
        order.enqueue("stuck", 1, 1, 1, start);
        order.enqueue("fresh", 2, 1, 2, start + Duration::from_millis(60));
        order.enqueue("stuck", 3, 1, 3, start + Duration::from_millis(70));
        let at = start + Duration::from_millis(80);
        assert_eq!(order.due(at, after), [1, 3], "the whole line, in order");
        assert!(order.due(at, after).is_empty(), "just heard");
        let later = start + Duration::from_millis(160);
        let mut due = order.due(later, after);
        due.sort();
        assert_eq!(due, [1, 2, 3]);
    }

    #[tokio::test]
    async fn events_handed_over_out_of_order_start_in_order_once_the_handover_is_through() {
        let order = Arc::new(KeyOrder::default());
        let handover = Arc::new(Handover::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        // JetStream hands 7 and 9 over before 5.
        for seq in [7, 9, 5] {
            handover.begin();
            assert_eq!(order.enqueue("k", seq, 2, seq, Instant::now()), Lined::New);
            let (order, handover, log) = (order.clone(), handover.clone(), log.clone());
            tasks.push(tokio::spawn(async move {
                handover.over().await;
                order.turn("k", seq).await;
                log.lock().unwrap().push(seq);
                order.done("k", seq);
            }));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(log.lock().unwrap().is_empty(), "nothing starts meanwhile");
        handover.end();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), [5, 7, 9]);
    }

    #[test]
    fn the_keep_alive_schedule_leaves_no_event_unheard_for_half_the_deadline() {
        for deadline in [200, 1_000, 30_000].map(Duration::from_millis) {
            let schedule = KeepAlive::within(deadline);
            let order = KeyOrder::default();
            let start = Instant::now();
            // Events arrive at odd moments between the looks.
            for (seq, offset) in [(1, 0), (2, 3), (3, 7)] {
                order.enqueue("k", seq, 1, seq, start + schedule.every * offset / 8);
            }
            let mut heard = start;
            let mut longest = Duration::ZERO;
            let mut refreshes = 0;
            // The looks are not in step with the arrivals.
            for look in 1..=200 {
                let now = start + schedule.every * look - schedule.every / 3;
                if !order.due(now, schedule.after).is_empty() {
                    longest = longest.max(now - heard);
                    heard = now;
                    refreshes += 1;
                }
            }
            assert!(
                longest <= deadline / 2,
                "{deadline:?}: unheard for {longest:?}"
            );
            assert!(
                refreshes <= 200 / 3 + 1,
                "{deadline:?}: {refreshes} refreshes in 200 looks"
            );
        }
        let schedule = KeepAlive::within(Duration::from_millis(200));
        let order = KeyOrder::default();
        let start = Instant::now();
        order.enqueue("k", 1, 1, 1, start);
        for look in 1..=2 {
            assert!(
                order
                    .due(start + schedule.every * look, schedule.after)
                    .is_empty(),
                "an event that waits less than 3/8 of the deadline costs nothing"
            );
        }
    }
}
