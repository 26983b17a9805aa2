//! The store as the engine sees it: the writer thread is its cache and its
//! recorder; with leases, single flight reaches the other processes on the
//! store; and a reader thread keeps the engine's health in step with what
//! they learn.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::flights::{self, Claim, Looked};
use super::writer::WriterHandle;
use super::{now_ms, Store, StoreError};
use crate::core::cachekey::Key;
use crate::engine::health::LocalHealth;
use crate::engine::ports::{Answer, BoxFuture, Cache, Claimed, Commit, Record, Recorder};

/// The cache alone: no leases (another cache beside it takes them).
impl Cache for WriterHandle {
    fn get(&self, key: Key, min_created_at: i64) -> BoxFuture<'_, Option<Answer>> {
        Box::pin(self.lookup(key, min_created_at))
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(self.clear_cache())
    }

    fn clear_before(&self, ms: i64) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(self.clear_cache_before(Some(ms)))
    }
}

/// How often a request waiting on another process's lease looks for its answer.
const POLL: Duration = Duration::from_millis(25);

/// Leases kept for their claims at most; past it they are let go.
const TAKEN: usize = 4096;

/// The store's cache with leases: identical requests in flight in several
/// processes on the store make one upstream call. A lookup that misses
/// takes the lease on answering the key in the same round trip; another
/// process's request finds it held, and waits for the answer in the cache
/// (a cache hit then), or for the lease to end without one, or to outlast
/// a lease's length, and then answers it itself.
pub struct LeasedCache {
    writer: WriterHandle,
    owner: Arc<str>,
    /// How long a lease lasts at most (its holder may have died).
    lease: Duration,
    /// Leases taken by a lookup that missed, for the claim that follows it.
    taken: Mutex<HashMap<Key, Lease>>,
}

impl LeasedCache {
    pub fn new(writer: WriterHandle, lease: Duration) -> LeasedCache {
        LeasedCache {
            writer,
            owner: flights::this_process(),
            lease,
            taken: Mutex::new(HashMap::new()),
        }
    }

    fn asking(&self, peek: bool, gone: Option<String>) -> Claim {
        Claim {
            owner: self.owner.clone(),
            lease_ms: i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX),
            peek,
            gone,
        }
    }

    fn held(&self, key: Key) -> Lease {
        Lease {
            writer: self.writer.clone(),
            key,
            owner: self.owner.clone(),
        }
    }

    async fn claim_or_wait(&self, key: Key, min_created_at: i64) -> Claimed {
        let mine = lock(&self.taken).remove(&key);
        if let Some(lease) = mine {
            return Claimed::Go(Some(Box::new(lease)));
        }
        let deadline = tokio::time::Instant::now() + self.lease;
        // The answer, or the lease: the lookup before this missed, but the
        // holder it found may have answered and let go since; while another
        // holds it, its answer, or the lease once it ends.
        let (mut peek, mut gone) = (false, None);
        loop {
            let claim = self.asking(peek, gone.take());
            match self.writer.look_up(key, min_created_at, Some(claim)).await {
                Looked::Hit(a) => return Claimed::Answered(a),
                Looked::Leased => return Claimed::Go(Some(Box::new(self.held(key)))),
                // The store failed.
                Looked::Miss => return Claimed::Go(None),
                // The lease is this process's own: another of its requests
                // answers it, or the lookup of one took it for this one.
                Looked::Held { owner, .. } if *owner == *self.owner => {
                    let mine = lock(&self.taken).remove(&key);
                    return Claimed::Go(mine.map(|l| Box::new(l) as _));
                }
                // Its holder died: taken over on the next look.
                Looked::Held { owner, .. } if flights::is_gone(&owner) => gone = Some(owner),
                Looked::Held { .. } => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Claimed::Go(None);
            }
            peek = true;
            tokio::time::sleep(POLL).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache for LeasedCache {
    fn get(&self, key: Key, min_created_at: i64) -> BoxFuture<'_, Option<Answer>> {
        Box::pin(async move {
            let claim = self.asking(false, None);
            match self.writer.look_up(key, min_created_at, Some(claim)).await {
                Looked::Hit(a) => Some(a),
                Looked::Leased => {
                    let mut taken = lock(&self.taken);
                    if taken.len() >= TAKEN {
                        taken.clear();
                    }
                    taken.insert(key, self.held(key));
                    None
                }
                Looked::Miss | Looked::Held { .. } => None,
            }
        })
    }

    fn claim(&self, key: Key, min_created_at: i64) -> Option<BoxFuture<'_, Claimed>> {
        Some(Box::pin(self.claim_or_wait(key, min_created_at)))
    }

    fn let_go(&self, key: Key) {
        // Dropped: released, if this process still holds it.
        drop(lock(&self.taken).remove(&key));
    }

    fn clear(&self) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(self.writer.clear_cache())
    }
}

/// A lease on answering a request; let go when dropped, after the
/// answer's record, which was queued before it.
struct Lease {
    writer: WriterHandle,
    key: Key,
    owner: Arc<str>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.writer.release(self.key, self.owner.clone());
    }
}

impl Recorder for WriterHandle {
    fn record(&self, record: Record) {
        self.write_nowait(record);
    }

    fn record_durable(&self, record: Record) -> Commit {
        let (commit, committer) = Commit::pair();
        self.write_then(Box::new(record), Box::new(move || committer.done()));
        commit
    }

    fn failure(&self) -> Option<String> {
        WriterHandle::failure(self)
    }

    fn after_each_commit(&self, hook: Box<dyn Fn() + Send + Sync>) {
        WriterHandle::after_each_commit(self, hook);
    }
}

/// How often the health of other processes is read from the store.
pub const HEALTH_REFRESH: Duration = Duration::from_millis(500);
/// How often what other processes taught the store of quality is read.
pub const QUALITY_REFRESH: Duration = Duration::from_secs(1);

/// The longest pause read from the store, for one whose end an `Instant`
/// cannot hold (a year: far longer than any `Retry-After` is honoured).
pub const MAX_PAUSE: Duration = Duration::from_secs(365 * 86_400);

/// Runs `read` on a reader of `store` every `every`, on a thread of its
/// own named `name`, with its own connection (opened again when it could
/// not be), until the returned guard is dropped.
fn reading_every(
    store: &Store,
    name: &str,
    every: Duration,
    mut read: impl FnMut(&Store) + Send + 'static,
) -> HealthReader {
    let stop = Arc::new(AtomicBool::new(false));
    let path = store.path().to_path_buf();
    let upstream = store.upstream().to_string();
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut conn = None;
            loop {
                std::thread::park_timeout(every);
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                if conn.is_none() {
                    conn = Store::open_reader(&path).ok().map(|mut s| {
                        s.set_upstream(&upstream);
                        s
                    });
                }
                if let Some(reader) = &conn {
                    read(reader);
                }
            }
        });
    HealthReader {
        stop,
        thread: spawned.ok(),
    }
}

/// Reads the store's latency averages and pauses every `every` into
/// `health`, until the returned guard is dropped. Read failures are
/// skipped: the next read tries again.
pub fn share_health(store: &Store, health: Arc<LocalHealth>, every: Duration) -> HealthReader {
    reading_every(store, "llmroute-health", every, move |reader| {
        let _ = read_health(reader, &health);
    })
}

/// How far back each read of learned quality reaches before the last one
/// began: further than any transaction that writes it lasts.
const LEARNED_OVERLAP_MS: i64 = 60_000;

/// Reads what other processes taught the store of quality into `book`
/// every `every`, until the guard is dropped.
pub fn share_learned(
    store: &Store,
    book: Arc<crate::engine::learned::QualityBook>,
    every: Duration,
) -> HealthReader {
    let mut since = now_ms();
    reading_every(store, "llmroute-quality", every, move |reader| {
        // A row brought up to date as the last read ran is read again, as
        // is one a long transaction stamped well before it committed (a
        // batch of feedback stamps its rows as it begins).
        let started = now_ms() - LEARNED_OVERLAP_MS;
        if let Ok(rows) = reader.quality_since(since) {
            for (task, model, p) in rows {
                book.set(&task, &model, p);
            }
            since = started;
        }
    })
}

/// Reads the store's averages and pauses into `health`, the pauses'
/// unix milliseconds turned into instants from now.
pub fn read_health(store: &Store, health: &LocalHealth) -> Result<(), StoreError> {
    let now = now_ms();
    let stats = store.model_stats()?;
    let cooldowns = store.cooldowns_and_why(now)?;
    let at = Instant::now();
    let mut pauses = HashMap::new();
    let mut circuits = Vec::new();
    for (m, (until_ms, why)) in cooldowns {
        let ahead = u64::try_from(until_ms.saturating_sub(now)).unwrap_or(0);
        // A pause past what an Instant holds lasts as long as one can.
        let ahead = Duration::from_millis(ahead);
        let until = at.checked_add(ahead).unwrap_or(at + MAX_PAUSE);
        match why == crate::engine::ports::Pause::Circuit.name() {
            true => circuits.push((m, until_ms, until)),
            false => {
                pauses.insert(m, until);
            }
        }
    }
    // Circuits it found as it started are trusted a while only.
    health.trust_found(&mut circuits);
    let circuits: HashMap<String, Instant> = circuits.into_iter().map(|(m, _, u)| (m, u)).collect();
    pauses.extend(circuits.iter().map(|(m, u)| (m.clone(), *u)));
    health.merge(stats, pauses);
    health.open_circuits(circuits);
    Ok(())
}

/// Gives `health` the latencies of each model's latest answers the store
/// holds, so that `--hedge auto` starts from what earlier runs and other
/// processes measured instead of from nothing.
pub fn read_latest_latencies(store: &Store, health: &LocalHealth) -> Result<(), StoreError> {
    health.remember(store.latest_latencies(crate::core::hedge::RECENT)?);
    Ok(())
}

/// Stops the health reader when dropped.
pub struct HealthReader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for HealthReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ports::CacheEntry;
    use crate::store::writer::Writer;

    /// The cache of a process named `owner` on the store `writer` writes.
    fn cache(writer: &Writer, owner: &str, lease: Duration) -> LeasedCache {
        LeasedCache {
            writer: writer.handle(),
            owner: Arc::from(owner),
            lease,
            taken: Mutex::default(),
        }
    }

    fn answer() -> Answer {
        Answer {
            model: "m".into(),
            response: "{}".into(),
            content: Some("hi".into()),
            cost_usd: None,
            prompt_tokens: None,
            completion_tokens: None,
            score: None,
            created_at: 10,
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    /// Two processes' writers on one fresh store.
    fn two_writers(dir: &tempfile::TempDir) -> (Writer, Writer) {
        let path = dir.path().join("s.db");
        let a = Writer::spawn(Store::open(&path).unwrap());
        (a, Writer::spawn(Store::open(&path).unwrap()))
    }

    /// A cache on each writer, `a`'s and `b`'s, with a lease of a minute.
    fn caches(a: &Writer, b: &Writer) -> (LeasedCache, LeasedCache) {
        let lease = Duration::from_secs(60);
        (cache(a, "a", lease), cache(b, "b", lease))
    }

    /// a looks `key` up and takes the lease, b finds it held, and a's
    /// claim gets the lease: a's to answer.
    async fn a_leads(ca: &LeasedCache, cb: &LeasedCache, key: Key) -> Box<dyn Send + Sync> {
        assert_eq!(ca.get(key, 0).await, None, "a misses and takes the lease");
        assert_eq!(cb.get(key, 0).await, None, "b finds it held");
        let Claimed::Go(Some(lease)) = ca.claim(key, 0).unwrap().await else {
            panic!("a's claim gets the lease its lookup took")
        };
        lease
    }

    #[test]
    fn another_process_waits_for_the_answer_and_none_waits_on_its_own_lease() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_writers(&dir);
        let (ca, cb) = caches(&a, &b);
        let key = Key([1; 32]);
        rt().block_on(async {
            let lease = a_leads(&ca, &cb, key).await;
            let again = ca.claim(key, 0).unwrap().await;
            assert!(
                matches!(again, Claimed::Go(None)),
                "a never waits on its own"
            );
            let answering = async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                ca.writer.record(Record {
                    cache: Some(CacheEntry {
                        key,
                        answer: answer(),
                    }),
                    ..Record::default()
                });
                drop(lease);
            };
            let (claimed, ()) = tokio::join!(cb.claim(key, 0).unwrap(), answering);
            assert!(matches!(claimed, Claimed::Answered(x) if x == answer()));
        });
        drop((ca, cb));
        assert_eq!(a.finish().flight_holder(&key).unwrap(), None);
        b.finish();
    }

    /// Between a lookup that found the lease held and the claim after it,
    /// the holder answered and let go: the claim takes the answer, not the
    /// free lease, which would pay for the request again.
    #[test]
    fn a_claim_after_the_holder_answered_takes_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_writers(&dir);
        let (ca, cb) = caches(&a, &b);
        let key = Key([7; 32]);
        rt().block_on(async {
            let lease = a_leads(&ca, &cb, key).await;
            ca.writer.record(Record {
                cache: Some(CacheEntry {
                    key,
                    answer: answer(),
                }),
                ..Record::default()
            });
            drop(lease);
            ca.writer.sync().await;
            let claimed = cb.claim(key, 0).unwrap().await;
            assert!(matches!(claimed, Claimed::Answered(x) if x == answer()));
        });
        drop((ca, cb));
        a.finish();
        b.finish();
    }

    #[test]
    fn a_request_waiting_takes_the_lease_a_lookup_of_its_process_took_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_writers(&dir);
        let (ca, cb) = caches(&a, &b);
        let key = Key([4; 32]);
        rt().block_on(async {
            assert_eq!(cb.get(key, 0).await, None, "b takes the lease");
            let meanwhile = async {
                tokio::time::sleep(Duration::from_millis(60)).await;
                drop(cb.claim(key, 0).unwrap().await);
                cb.writer.sync().await;
                // Another request of a's looks it up, and takes the lease
                // b let go, for the request of a's that waits on it.
                assert_eq!(ca.get(key, 0).await, None);
            };
            let (claimed, ()) = tokio::join!(ca.claim(key, 0).unwrap(), meanwhile);
            assert!(matches!(claimed, Claimed::Go(Some(_))), "a leads, leased");
            assert!(lock(&ca.taken).is_empty());
        });
        drop((ca, cb));
        a.finish();
        b.finish();
    }

    #[test]
    fn a_lease_let_go_without_an_answer_passes_to_one_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_writers(&dir);
        let (ca, cb) = caches(&a, &b);
        let key = Key([2; 32]);
        rt().block_on(async {
            assert_eq!(ca.get(key, 0).await, None);
            let failing = async {
                let claimed = ca.claim(key, 0).unwrap().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                drop(claimed);
            };
            let (claimed, ()) = tokio::join!(cb.claim(key, 0).unwrap(), failing);
            assert!(matches!(claimed, Claimed::Go(Some(_))), "b leads now");
        });
        drop((ca, cb));
        a.finish();
        assert_eq!(b.finish().flight_holder(&key).unwrap(), None);
    }

    #[test]
    fn a_lease_held_too_long_holds_another_no_longer_than_its_own_would_last() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = two_writers(&dir);
        let ca = cache(&a, "a", Duration::from_secs(3600));
        let cb = cache(&b, "b", Duration::from_millis(200));
        let key = Key([3; 32]);
        rt().block_on(async {
            assert_eq!(ca.get(key, 0).await, None);
            let claimed = cb.claim(key, 0).unwrap().await;
            assert!(matches!(claimed, Claimed::Go(None)), "b goes alone");
        });
        // A lease kept for a claim that never came is let go with its cache.
        drop((ca, cb));
        assert_eq!(a.finish().flight_holder(&key).unwrap(), None);
        b.finish();
    }
}
