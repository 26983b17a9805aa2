//! Model health held in memory: latency averages and pauses, updated as
//! attempts come back, and merged with what a shared store says (so that
//! processes sharing a store see each other's pauses and measurements
//! during their runs, not only at start).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::core::health::{HealthView, ModelStat, Pause};
use crate::engine::ports::Health;

/// How far a pause may move on its way through the store's unix
/// milliseconds and back.
const ROUNDING: Duration = Duration::from_millis(5);

/// Health in memory, shared by every request of a process.
#[derive(Debug, Default)]
pub struct LocalHealth {
    stats: RwLock<HashMap<String, ModelStat>>,
    pauses: Mutex<HashMap<String, Pause>>,
}

impl LocalHealth {
    pub fn new(stats: HashMap<String, ModelStat>) -> LocalHealth {
        LocalHealth {
            stats: RwLock::new(stats),
            pauses: Mutex::new(HashMap::new()),
        }
    }

    /// Takes in what a shared store holds: its averages (which fold in this
    /// process's own samples once recorded, and other processes'), and its
    /// pauses, each kept when longer than the one known here.
    pub fn merge(&self, stats: HashMap<String, ModelStat>, pauses: HashMap<String, Instant>) {
        {
            let mut mine = self.stats.write().unwrap_or_else(|e| e.into_inner());
            for (model, theirs) in stats {
                match mine.get(&model) {
                    // Samples not yet recorded here are newer than the store's copy.
                    Some(s) if s.samples > theirs.samples => {}
                    _ => {
                        mine.insert(model, theirs);
                    }
                }
            }
        }
        let mut mine = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
        for (model, until) in pauses {
            mine.entry(model)
                .and_modify(|p| {
                    // This process's own pauses come back through the store's
                    // unix milliseconds, rounded: those are not lengthened.
                    if until > p.until + ROUNDING {
                        p.until = until;
                    }
                })
                .or_insert_with(|| Pause::until(until));
        }
    }

    /// Every model's average, as known now.
    pub fn stats(&self) -> HashMap<String, ModelStat> {
        self.stats.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl HealthView for LocalHealth {
    fn stat(&self, model: &str) -> Option<ModelStat> {
        self.stats
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(model)
            .copied()
    }

    fn cooling_until(&self, model: &str) -> Option<Instant> {
        let pauses = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
        pauses
            .get(model)
            .map(|p| p.until)
            .filter(|t| *t > Instant::now())
    }
}

impl Health for LocalHealth {
    fn answered(&self, model: &str, latency_ms: f64) {
        // A success ends the model's run of rate limits (not a pause under way).
        if let Some(p) = self
            .pauses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(model)
        {
            p.streak = 0;
        }
        let mut stats = self.stats.write().unwrap_or_else(|e| e.into_inner());
        let s = ModelStat::record(stats.get(model).copied(), latency_ms);
        stats.insert(model.to_string(), s);
    }

    fn rate_limited(&self, model: &str, sent: Instant, retry_after: Option<Duration>) -> Instant {
        let mut pauses = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
        let p = Pause::limited(
            pauses.get(model).copied(),
            Instant::now(),
            sent,
            retry_after,
        );
        pauses.insert(model.to_string(), p);
        p.until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(ewma_ms: f64, samples: i64) -> ModelStat {
        ModelStat { ewma_ms, samples }
    }

    #[test]
    fn a_store_pause_is_seen_and_the_longer_pause_wins() {
        let h = LocalHealth::default();
        let now = Instant::now();
        let soon = now + Duration::from_secs(5);
        let later = now + Duration::from_secs(60);
        h.merge(HashMap::new(), HashMap::from([("m".to_string(), later)]));
        assert_eq!(h.cooling_until("m"), Some(later));
        h.merge(HashMap::new(), HashMap::from([("m".to_string(), soon)]));
        assert_eq!(h.cooling_until("m"), Some(later));
        assert_eq!(h.cooling_until("other"), None);
    }

    #[test]
    fn the_store_average_replaces_an_older_one_but_not_a_newer_one() {
        let h = LocalHealth::new(HashMap::from([("a".to_string(), stat(100.0, 3))]));
        h.merge(
            HashMap::from([("a".to_string(), stat(400.0, 5))]),
            HashMap::new(),
        );
        assert_eq!(h.stat("a"), Some(stat(400.0, 5)));
        h.answered("a", 400.0);
        h.answered("a", 400.0);
        // The store has not caught up with this process's two samples yet.
        h.merge(
            HashMap::from([("a".to_string(), stat(10.0, 5))]),
            HashMap::new(),
        );
        assert_eq!(h.stat("a").map(|s| s.samples), Some(7));
    }

    #[test]
    fn rate_limits_pause_and_a_success_ends_the_streak() {
        let h = LocalHealth::default();
        let t0 = Instant::now();
        let until = h.rate_limited("m", t0, Some(Duration::from_secs(30)));
        assert!(until >= t0 + Duration::from_secs(30));
        assert_eq!(h.cooling_until("m"), Some(until));
        h.answered("m", 12.0);
        let p = h.pauses.lock().unwrap()["m"];
        assert_eq!((p.streak, p.until), (0, until), "the pause under way stays");
    }
}
