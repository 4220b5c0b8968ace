//! The controller's admin endpoint: `/metrics`, `/healthz` (every supervised task is healthy: none
//! keeps failing), `/readyz` (every watcher completed its first list, so snapshots reflect the
//! cluster).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::metrics::ControllerMetrics;
use crate::supervise::Supervisor;
use crate::watch::Synced;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<ControllerMetrics>,
    synced: Synced,
    supervisor: Supervisor,
}

/// Serves the admin endpoint on `listener` until the process ends.
pub fn spawn(
    listener: TcpListener,
    metrics: Arc<ControllerMetrics>,
    synced: Synced,
    supervisor: Supervisor,
) -> SocketAddr {
    let addr = listener.local_addr().expect("bound listener has an address");
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(health_handler))
        .route("/readyz", get(ready_handler))
        .with_state(AdminState { metrics, synced, supervisor });
    tokio::spawn(
        async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "admin server stopped");
            }
        }
        .instrument(tracing::info_span!("admin", %addr)),
    );
    addr
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    let mut body = state.metrics.render();
    state.supervisor.render(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn health_handler(State(state): State<AdminState>) -> impl IntoResponse {
    let failing = state.supervisor.unhealthy();
    if failing.is_empty() {
        return (StatusCode::OK, "ok\n".to_string());
    }
    let lines: Vec<String> = failing
        .iter()
        .map(|u| format!("task {} failed {} times in a row: {}", u.task, u.failures_in_a_row, u.last_error))
        .collect();
    (StatusCode::SERVICE_UNAVAILABLE, lines.join("\n") + "\n")
}

async fn ready_handler(State(state): State<AdminState>) -> impl IntoResponse {
    if state.synced.is_synced() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first list of Services, EndpointSlices, TrafficSplits, HTTPRouteGroups, HTTPRoutes and GRPCRoutes\n",
        )
    }
}
