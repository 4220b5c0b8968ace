//! Protocol detection: read the first bytes of a connection (bounded in size and time) and decide
//! between HTTP/2 prior knowledge (h2c, gRPC), HTTP/1 and opaque TCP. The bytes read are replayed
//! to whichever protocol handler takes the connection.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

pub(crate) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Longest method token we wait for before deciding a connection is not HTTP/1.
pub(crate) const MAX_METHOD: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    Opaque,
    /// The client sent nothing within the timeout: a server-first protocol, or a client that
    /// opened the connection ahead of need (HTTP connection pools do).
    Silent,
}

/// Classifies what has been read so far; `None` means more bytes are needed.
pub(crate) fn classify(buf: &[u8]) -> Option<Protocol> {
    let n = buf.len().min(H2_PREFACE.len());
    if buf[..n] == H2_PREFACE[..n] {
        return (n == H2_PREFACE.len()).then_some(Protocol::Http2);
    }
    // An HTTP/1 request line starts with a method token (upper-case letters) and a space.
    for (i, b) in buf.iter().enumerate().take(MAX_METHOD + 1) {
        match b {
            b'A'..=b'Z' | b'-' | b'_' => continue,
            b' ' if i > 0 => return Some(Protocol::Http1),
            _ => return Some(Protocol::Opaque),
        }
    }
    (buf.len() > MAX_METHOD).then_some(Protocol::Opaque)
}

/// Reads until the protocol is known, the peer stops sending for `timeout` (opaque, or silent when
/// nothing at all arrived: some protocols wait for the server to speak first) or closes.
pub(crate) async fn detect<T: AsyncRead + Unpin>(io: &mut T, timeout: Duration) -> io::Result<(Protocol, Bytes)> {
    let mut buf = BytesMut::with_capacity(256);
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            read = io.read_buf(&mut buf) => {
                if read? == 0 {
                    return Ok((Protocol::Opaque, buf.freeze()));
                }
                if let Some(p) = classify(&buf) {
                    return Ok((p, buf.freeze()));
                }
            }
            _ = &mut deadline => {
                let protocol = if buf.is_empty() { Protocol::Silent } else { Protocol::Opaque };
                return Ok((protocol, buf.freeze()));
            }
        }
    }
}

/// A stream with already-read bytes put back in front.
pub(crate) struct Prefixed<T> {
    prefix: Bytes,
    inner: T,
}

impl<T> Prefixed<T> {
    pub fn new(prefix: Bytes, inner: T) -> Self {
        Self { prefix, inner }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_request_starts() {
        assert_eq!(classify(b"GET / HTTP/1.1\r\n"), Some(Protocol::Http1));
        assert_eq!(classify(b"POS"), None);
        assert_eq!(classify(b"PRI * HTTP/2.0\r\n"), None);
        assert_eq!(classify(H2_PREFACE), Some(Protocol::Http2));
        assert_eq!(classify(b"hello"), Some(Protocol::Opaque));
        assert_eq!(classify(b"\x16\x03\x01"), Some(Protocol::Opaque));
        assert_eq!(classify(&[b'A'; 40]), Some(Protocol::Opaque));
    }

    #[tokio::test]
    async fn replays_detected_bytes() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        drop(client);
        let mut server = server;
        let (p, prefix) = detect(&mut server, Duration::from_secs(5)).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        let mut all = Vec::new();
        Prefixed::new(prefix, server).read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn nothing_sent_is_silent_and_a_partial_token_is_opaque() {
        let (_client, mut server) = tokio::io::duplex(64);
        let (p, prefix) = detect(&mut server, Duration::from_millis(50)).await.unwrap();
        assert_eq!((p, prefix.len()), (Protocol::Silent, 0));
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"GET").await.unwrap();
        let (p, prefix) = detect(&mut server, Duration::from_millis(50)).await.unwrap();
        assert_eq!((p, &prefix[..]), (Protocol::Opaque, &b"GET"[..]));
    }
}
