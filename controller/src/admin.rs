//! The controller's admin endpoint: `/metrics`, `/healthz` (the process serves), `/readyz` (every
//! watcher completed its first list, so snapshots reflect the cluster).

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
use crate::watch::Synced;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<ControllerMetrics>,
    synced: Synced,
}

/// Serves the admin endpoint on `listener` until the process ends.
pub fn spawn(listener: TcpListener, metrics: Arc<ControllerMetrics>, synced: Synced) -> SocketAddr {
    let addr = listener.local_addr().expect("bound listener has an address");
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AdminState { metrics, synced });
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
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
}

async fn ready_handler(State(state): State<AdminState>) -> impl IntoResponse {
    if state.synced.is_synced() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first list of Services, EndpointSlices, TrafficSplits and HTTPRouteGroups\n",
        )
    }
}
