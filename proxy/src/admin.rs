//! The admin port: `/metrics` (Prometheus), `/live`, `/ready` and `/config` (current snapshots
//! and versions as JSON). It never routes traffic and is not subject to the connection limit.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span};

use crate::destinations::Destinations;

pub(crate) struct AdminState {
    pub destinations: Arc<Destinations>,
    /// Gateway authorities: the proxy is ready once each has a snapshot.
    pub required: Vec<String>,
    pub shutdown: watch::Receiver<bool>,
}

pub(crate) async fn serve(listener: TcpListener, state: Arc<AdminState>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
            _ = crate::listener::stopped(&mut shutdown) => break,
        };
        let state = state.clone();
        let svc = service_fn(move |req| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(handle(&state, &req)) }
        });
        let conn = async move {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(std::time::Duration::from_secs(10));
            if let Err(error) = builder.serve_connection(TokioIo::new(stream), svc).await {
                debug!(%error, "admin connection ended with an error");
            }
        };
        tokio::spawn(conn.instrument(debug_span!("admin")));
    }
}

fn handle<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            reply(StatusCode::OK, "text/plain; version=0.0.4", state.destinations.compiler().metrics.render())
        }
        "/live" => reply(StatusCode::OK, "text/plain", "live\n".into()),
        "/ready" => {
            if *state.shutdown.borrow() {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n".into())
            } else if state.destinations.all_have_tables(&state.required) {
                reply(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "waiting for configuration\n".into())
            }
        }
        "/config" => {
            let body = serde_json::to_string_pretty(&state.destinations.dump()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body + "\n")
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "try /metrics, /ready, /live or /config\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}
