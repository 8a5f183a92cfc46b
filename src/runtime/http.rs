//! The one small HTTP server of the operator and of the dispatcher: `/metrics` (OpenMetrics),
//! `/healthz` (the process serves) and `/readyz` (see [`Probes::readiness`]).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::net::TcpListener;

use super::{health::Health, shutdown::Shutdown};
use crate::metrics::Metrics;

/// What the HTTP server reports: the operator's and the dispatcher's each provide one.
pub trait Probes: Send + Sync + 'static {
    /// The metrics in OpenMetrics text.
    fn metrics(&self) -> String;
    /// Whether to receive traffic (`/readyz` answers 200 or 503), with a body saying why.
    fn readiness(&self) -> (bool, String);
}

/// The operator's probes: its metrics and its health.
pub struct OperatorProbes {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Probes for OperatorProbes {
    fn metrics(&self) -> String {
        self.metrics.render()
    }

    fn readiness(&self) -> (bool, String) {
        self.health.readiness()
    }
}

type Served = Arc<dyn Probes>;

/// Binds `addr` (so a taken port is an error at start, not later) and serves until shutdown.
pub async fn serve(
    addr: SocketAddr,
    probes: Served,
    shutdown: Shutdown,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .with_state(probes);
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.triggered())
            .await
    }))
}

async fn render_metrics(State(served): State<Served>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        served.metrics(),
    )
}

async fn readiness(State(served): State<Served>) -> impl IntoResponse {
    let (ready, text) = served.readiness();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, text)
}
