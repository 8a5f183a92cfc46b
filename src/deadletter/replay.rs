//! Replaying dead letters: each selected one is published again to its original subject, with
//! the user's headers and payload as they were and headers marking the replay
//! ([`format::replay_headers`]). Shared by `switchyard dlq replay` and the DeadLetterPolicy's
//! replay annotation.
//!
//! A dead letter records the subject its original was stored under; where the original stream
//! rewrote the subject (a partitioned Topic inserts the partition), the replay publishes on the
//! subject before that rewrite, so the stream places the event as it did the first time.
//!
//! A replay reads the dead-letter stream up to the last sequence it held when the replay
//! started: dead letters arriving meanwhile wait for the next replay. Replayed dead letters stay
//! where they are; purging is a separate step. Each replay message carries an id made of the
//! dead letter and the replay's trigger, so the same trigger republishes a dead letter at most
//! once within its Topic's duplicate window, however often the replay is retried.

use std::{collections::HashMap, num::NonZeroU32, time::Duration};

use tokio::time::{Interval, MissedTickBehavior};

use super::{DeadLetter, Selection, format};
use crate::broker::{
    Broker, BrokerError, MAX_BATCH, READER_INACTIVE_THRESHOLD, StoredMessage, SubjectMapping,
};

/// Failures described in a report; the count covers the rest.
pub const MAX_FAILURES_DESCRIBED: usize = 10;

/// How to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Dead letters republished per second at most; `None`: as fast as the broker acknowledges.
    pub rate: Option<NonZeroU32>,
    /// What asked for this replay (the annotation's value, or an id per CLI run); part of each
    /// replay message's id, so that one trigger republishes each dead letter at most once.
    pub trigger: String,
}

/// Where a running replay stands, reported after each message read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Messages of the dead-letter stream read so far.
    pub read: u64,
    /// Messages the replay will read at most (those in the selected part of the stream when it
    /// started).
    pub to_read: u64,
    /// Dead letters selected so far.
    pub matched: u64,
    /// Dead letters republished (or found already republished) so far.
    pub done: u64,
    /// Selected dead letters that could not be republished so far.
    pub failed: u64,
}

/// What a replay did. `matched = replayed + duplicates + failed`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Dead letters the selection took (a message that is not a readable dead letter counts
    /// when the selection asks for its sequence only; see [`Selection::matches_unreadable`]).
    pub matched: u64,
    /// Dead letters stored again in their original stream.
    pub replayed: u64,
    /// Dead letters this trigger had already replayed within the duplicate window: the stream
    /// kept the earlier copy.
    pub duplicates: u64,
    /// Dead letters that could not be republished.
    pub failed: u64,
    /// The first [`MAX_FAILURES_DESCRIBED`] failures, each naming the dead letter's sequence
    /// and what went wrong.
    pub failures: Vec<String>,
}

impl ReplayReport {
    fn fail(&mut self, description: String) {
        self.failed += 1;
        if self.failures.len() < MAX_FAILURES_DESCRIBED {
            self.failures.push(description);
        }
    }
}

/// Replays the dead letters of `dead_letter_stream` that `selection` takes, in stream order,
/// calling `progress` after each message read. A dead letter that cannot be republished (its
/// original stream is gone, the message is unreadable, the server refuses it) is counted as
/// failed and the replay goes on; losing NATS stops the replay with
/// [`BrokerError::Unavailable`] (retrying with the same trigger does not republish what was
/// already done). Fails with [`crate::broker::codes::STREAM_NOT_FOUND`] if the stream does not
/// exist.
pub async fn replay(
    broker: &Broker,
    dead_letter_stream: &str,
    selection: &Selection,
    options: &ReplayOptions,
    mut progress: impl FnMut(Progress),
) -> Result<ReplayReport, BrokerError> {
    let bounds = broker.stream_bounds(dead_letter_stream).await?;
    let mut report = ReplayReport::default();
    let Some(range) = selection
        .sequences_to_read(bounds.first, bounds.last)
        .filter(|_| bounds.messages > 0)
    else {
        return Ok(report);
    };
    let mut state = Progress {
        to_read: bounds.messages.min(range.end() - range.start() + 1),
        ..Progress::default()
    };
    progress(state);
    let mut reader = broker.read_stream(dead_letter_stream, range, false).await?;
    let mut pace = Pace::new(options.rate);
    let batch_size = batch_size(options.rate);
    let mut step = Replay {
        broker,
        stream: dead_letter_stream,
        trigger: &options.trigger,
        mappings: HashMap::new(),
    };
    let replayed = async {
        loop {
            let batch = reader.next_batch(batch_size).await?;
            if batch.is_empty() {
                return Ok(());
            }
            for message in batch {
                state.read += 1;
                step.one(selection, &message, &mut pace, &mut report)
                    .await?;
                state.matched = report.matched;
                state.done = report.replayed + report.duplicates;
                state.failed = report.failed;
                progress(state);
            }
        }
    }
    .await;
    // The reader's consumer goes in every case; failing to delete it only leaves it to expire.
    let _ = reader.close().await;
    replayed.map(|()| report)
}

/// Dead letters read at once: a paced replay must finish a batch well within the time the
/// server keeps an idle reader, so it reads what it publishes in a quarter of that time.
fn batch_size(rate: Option<NonZeroU32>) -> usize {
    let quarter = READER_INACTIVE_THRESHOLD.as_secs() / 4;
    rate.map_or(MAX_BATCH, |rate| {
        usize::try_from(u64::from(rate.get()) * quarter)
            .unwrap_or(MAX_BATCH)
            .clamp(1, MAX_BATCH)
    })
}

/// One replay's fixed facts, and what it learnt of the original streams.
struct Replay<'a> {
    broker: &'a Broker,
    stream: &'a str,
    trigger: &'a str,
    /// The subject transform of each original stream met so far.
    mappings: HashMap<String, Option<SubjectMapping>>,
}

impl Replay<'_> {
    /// Replays `message` if the selection takes it, recording the outcome in `report`; only a
    /// lost connection is an error.
    async fn one(
        &mut self,
        selection: &Selection,
        message: &StoredMessage,
        pace: &mut Pace,
        report: &mut ReplayReport,
    ) -> Result<(), BrokerError> {
        let sequence = message.sequence;
        let dead_letter = match DeadLetter::from_headers(&message.headers) {
            Ok(dead_letter) if selection.matches(&dead_letter, sequence) => dead_letter,
            Ok(_) => return Ok(()),
            Err(problem) => {
                if selection.matches_unreadable(sequence) {
                    report.matched += 1;
                    report.fail(format!(
                        "sequence {sequence}: cannot replay, {problem}; left in the stream"
                    ));
                }
                return Ok(());
            }
        };
        report.matched += 1;
        let subject = self.published_subject(&dead_letter).await?;
        pace.wait().await;
        let headers = format::replay_headers(&message.headers, self.stream, sequence, self.trigger);
        match self
            .broker
            .store_into(
                &dead_letter.stream,
                subject.clone(),
                headers,
                message.payload.clone(),
            )
            .await
        {
            Ok(stored) if stored.duplicate => report.duplicates += 1,
            Ok(_) => report.replayed += 1,
            Err(e @ BrokerError::Unavailable(_)) => return Err(e),
            Err(e) => report.fail(format!(
                "sequence {sequence}: cannot republish to {subject} in stream {}: {e}",
                dead_letter.stream
            )),
        }
        Ok(())
    }

    /// The subject the original was published on: the stored one, unless its stream rewrote
    /// it (a partitioned Topic adds the partition), which publishing it again would repeat.
    async fn published_subject(&mut self, dead_letter: &DeadLetter) -> Result<String, BrokerError> {
        if !self.mappings.contains_key(&dead_letter.stream) {
            let mapping = match self.broker.subject_mapping(&dead_letter.stream).await {
                Ok(mapping) => mapping,
                Err(e @ BrokerError::Unavailable(_)) => return Err(e),
                // The publish names what is wrong with the stream.
                Err(_) => None,
            };
            self.mappings.insert(dead_letter.stream.clone(), mapping);
        }
        Ok(self.mappings[&dead_letter.stream]
            .as_ref()
            .and_then(|mapping| mapping.published_subject(&dead_letter.subject))
            .unwrap_or_else(|| dead_letter.subject.clone()))
    }
}

/// Spaces publishes evenly at a rate. A publish that takes longer than its slot delays the
/// following ones rather than letting them catch up in a burst.
struct Pace(Option<Interval>);

impl Pace {
    fn new(rate: Option<NonZeroU32>) -> Self {
        Self(rate.map(|rate| {
            let period = (Duration::from_secs(1) / rate.get()).max(Duration::from_nanos(1));
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        }))
    }

    async fn wait(&mut self) {
        if let Some(interval) = &mut self.0 {
            interval.tick().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lower bounds only: a loaded machine may be slower, never faster.
    #[tokio::test]
    async fn a_rate_spaces_publishes_evenly() {
        let mut pace = Pace::new(NonZeroU32::new(1000));
        let start = tokio::time::Instant::now();
        for _ in 0..51 {
            pace.wait().await;
        }
        // The first publish goes at once, each next one 1 ms later.
        assert!(
            start.elapsed() >= Duration::from_millis(50),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_slow_publish_does_not_cause_a_burst() {
        let mut pace = Pace::new(NonZeroU32::new(100));
        pace.wait().await;
        tokio::time::sleep(Duration::from_millis(55)).await;
        let late = tokio::time::Instant::now();
        for _ in 0..3 {
            pace.wait().await;
        }
        // Five slots were missed; catching up would let all three through at once.
        assert!(
            late.elapsed() >= Duration::from_millis(20),
            "{:?}",
            late.elapsed()
        );
    }

    #[tokio::test]
    async fn without_a_rate_nothing_is_paced() {
        assert!(Pace::new(None).0.is_none());
        let huge = Pace::new(NonZeroU32::new(u32::MAX));
        assert!(
            huge.0.is_some(),
            "a rate beyond one per nanosecond still paces"
        );
    }

    #[test]
    fn paced_replays_read_small_enough_batches() {
        assert_eq!(batch_size(None), MAX_BATCH);
        assert_eq!(batch_size(NonZeroU32::new(1)), 15);
        assert_eq!(batch_size(NonZeroU32::new(10)), 150);
        assert_eq!(batch_size(NonZeroU32::new(100)), MAX_BATCH);
    }

    #[test]
    fn reports_describe_the_first_failures_and_count_all() {
        let mut report = ReplayReport::default();
        for n in 0..25 {
            report.fail(format!("sequence {n}: refused"));
        }
        assert_eq!(report.failed, 25);
        assert_eq!(report.failures.len(), MAX_FAILURES_DESCRIBED);
        assert_eq!(report.failures[0], "sequence 0: refused");
    }
}
