//! A stream's answer that its client stops taking is cut off. Over HTTP/2
//! a client can leave one stream's flow-control window shut while its
//! connection goes on: no write of the connection waits (which
//! [`super::stall`] would catch), but the server stops asking the stream
//! for more, and the stream would keep its slot and its upstream call for
//! as long as the client liked. So a stream that has handed out a piece and
//! is not asked for the next within a limit lets go of what it holds; if it
//! is asked again, it fails, and the client sees the stream reset, not an
//! answer that seems whole.
//!
//! A stream that is waiting on its upstream is not owed anything by its
//! client, and is never cut for it: only the time since a piece was handed
//! out and not followed by a request for the next counts.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::Instant;

/// `inner`, let go of once its client has left a piece untaken for
/// `limit`.
pub struct Unread<S> {
    shared: Arc<Shared<S>>,
    /// The error has been given: the stream is over.
    failed: bool,
}

struct Shared<S> {
    inner: Mutex<Option<S>>,
    /// Since when a piece handed out has not been followed by a request
    /// for the next: milliseconds after `base`, plus one; 0 when none is.
    owed_since: AtomicU64,
    /// The stream ended (or was let go of): the watch is over.
    over: AtomicBool,
    base: Instant,
    limit: Duration,
}

impl<S> Shared<S> {
    fn now(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    /// Milliseconds until the piece owed, if any, passes the limit; the
    /// whole limit when none is owed.
    fn wait(&self) -> u64 {
        let limit = self.limit.as_millis() as u64;
        match self.owed_since.load(Ordering::Acquire) {
            0 => limit,
            since => (since - 1 + limit).saturating_sub(self.now()),
        }
    }
}

impl<S: Stream<Item = Bytes> + Unpin + Send + 'static> Unread<S> {
    /// Watches `inner`, on the current tokio runtime.
    pub fn new(inner: S, limit: Duration) -> Unread<S> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Some(inner)),
            owed_since: AtomicU64::new(0),
            over: AtomicBool::new(false),
            base: Instant::now(),
            limit,
        });
        tokio::spawn(watch(Arc::downgrade(&shared)));
        Unread {
            shared,
            failed: false,
        }
    }
}

/// Wakes when the piece owed longest would pass the limit; lets go of the
/// stream if it has. Ends with the stream.
async fn watch<S>(shared: Weak<Shared<S>>) {
    loop {
        let Some(s) = shared.upgrade() else { return };
        if s.over.load(Ordering::Acquire) {
            return;
        }
        let wait = s.wait();
        if wait == 0 {
            let mut inner = lock(&s.inner);
            // Looked at again under the lock: the client may have asked for
            // the next piece meanwhile.
            if s.wait() > 0 {
                continue;
            }
            s.over.store(true, Ordering::Release);
            let held = inner.take();
            drop(inner);
            drop(s);
            // Its slot, its upstream call and its record go here.
            drop(held);
            return;
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Stream<Item = Bytes> + Unpin> Stream for Unread<S> {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let s = &this.shared;
        s.owed_since.store(0, Ordering::Release);
        let mut inner = lock(&s.inner);
        let Some(stream) = inner.as_mut() else {
            if std::mem::replace(&mut this.failed, true) {
                return Poll::Ready(None);
            }
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "the client took nothing of the stream for {}",
                    crate::core::duration::format(s.limit)
                ),
            ))));
        };
        let polled = stream.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(_)) => s.owed_since.store(s.now() + 1, Ordering::Release),
            Poll::Ready(None) => {
                s.over.store(true, Ordering::Release);
                inner.take();
            }
            Poll::Pending => {}
        }
        polled.map(|item| item.map(Ok))
    }
}

impl<S> Drop for Unread<S> {
    fn drop(&mut self) {
        self.shared.over.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Pieces forever, or none ever; counts its drops.
    struct Source {
        pieces: bool,
        dropped: Arc<AtomicUsize>,
    }

    impl Stream for Source {
        type Item = Bytes;
        fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Bytes>> {
            match self.pieces {
                true => Poll::Ready(Some(Bytes::from_static(b"x"))),
                false => Poll::Pending,
            }
        }
    }

    impl Drop for Source {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn source(pieces: bool) -> (Source, Arc<AtomicUsize>) {
        let dropped = Arc::new(AtomicUsize::new(0));
        let s = Source {
            pieces,
            dropped: dropped.clone(),
        };
        (s, dropped)
    }

    const LIMIT: Duration = Duration::from_millis(400);

    /// Waits up to ten limits for `dropped` to reach `n`.
    async fn dropped_by(dropped: &AtomicUsize, n: usize) -> bool {
        for _ in 0..200 {
            if dropped.load(Ordering::SeqCst) == n {
                return true;
            }
            tokio::time::sleep(LIMIT / 20).await;
        }
        false
    }

    #[tokio::test]
    async fn a_piece_left_untaken_past_the_limit_lets_the_stream_go_and_fails_it() {
        let (s, dropped) = source(true);
        let mut w = Unread::new(s, LIMIT);
        // Taken in time, again and again: kept.
        for _ in 0..6 {
            assert!(w.next().await.unwrap().is_ok());
            tokio::time::sleep(LIMIT / 8).await;
        }
        assert_eq!(dropped.load(Ordering::SeqCst), 0, "within the limit");
        assert!(dropped_by(&dropped, 1).await, "let go past the limit");
        let e = w.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(w.next().await.is_none());
    }

    #[tokio::test]
    async fn a_stream_waiting_on_its_upstream_is_never_cut_for_it() {
        let (s, dropped) = source(false);
        let mut w = Unread::new(s, LIMIT);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut w).poll_next(&mut cx).is_pending());
        tokio::time::sleep(LIMIT * 3).await;
        assert_eq!(dropped.load(Ordering::SeqCst), 0);
        drop(w);
        assert_eq!(dropped.load(Ordering::SeqCst), 1);
    }
}
