//! State shared by the handle and the connections: scripts, counters, the log.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{Behavior, CatalogueBehavior, LoggedRequest, StreamUsage};

/// What the handle and every connection share.
pub(crate) struct Shared {
    pub(crate) log_requests: bool,
    pub(crate) api_key: Option<String>,
    pub(crate) catalogue: Vec<u8>,
    pub(crate) next_gen: AtomicU64,
    /// Completions in flight (see [`crate::FakeServer::in_flight`]), and the most
    /// there ever were at once.
    pub(crate) in_flight: AtomicU64,
    pub(crate) most_in_flight: AtomicU64,
    /// Streamed answers: begun, ended with `[DONE]`, ended because the client
    /// went away, ended by a `cut_after`.
    pub(crate) streams_started: AtomicU64,
    pub(crate) streams_completed: AtomicU64,
    pub(crate) streams_abandoned: AtomicU64,
    pub(crate) streams_cut: AtomicU64,
    pub(crate) state: Mutex<State>,
}

/// What changes under the lock: scripts, counts, the log.
pub(crate) struct State {
    pub(crate) scripts: HashMap<String, VecDeque<Behavior>>,
    pub(crate) defaults: HashMap<String, Behavior>,
    pub(crate) fallback: Behavior,
    pub(crate) counts: HashMap<String, u64>,
    pub(crate) catalogue_behavior: CatalogueBehavior,
    pub(crate) stream_usage: StreamUsage,
    pub(crate) log: Vec<LoggedRequest>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One completion counted in [`Shared::in_flight`] until [`InFlight::leave`]
/// or drop (a connection task cancelled, a failed write).
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    counted: bool,
}

impl InFlight {
    pub(crate) fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight {
            shared: Arc::clone(shared),
            counted: true,
        }
    }

    pub(crate) fn leave(&mut self) {
        if std::mem::take(&mut self.counted) {
            self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.leave();
    }
}

impl State {
    /// Counts one completion request for `model` and returns its behaviour and
    /// the number of earlier requests for that model.
    pub(crate) fn pick(&mut self, model: &str) -> (Behavior, u64) {
        let n = match self.counts.get_mut(model) {
            Some(c) => {
                *c += 1;
                *c - 1
            }
            None => {
                self.counts.insert(model.to_owned(), 1);
                0
            }
        };
        let behavior = self
            .scripts
            .get_mut(model)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.defaults.get(model).cloned())
            .unwrap_or_else(|| self.fallback.clone());
        (behavior, n)
    }
}
