//! Connections: accepting them, and bounding what each may cost before it has earned a request.
//! A client gets `tls_handshake_timeout` to finish the TLS handshake and `header_read_timeout` to
//! send a complete request head (a slowloris client that trickles headers is closed); at most
//! `max_connections` are served at once, and a connection beyond that is closed as soon as it is
//! accepted, without touching the ones already established.

use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::app::App;
use crate::http::{self, HttpSettings};

/// What one connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub tls_handshake_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// How often, at most, a refused connection is logged at `warn`.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// A pause after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Everything a connection task needs.
#[derive(Clone)]
pub struct Serving {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub app: Arc<App>,
    pub settings: Arc<HttpSettings>,
    pub limits: ConnectionLimits,
}

/// Accepts and serves connections until `stopped` turns true; then ends every connection.
pub async fn accept_loop(listener: TcpListener, serving: Serving, mut stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(serving.limits.max_connections));
    let mut refusals = Refusals::default();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    refusals.refused(serving.limits.max_connections);
                    // Dropping the socket closes it: the client sees the connection end at once.
                    drop(tcp);
                    continue;
                };
                let span = tracing::debug_span!("connection", %peer);
                connections.spawn(serve_connection(tcp, permit, serving.clone()).instrument(span));
            }
        }
    }
    connections.shutdown().await;
}

/// Counts refused connections and logs them without flooding the log under a connection storm.
#[derive(Default)]
struct Refusals {
    since_log: u64,
    last_log: Option<tokio::time::Instant>,
}

impl Refusals {
    fn refused(&mut self, max: usize) {
        self.since_log += 1;
        let now = tokio::time::Instant::now();
        if self.last_log.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_EVERY) {
            tracing::warn!(
                max_connections = max,
                refused = self.since_log,
                "connection limit reached; closing new connections (raise --max-connections if clients need more)"
            );
            self.since_log = 0;
            self.last_log = Some(now);
        }
    }
}

async fn serve_connection(tcp: TcpStream, permit: OwnedSemaphorePermit, serving: Serving) {
    let _slot = permit;
    let limits = serving.limits;
    let tls = match tokio::time::timeout(limits.tls_handshake_timeout, serving.acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(timeout = ?limits.tls_handshake_timeout, "TLS handshake not completed in time; closing");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let first_request = Arc::new(Notify::new());
    let seen = first_request.clone();
    let (app, settings) = (serving.app, serving.settings);
    let service = service_fn(move |req| {
        seen.notify_one();
        http::serve(app.clone(), settings.clone(), req)
    });
    let io = TokioIo::new(tls);
    // Only a request whose head has fully arrived reaches the service, so until the first one
    // does, the connection is on probation: this covers a client stalling before its HTTP/2
    // preface as well as one trickling an HTTP/1.1 header (which hyper's own timer also catches,
    // for that and every later request on the connection).
    let probation = async {
        tokio::select! {
            _ = first_request.notified() => std::future::pending::<()>().await,
            _ = tokio::time::sleep(limits.header_read_timeout) => {}
        }
    };
    let served = async {
        if h2 {
            let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            // As Kubernetes' --http2-max-streams-per-connection: a client multiplexing many
            // watches over one HTTP/2 connection must not stall.
            builder.max_concurrent_streams(1000);
            // A peer that stops answering pings (gone without a FIN) frees its slot.
            builder.keep_alive_interval(limits.header_read_timeout);
            builder.keep_alive_timeout(limits.header_read_timeout);
            builder.serve_connection(io, service).await
        } else {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new());
            builder.header_read_timeout(limits.header_read_timeout);
            builder.serve_connection(io, service).await
        }
    };
    tokio::select! {
        result = served => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        _ = probation => {
            tracing::debug!(timeout = ?limits.header_read_timeout, "no complete request head in time; closing");
        }
    }
}
