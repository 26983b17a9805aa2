//! Feedback this server took while Redis did not answer: it is in the
//! store and was answered as taken, and it is kept here to be shared once
//! Redis answers again, so that every machine learns it. Kept in memory,
//! in the order taken, up to [`MOST`] events; a server that stops first
//! keeps them in its store alone.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Most events kept for Redis; past them the oldest go.
pub const MOST: usize = 10_000;

/// How often the kept events are offered to Redis.
pub const EVERY: Duration = Duration::from_secs(1);

/// One feedback event not yet shared.
#[derive(Debug, Clone)]
pub struct Event {
    /// The key the request came with, and its id.
    pub key: Option<String>,
    pub rid: String,
    /// The upstream that answered it, and its task and model.
    pub upstream: String,
    pub task: String,
    pub model: String,
    /// Score, weight, and the event it replaced (score, weight, unix ms).
    pub scored: (f64, f64, Option<(f64, f64, i64)>),
    /// When it was taken, unix ms.
    pub at_ms: i64,
    /// Its number in the router's book of what Redis has not had, if it is
    /// on this server's upstream ([`crate::engine::learned::QualityBook::hold`]).
    pub held: Option<u64>,
}

/// The events kept for Redis.
#[derive(Debug, Default)]
pub struct Unshared {
    queue: Mutex<VecDeque<Event>>,
}

impl Unshared {
    /// Keeps `e` to share later; the older one that had to go for it.
    pub fn keep(&self, e: Event) -> Option<Event> {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let gone = match q.len() >= MOST {
            true => q.pop_front(),
            false => None,
        };
        q.push_back(e);
        gone
    }

    /// The oldest event kept.
    pub fn first(&self) -> Option<Event> {
        let q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.front().cloned()
    }

    /// The oldest event kept was shared: it goes.
    pub fn done(&self) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.pop_front();
    }

    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says, as the server stops, what was never shared.
    pub fn say_left(&self) {
        if !self.is_empty() {
            tracing::warn!(
                "{} taken while Redis did not answer stay in this server's store alone",
                crate::core::numbers::counted(self.len() as u64, "feedback event")
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(rid: &str) -> Event {
        Event {
            key: None,
            rid: rid.into(),
            upstream: "u".into(),
            task: "t".into(),
            model: "m".into(),
            scored: (1.0, 1.0, None),
            at_ms: 0,
            held: None,
        }
    }

    #[test]
    fn events_are_kept_in_order_and_the_oldest_go_past_the_bound() {
        let u = Unshared::default();
        assert!(u.keep(event("a")).is_none());
        assert!(u.keep(event("b")).is_none());
        assert_eq!(u.first().unwrap().rid, "a");
        u.done();
        assert_eq!(u.first().unwrap().rid, "b");
        for i in 0..MOST - 1 {
            assert!(u.keep(event(&i.to_string())).is_none());
        }
        assert_eq!(u.keep(event("last")).unwrap().rid, "b", "the oldest goes");
        assert_eq!(u.len(), MOST);
        assert_eq!(u.first().unwrap().rid, "0", "b went first");
    }
}
