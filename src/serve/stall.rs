//! A client that takes nothing of what it is sent is cut off: a
//! connection whose writes have waited on it for longer than a limit fails,
//! and with it the requests it held. Without this, a client that opens a
//! stream and never reads it keeps its slot (and its upstream call) for as
//! long as it keeps the connection open, and a few such clients hold every
//! slot of the server.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `inner`, whose writes fail once they have been held up for `limit`.
pub struct Stalls<S> {
    inner: S,
    limit: Duration,
    /// Since the first write held up, until one goes through.
    held: Option<Pin<Box<Sleep>>>,
}

impl<S> Stalls<S> {
    pub fn new(inner: S, limit: Duration) -> Stalls<S> {
        Stalls {
            inner,
            limit,
            held: None,
        }
    }

    /// What a write that came back `r` means: it went through (the wait,
    /// if any, is over), or it is held up, and past the limit fails.
    fn after<T>(&mut self, r: Poll<io::Result<T>>, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.held = None;
            return r;
        }
        let limit = self.limit;
        let held = self
            .held
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match held.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took nothing of its answer for {}",
                    crate::core::duration::format(limit)
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Stalls<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stalls<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.after(r, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.after(r, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_held_up_past_the_limit_fails() {
        // A pipe of 8 bytes nobody reads: the second write waits for good.
        let (ours, _theirs) = tokio::io::duplex(8);
        let mut s = Stalls::new(ours, Duration::from_millis(100));
        s.write_all(b"12345678").await.unwrap();
        let e = s.write_all(b"9").await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(e.to_string().contains("took nothing"), "{e}");
    }

    #[tokio::test]
    async fn a_client_that_reads_in_time_is_not_cut_off() {
        let (ours, mut theirs) = tokio::io::duplex(8);
        let mut s = Stalls::new(ours, Duration::from_secs(30));
        s.write_all(b"12345678").await.unwrap();
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut buf = [0u8; 9];
            theirs.read_exact(&mut buf).await.unwrap();
            buf
        });
        s.write_all(b"9").await.unwrap();
        assert_eq!(&reader.await.unwrap(), b"123456789");
    }
}
