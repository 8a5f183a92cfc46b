//! One event, from JetStream to the handler and back: translate, POST, judge the answer,
//! acknowledge accordingly. Without per-key order a failed event goes back to JetStream, which
//! redelivers it after the backoff; with it, the event keeps its key's place and is retried
//! here after the backoff, so the later events of its key wait for the retry only.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use tokio::sync::{OwnedRwLockReadGuard, OwnedSemaphorePermit, RwLock, Semaphore};
use tracing::{debug, warn};

use super::{
    State,
    cloudevents::{self, Received, TopicLayout},
    first_delivery::FirstDeliveries,
    handler::Handler,
    key_order::{Handover, KeepAlive, KeyOrder, Lined, key_of},
    outcome::{HandlerResult, InPlace, Redelivery, Verdict, in_place, judge, next_attempt},
    refusal::{Refusals, Refused},
    validation::{Enforced, refusal_reason},
};
use crate::{
    broker::{
        BrokerError,
        delivery::{Delivered, DeliveryInfo},
    },
    runtime::shutdown::Shutdown,
};

pub struct Deliverer {
    pub handler: Handler,
    pub layout: TopicLayout,
    pub redelivery: Redelivery,
    /// The consumer's `max_deliver` (-1: unlimited).
    pub max_deliveries: i64,
    pub timeout: Duration,
    pub state: Arc<State>,
    /// Events handled at the same time.
    pub room: Arc<Semaphore>,
    /// `ordering: PerKey`: the key lines, and how to read a key from a subject.
    pub key_order: Option<KeyLines>,
    pub shutdown: Shutdown,
    /// Held (shared) by every delivery task, so shutdown can wait for them all.
    pub in_flight: Arc<RwLock<()>>,
    /// How events the dispatcher gives up on are settled.
    pub refusals: Refusals,
    /// When the events handed back for redelivery were first delivered.
    pub first_deliveries: FirstDeliveries,
    /// The schema every event's data must satisfy, if one is bound.
    pub schema: Option<Enforced>,
}

/// One call of the handler for an event.
struct Attempt {
    info: DeliveryInfo,
    /// The delivery number the handler sees (1-based).
    number: i64,
    /// When the event first reached a handler, if known.
    first: Option<OffsetDateTime>,
}

pub struct KeyLines {
    pub order: KeyOrder<Arc<Delivered>>,
    pub subject_prefix: String,
    pub type_tokens: usize,
    /// Places in line, which the fetch loops reserve before asking for events: bounds the
    /// events waiting for their turn (and kept alive meanwhile).
    pub lookahead: Arc<Semaphore>,
    pub keep_alive: KeepAlive,
}

impl Deliverer {
    /// What a fetch loop reserves before asking for events: places in line with per-key order
    /// (an event takes room only when its turn comes, so events waiting behind a failed one
    /// never keep other keys from being fetched), room otherwise.
    pub fn capacity(&self) -> &Arc<Semaphore> {
        match &self.key_order {
            Some(lines) => &lines.lookahead,
            None => &self.room,
        }
    }

    /// Starts the delivery of an event just received from a consumer (with its metadata, if it
    /// has any), with its share of the fetch's reservation (`None`: it came beyond what was
    /// asked for). With per-key order, a redelivery new to the lines begins a handover of the
    /// consumer (see [`Handover`]).
    pub async fn dispatch(
        self: Arc<Self>,
        event: Delivered,
        info: Option<DeliveryInfo>,
        share: Option<OwnedSemaphorePermit>,
        handover: &Arc<Handover>,
    ) {
        // Taken before the task starts, so shutdown cannot miss it.
        let running = self.in_flight.clone().read_owned().await;
        if self.key_order.is_some() {
            if let Some((key, sequence, delivered)) = self.line_up(event) {
                if delivered > 1 {
                    handover.begin();
                }
                let handover = handover.clone();
                tokio::spawn(self.deliver_in_turn(key, sequence, handover, share, running));
            }
            return;
        }
        let permit = match share {
            Some(permit) => permit,
            None => match self.room.clone().acquire_owned().await {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        tokio::spawn(async move {
            self.deliver(&event, info).await;
            drop((permit, running));
        });
    }

    /// An event that arrives while shutting down is not handled: with per-key order it joins
    /// its key's line and goes back to JetStream with it, in order; otherwise it goes back at
    /// once, for another dispatcher to take without waiting for the ackWait.
    pub async fn set_aside(&self, event: Delivered) {
        if self.key_order.is_some() {
            self.line_up(event);
        } else {
            let _ = event.nak(Duration::ZERO).await;
        }
    }

    /// Puts the event in its key's line; its key, sequence and delivery count if it needs a
    /// task of its own (a redelivery of an event in line has one already).
    fn line_up(&self, event: Delivered) -> Option<(String, u64, i64)> {
        let lines = self.key_order.as_ref()?;
        let info = match event.info() {
            Ok(info) => info,
            Err(e) => {
                // Without its metadata the event cannot be acknowledged either; JetStream
                // redelivers it after the ackWait.
                warn!(error = %e, subject = event.subject(), "delivery without JetStream metadata");
                return None;
            }
        };
        let key = key_of(event.subject(), &lines.subject_prefix, lines.type_tokens);
        let sequence = info.stream_sequence;
        match lines.order.enqueue(
            &key,
            sequence,
            info.delivered,
            Arc::new(event),
            Instant::now(),
        ) {
            Lined::New => Some((key, sequence, info.delivered)),
            Lined::Again => None,
        }
    }

    /// Without per-key order: one delivery, its outcome reported to JetStream.
    async fn deliver(&self, event: &Delivered, info: Option<DeliveryInfo>) {
        let Some(info) = info.or_else(|| usable_info(event)) else {
            return;
        };
        let attempt = Attempt {
            info,
            number: info.delivered,
            first: self.first_deliveries.of(
                info.stream_sequence,
                info.delivered,
                OffsetDateTime::now_utc(),
            ),
        };
        let Some((result, verdict)) = self.attempt(event, &attempt, true).await else {
            return;
        };
        let metrics = &self.state.metrics;
        let reason = reason_label(&result, &verdict);
        let told = match &verdict {
            Verdict::Ack => {
                metrics.observe_outcome("acked", reason);
                event.ack().await
            }
            Verdict::Nak { delay } => {
                metrics.observe_outcome("naked", reason);
                self.first_deliveries
                    .remember(info.stream_sequence, attempt.first);
                event.nak(*delay).await
            }
            Verdict::Term { reason: why } => self.refuse(event, &attempt, why, reason).await,
        };
        if !matches!(verdict, Verdict::Nak { .. }) {
            self.first_deliveries
                .settled(info.stream_sequence, info.delivered);
        }
        if let Err(e) = told {
            // JetStream redelivers what it did not hear about; nothing is lost.
            warn!(error = %e, ?verdict, "could not report the outcome");
        }
    }

    /// Settles an event given up on after `attempt` for reason `why` (see [`Refusals`]),
    /// counting it under the metrics reason `label`.
    async fn refuse(
        &self,
        event: &Delivered,
        attempt: &Attempt,
        why: &str,
        label: &'static str,
    ) -> Result<(), BrokerError> {
        let retry_in = self.redelivery.delay_after(attempt.number);
        let refused = self
            .refusals
            .refuse(event, attempt.number, why, retry_in)
            .await?;
        if refused == Refused::Retried {
            self.first_deliveries
                .remember(attempt.info.stream_sequence, attempt.first);
        }
        self.state.metrics.observe_outcome(refused.label(), label);
        Ok(())
    }

    /// With per-key order: settles a refused event like [`Self::refuse`], except that an event
    /// whose rejection cannot be stored keeps its place in its key's line (kept alive there)
    /// and is refused again after the retry delay, so later events of its key wait for it.
    /// `None`: shut down meanwhile; the event stays in line to be handed back in order.
    async fn refuse_in_turn(
        &self,
        event: &Delivered,
        attempt: &Attempt,
        why: &str,
        label: &'static str,
    ) -> Option<Result<(), BrokerError>> {
        loop {
            match self
                .refusals
                .refuse_in_line(event, attempt.number, why)
                .await
            {
                Ok(Some(refused)) => {
                    self.state.metrics.observe_outcome(refused.label(), label);
                    return Some(Ok(()));
                }
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            let retry_in = self.redelivery.delay_after(attempt.number);
            tokio::select! {
                () = tokio::time::sleep(retry_in) => {}
                () = self.shutdown.triggered() => return None,
            }
        }
    }

    /// With per-key order: waits for any handover of its consumer to be through and for the
    /// event's turn in its key's line, then for room, and handles it, retrying a failure in place after the backoff (room is given up
    /// meanwhile) until the consumer's deliveries are used up. It leaves the line once
    /// settled. On shutdown, an event that is not being handled stays in line, to be handed
    /// back with the rest of its key in order.
    async fn deliver_in_turn(
        self: Arc<Self>,
        key: String,
        sequence: u64,
        handover: Arc<Handover>,
        _place: Option<OwnedSemaphorePermit>,
        _running: OwnedRwLockReadGuard<()>,
    ) {
        let Some(lines) = self.key_order.as_ref() else {
            return;
        };
        let order = &lines.order;
        let turn = async {
            handover.over().await;
            order.turn(&key, sequence).await;
        };
        tokio::select! {
            () = turn => {}
            () = self.shutdown.triggered() => return,
        }
        let metrics = &self.state.metrics;
        let mut last = None;
        // Retries in place are this dispatcher's own: the first delivery time stays known.
        let mut first = None;
        loop {
            let room = tokio::select! {
                permit = self.room.clone().acquire_owned() => permit.expect("never closed"),
                () = self.shutdown.triggered() => return,
            };
            let Some((event, delivered)) = order.current(&key, sequence) else {
                return;
            };
            let Some(info) = usable_info(&event) else {
                order.done(&key, sequence);
                return;
            };
            let number = next_attempt(last, delivered);
            let first = *first.get_or_insert_with(|| {
                self.first_deliveries
                    .of(sequence, delivered, OffsetDateTime::now_utc())
            });
            let attempt = Attempt {
                info,
                number,
                first,
            };
            let tried = self.attempt(&event, &attempt, false).await;
            drop(room);
            let Some((result, verdict)) = tried else {
                order.done(&key, sequence);
                return;
            };
            // Answered on the latest copy: JetStream may have redelivered the event meanwhile.
            let event = order
                .current(&key, sequence)
                .map_or(event, |(copy, _)| copy);
            let reason = reason_label(&result, &verdict);
            let told = match verdict {
                Verdict::Ack => {
                    metrics.observe_outcome("acked", reason);
                    event.ack().await
                }
                Verdict::Term { reason: why } => {
                    match self.refuse_in_turn(&event, &attempt, &why, reason).await {
                        Some(told) => told,
                        None => return,
                    }
                }
                Verdict::Nak { delay } => {
                    match in_place(&result, number, delay, self.max_deliveries) {
                        InPlace::GiveUp { reason: why } => {
                            debug!(sequence, key, why, "giving up");
                            match self
                                .refuse_in_turn(&event, &attempt, &why, "max_deliveries")
                                .await
                            {
                                Some(told) => told,
                                None => return,
                            }
                        }
                        InPlace::Retry { after } => {
                            metrics.observe_outcome("retried", reason);
                            if self.shutdown.is_triggered() {
                                return;
                            }
                            tokio::select! {
                                () = tokio::time::sleep(after) => {}
                                () = self.shutdown.triggered() => return,
                            }
                            last = Some(number);
                            continue;
                        }
                    }
                }
            };
            if let Err(e) = told {
                // JetStream redelivers what it did not hear about; nothing is lost.
                warn!(error = %e, sequence, "could not report the outcome");
            }
            self.first_deliveries.settled(sequence, delivered);
            order.done(&key, sequence);
            return;
        }
    }

    /// Tells JetStream every little while that the events waiting in line, or being handled,
    /// are in progress (see [`KeepAlive`]); runs until aborted.
    pub async fn keep_lines_alive(&self) {
        let Some(lines) = self.key_order.as_ref() else {
            return;
        };
        let mut looks = tokio::time::interval(lines.keep_alive.every);
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            looks.tick().await;
            for event in lines.order.due(Instant::now(), lines.keep_alive.after) {
                self.state.metrics.keep_alives.inc();
                if let Err(e) = event.in_progress().await {
                    debug!(error = %e, "in-progress acknowledgement failed");
                }
            }
        }
    }

    /// Hands the events still in line back to JetStream, each key's in line order, so that
    /// whoever gets them next starts where this dispatcher stopped.
    pub async fn release_lines(&self) {
        let Some(lines) = self.key_order.as_ref() else {
            return;
        };
        for event in lines.order.drain() {
            if let Err(e) = event.nak(Duration::ZERO).await {
                debug!(error = %e, "could not hand an event back");
            }
        }
    }

    /// Runs the handler's `call` up to the timeout, telling JetStream every half of its
    /// shortest ack deadline that the event is still in progress. One timer serves both: a
    /// timer per event is a good part of the dispatcher's cost at tens of thousands a second.
    async fn keep_alive_while(
        &self,
        event: &Delivered,
        call: impl Future<Output = HandlerResult>,
    ) -> HandlerResult {
        tokio::pin!(call);
        let every = (self.redelivery.shortest_wait() / 2).max(Duration::from_millis(1));
        let start = tokio::time::Instant::now();
        let (give_up, mut keep_alive) = (start + self.timeout, start + every);
        let timer = tokio::time::sleep_until(keep_alive.min(give_up));
        tokio::pin!(timer);
        loop {
            tokio::select! {
                result = &mut call => return result,
                () = &mut timer => {
                    if tokio::time::Instant::now() >= give_up {
                        return HandlerResult::TimedOut;
                    }
                    self.state.metrics.keep_alives.inc();
                    if let Err(e) = event.in_progress().await {
                        debug!(error = %e, "in-progress acknowledgement failed");
                    }
                    keep_alive += every;
                    timer.as_mut().reset(keep_alive.min(give_up));
                }
            }
        }
    }

    /// Translates, validates and POSTs one copy of an event, keeping it alive meanwhile if
    /// asked; the handler's result and the verdict, or `None` if the event is no valid
    /// CloudEvent or fails the bound schema (then given up on).
    async fn attempt(
        &self,
        event: &Delivered,
        attempt: &Attempt,
        keep_alive: bool,
    ) -> Option<(HandlerResult, Verdict)> {
        let metrics = &self.state.metrics;
        let info = &attempt.info;
        let delivered = attempt.number;
        let received = Received {
            subject: event.subject(),
            headers: event.headers(),
            payload: event.payload(),
            stream_sequence: info.stream_sequence,
            published: info.published,
            delivered,
            first_delivered: attempt.first,
        };
        let request = match cloudevents::to_http(&received, &self.layout) {
            Ok(request) => request,
            Err(e) => {
                let reason = format!("InvalidEvent: {e}");
                debug!(sequence = info.stream_sequence, reason, "giving up");
                if let Err(e) = self.refuse(event, attempt, &reason, "invalid_event").await {
                    warn!(error = %e, "could not settle an invalid event");
                }
                self.first_deliveries
                    .settled(info.stream_sequence, info.delivered);
                return None;
            }
        };
        if let Some(schema) = &self.schema
            && let Err(violation) = schema.check(&request)
        {
            let reason = refusal_reason(violation);
            debug!(sequence = info.stream_sequence, reason, "giving up");
            if let Err(e) = self
                .refuse(event, attempt, &reason, "schema_violation")
                .await
            {
                warn!(error = %e, "could not settle an event that fails its schema");
            }
            self.first_deliveries
                .settled(info.stream_sequence, info.delivered);
            return None;
        }
        metrics.in_flight.inc();
        metrics.delivered.inc();
        let started = Instant::now();
        let result = if keep_alive {
            let call = self.handler.exchange(request.headers, request.body);
            self.keep_alive_while(event, call).await
        } else {
            self.handler
                .deliver(request.headers, request.body, self.timeout)
                .await
        };
        metrics.observe_handler(started.elapsed());
        metrics.in_flight.dec();
        let verdict = judge(&result, delivered, &self.redelivery);
        Some((result, verdict))
    }
}

/// The event's JetStream metadata; `None` (logged) for a message without, which cannot be
/// acknowledged either: JetStream redelivers it after the ackWait.
fn usable_info(event: &Delivered) -> Option<DeliveryInfo> {
    match event.info() {
        Ok(info) => Some(info),
        Err(e) => {
            warn!(error = %e, subject = event.subject(), "delivery without JetStream metadata");
            None
        }
    }
}

/// The metric label saying why an event had its outcome.
fn reason_label(result: &HandlerResult, verdict: &Verdict) -> &'static str {
    match (result, verdict) {
        (_, Verdict::Ack) => "ok",
        (_, Verdict::Term { .. }) => "rejected",
        (HandlerResult::TimedOut, _) => "timeout",
        (HandlerResult::Unreachable, _) => "unreachable",
        (HandlerResult::Answered { status: 408, .. }, _) => "http_408",
        (HandlerResult::Answered { status: 429, .. }, _) => "http_429",
        (HandlerResult::Answered { .. }, _) => "http_5xx",
    }
}
