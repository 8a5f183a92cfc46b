//! The dispatcher's metrics: what became of the events it delivered, and how long the handler
//! and JetStream took.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// acked, naked (redelivered later), retried (in place, with per-key order), terminated,
    /// or held (for the dead-letter relay, where the Topic keeps no copy).
    pub outcome: &'static str,
    /// Why: ok, http_5xx, http_408, http_429, timeout, unreachable, rejected, invalid_event,
    /// schema_violation, max_deliveries.
    pub reason: &'static str,
}

const ACKED_OK: OutcomeLabels = OutcomeLabels {
    outcome: "acked",
    reason: "ok",
};

pub struct DispatchMetrics {
    registry: Registry,
    pub delivered: Counter,
    pub outcomes: Family<OutcomeLabels, Counter>,
    /// The outcome of nearly every event, resolved once: a family lookup per event (a lock
    /// and a hash) is measurable at tens of thousands a second.
    acked_ok: Counter,
    pub in_flight: Gauge,
    pub keep_alives: Counter,
    pub handler_seconds: Histogram,
    pub fetch_seconds: Histogram,
    /// The registered schema version events are validated against (0: none yet).
    pub schema_version: Gauge,
}

/// Buckets from 0.5 ms to 10 s: a handler on loopback answers in well under a millisecond.
fn latency_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

impl Default for DispatchMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchyard_dispatch");
        let delivered = Counter::default();
        registry.register(
            "delivered",
            "Events handed to the handler (redeliveries included)",
            delivered.clone(),
        );
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "outcomes",
            "What became of delivered events: acked, naked (redelivered later), retried (in place), terminated or held for the dead-letter relay, and why",
            outcomes.clone(),
        );
        let in_flight = Gauge::default();
        registry.register("in_flight", "Events being handled now", in_flight.clone());
        let keep_alives = Counter::default();
        registry.register(
            "keep_alives",
            "In-progress acknowledgements sent for events that wait or take long",
            keep_alives.clone(),
        );
        let handler_seconds = latency_buckets();
        registry.register(
            "handler_duration_seconds",
            "Time from sending an event to the handler until its answer (or the timeout)",
            handler_seconds.clone(),
        );
        let fetch_seconds = latency_buckets();
        registry.register(
            "fetch_duration_seconds",
            "Time from asking JetStream for events until the first arrived",
            fetch_seconds.clone(),
        );
        let schema_version = Gauge::default();
        registry.register(
            "schema_version",
            "Version of the bound schema events are validated against (0 while none is in force)",
            schema_version.clone(),
        );
        let acked_ok = outcomes.get_or_create(&ACKED_OK).clone();
        Self {
            registry,
            delivered,
            outcomes,
            acked_ok,
            in_flight,
            keep_alives,
            handler_seconds,
            fetch_seconds,
            schema_version,
        }
    }
}

impl DispatchMetrics {
    pub fn observe_outcome(&self, outcome: &'static str, reason: &'static str) {
        let labels = OutcomeLabels { outcome, reason };
        if labels == ACKED_OK {
            self.acked_ok.inc();
        } else {
            self.outcomes.get_or_create(&labels).inc();
        }
    }

    pub fn observe_handler(&self, took: Duration) {
        self.handler_seconds.observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        crate::metrics::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_counted_by_kind_and_reason() {
        let m = DispatchMetrics::default();
        m.observe_outcome("terminated", "rejected");
        m.observe_outcome("terminated", "rejected");
        m.observe_outcome("acked", "ok");
        m.delivered.inc();
        let text = m.render();
        assert!(
            text.contains(r#"switchyard_dispatch_outcomes_total{outcome="acked",reason="ok"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"switchyard_dispatch_outcomes_total{outcome="terminated",reason="rejected"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains("switchyard_dispatch_delivered_total 1"),
            "{text}"
        );
    }
}
