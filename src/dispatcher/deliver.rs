//! One event, from JetStream to the handler and back: translate, POST (keeping the event
//! alive while the handler works), judge the answer, acknowledge accordingly.

use std::{sync::Arc, time::Duration};

use tracing::{debug, warn};

use super::{
    State,
    cloudevents::{self, Received, TopicLayout},
    handler::Handler,
    outcome::{HandlerResult, Redelivery, Verdict, judge},
};
use crate::broker::delivery::Delivered;

pub struct Deliverer {
    pub handler: Handler,
    pub layout: TopicLayout,
    pub redelivery: Redelivery,
    pub timeout: Duration,
    pub state: Arc<State>,
}

impl Deliverer {
    pub async fn deliver(&self, event: Delivered) {
        let metrics = &self.state.metrics;
        metrics.in_flight.inc();
        metrics.delivered.inc();
        self.handle(&event).await;
        metrics.in_flight.dec();
    }

    async fn handle(&self, event: &Delivered) {
        let metrics = &self.state.metrics;
        let info = match event.info() {
            Ok(info) => info,
            Err(e) => {
                // Without its metadata the event cannot be acknowledged either; JetStream
                // redelivers it after the ackWait.
                warn!(error = %e, subject = event.subject(), "delivery without JetStream metadata");
                return;
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
                return;
            }
        };
        let started = std::time::Instant::now();
        let result = self.post_keeping_alive(event, request).await;
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
    }

    /// POSTs the event; while the handler works longer than half the ackWait, tells JetStream
    /// it is in progress so it is not redelivered meanwhile.
    async fn post_keeping_alive(
        &self,
        event: &Delivered,
        request: cloudevents::HttpEvent,
    ) -> HandlerResult {
        let call = self
            .handler
            .deliver(request.headers, request.body, self.timeout);
        tokio::pin!(call);
        let every = (self.redelivery.ack_wait / 2).max(Duration::from_millis(100));
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut call => return result,
                _ = keep_alive.tick() => {
                    if let Err(e) = event.in_progress().await {
                        debug!(error = %e, "in-progress acknowledgement failed");
                    }
                }
            }
        }
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
