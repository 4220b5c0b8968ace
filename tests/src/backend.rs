//! Real HTTP/1.1 and HTTP/2 backends on loopback that answer with their own name, count what they
//! serve, and can be told to fail or slow down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One backend version, e.g. `web-v2`.
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    served: AtomicU64,
    /// Per-mille of requests answered with 500.
    fail_per_mille: AtomicU32,
    delay_ms: AtomicU64,
}

impl Backend {
    pub async fn start(name: &str) -> Backend {
        Backend::start_on(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Serves on `addr`; port 0 picks a free one. The `test-backend` process serves on a port it is given.
    pub async fn start_on(name: &str, addr: SocketAddr) -> Backend {
        let listener =
            TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("backend {name} cannot listen on {addr}: {e}"));
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(State::default());
        let (st, body_name) = (state.clone(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (st, body_name) = (st.clone(), body_name.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, st.clone(), body_name.clone()));
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Backend { name: name.into(), addr, state, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests served so far.
    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::Relaxed)
    }

    /// Answer this share of requests (0.0–1.0) with 500.
    pub fn set_failure_rate(&self, rate: f64) {
        self.state.fail_per_mille.store((rate * 1000.0).round() as u32, Ordering::Relaxed);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops accepting and serving.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(_req: Request<Incoming>, state: Arc<State>, name: String) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = state.served.fetch_add(1, Ordering::Relaxed);
    let delay = state.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let fail = state.fail_per_mille.load(Ordering::Relaxed);
    // Spread failures evenly so small samples see the configured rate.
    let failing = fail > 0 && (n * u64::from(fail)) % 1000 + u64::from(fail) >= 1000;
    let status = if failing { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    Ok(Response::builder()
        .status(status)
        .header("x-backend", &name)
        .body(Full::new(Bytes::from(name)))
        .expect("response"))
}
