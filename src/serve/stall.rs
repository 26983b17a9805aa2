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

/// What an HTTP/2 client sends first, whole, before anything else.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `inner`, whose writes fail once they have been held up for `limit`.
pub struct Stalls<S> {
    inner: S,
    limit: Duration,
    /// Since the first write held up, until one goes through.
    held: Option<Pin<Box<Sleep>>>,
    /// Until the client's first bytes tell HTTP/1.1 from HTTP/2: when they
    /// must have come, and how many of the HTTP/2 preface came so far.
    opening: Option<(Pin<Box<Sleep>>, usize)>,
}

impl<S> Stalls<S> {
    pub fn new(inner: S, limit: Duration) -> Stalls<S> {
        Stalls {
            inner,
            limit,
            held: None,
            opening: None,
        }
    }

    /// Reads fail after `within` until the client's first bytes have told
    /// HTTP/1.1 from HTTP/2 (a byte off the HTTP/2 preface, or all of it):
    /// the wait to tell them apart has no time limit of its own, and
    /// hyper's header time-out starts only after it, so a client that
    /// sends nothing, or a few bytes of the preface, would hold its
    /// connection for good.
    pub fn opening_within(mut self, within: Duration) -> Stalls<S> {
        self.opening = Some((Box::pin(tokio::time::sleep(within)), 0));
        self
    }

    /// Follows the opening bytes `read`: once they tell, no deadline.
    fn opened(&mut self, read: &[u8]) {
        let Some((_, seen)) = &mut self.opening else {
            return;
        };
        let told = read
            .iter()
            .zip(PREFACE.iter().skip(*seen))
            .any(|(got, want)| got != want);
        *seen += read.len();
        if told || *seen >= PREFACE.len() {
            self.opening = None;
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
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                self.opened(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let late = match &mut self.opening {
                    Some((due, _)) => due.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                match late {
                    true => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent no request in time",
                    ))),
                    false => Poll::Pending,
                }
            }
            other => other,
        }
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
    async fn the_opening_deadline_ends_once_the_first_bytes_tell() {
        let opening = || {
            let (ours, _theirs) = tokio::io::duplex(64);
            Stalls::new(ours, Duration::from_secs(1)).opening_within(Duration::from_secs(1))
        };
        let mut s = opening();
        // A method that starts as the preface does, then leaves it.
        s.opened(b"P");
        assert!(s.opening.is_some());
        s.opened(b"OST / HTTP/1.1");
        assert!(s.opening.is_none(), "HTTP/1.1");
        let mut s = opening();
        s.opened(&PREFACE[..10]);
        assert!(s.opening.is_some(), "part of the preface");
        s.opened(&PREFACE[10..]);
        assert!(s.opening.is_none(), "HTTP/2");
    }

    #[tokio::test]
    async fn a_client_that_sends_nothing_is_cut_at_the_opening_deadline() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s =
            Stalls::new(ours, Duration::from_secs(5)).opening_within(Duration::from_millis(50));
        theirs.write_all(b"PRI").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(s.read(&mut buf).await.unwrap(), 3);
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

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
