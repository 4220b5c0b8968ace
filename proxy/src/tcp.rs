//! Opaque TCP: a connection the proxy cannot read as HTTP (or an HTTP `CONNECT` tunnel) is sent,
//! whole, to one backend chosen by the same weights (the authority's catch-all route), with
//! connection and byte counters.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tracing::debug;

use crate::balance::{EndpointState, pick_endpoint};
use crate::destinations::Destinations;
use crate::metrics::BackendStats;

/// A connection to one endpoint of the backend the weights chose.
pub(crate) struct Upstream {
    stream: TcpStream,
    stats: Arc<BackendStats>,
    endpoint: Arc<EndpointState>,
}

impl Upstream {
    /// Resolves once the upstream has sent bytes or closed.
    pub async fn readable(&self) -> io::Result<()> {
        self.stream.readable().await
    }
}

/// Sends `client` (after `prefix`, bytes already read from it) to one backend of `authority`.
pub(crate) async fn forward<T>(client: T, prefix: Bytes, authority: &str, dests: &Arc<Destinations>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    if let Some(upstream) = connect(authority, dests).await {
        pump(client, prefix, upstream).await;
    }
}

/// Picks a backend by weight and connects to one of its endpoints, trying others on failure.
/// Failures to route are counted; `None` means the client connection should be closed.
pub(crate) async fn connect(authority: &str, dests: &Arc<Destinations>) -> Option<Upstream> {
    let metrics = &dests.compiler().metrics;
    let table = match dests.resolve(authority).await {
        Ok(table) if table.exists() => table,
        Ok(_) => {
            metrics.record_unrouted(&dests.unrouted_label(authority), "service not found");
            return None;
        }
        Err(unrouted) => {
            metrics.record_unrouted(&dests.unrouted_label(authority), unrouted.reason());
            return None;
        }
    };
    let Some(route) = table.tcp_route() else {
        metrics.record_unrouted(&table.snapshot.authority, "no route");
        return None;
    };
    let settings = dests.settings();
    for attempt in 1..=settings.max_attempts {
        let Some(backend) = route.pick_backend(attempt) else { break };
        let endpoint = pick_endpoint(&backend.endpoints);
        match tokio::time::timeout(settings.connect_timeout, TcpStream::connect(endpoint.addr)).await {
            Ok(Ok(stream)) => {
                endpoint.mark_ok();
                let _ = stream.set_nodelay(true);
                return Some(Upstream { stream, stats: backend.stats.clone(), endpoint: endpoint.clone() });
            }
            Ok(Err(error)) => debug!(%error, endpoint = %endpoint.addr, attempt, "dial failed"),
            Err(_) => debug!(endpoint = %endpoint.addr, attempt, "dial timed out"),
        }
        endpoint.mark_failed();
    }
    metrics.record_unrouted(&table.snapshot.authority, "no reachable endpoint");
    None
}

/// Sends `client` untouched to `destination`, where it was headed before iptables redirected it:
/// what a sidecar does with traffic to anything no Service has.
pub(crate) async fn passthrough(
    mut client: TcpStream,
    destination: std::net::SocketAddr,
    timeout: std::time::Duration,
) {
    match tokio::time::timeout(timeout, TcpStream::connect(destination)).await {
        Ok(Ok(mut upstream)) => {
            let _ = upstream.set_nodelay(true);
            if let Err(error) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                debug!(%error, %destination, "passed-through connection ended with an error");
            }
        }
        Ok(Err(error)) => debug!(%error, %destination, "passthrough dial failed"),
        Err(_) => debug!(%destination, "passthrough dial timed out"),
    }
}

/// Copies bytes both ways between `client` (after `prefix`) and `upstream` until both ends close.
pub(crate) async fn pump<T>(client: T, prefix: Bytes, upstream: Upstream)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let Upstream { stream: mut upstream, stats, endpoint } = upstream;
    let _in_flight = endpoint.start();
    stats.tcp_opened();
    let mut client = Counted { inner: client, stats: stats.clone() };
    stats.tcp_read(prefix.len());
    let result = match upstream.write_all(&prefix).await {
        Ok(()) => tokio::io::copy_bidirectional(&mut client, &mut upstream).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(error) = result {
        debug!(%error, "opaque connection ended with an error");
    }
    stats.tcp_closed();
}

/// Counts bytes read from and written to the client.
struct Counted<T> {
    inner: T,
    stats: Arc<BackendStats>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.stats.tcp_read(buf.filled().len() - before);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.stats.tcp_written(n);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
