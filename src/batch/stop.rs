//! Why a batch run stops early, on the front end's side, shared by the
//! tasks and threads of a run: the first reason wins.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::{AcquireError, Notify, TryAcquireError};

/// Why a run ended early, on the front end's side.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// SIGINT (130) or SIGTERM (143).
    Interrupted { exit_code: i32 },
    /// The reader of our output went away (`| head`).
    BrokenPipe,
    /// Writing the output failed otherwise.
    OutputError(String),
}

/// Shared stop state: the first reason wins.
#[derive(Default)]
pub struct Stop {
    set: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    notify: Notify,
}

impl Stop {
    /// A semaphore's permit: `free`, the one to be had now, else the next one,
    /// unless the run stops first. Taking a free permit sets up no wait for a
    /// stop (a waiter, locked both ways): the common case, once per line.
    pub async fn permit<P, F>(
        &self,
        free: Result<P, TryAcquireError>,
        next: impl FnOnce() -> F,
    ) -> Option<P>
    where
        F: std::future::Future<Output = Result<P, AcquireError>>,
    {
        if let Ok(p) = free {
            return Some(p);
        }
        tokio::select! {
            biased;
            _ = self.halted() => None,
            p = next() => Some(p.expect("the run's semaphores are never closed")),
        }
    }

    pub fn set(&self, reason: StopReason) -> bool {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(reason);
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        true
    }

    pub fn get(&self) -> Option<StopReason> {
        if !self.set.load(Ordering::SeqCst) {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once a reason is set.
    pub async fn halted(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get().is_some() {
                return;
            }
            notified.await;
        }
    }
}
