//! Response bodies: the upstream's body, observed so the outcome is recorded when the stream ends
//! (gRPC puts its status in trailers), or a short body the proxy writes itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::metrics::{BackendStats, FailureClass};
use crate::pool::Reusable;

/// What is known about a response while its body streams; recorded exactly once.
pub(crate) struct Outcome {
    pub stats: Arc<BackendStats>,
    pub status: u16,
    pub grpc: bool,
    /// `grpc-status` seen so far (headers of a trailers-only response, or trailers).
    pub grpc_status: Option<u32>,
    pub latency: Duration,
}

impl Outcome {
    fn record(self, stream_failed: bool) {
        let failure = if stream_failed {
            Some(FailureClass::Connect)
        } else if self.status >= 500 {
            Some(FailureClass::Http5xx)
        } else if self.grpc && self.grpc_status != Some(0) {
            Some(FailureClass::Grpc)
        } else {
            None
        };
        self.stats.record_response(self.status, failure, self.latency);
    }
}

pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()
}

pub(crate) enum ProxyBody {
    Upstream {
        inner: Incoming,
        outcome: Option<Outcome>,
        /// The HTTP/1 connection the body arrives on, released to its pool at the body's end.
        connection: Option<Reusable>,
    },
    Local(Option<Bytes>),
}

impl ProxyBody {
    /// Wraps an upstream body; an already finished body records its outcome at once.
    pub fn upstream(inner: Incoming, outcome: Outcome, connection: Option<Reusable>) -> Self {
        let mut body = Self::Upstream { inner, outcome: Some(outcome), connection };
        body.finish_if_ended();
        body
    }

    pub fn local(text: impl Into<Bytes>) -> Self {
        let text = text.into();
        Self::Local((!text.is_empty()).then_some(text))
    }

    /// Records the outcome as soon as the upstream says the stream is over, before the last frame
    /// is handed to the client, so counters are up to date by the time the client has the response;
    /// the upstream connection is free for the next request from then on.
    fn finish_if_ended(&mut self) {
        if let Self::Upstream { inner, outcome, connection } = self
            && inner.is_end_stream()
        {
            Self::finish(outcome, connection, false);
        }
    }

    fn finish(outcome: &mut Option<Outcome>, connection: &mut Option<Reusable>, failed: bool) {
        if let Some(o) = outcome.take() {
            o.record(failed);
        }
        // A failed stream's connection is dropped, not reused.
        if let Some(c) = connection.take()
            && !failed
        {
            c.release();
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        match this {
            Self::Local(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Upstream { inner, outcome, connection } => {
                let polled = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &polled {
                    Some(Ok(frame)) => {
                        if let (Some(trailers), Some(o)) = (frame.trailers_ref(), outcome.as_mut())
                            && let Some(code) = grpc_status(trailers)
                        {
                            o.grpc_status = Some(code);
                        }
                        this.finish_if_ended();
                    }
                    Some(Err(_)) => Self::finish(outcome, connection, true),
                    None => Self::finish(outcome, connection, false),
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Local(data) => data.is_none(),
            Self::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Local(Some(d)) => SizeHint::with_exact(d.len() as u64),
            Self::Local(None) => SizeHint::with_exact(0),
            Self::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        // The client went away (or the server stopped polling) before the end of the stream: the
        // response is classified by what was seen.
        if let Self::Upstream { outcome, .. } = self
            && let Some(o) = outcome.take()
        {
            o.record(false);
        }
    }
}
