//! Accept loops for the gateway and outbound listeners: limit open connections, detect each
//! connection's protocol, and hand it to HTTP/1, HTTP/2 or opaque TCP forwarding. On shutdown
//! the loops stop accepting and every HTTP connection finishes its in-flight requests first.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{Instrument, debug, debug_span, warn};

use crate::destinations::Destinations;
use crate::detect::{Prefixed, Protocol, detect};
use crate::forward::{HttpContext, forward};
use crate::pool::UpstreamProtocol;

/// How long a connection may stay silent on both sides before it is closed, like an idle
/// keep-alive connection.
const SILENT_LIMIT: Duration = Duration::from_secs(60);

/// What every listener shares.
pub(crate) struct Shared {
    pub destinations: Arc<Destinations>,
    pub connections: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
}

/// Accepts until shutdown. `fixed_authority` makes this a gateway listener for that authority.
pub(crate) async fn serve(listener: TcpListener, fixed_authority: Option<String>, shared: Arc<Shared>) {
    let fixed_destination = fixed_authority.as_deref().and_then(|a| shared.destinations.lookup(a));
    let ctx = Arc::new(HttpContext { destinations: shared.destinations.clone(), fixed_authority, fixed_destination });
    let mut shutdown = shared.shutdown.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::listener::stopped(&mut shutdown) => break,
        };
        let Ok(permit) = shared.connections.clone().try_acquire_owned() else {
            shared.destinations.compiler().metrics.connections_rejected.fetch_add(1, Relaxed);
            drop(stream);
            continue;
        };
        let span = debug_span!("conn", %peer);
        tokio::spawn(connection(stream, peer, ctx.clone(), shared.clone(), permit).instrument(span));
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<HttpContext>,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    let settings = shared.destinations.settings().clone();
    let _ = stream.set_nodelay(true);
    let (mut protocol, mut prefix) = match detect(&mut stream, settings.detect_timeout).await {
        Ok(detected) => detected,
        Err(error) => return debug!(%error, "connection failed during detection"),
    };
    // Nobody spoke within the timeout. A server-first protocol (SMTP, MySQL) is waiting for the
    // server's greeting, but an HTTP client may simply have opened this connection ahead of need.
    // Connect upstream and let whichever side speaks first decide, so that a pooled HTTP connection
    // used later is still routed and measured per request.
    let mut upstream = None;
    if protocol == Protocol::Silent {
        let connected = match &ctx.fixed_authority {
            Some(authority) => crate::tcp::connect(authority, &shared.destinations).await,
            None => None,
        };
        if ctx.fixed_authority.is_some() && connected.is_none() {
            return;
        }
        let first = tokio::time::timeout(SILENT_LIMIT, async {
            match &connected {
                Some(up) => tokio::select! {
                    _ = up.readable() => true,
                    _ = stream.readable() => false,
                },
                // The outbound listener learns where to go only from what the client sends.
                None => stream.readable().await.is_err(),
            }
        });
        let Ok(server_first) = first.await else {
            return debug!(%peer, "closing a connection on which nobody spoke");
        };
        if !server_first {
            (protocol, prefix) = match detect(&mut stream, settings.detect_timeout).await {
                Ok(detected) => detected,
                Err(error) => return debug!(%error, "connection failed during detection"),
            };
        }
        if matches!(protocol, Protocol::Opaque | Protocol::Silent) {
            upstream = connected;
        }
    }
    debug!(?protocol, %peer, "detected");
    let mut shutdown = shared.shutdown.clone();
    match protocol {
        Protocol::Http1 => {
            let io = TokioIo::new(Prefixed::new(prefix, stream));
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(forward(ctx, UpstreamProtocol::Http1, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(settings.header_read_timeout)
                .max_buf_size(settings.max_header_bytes.max(8192))
                .keep_alive(true);
            let conn = builder.serve_connection(io, svc).with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(result),
                _ = crate::listener::stopped(&mut shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
        }
        Protocol::Http2 => {
            let io = TokioIo::new(Prefixed::new(prefix, stream));
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(forward(ctx, UpstreamProtocol::Http2, req).await) }
            });
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder
                .timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
                .adaptive_window(true);
            let conn = builder.serve_connection(io, svc);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(result),
                _ = crate::listener::stopped(&mut shutdown) => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
        }
        Protocol::Opaque | Protocol::Silent => match (&ctx.fixed_authority, upstream) {
            (_, Some(upstream)) => crate::tcp::pump(stream, prefix, upstream).await,
            (Some(authority), None) => crate::tcp::forward(stream, prefix, authority, &shared.destinations).await,
            // Without an authority (no Host, no original destination) there is nowhere to send it.
            (None, None) => debug!("opaque connection on the outbound listener; closing"),
        },
    }
}

/// Resolves once shutdown has been asked for (holding no lock guard across awaits).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(error) = result {
        debug!(%error, "connection ended with an error");
    }
}
