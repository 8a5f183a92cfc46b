//! Prometheus metrics, and the small HTTP server that serves them with the health probes.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

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

/// Everything Switchyard counts.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub broker_connected: Gauge,
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
        let reconcile_seconds = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            reconcile_seconds.clone(),
        );
        let broker_connected = Gauge::default();
        registry.register(
            "broker_connected",
            "1 while the NATS connection is up",
            broker_connected.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            broker_connected,
        }
    }
}

impl Metrics {
    pub fn observe_reconcile(&self, kind: &'static str, reason: &'static str, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels { kind, reason })
            .inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    pub fn observe_error(&self, kind: &'static str, category: &'static str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels { kind, category })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/metrics`, `/healthz` (the process is alive) and `/readyz` (the controllers run).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(metrics);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
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
            text.contains("switchyard_reconcile_duration_seconds_count 2"),
            "{text}"
        );
    }
}
