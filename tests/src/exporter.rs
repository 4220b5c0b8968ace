//! A `/metrics` endpoint on loopback serving counters a test adds to, in any data plane's names and
//! labels, for checking queries against a real Prometheus.
//!
//! Every scrape's samples carry a timestamp on a whole second (the scrape's own time less the
//! sub-second phase Prometheus scrapes this target at, so consecutive scrapes land on consecutive
//! seconds). A window between two whole seconds then starts and ends on a sample, Prometheus 2's
//! `increase()` over it needs no extrapolation, and the counts it returns are exact, not estimates.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running exporter; stops when dropped.
pub struct Exporter {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct State {
    /// `name{labels}` → value, sorted so each metric's series are served together.
    series: BTreeMap<String, u64>,
    /// Milliseconds past the second at which the first scrape arrived.
    phase_ms: Option<u64>,
}

impl Exporter {
    pub async fn start() -> Exporter {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("exporter listens");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(Mutex::new(State::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                        let body = st.lock().expect("exporter state").exposition();
                        async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
                    });
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Exporter { addr, state, task }
    }

    /// Adds `n` to the counter `series` (written `name{label="value",...}`), creating it at zero
    /// first. Prometheus counts a counter's growth only from its first sample on, so a test creates
    /// (`n` = 0) every series it will count before the window it counts them in.
    pub fn add(&self, series: impl Into<String>, n: u64) {
        *self.state.lock().expect("exporter state").series.entry(series.into()).or_insert(0) += n;
    }
}

impl State {
    fn exposition(&mut self) -> String {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64;
        let phase = *self.phase_ms.get_or_insert(now_ms % 1000);
        let stamp = (now_ms - phase + 500) / 1000 * 1000;
        self.series.iter().map(|(series, value)| format!("{series} {value} {stamp}\n")).collect()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
