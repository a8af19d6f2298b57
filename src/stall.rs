//! A connection whose peer stopped reading is closed after a time limit.
//!
//! hyper has no write timeout: a client that opens a stream (or an export)
//! and never reads keeps its connection, its buffers and its `streams_max`
//! slot until TCP gives up, which with keep-alive probes answered by the
//! client's kernel is never. [`WriteStall`] wraps the socket: once a write or
//! flush has been refused (the socket buffer is full) for the whole limit
//! without a byte going out, it fails with `TimedOut`; hyper then drops the
//! connection, which drops the response body and frees what it held.
//!
//! Only writes that make no progress at all count: a slow reader that takes
//! a byte now and then is served at its pace. An idle connection writes
//! nothing and is not affected (the head and keep-alive timeouts cover it).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner` whose writes fail once they made no progress for `limit`.
pub struct WriteStall<S> {
    inner: S,
    limit: Duration,
    /// Armed when a write is first refused; cleared by any progress.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Counts the connections closed this way.
    closed: Arc<AtomicU64>,
}

impl<S> WriteStall<S> {
    /// Wraps `inner`; each connection closed for a stall adds one to `closed`.
    pub fn new(inner: S, limit: Duration, closed: Arc<AtomicU64>) -> Self {
        WriteStall {
            inner,
            limit,
            deadline: None,
            closed,
        }
    }

    /// Passes a finished write through, or keeps waiting, or gives up once
    /// nothing went out for the limit.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if deadline.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.closed.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the client read nothing for {} s (write_stall_timeout_secs)",
                        limit.as_secs()
                    ),
                )))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_never_reads_fails_the_write_after_the_limit() {
        let (a, _b) = tokio::io::duplex(1024);
        let closed = Arc::new(AtomicU64::new(0));
        let mut w = WriteStall::new(a, Duration::from_secs(30), closed.clone());
        let started = tokio::time::Instant::now();
        let err = w.write_all(&[7u8; 64 * 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("30 s"), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(closed.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_keeps_reading_is_served() {
        let (a, mut b) = tokio::io::duplex(1024);
        let closed = Arc::new(AtomicU64::new(0));
        let mut w = WriteStall::new(a, Duration::from_secs(30), closed.clone());
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            loop {
                // Slower than the limit in total, never stalled for it.
                tokio::time::sleep(Duration::from_secs(20)).await;
                match b.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got.extend_from_slice(&buf[..n]),
                }
            }
        });
        let data: Vec<u8> = (0..8 * 1024).map(|i| i as u8).collect();
        w.write_all(&data).await.unwrap();
        w.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), data);
        assert_eq!(closed.load(Ordering::Relaxed), 0);
    }
}
