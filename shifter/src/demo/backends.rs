//! The demo's versions of a web service: real HTTP servers on loopback that answer with their
//! version name in a header, with a latency and failure profile per version.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rand::Rng;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Response header naming the version that answered; the load generator groups by it.
pub const VERSION_HEADER: &str = "x-demo-version";

/// How one version behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Fraction of requests answered with 500.
    pub failure_rate: f64,
    /// Median service time.
    pub median: Duration,
    /// Extra time added to every request (a slow release).
    pub extra: Duration,
}

impl Profile {
    /// A healthy version: 0.1% failures, about 8 ms median with a long tail.
    pub const HEALTHY: Profile =
        Profile { failure_rate: 0.001, median: Duration::from_millis(8), extra: Duration::ZERO };
    /// A release that fails 8% of requests.
    pub const ERRORS: Profile = Profile { failure_rate: 0.08, ..Profile::HEALTHY };
    /// A release 150 ms slower on every request.
    pub const SLOW: Profile = Profile { extra: Duration::from_millis(150), ..Profile::HEALTHY };

    /// One service time: log-normal around the median (σ = 0.6, so p99 ≈ 4× the median).
    fn service_time(&self, rng: &mut impl Rng) -> Duration {
        let z = standard_normal(rng);
        self.median.mul_f64((0.6 * z).exp()) + self.extra
    }
}

/// Box–Muller: one standard normal draw.
fn standard_normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A running version.
pub struct DemoBackend {
    pub name: String,
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl DemoBackend {
    pub async fn start(name: &str, profile: Profile) -> std::io::Result<DemoBackend> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let version: Arc<str> = name.into();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let version = version.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| answer(req, profile, version.clone()));
                    let _ =
                        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Ok(DemoBackend { name: name.into(), addr, task })
    }
}

impl Drop for DemoBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    _req: Request<Incoming>,
    profile: Profile,
    version: Arc<str>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (delay, fail) = {
        let mut rng = rand::rng();
        (profile.service_time(&mut rng), rng.random_bool(profile.failure_rate))
    };
    tokio::time::sleep(delay).await;
    let (status, body) = if fail {
        (StatusCode::INTERNAL_SERVER_ERROR, format!("{version} failed\n"))
    } else {
        (StatusCode::OK, format!("hello from {version}\n"))
    };
    let response = Response::builder()
        .status(status)
        .header(VERSION_HEADER, &*version)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid");
    Ok(response)
}
