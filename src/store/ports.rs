//! The store as the engine sees it: the writer thread is its cache and its
//! recorder, and a reader thread keeps the engine's health in step with
//! what other processes on the same store learn.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::writer::WriterHandle;
use super::{now_ms, Store, StoreError};
use crate::core::cachekey::Key;
use crate::engine::health::LocalHealth;
use crate::engine::ports::{Answer, BoxFuture, Cache, Commit, Record, Recorder};

impl Cache for WriterHandle {
    fn get(&self, key: Key, min_created_at: i64) -> BoxFuture<'_, Option<Answer>> {
        Box::pin(self.lookup(key, min_created_at))
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

/// The longest pause read from the store, for one whose end an `Instant`
/// cannot hold (a year: far longer than any `Retry-After` is honoured).
pub const MAX_PAUSE: Duration = Duration::from_secs(365 * 86_400);

/// Reads the store's latency averages and pauses every `every` into
/// `health`, on a thread of its own with its own connection, until the
/// returned guard is dropped. Read failures are skipped: the next read
/// tries again.
pub fn share_health(store: &Store, health: Arc<LocalHealth>, every: Duration) -> HealthReader {
    let stop = Arc::new(AtomicBool::new(false));
    let path = store.path().to_path_buf();
    let upstream = store.upstream().to_string();
    let flag = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("llmroute-health".into())
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
                    let _ = read_health(reader, &health);
                }
            }
        });
    HealthReader {
        stop,
        thread: spawned.ok(),
    }
}

/// Reads the store's averages and pauses into `health`, the pauses'
/// unix milliseconds turned into instants from now.
pub fn read_health(store: &Store, health: &LocalHealth) -> Result<(), StoreError> {
    let now = now_ms();
    let stats = store.model_stats()?;
    let cooldowns = store.cooldowns(now)?;
    let at = Instant::now();
    let pauses = cooldowns
        .into_iter()
        .map(|(m, until)| {
            let ahead = u64::try_from(until.saturating_sub(now)).unwrap_or(0);
            // A pause past what an Instant holds lasts as long as one can.
            let ahead = Duration::from_millis(ahead);
            (m, at.checked_add(ahead).unwrap_or(at + MAX_PAUSE))
        })
        .collect();
    health.merge(stats, pauses);
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
