//! Single flight: identical requests in flight at once (the same cache key)
//! share one upstream call. The first leads; the others wait for its answer
//! and take it as a cached one. When the leader gets no answer, each of them
//! routes on its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::core::cachekey::Key;
use crate::engine::ports::Answer;

type Slot = watch::Receiver<Option<Arc<Answer>>>;

/// The requests in flight, by cache key.
#[derive(Debug, Default)]
pub struct Flights {
    map: Mutex<HashMap<Key, Slot>>,
}

/// How a request joins the flights.
pub enum Join<'a> {
    /// No identical request is in flight: this one calls upstream.
    Lead(Leader<'a>),
    /// One is: wait for its answer.
    Follow(Follower),
}

/// The request that calls upstream for all identical ones.
pub struct Leader<'a> {
    flights: &'a Flights,
    key: Key,
    tx: watch::Sender<Option<Arc<Answer>>>,
}

/// A request waiting for a leader's answer.
pub struct Follower(Slot);

impl Flights {
    pub fn join(&self, key: Key) -> Join<'_> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = map.get(&key) {
            return Join::Follow(Follower(rx.clone()));
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key, rx);
        Join::Lead(Leader {
            flights: self,
            key,
            tx,
        })
    }
}

impl Leader<'_> {
    /// Hands the answer to every follower. Call it once the answer's record
    /// has been queued, so that theirs are queued after it.
    pub fn publish(self, answer: Answer) {
        self.tx.send_replace(Some(Arc::new(answer)));
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Out of the map first: a request that comes now leads a new flight.
        self.flights
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

impl Follower {
    /// The leader's answer, or `None` when it got none.
    pub async fn answer(mut self) -> Option<Arc<Answer>> {
        match self.0.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Answer {
        Answer {
            model: "m".into(),
            response: "{}".into(),
            content: Some("hi".into()),
            cost_usd: Some(0.1),
            prompt_tokens: None,
            completion_tokens: None,
            score: None,
            created_at: 0,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn followers_get_the_leaders_answer_and_a_new_request_leads_again() {
        let flights = Flights::default();
        let key = Key([1; 32]);
        let Join::Lead(leader) = flights.join(key) else {
            panic!("the first leads")
        };
        let Join::Follow(f) = flights.join(key) else {
            panic!("the second follows")
        };
        assert!(matches!(flights.join(Key([2; 32])), Join::Lead(_)));
        leader.publish(answer());
        assert_eq!(f.answer().await.as_deref(), Some(&answer()));
        assert!(matches!(flights.join(key), Join::Lead(_)));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_leader_without_an_answer_leaves_followers_on_their_own() {
        let flights = Flights::default();
        let key = Key([1; 32]);
        let leader = flights.join(key);
        let Join::Follow(f) = flights.join(key) else {
            panic!("the second follows")
        };
        drop(leader);
        assert_eq!(f.answer().await, None);
    }
}
