//! A run's counts, for its summary and its progress bar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;

/// What the run's lines came to so far.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) answered: AtomicU64,
    pub(super) cached: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) cost_usd: Mutex<f64>,
    pub(super) cost_unknown: AtomicU64,
    /// Lines read but not sent, because the run stopped first: not
    /// written, so that a re-run sends them.
    pub(super) unsent: AtomicU64,
}

impl Counters {
    /// Counts a line's outcome for the summary and the progress bar.
    pub fn tally(&self, outcome: &crate::engine::Outcome, cost: Option<f64>) {
        use crate::engine::Outcome;
        match outcome {
            Outcome::Answered(_) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                match cost {
                    Some(cost) => self.add_cost(cost),
                    None => {
                        self.cost_unknown.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Outcome::Cached(_) => {
                self.cached.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Failed(_) | Outcome::Streaming(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Planned(_) | Outcome::Unsent => {}
        }
    }

    pub(super) fn add_cost(&self, c: f64) {
        *self.cost_usd.lock().unwrap_or_else(|e| e.into_inner()) += c;
    }

    pub(super) fn cost(&self) -> f64 {
        *self.cost_usd.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps the progress bar's message up to date.
pub(super) async fn tick(counters: Arc<Counters>, pb: ProgressBar) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        pb.set_message(message(&counters));
    }
}

/// The progress bar's message: lines cached, errors, and what was spent.
pub(super) fn message(counters: &Counters) -> String {
    let unknown = match counters.cost_unknown.load(Ordering::Relaxed) {
        0 => String::new(),
        n => format!(" + {n} unknown"),
    };
    format!(
        "{} cached · {} · {}{unknown}",
        counters.cached.load(Ordering::Relaxed),
        crate::core::numbers::counted(counters.errors.load(Ordering::Relaxed), "error"),
        crate::core::numbers::usd(counters.cost()),
    )
}
