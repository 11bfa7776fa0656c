//! Accepting connections within limits, for the gRPC and the /metrics
//! listeners: at most `max_connections` open at once (past that a new
//! connection is closed at once, rather than queued where it would hold a
//! socket and a task), and a connection closed when its peer sends nothing
//! for too long (nothing at all after `first_bytes_timeout`, then nothing
//! for `idle_timeout`). Live HTTP/2 clients answer the server's keepalive
//! pings, so only dead or idle-flooding peers are cut; a flood of idle
//! sockets can hold the cap at most that long.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Bounds on the connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    /// How long a new connection may stay silent before it is closed.
    pub first_bytes_timeout: Duration,
    /// How long an established connection may stay silent before it is closed.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            first_bytes_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// A TCP listener that hands out [`LimitedStream`]s within its limits.
pub struct LimitedListener {
    listener: TcpListener,
    limits: ConnectionLimits,
    permits: Arc<Semaphore>,
    name: &'static str,
}

impl LimitedListener {
    /// `name` tells the listeners apart in logs.
    pub fn new(listener: TcpListener, limits: ConnectionLimits, name: &'static str) -> LimitedListener {
        let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
        LimitedListener { listener, limits, permits, name }
    }

    /// Connections open on this listener now.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn open_connections(&self) -> usize {
        self.limits.max_connections.max(1) - self.permits.available_permits()
    }

    /// The next connection within the cap; others are closed as they come.
    /// Accept errors (out of file descriptors, say) are logged and retried
    /// after a pause rather than in a busy loop.
    pub async fn accept_limited(&self) -> (LimitedStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        // No Nagle: small gRPC answers must not wait for a delayed ACK (≈ 40 ms each).
                        let _ = stream.set_nodelay(true);
                        return (LimitedStream::new(stream, permit, self.limits), addr);
                    }
                    Err(_) => {
                        tracing::warn!(listener = self.name, %addr, max = self.limits.max_connections, "connection cap reached; closing a new connection");
                        drop(stream);
                    }
                },
                Err(err) => {
                    tracing::warn!(listener = self.name, error = %err, "accepting a connection failed; pausing");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The connections as the stream tonic serves from.
    pub fn into_incoming(self) -> impl Stream<Item = io::Result<LimitedStream>> + Send + 'static {
        futures_util::stream::unfold(self, |listener| async move {
            let (stream, _) = listener.accept_limited().await;
            Some((Ok(stream), listener))
        })
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_limited().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// An accepted connection: holds its place under the cap until dropped,
/// and fails its reads once the peer has been silent too long.
pub struct LimitedStream {
    inner: TcpStream,
    /// Fires when the peer may have been silent too long; re-armed from
    /// `last_read` then, rather than on every read (timer updates are not free).
    silence: Pin<Box<Sleep>>,
    last_read: Option<Instant>,
    idle_timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl LimitedStream {
    fn new(inner: TcpStream, permit: OwnedSemaphorePermit, limits: ConnectionLimits) -> LimitedStream {
        LimitedStream {
            inner,
            silence: Box::pin(tokio::time::sleep(limits.first_bytes_timeout)),
            last_read: None,
            idle_timeout: limits.idle_timeout,
            _permit: permit,
        }
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_read = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => loop {
                if this.silence.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                match this.last_read.map(|at| at + this.idle_timeout) {
                    Some(deadline) if deadline > Instant::now() => this.silence.as_mut().reset(deadline),
                    _ => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the peer sent nothing for too long",
                        )));
                    }
                }
            },
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
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
}

impl tonic::transport::server::Connected for LimitedStream {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn listener(limits: ConnectionLimits) -> (LimitedListener, SocketAddr) {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        (LimitedListener::new(tcp, limits, "test"), addr)
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed_and_silent_ones_time_out() {
        let limits = ConnectionLimits {
            max_connections: 2,
            first_bytes_timeout: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(60),
        };
        let (listener, addr) = listener(limits).await;
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(TcpStream::connect(addr).await.unwrap());
        }
        let (mut first, _) = listener.accept_limited().await;
        let (mut second, _) = listener.accept_limited().await;
        assert_eq!(listener.open_connections(), 2);
        // The third is closed at once: its client reads end of stream.
        let accepting = tokio::spawn(async move {
            let (_stream, _) = listener.accept_limited().await;
        });
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(5), clients[2].read(&mut byte)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the connection past the cap is closed: {read:?}");
        accepting.abort();

        // The first client speaks and stays; the second stays silent and is cut.
        clients[0].write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        first.read_exact(&mut buf).await.unwrap();
        let silent = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf)).await.expect("times out");
        assert_eq!(silent.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }
}
