//! A cache shared with other processes, whose lookups take the lease on
//! answering a request when they miss: every lease taken so is claimed by
//! its request, or let go.

use std::collections::HashSet;

use super::*;
use crate::core::cachekey::Key;

/// Leases held, as Redis (or a shared store) holds them.
type Held = Arc<Mutex<HashSet<Key>>>;

/// A cache like one shared through Redis, in front of another: a lookup
/// that misses takes the lease on answering its key when nobody holds it,
/// and keeps it for the claim that follows; a claim takes that lease, or
/// the lease if it is free, or answers alone. What the lookup that took
/// the lease hears comes back a turn late, as an answer from Redis may
/// come after others.
struct Leasing {
    inner: Arc<dyn Cache>,
    held: Held,
    taken: Mutex<HashSet<Key>>,
}

/// A lease claimed, given back when dropped.
struct Lease(Key, Held);

impl Drop for Lease {
    fn drop(&mut self) {
        self.1.lock().unwrap().remove(&self.0);
    }
}

impl Cache for Leasing {
    fn get(&self, key: Key, min_created_at: i64) -> BoxFuture<'_, Option<Answer>> {
        Box::pin(async move {
            if let Some(a) = self.inner.get(key, min_created_at).await {
                return Some(a);
            }
            let took = self.held.lock().unwrap().insert(key);
            tokio::task::yield_now().await;
            if took {
                tokio::task::yield_now().await;
                self.taken.lock().unwrap().insert(key);
            }
            None
        })
    }

    fn claim(&self, key: Key, _min_created_at: i64) -> Option<BoxFuture<'_, Claimed>> {
        let mine = self.taken.lock().unwrap().remove(&key) || self.held.lock().unwrap().insert(key);
        let lease = mine.then(|| Box::new(Lease(key, self.held.clone())) as Box<dyn Send + Sync>);
        Some(Box::pin(async move { Claimed::Go(lease) }))
    }

    fn let_go(&self, key: Key) {
        if self.taken.lock().unwrap().remove(&key) {
            self.held.lock().unwrap().remove(&key);
        }
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, String>> {
        self.inner.clear()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_lease_a_followers_lookup_took_is_let_go() {
    let upstream = FakeUpstream::with(&[("a", &[Reply::Slow(Duration::from_millis(50))])]);
    let held = Held::default();
    let leases = held.clone();
    let w = world_of(
        &["a"],
        upstream,
        true,
        |_| {},
        |p| {
            p.cache = Arc::new(Leasing {
                inner: p.cache.clone(),
                held: leases,
                taken: Mutex::default(),
            })
        },
    );
    // The first lookup takes the lease, but hears of it after another
    // request has become the leader: it follows, and never claims it.
    let routed = route_together(&w.router, &request("same"), 4).await;
    assert_eq!(w.upstream.calls().len(), 1, "one call for the four");
    assert!(routed.iter().all(|r| answered_by(r) == "a"));
    assert!(held.lock().unwrap().is_empty(), "a lease is left held");
}
