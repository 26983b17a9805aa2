//! At most `-j` requests hold an upstream slot at once, and at most
//! `--queue` wait for one; past that a request is refused at once (503 with
//! `Retry-After`), so a burst never builds an unbounded backlog. Waiting is
//! first come, first served.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::metrics::Metrics;

pub struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    queue: usize,
    metrics: Arc<Metrics>,
}

/// A slot, held until dropped.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

/// Why no slot was given.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Every slot busy and the queue full.
    Full,
    /// The server is closing.
    Closed,
}

impl Gate {
    pub fn new(slots: usize, queue: usize, metrics: Arc<Metrics>) -> Gate {
        Gate {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            waiting: AtomicUsize::new(0),
            queue,
            metrics,
        }
    }

    /// A slot now, or after those waiting before; refused when the queue is full.
    pub async fn enter(&self) -> Result<Slot, Refused> {
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Refused::Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refused::Full);
                }
                self.metrics.queued.inc();
                let _left = Waiting(self);
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Refused::Closed)?
            }
        };
        self.metrics.in_flight.inc();
        Ok(Slot {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }

    /// Requests waiting now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

/// One waiting request; it leaves the queue however its wait ends.
struct Waiting<'a>(&'a Gate);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.queued.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn past_the_slots_and_the_queue_requests_are_refused() {
        let gate = Arc::new(Gate::new(1, 1, Arc::new(Metrics::default())));
        let first = gate.enter().await.unwrap();
        let g = gate.clone();
        let queued = tokio::spawn(async move { g.enter().await.map(|_| ()) });
        while gate.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gate.enter().await.err(), Some(Refused::Full));
        drop(first);
        assert_eq!(queued.await.unwrap(), Ok(()));
        assert_eq!(gate.waiting(), 0);
        assert!(gate.enter().await.is_ok());
    }
}
