//! One event, from JetStream to the handler and back: translate, POST (keeping the event
//! alive while the handler works), judge the answer, acknowledge accordingly.

use std::{sync::Arc, time::Duration};

use tokio::sync::{OwnedSemaphorePermit, RwLock, Semaphore};
use tracing::{debug, warn};

use super::{
    State,
    cloudevents::{self, Received, TopicLayout},
    handler::Handler,
    key_order::{KeyOrder, key_of},
    outcome::{HandlerResult, Redelivery, Verdict, judge},
};
use crate::{broker::delivery::Delivered, runtime::shutdown::Shutdown};

pub struct Deliverer {
    pub handler: Handler,
    pub layout: TopicLayout,
    pub redelivery: Redelivery,
    /// The consumer's `max_deliver` (-1: unlimited).
    pub max_deliveries: i64,
    pub timeout: Duration,
    pub state: Arc<State>,
    /// `ordering: PerKey`: the key lines, and how to read a key from a subject.
    pub key_order: Option<KeyLines>,
    pub shutdown: Shutdown,
    /// Held (shared) by every delivery task, so shutdown can wait for them all.
    pub in_flight: Arc<RwLock<()>>,
}

pub struct KeyLines {
    pub order: KeyOrder,
    pub subject_prefix: String,
    pub type_tokens: usize,
    /// Places in line: bounds the events lined up (and kept alive) ahead of their turn.
    pub lookahead: Arc<Semaphore>,
}

/// An event's place in its key's line.
pub struct Place {
    key: String,
    sequence: u64,
    delivery: i64,
    /// Held from lining up until settled (the first copy of an event holds it).
    lookahead: Option<OwnedSemaphorePermit>,
}

impl Deliverer {
    async fn deliver(self: Arc<Self>, event: Delivered) {
        let _running = self.in_flight.clone().read_owned().await;
        self.deliver_now(&event).await;
    }

    async fn deliver_now(&self, event: &Delivered) -> Option<(Verdict, i64)> {
        let metrics = &self.state.metrics;
        metrics.in_flight.inc();
        metrics.delivered.inc();
        let verdict = self.handle(event).await;
        metrics.in_flight.dec();
        verdict
    }

    /// Starts the delivery of an event just received (called in stream order). In key order
    /// the delivery takes room only once it is its key's turn, so events waiting behind a
    /// failed one never keep its redelivery from being fetched; otherwise it waits for room
    /// here (a fetch reserved it, so it is free at once).
    pub async fn dispatch(self: Arc<Self>, event: Delivered, room: &Arc<Semaphore>) {
        match self.line_up(&event).await {
            Some(place) => {
                let room = room.clone();
                tokio::spawn(async move { self.deliver_in_turn(event, place, room).await });
            }
            None => {
                let Ok(permit) = room.clone().acquire_owned().await else {
                    return;
                };
                tokio::spawn(async move {
                    self.deliver(event).await;
                    drop(permit);
                });
            }
        }
    }

    /// With per-key order: puts the event in its key's line (called in stream order).
    async fn line_up(&self, event: &Delivered) -> Option<Place> {
        let lines = self.key_order.as_ref()?;
        let info = event.info().ok()?;
        let key = key_of(event.subject(), &lines.subject_prefix, lines.type_tokens);
        // Bounded lookahead: a new event waits for a place before it is lined up (holding up
        // the pull), so lines stay short. A redelivery of an event in line needs no place;
        // it is what the line waits for.
        let in_line = lines
            .order
            .redelivered(&key, info.stream_sequence, info.delivered);
        let lookahead = if in_line {
            None
        } else {
            let place = lines.lookahead.clone().acquire_owned().await.ok()?;
            lines
                .order
                .enqueue(&key, info.stream_sequence, info.delivered);
            Some(place)
        };
        Some(Place {
            key,
            sequence: info.stream_sequence,
            delivery: info.delivered,
            lookahead,
        })
    }

    /// Waits for the event's turn in its key's line (keeping it alive meanwhile), then for
    /// room, then delivers it. It leaves the line once settled; an event JetStream will
    /// redeliver keeps its place, so the later events of its key keep waiting for it.
    async fn deliver_in_turn(
        self: Arc<Self>,
        event: Delivered,
        place: Place,
        room: Arc<Semaphore>,
    ) {
        let _running = self.in_flight.clone().read_owned().await;
        let Some(lines) = self.key_order.as_ref() else {
            return;
        };
        let waited = async {
            self.keep_alive_while(&event, lines.order.turn(&place.key, place.sequence))
                .await;
            if !lines
                .order
                .current(&place.key, place.sequence, place.delivery)
            {
                return None; // A redelivery of this event arrived meanwhile; it goes instead.
            }
            room.acquire_owned().await.ok()
        };
        let permit = tokio::select! {
            permit = waited => permit,
            () = self.shutdown.triggered() => None,
        };
        let Some(permit) = permit else {
            if self.shutdown.is_triggered() {
                // Shutting down before its turn: another replica (or the next start) gets it now.
                let _ = event.nak(Duration::ZERO).await;
            }
            return;
        };
        let settled = match self.deliver_now(&event).await {
            None => true,
            Some((Verdict::Nak { .. }, delivered)) => {
                // Redelivered later unless this was the last delivery JetStream allows.
                self.max_deliveries > 0 && delivered >= self.max_deliveries
            }
            Some(_) => true,
        };
        drop(permit);
        if settled {
            lines.order.done(&place.key, place.sequence);
            drop(place.lookahead);
        }
    }

    /// Runs `work`, telling JetStream every half ackWait that the event is still in progress.
    async fn keep_alive_while<T>(&self, event: &Delivered, work: impl Future<Output = T>) -> T {
        tokio::pin!(work);
        let every = (self.redelivery.ack_wait / 2).max(Duration::from_millis(100));
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = keep_alive.tick() => {
                    if let Err(e) = event.in_progress().await {
                        debug!(error = %e, "in-progress acknowledgement failed");
                    }
                }
            }
        }
    }

    /// Translates, POSTs and settles one event; the verdict and the delivery count, or `None`
    /// if the event was unusable (terminated, or without metadata).
    async fn handle(&self, event: &Delivered) -> Option<(Verdict, i64)> {
        let metrics = &self.state.metrics;
        let info = match event.info() {
            Ok(info) => info,
            Err(e) => {
                // Without its metadata the event cannot be acknowledged either; JetStream
                // redelivers it after the ackWait.
                warn!(error = %e, subject = event.subject(), "delivery without JetStream metadata");
                return None;
            }
        };
        let received = Received {
            subject: event.subject(),
            headers: event.headers(),
            payload: event.payload(),
            stream_sequence: info.stream_sequence,
            published: info.published,
            delivered: info.delivered,
        };
        let request = match cloudevents::to_http(&received, &self.layout) {
            Ok(request) => request,
            Err(e) => {
                let reason = format!("InvalidEvent: {e}");
                debug!(sequence = info.stream_sequence, reason, "terminating");
                metrics.observe_outcome("terminated", "invalid_event");
                if let Err(e) = event.term(&reason).await {
                    warn!(error = %e, "could not terminate an invalid event");
                }
                return None;
            }
        };
        let started = std::time::Instant::now();
        let call = self
            .handler
            .deliver(request.headers, request.body, self.timeout);
        let result = self.keep_alive_while(event, call).await;
        metrics.observe_handler(started.elapsed());
        let verdict = judge(&result, info.delivered, &self.redelivery);
        let (outcome, reason) = labels(&result, &verdict);
        metrics.observe_outcome(outcome, reason);
        let told = match &verdict {
            Verdict::Ack => event.ack().await,
            Verdict::Nak { delay } => event.nak(*delay).await,
            Verdict::Term { reason } => event.term(reason).await,
        };
        if let Err(e) = told {
            // JetStream redelivers what it did not hear about; nothing is lost.
            warn!(error = %e, sequence = info.stream_sequence, ?verdict, "could not report the outcome");
        }
        Some((verdict, info.delivered))
    }
}

/// Metric labels of an outcome.
fn labels(result: &HandlerResult, verdict: &Verdict) -> (&'static str, &'static str) {
    let outcome = match verdict {
        Verdict::Ack => "acked",
        Verdict::Nak { .. } => "naked",
        Verdict::Term { .. } => "terminated",
    };
    let reason = match (result, verdict) {
        (_, Verdict::Ack) => "ok",
        (_, Verdict::Term { .. }) => "rejected",
        (HandlerResult::TimedOut, _) => "timeout",
        (HandlerResult::Unreachable, _) => "unreachable",
        (HandlerResult::Answered { status: 408, .. }, _) => "http_408",
        (HandlerResult::Answered { status: 429, .. }, _) => "http_429",
        (HandlerResult::Answered { .. }, _) => "http_5xx",
    };
    (outcome, reason)
}
