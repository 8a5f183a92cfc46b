//! The operator's one small HTTP server: `/metrics` (OpenMetrics), `/healthz` (the process
//! serves) and `/readyz` (see [`Health::readiness`]).

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

#[derive(Clone)]
struct Served {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds `addr` (so a taken port is an error at start, not later) and serves until shutdown.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: Shutdown,
) -> std::io::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readiness))
        .with_state(Served { metrics, health });
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
        served.metrics.render(),
    )
}

async fn readiness(State(served): State<Served>) -> impl IntoResponse {
    let (ready, text) = served.health.readiness();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, text)
}
