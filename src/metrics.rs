//! Prometheus metrics: what the operator counts, labelled by kind.

use std::time::Duration;

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub kind: &'static str,
    /// The Ready reason the reconcile ended with (a fixed vocabulary, so low cardinality).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: &'static str,
    pub category: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub kind: &'static str,
    /// What was written: `status`, `finalizers` or `event`.
    pub write: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// The DeadLetterPolicy, `<namespace>/<name>`; empty when the advisory named none.
    pub policy: String,
    /// MaxDeliveries, HandlerRejected, Terminated or SchemaViolation; empty when unreadable.
    pub reason: &'static str,
    /// What the relay did: copied, duplicate, original_gone, not_captured, not_managed,
    /// waiting, failed, malformed.
    pub outcome: &'static str,
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// Everything Switchyard counts.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: HistogramFamily,
    pub retry_delay_seconds: HistogramFamily,
    pub kube_writes: Family<WriteLabels, Counter>,
    pub dead_letters: Family<DeadLetterLabels, Counter>,
    pub broker_connected: Gauge,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles finished, by kind and resulting Ready reason",
            reconciles.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles aborted by an error, by kind and category",
            reconcile_errors.clone(),
        );
        let reconcile_seconds: HistogramFamily = Family::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
        });
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, by kind",
            reconcile_seconds.clone(),
        );
        let retry_delay_seconds: HistogramFamily = Family::new_with_constructor(|| {
            Histogram::new([
                0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 300.0,
            ])
        });
        registry.register(
            "retry_delay_seconds",
            "Delays chosen before retrying a failed reconcile (exponential with jitter), by kind",
            retry_delay_seconds.clone(),
        );
        let kube_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "kube_writes",
            "Writes to the Kubernetes API, by kind and what was written",
            kube_writes.clone(),
        );
        let dead_letters = Family::<DeadLetterLabels, Counter>::default();
        registry.register(
            "dead_letters",
            "Failed events the dead-letter relay handled, by policy, reason and outcome",
            dead_letters.clone(),
        );
        let broker_connected = Gauge::default();
        registry.register(
            "broker_connected",
            "1 while the NATS connection is up",
            broker_connected.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this instance holds the leader Lease (or runs without election)",
            leader.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            retry_delay_seconds,
            kube_writes,
            dead_letters,
            broker_connected,
            leader,
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, kind: &'static str, reason: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, reason })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn observe_error(&self, kind: &'static str, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind, category })
            .inc();
    }

    pub fn observe_retry(&self, kind: &'static str, delay: Duration) {
        self.retry_delay_seconds
            .get_or_create(&KindLabels { kind })
            .observe(delay.as_secs_f64());
    }

    pub fn observe_write(&self, kind: &'static str, write: &'static str) {
        self.kube_writes
            .get_or_create(&WriteLabels { kind, write })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// A registry's OpenMetrics text exposition.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_are_counted_by_kind_and_reason() {
        let m = Metrics::default();
        m.observe_reconcile("Topic", "StreamReady", Duration::from_millis(3));
        m.observe_reconcile("Topic", "StreamReady", Duration::from_millis(3));
        m.observe_error("Topic", "kube");
        let text = m.render();
        assert!(
            text.contains(r#"switchyard_reconciles_total{kind="Topic",reason="StreamReady"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"switchyard_reconcile_errors_total{kind="Topic",category="kube"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"switchyard_reconcile_duration_seconds_count{kind="Topic"} 2"#),
            "{text}"
        );
        m.observe_write("Topic", "status");
        m.observe_retry("Topic", Duration::from_secs(3));
        let text = m.render();
        assert!(
            text.contains(r#"switchyard_kube_writes_total{kind="Topic",write="status"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"switchyard_retry_delay_seconds_bucket{le="4.0",kind="Topic"} 1"#),
            "{text}"
        );
    }
}
