//! The relay: reads the captured advisories and turns each into exactly one stored dead letter.
//!
//! For each advisory, in this order: ask where the consumer's dead letters go; read the original
//! by its stream sequence; publish the copy under its dead-letter message id and wait until the
//! target stream stored it; release the original where it would otherwise stay forever; report;
//! only then acknowledge the advisory. A crash anywhere before that acknowledgement makes the
//! server deliver the advisory again, and the message id turns the second copy into a duplicate
//! the target drops, as long as it comes within the target's duplicate window (the advisory's
//! ack wait is far shorter than the default two minutes).
//!
//! Many advisories are in flight at once, up to a bound, each a few round trips: throughput is
//! the window over the round-trip time, not one round trip at a time.

use std::{
    collections::HashMap,
    future::Future,
    pin::pin,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::{HeaderValue, header::NATS_EXPECTED_STREAM};
use futures::{StreamExt, stream::FuturesUnordered};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{
    advisories::{AdvisoryStream, Failure},
    format::{DeadLetter, Reason, dead_letter_id, original_msg_id},
    route::{Route, Routes, Target},
};
use crate::broker::{
    Broker, BrokerError, Lookup, Read, StoredMessage,
    delivery::{BoundConsumer, Delivered},
};

/// How the relay reads and retries.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub stream: AdvisoryStream,
    /// The relay's durable consumer on the advisory stream.
    pub consumer: String,
    /// Advisories handled at once.
    pub max_in_flight: usize,
    /// How long an advisory handed to the relay stays its own before the server hands it out
    /// again. Far below the targets' duplicate windows, so that a copy made again after a crash
    /// is recognised as a duplicate.
    pub ack_wait: Duration,
    /// How long one request for advisories waits for them to arrive.
    pub fetch_wait: Duration,
    /// Delay before an advisory that could not be handled is tried again; it doubles with
    /// every attempt up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// On shutdown, how long the advisories in flight may take to finish; the server hands out
    /// the unfinished ones again later.
    pub drain_timeout: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            stream: AdvisoryStream::default(),
            consumer: "dead_letter_relay".into(),
            max_in_flight: 256,
            ack_wait: Duration::from_secs(30),
            fetch_wait: Duration::from_secs(5),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// The step of copying that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Reading the original.
    Read,
    /// Storing the copy.
    Store,
    /// Acknowledging the original on its consumer's behalf.
    Release,
}

/// What became of one advisory.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// The copy is stored.
    Copied {
        stream: String,
        sequence: u64,
        subject: String,
        /// An earlier attempt had stored it already (the relay was interrupted before it
        /// acknowledged the advisory): count it once.
        duplicate: bool,
        /// The original was acknowledged on its consumer's behalf (and the consumer confirmed),
        /// so the server removes it once no other consumer needs it.
        released: bool,
        at: OffsetDateTime,
    },
    /// The original no longer exists: the server removed it (limits, a deletion, or a
    /// termination in a WorkQueue or Interest stream). Nothing to copy.
    OriginalGone,
    /// The policy does not capture this kind of failure.
    NotCaptured,
    /// Not a consumer whose dead letters Switchyard keeps.
    NotManaged,
    /// The consumer's policy cannot take dead letters now; the advisory waits.
    Waiting { why: String, retry_in: Duration },
    /// A step failed; the advisory is tried again.
    Failed {
        step: Step,
        error: BrokerError,
        retry_in: Duration,
    },
    /// Not an advisory the relay understands; dropped.
    Malformed { subject: String, problem: String },
}

impl Outcome {
    /// A low-cardinality label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Copied {
                duplicate: false, ..
            } => "copied",
            Self::Copied {
                duplicate: true, ..
            } => "duplicate",
            Self::OriginalGone => "original_gone",
            Self::NotCaptured => "not_captured",
            Self::NotManaged => "not_managed",
            Self::Waiting { .. } => "waiting",
            Self::Failed { .. } => "failed",
            Self::Malformed { .. } => "malformed",
        }
    }

    /// When the advisory is tried again, if it is.
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            Self::Waiting { retry_in, .. } | Self::Failed { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }
}

/// One advisory handled, for the operator's counts, conditions and Events.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// What the advisory said; `None` if it could not be read.
    pub failure: Option<Failure>,
    /// The DeadLetterPolicy (`<namespace>/<name>`) the consumer's dead letters go to, if known.
    pub policy: Option<String>,
    /// How often the advisory was handed to a relay, this time included.
    pub attempt: u64,
    pub outcome: Outcome,
}

/// Copies dead letters as the captured advisories announce them.
pub struct Relay<R> {
    broker: Broker,
    routes: Arc<R>,
    reports: mpsc::Sender<Report>,
    config: RelayConfig,
    direct: DirectReads,
    unreleased: Unreleased,
}

impl<R: Routes> Relay<R> {
    /// A relay reporting every advisory it settles to `reports`, before it acknowledges the
    /// advisory: when the receiver falls behind, the relay waits. A report can therefore come
    /// twice when the relay is interrupted in between (the second says `duplicate`), and none is
    /// lost.
    pub fn new(
        broker: Broker,
        routes: Arc<R>,
        reports: mpsc::Sender<Report>,
        config: RelayConfig,
    ) -> Self {
        Self {
            broker,
            routes,
            reports,
            config,
            direct: DirectReads::default(),
            unreleased: Unreleased::default(),
        }
    }

    /// Runs until `shutdown` completes, then lets the advisories in flight finish (within the
    /// drain timeout). Broker outages, a deleted advisory stream or consumer, and server
    /// restarts are waited out and repaired: the relay never gives up.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = pin!(shutdown);
        let mut in_flight = FuturesUnordered::new();
        let mut reader: Option<BoundConsumer> = None;
        let mut trouble = Trouble::default();
        let max = self.config.max_in_flight.max(1);
        info!(
            stream = %self.config.stream.name,
            consumer = %self.config.consumer,
            "dead-letter relay starting"
        );
        'relay: loop {
            let Some(consumer) = reader.as_ref() else {
                match self.prepare().await {
                    Ok(bound) => {
                        trouble.cleared("reading advisories");
                        reader = Some(bound);
                    }
                    Err(e) => {
                        trouble.hit("cannot read the advisory stream", &e);
                        let mut pause = pin!(tokio::time::sleep(self.config.retry_initial));
                        loop {
                            tokio::select! {
                                _ = &mut shutdown => break 'relay,
                                _ = &mut pause => break,
                                // Advisories in flight go on while the reader waits.
                                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                            }
                        }
                    }
                }
                continue;
            };
            if in_flight.len() >= max {
                tokio::select! {
                    _ = &mut shutdown => break 'relay,
                    _ = in_flight.next() => {}
                }
                continue;
            }
            // Ask only for what fits: everything fetched is handled at once, so the advisories
            // in flight never exceed the bound and none waits unhandled past its ack wait.
            let batch = match consumer
                .fetch(max - in_flight.len(), self.config.fetch_wait)
                .await
            {
                Ok(batch) => batch,
                Err(e) => {
                    trouble.hit("cannot ask for advisories", &e);
                    reader = None;
                    continue;
                }
            };
            let mut batch = pin!(batch);
            loop {
                tokio::select! {
                    _ = &mut shutdown => break 'relay,
                    Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                    next = batch.next() => match next {
                        None => break,
                        Some(Ok(advisory)) => in_flight.push(self.handle(advisory)),
                        Some(Err(e)) => {
                            // The consumer or its stream went away, or the server answered
                            // with an error: set them up again before asking once more.
                            trouble.hit("reading advisories failed", &e);
                            reader = None;
                            break;
                        }
                    },
                }
            }
        }
        let drained =
            tokio::time::timeout(self.config.drain_timeout, in_flight.for_each(|()| async {}))
                .await;
        if drained.is_err() {
            info!(
                "dead-letter relay stopped with advisories in flight; they will be handled again"
            );
        }
    }

    async fn prepare(&self) -> Result<BoundConsumer, BrokerError> {
        let stream = &self.config.stream;
        stream
            .ensure(&self.broker, &self.config.consumer, self.config.ack_wait)
            .await?;
        self.broker
            .bind(&stream.name, &self.config.consumer)
            .await?
            .ok_or_else(|| {
                BrokerError::Unavailable(format!(
                    "consumer {} of stream {} vanished as it was created",
                    self.config.consumer, stream.name
                ))
            })
    }

    async fn handle(&self, advisory: Delivered) {
        let attempt = advisory
            .info()
            .map(|info| u64::try_from(info.delivered).unwrap_or(1).max(1))
            .unwrap_or(1);
        let report = self.settle(&advisory, attempt).await;
        log(&report);
        let retry_in = report.outcome.retry_in();
        // A receiver that is gone is not the relay's problem: dead letters are still stored.
        let _ = self.reports.send(report).await;
        let told = match retry_in {
            Some(delay) => advisory.nak(delay).await,
            None => advisory.ack().await,
        };
        if let Err(e) = told {
            // Unheard, the advisory comes again after its ack wait; handling it again is
            // harmless.
            debug!(error = %e, "could not settle an advisory");
        }
    }

    async fn settle(&self, advisory: &Delivered, attempt: u64) -> Report {
        let failure = match Failure::parse(advisory.subject(), advisory.payload()) {
            Ok(failure) => failure,
            Err(problem) => {
                return Report {
                    failure: None,
                    policy: None,
                    attempt,
                    outcome: Outcome::Malformed {
                        subject: advisory.subject().to_string(),
                        problem,
                    },
                };
            }
        };
        let retry_in = retry_delay(&self.config, attempt);
        let (policy, outcome) = match self.routes.route(&failure.stream, &failure.consumer).await {
            Route::NotManaged => (
                None,
                self.let_go(&failure, Outcome::NotManaged, retry_in).await,
            ),
            Route::Wait { why } => (None, Outcome::Waiting { why, retry_in }),
            Route::Deliver(target) => (
                Some(target.policy.clone()),
                self.copy(&failure, &target, retry_in).await,
            ),
        };
        Report {
            failure: Some(failure),
            policy,
            attempt,
            outcome,
        }
    }

    /// Copies the original of `failure` to `target`, then releases it if it would linger.
    async fn copy(&self, failure: &Failure, target: &Target, retry_in: Duration) -> Outcome {
        if !target.captures(failure.reason.kind()) {
            return self.let_go(failure, Outcome::NotCaptured, retry_in).await;
        }
        let failed = |step, error| Outcome::Failed {
            step,
            error,
            retry_in,
        };
        let id = dead_letter_id(&failure.stream, &failure.consumer, failure.sequence);
        let copy = match self.unreleased.recall(&id) {
            Some(copy) => copy,
            None => match self.store(failure, target).await {
                Ok(Some(copy)) => copy,
                Ok(None) => return Outcome::OriginalGone,
                Err((step, e)) => return failed(step, e),
            },
        };
        let released = if must_release(failure, target) {
            match self.release(failure).await {
                Ok(released) => released,
                Err(e) => {
                    self.unreleased.remember(id, copy);
                    return failed(Step::Release, e);
                }
            }
        } else {
            false
        };
        Outcome::Copied {
            stream: copy.stream,
            sequence: copy.sequence,
            subject: copy.subject,
            duplicate: copy.duplicate,
            released,
            at: copy.at,
        }
    }

    /// Reads the original and stores its copy; `None` if the original is gone.
    async fn store(
        &self,
        failure: &Failure,
        target: &Target,
    ) -> Result<Option<StoredCopy>, (Step, BrokerError)> {
        let Some(original) = self
            .read(&failure.stream, failure.sequence)
            .await
            .map_err(|e| (Step::Read, e))?
        else {
            return Ok(None);
        };
        let letter = DeadLetter {
            reason: failure.reason.clone(),
            subject: original.subject.clone(),
            stream: failure.stream.clone(),
            sequence: failure.sequence,
            consumer: failure.consumer.clone(),
            deliveries: failure.deliveries,
            stored_at: original.time,
            dead_lettered_at: OffsetDateTime::now_utc(),
            msg_id: original_msg_id(Some(&original.headers)),
        };
        let mut headers = letter.headers(Some(&original.headers));
        // A copy lands in the policy's stream or nowhere, even if another stream's subjects
        // took the target subject.
        if let Ok(stream) = target.stream.parse::<HeaderValue>() {
            headers.insert(NATS_EXPECTED_STREAM, stream);
        }
        let subject = target
            .layout
            .copy_subject(&target.subject_prefix, &original.subject);
        let stored = self
            .broker
            .store(subject.clone(), headers, original.payload)
            .await
            .map_err(|e| (Step::Store, e))?;
        Ok(Some(StoredCopy {
            stream: stored.stream,
            sequence: stored.sequence,
            subject,
            duplicate: stored.duplicate,
            at: letter.dead_lettered_at,
        }))
    }

    /// Settles a failure that is not copied. An original its consumer holds back for the relay
    /// is acknowledged, or it would come back to the handler that refused it.
    async fn let_go(&self, failure: &Failure, outcome: Outcome, retry_in: Duration) -> Outcome {
        if !failure.held {
            return outcome;
        }
        match self.release(failure).await {
            Ok(_) => outcome,
            Err(error) => Outcome::Failed {
                step: Step::Release,
                error,
                retry_in,
            },
        }
    }

    /// `false` if the consumer no longer exists, and so holds nothing.
    async fn release(&self, failure: &Failure) -> Result<bool, BrokerError> {
        self.broker
            .release(
                &failure.stream,
                &failure.consumer,
                failure.sequence,
                failure.deliveries,
            )
            .await
    }

    /// The original, or `None` if it is gone. Direct gets where the stream allows them (any
    /// replica answers), the stream leader otherwise.
    async fn read(
        &self,
        stream: &str,
        sequence: u64,
    ) -> Result<Option<StoredMessage>, BrokerError> {
        let via = self.direct.read_for(stream);
        let mut lookup = self.broker.stream_message(stream, sequence, via).await?;
        if lookup == Lookup::NotServed {
            self.direct.refused(stream);
            lookup = self
                .broker
                .stream_message(stream, sequence, Read::Leader)
                .await?;
        }
        Ok(match lookup {
            Lookup::Found(message) => Some(message),
            Lookup::Gone | Lookup::NotServed => None,
        })
    }
}

/// The delay before attempt `attempt + 1`: doubling from the initial delay up to the maximum.
fn retry_delay(config: &RelayConfig, attempt: u64) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1).min(20)).unwrap_or(20);
    config
        .retry_initial
        .saturating_mul(1 << doublings)
        .min(config.retry_max)
}

/// Whether the original must be acknowledged on its consumer's behalf once copied: when its
/// consumer holds it back for the relay, and when it reached its maximum deliveries in a
/// WorkQueue or Interest stream, where it would otherwise stay forever. A terminated original
/// was acknowledged by the termination itself.
fn must_release(failure: &Failure, target: &Target) -> bool {
    failure.held || (target.release_original && failure.reason == Reason::MaxDeliveries)
}

fn log(report: &Report) {
    let Some(failure) = &report.failure else {
        if let Outcome::Malformed { subject, problem } = &report.outcome {
            warn!(%subject, %problem, "dropping an unreadable advisory");
        }
        return;
    };
    let (stream, consumer, sequence) = (&failure.stream, &failure.consumer, failure.sequence);
    let reason = failure.reason.kind().as_str();
    match &report.outcome {
        Outcome::Copied {
            stream: target,
            sequence: at,
            duplicate,
            ..
        } => {
            debug!(%stream, %consumer, sequence, reason, %target, at, duplicate, "dead letter stored");
        }
        Outcome::OriginalGone => {
            info!(%stream, %consumer, sequence, reason, "the original of a dead letter is gone; nothing to copy");
        }
        Outcome::Failed { step, error, .. } => {
            warn!(%stream, %consumer, sequence, reason, ?step, %error, attempt = report.attempt, "dead letter not stored yet");
        }
        Outcome::Waiting { why, .. } => {
            debug!(%stream, %consumer, sequence, %why, attempt = report.attempt, "dead letter waits for its policy");
        }
        _ => {}
    }
}

/// A stored copy.
#[derive(Clone, Debug)]
struct StoredCopy {
    stream: String,
    sequence: u64,
    subject: String,
    duplicate: bool,
    at: OffsetDateTime,
}

/// Copies stored whose originals could not be released yet, by dead-letter id. The retry
/// releases without storing again: releasing can fail for longer than the target's duplicate
/// window (the original's consumer has no leader), and a copy stored after that window would
/// be a second one. Kept in memory: after a restart, the duplicate window is the protection.
#[derive(Default)]
struct Unreleased {
    copies: Mutex<HashMap<String, (StoredCopy, Instant)>>,
}

/// How long a copy waits for its original's release to be retried, and how many wait at most:
/// bounds the memory when consumers stay unreachable.
const UNRELEASED_TTL: Duration = Duration::from_secs(3600);
const UNRELEASED_MAX: usize = 100_000;

impl Unreleased {
    fn remember(&self, id: String, copy: StoredCopy) {
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        copies.retain(|_, (_, since)| now.duration_since(*since) < UNRELEASED_TTL);
        if copies.len() < UNRELEASED_MAX {
            copies.insert(id, (copy, now));
        }
    }

    /// The copy stored for `id` earlier, as a duplicate of itself, and forgets it.
    fn recall(&self, id: &str) -> Option<StoredCopy> {
        let mut copies = self.copies.lock().unwrap_or_else(|e| e.into_inner());
        copies.remove(id).map(|(copy, _)| StoredCopy {
            duplicate: true,
            ..copy
        })
    }
}

/// Streams found not to answer direct gets, and until when to believe it: a stream can be
/// given `allow_direct` later.
#[derive(Default)]
struct DirectReads {
    refused: Mutex<HashMap<String, Instant>>,
}

const DIRECT_RETRY: Duration = Duration::from_secs(300);

impl DirectReads {
    fn read_for(&self, stream: &str) -> Read {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        match refused.get(stream) {
            Some(until) if Instant::now() < *until => Read::Leader,
            _ => Read::Direct,
        }
    }

    fn refused(&self, stream: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        refused.retain(|_, until| *until > now);
        refused.insert(stream.to_string(), now + DIRECT_RETRY);
    }
}

/// Logs the relay's own trouble once when it starts and once when it ends, not on every retry.
#[derive(Default)]
struct Trouble {
    since: Option<Instant>,
}

impl Trouble {
    fn hit(&mut self, what: &str, error: &dyn std::fmt::Display) {
        if self.since.is_none() {
            warn!(%error, "dead-letter relay: {what}; retrying");
            self.since = Some(Instant::now());
        } else {
            debug!(%error, "dead-letter relay: {what}");
        }
    }

    fn cleared(&mut self, what: &str) {
        if let Some(since) = self.since.take() {
            info!(after = ?since.elapsed(), "dead-letter relay: {what} again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::dead_letter_policy::CaptureReason, deadletter::format::SubjectLayout};

    fn failure(reason: Reason, held: bool) -> Failure {
        Failure {
            stream: "s".into(),
            consumer: "c".into(),
            sequence: 1,
            deliveries: 3,
            reason,
            held,
        }
    }

    fn target(release_original: bool) -> Target {
        Target {
            policy: "ns/dlq".into(),
            stream: "ns_dlq_dlq".into(),
            subject_prefix: "ns.dlq".into(),
            layout: SubjectLayout {
                topic_prefix: "ns.orders".into(),
                partitioned: false,
            },
            capture: vec![CaptureReason::MaxDeliveries],
            release_original,
        }
    }

    #[test]
    fn originals_are_released_only_where_they_would_linger() {
        let max = failure(Reason::MaxDeliveries, false);
        let term = failure(Reason::HandlerRejected { status: 400 }, false);
        let held = failure(Reason::HandlerRejected { status: 400 }, true);
        assert!(must_release(&max, &target(true)));
        assert!(!must_release(&max, &target(false)));
        assert!(
            !must_release(&term, &target(true)),
            "terminating acknowledged it"
        );
        assert!(
            must_release(&held, &target(false)),
            "held back for the relay"
        );
    }

    #[test]
    fn outcomes_say_whether_they_are_retried() {
        let retry_in = Duration::from_secs(2);
        assert_eq!(
            Outcome::Waiting {
                why: "x".into(),
                retry_in
            }
            .retry_in(),
            Some(retry_in)
        );
        assert_eq!(Outcome::OriginalGone.retry_in(), None);
        assert_eq!(Outcome::NotManaged.label(), "not_managed");
    }

    #[test]
    fn retries_back_off_up_to_the_maximum() {
        let config = RelayConfig::default();
        let delays: Vec<u64> = [1, 2, 3, 7, 8, 1000, u64::MAX]
            .into_iter()
            .map(|attempt| retry_delay(&config, attempt).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 60, 60, 60, 60]);
    }

    #[test]
    fn a_copy_waiting_for_its_release_is_not_stored_again() {
        let unreleased = Unreleased::default();
        let copy = StoredCopy {
            stream: "dlq".into(),
            sequence: 9,
            subject: "ns.dlq.order.placed".into(),
            duplicate: false,
            at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(unreleased.recall("s:c:1").is_none());
        unreleased.remember("s:c:1".into(), copy);
        let recalled = unreleased.recall("s:c:1").expect("remembered");
        assert_eq!((recalled.sequence, recalled.duplicate), (9, true));
        assert!(
            unreleased.recall("s:c:1").is_none(),
            "forgotten once recalled"
        );
    }

    #[test]
    fn direct_reads_fall_back_and_are_tried_again_later() {
        let direct = DirectReads::default();
        assert_eq!(direct.read_for("s"), Read::Direct);
        direct.refused("s");
        assert_eq!(direct.read_for("s"), Read::Leader);
        assert_eq!(direct.read_for("t"), Read::Direct);
        direct
            .refused
            .lock()
            .unwrap()
            .insert("s".into(), Instant::now());
        assert_eq!(direct.read_for("s"), Read::Direct);
    }
}
