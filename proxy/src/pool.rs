//! Upstream connections to one endpoint: idle HTTP/1 connections are pooled and reused, and a
//! single HTTP/2 connection is shared (multiplexed) by every HTTP/2 request to the endpoint.
//!
//! Requests are sent with `try_send_request`, so a request that never left the proxy (a pooled
//! connection the server had just closed) comes back intact and can be sent elsewhere.
//!
//! An HTTP/1 connection returns to the pool when its response body has been read to the end (see
//! [`Reusable`]), not from a task spawned per request to wait for that.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, debug_span};

use crate::metrics::AttemptFailure;

/// How the proxy speaks to the endpoint: the same protocol the client spoke to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect timed out")]
    Timeout,
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] hyper::Error),
}

impl ConnectError {
    /// How this failed dial is counted against the endpoint's backend.
    pub fn attempt_failure(&self) -> AttemptFailure {
        use std::io::ErrorKind;
        match self {
            Self::Timeout => AttemptFailure::Timeout,
            Self::Io(e) if e.kind() == ErrorKind::ConnectionRefused => AttemptFailure::Refused,
            Self::Io(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                        | ErrorKind::UnexpectedEof
                ) =>
            {
                AttemptFailure::Reset
            }
            Self::Io(_) => AttemptFailure::Error,
            // The only handshake that reads from the peer is HTTP/2's: the endpoint accepted the
            // connection and then closed or reset it.
            Self::Handshake(_) => AttemptFailure::Reset,
        }
    }
}

pub(crate) enum SendError {
    /// The connection failed before the request was written; the request can go elsewhere.
    NotSent(Box<Request<Incoming>>),
    Failed(hyper::Error),
}

/// A connection checked out of the pool for one request.
pub(crate) enum Conn {
    H1(http1::SendRequest<Incoming>),
    H2(http2::SendRequest<Incoming>),
}

pub(crate) struct Pool {
    addr: SocketAddr,
    idle: Mutex<Vec<http1::SendRequest<Incoming>>>,
    shared_h2: tokio::sync::Mutex<Option<http2::SendRequest<Incoming>>>,
    max_idle: usize,
    connect_timeout: Duration,
}

impl Pool {
    pub fn new(addr: SocketAddr, max_idle: usize, connect_timeout: Duration) -> Self {
        Self { addr, idle: Mutex::default(), shared_h2: Default::default(), max_idle, connect_timeout }
    }

    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A ready connection: a pooled one when there is one, else a new one.
    pub async fn checkout(&self, protocol: UpstreamProtocol) -> Result<Conn, ConnectError> {
        match protocol {
            UpstreamProtocol::Http1 => {
                while let Some(sender) = self.idle.lock().expect("pool lock").pop() {
                    if sender.is_ready() && !sender.is_closed() {
                        return Ok(Conn::H1(sender));
                    }
                }
                let io = self.dial().await?;
                let (sender, conn) = http1::Builder::new().handshake(io).await?;
                let span = debug_span!("upstream", addr = %self.addr, protocol = "http/1.1");
                tokio::spawn(
                    async move {
                        if let Err(error) = conn.await {
                            debug!(%error, "upstream connection ended");
                        }
                    }
                    .instrument(span),
                );
                Ok(Conn::H1(sender))
            }
            UpstreamProtocol::Http2 => {
                let mut shared = self.shared_h2.lock().await;
                if let Some(sender) = shared.as_ref().filter(|s| !s.is_closed()) {
                    return Ok(Conn::H2(sender.clone()));
                }
                let io = self.dial().await?;
                let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .adaptive_window(true)
                    .keep_alive_interval(Duration::from_secs(20))
                    .handshake(io)
                    .await?;
                let span = debug_span!("upstream", addr = %self.addr, protocol = "h2");
                tokio::spawn(
                    async move {
                        if let Err(error) = conn.await {
                            debug!(%error, "upstream connection ended");
                        }
                    }
                    .instrument(span),
                );
                *shared = Some(sender.clone());
                Ok(Conn::H2(sender))
            }
        }
    }

    async fn dial(&self) -> Result<TokioIo<TcpStream>, ConnectError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(self.addr))
            .await
            .map_err(|_| ConnectError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(TokioIo::new(stream))
    }

    /// Sends `req` on `conn`. An HTTP/1 connection comes back with the response as [`Reusable`],
    /// to be released once the response body has been read to the end.
    pub async fn send(
        self: &Arc<Self>,
        conn: Conn,
        req: Request<Incoming>,
    ) -> Result<(Response<Incoming>, Option<Reusable>), SendError> {
        let result = match conn {
            Conn::H1(mut sender) => sender
                .try_send_request(req)
                .await
                .map(|response| (response, Some(Reusable { pool: Arc::clone(self), sender }))),
            Conn::H2(mut sender) => sender.try_send_request(req).await.map(|response| (response, None)),
        };
        result.map_err(|mut e| match e.take_message() {
            Some(req) => SendError::NotSent(Box::new(req)),
            None => SendError::Failed(e.into_error()),
        })
    }

    fn put_idle(&self, sender: http1::SendRequest<Incoming>) {
        let mut idle = self.idle.lock().expect("pool lock");
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }
}

/// An HTTP/1 connection whose response is still being read. Released when the response body has
/// ended it goes back to the pool; dropped instead (the body was cut short) the connection closes
/// after its exchange, since an unread body would have to be drained before reuse.
pub(crate) struct Reusable {
    pool: Arc<Pool>,
    sender: http1::SendRequest<Incoming>,
}

impl Reusable {
    pub fn release(self) {
        let Self { pool, mut sender } = self;
        // The connection task has usually finished the exchange by the time the body's end reaches
        // us, so it is ready at once; otherwise wait for it off the request path.
        if sender.is_ready() {
            pool.put_idle(sender);
        } else if !sender.is_closed() {
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put_idle(sender);
                }
            });
        }
    }
}
