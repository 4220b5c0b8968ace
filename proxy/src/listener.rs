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

use crate::destinations::{Destinations, Unrouted};
use crate::detect::{Prefixed, Protocol, detect};
use crate::forward::{HttpContext, forward};
use crate::pool::UpstreamProtocol;

/// How long a redirected connection waits to learn whether its destination is a Service's.
const REDIRECT_LOOKUP_WAIT: Duration = Duration::from_secs(1);

/// How long a connection may stay silent on both sides before it is closed, like an idle
/// keep-alive connection.
const SILENT_LIMIT: Duration = Duration::from_secs(60);

/// What every listener shares.
pub(crate) struct Shared {
    pub destinations: Arc<Destinations>,
    pub connections: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
}

/// What a listener does with the connections it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listening {
    /// A gateway for one authority.
    Gateway(String),
    /// Outbound: each HTTP request goes where its Host or :authority says.
    Outbound,
    /// A sidecar's outbound listener: connections redirected to it by iptables go where their
    /// original destination's Service routes them, or untouched to that destination.
    Redirected,
    /// A sidecar's inbound listener: connections redirected to it go on to the application, at
    /// their original destination.
    Inbound,
}

/// Accepts until shutdown.
pub(crate) async fn serve(listener: TcpListener, listening: Listening, shared: Arc<Shared>) {
    let fixed_authority = match &listening {
        Listening::Gateway(authority) => Some(authority.clone()),
        Listening::Outbound | Listening::Redirected | Listening::Inbound => None,
    };
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
        match listening {
            Listening::Redirected => tokio::spawn(redirected(stream, peer, shared.clone(), permit).instrument(span)),
            Listening::Inbound => tokio::spawn(inbound(stream, peer, shared.clone(), permit).instrument(span)),
            _ => tokio::spawn(connection(stream, peer, ctx.clone(), shared.clone(), permit).instrument(span)),
        };
    }
}

/// A connection iptables redirected to the sidecar: routed as a gateway connection for its
/// original destination when the controller knows that address as a Service's, else passed
/// through untouched — meshing a pod never breaks its traffic to anything else.
async fn redirected(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, permit: OwnedSemaphorePermit) {
    let Some(original) = original_destination(&stream) else {
        return debug!(%peer, "closing a connection that was not redirected (no original destination)");
    };
    if stream.local_addr().is_ok_and(|local| local == original) {
        return debug!(%peer, "closing a connection made to the sidecar itself");
    }
    let authority = original.to_string();
    let dests = &shared.destinations;
    // Most of a pod's connections to addresses no Service has are to new addresses; with the
    // controller slow or gone they pass through after a short wait rather than a snapshot timeout.
    match tokio::time::timeout(REDIRECT_LOOKUP_WAIT, dests.resolve(&authority))
        .await
        .unwrap_or(Err(Unrouted::NoSnapshot))
    {
        Ok(table) if table.exists() => {
            let fixed_destination = dests.lookup(&authority);
            let ctx = Arc::new(HttpContext {
                destinations: dests.clone(),
                fixed_authority: Some(authority),
                fixed_destination,
            });
            connection(stream, peer, ctx, shared, permit).await;
        }
        _ => {
            dests.compiler().metrics.passthrough_connections.fetch_add(1, Relaxed);
            let _held = permit;
            crate::tcp::passthrough(stream, original, dests.settings().connect_timeout).await;
        }
    }
}

/// A connection to the pod, redirected to the sidecar: on to the application, untouched.
async fn inbound(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, _permit: OwnedSemaphorePermit) {
    let Some(original) = original_destination(&stream) else {
        return debug!(%peer, "closing an inbound connection that was not redirected");
    };
    if stream.local_addr().is_ok_and(|local| local == original) {
        return debug!(%peer, "closing a connection made to the inbound listener itself");
    }
    let dests = &shared.destinations;
    dests.compiler().metrics.inbound_connections.fetch_add(1, Relaxed);
    crate::tcp::passthrough(stream, original, dests.settings().connect_timeout).await;
}

/// Where a redirected connection was headed before iptables sent it here.
fn original_destination(stream: &TcpStream) -> Option<SocketAddr> {
    let socket = socket2::SockRef::from(stream);
    let ipv6 = stream.local_addr().is_ok_and(|a| a.is_ipv6());
    let original = if ipv6 { socket.original_dst_v6() } else { socket.original_dst_v4() };
    original.ok()?.as_socket()
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
