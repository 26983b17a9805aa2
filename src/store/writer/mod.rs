//! The store's writer thread: every cache lookup and write of a run goes
//! through it, grouped into as few transactions as the load allows (group
//! commit). What a write asks to be done after it (acknowledge it, hand its
//! output line on) is done only after its transaction has committed, so an
//! output line written then is never lost from the cache, whatever happens
//! to the process next.
//!
//! This module holds the handles; `hold` the thread's loop, which lets
//! writes gather or holds quiet ones back; `commit` a batch's transaction.

mod commit;
mod hold;
#[cfg(test)]
mod tests;

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use super::flights::{Claim, Looked};
use super::{CachedAnswer, LineRecord, Store};
use crate::core::cachekey::Key;

/// Most messages handled in one transaction.
const MAX_BATCH: usize = 4096;

/// How long records nobody waits for, and that cache nothing, may be held
/// back before they commit when nothing else commits them sooner: the
/// record of a cache hit, of a failed line. Held, they share one
/// transaction instead of one every few lines; a lookup never waits for
/// them (they hold no answer to find), and a write someone waits for takes
/// them along at once.
const QUIET_LINGER: Duration = Duration::from_millis(5);

enum Msg {
    Lookup {
        key: Key,
        min_created_at: i64,
        /// The lease to take on a miss.
        claim: Option<Claim>,
        reply: oneshot::Sender<Looked>,
    },
    Line {
        record: Box<LineRecord>,
        then: Option<AfterCommit>,
    },
    /// A lease let go.
    Release { key: Key, owner: Arc<str> },
}

/// Run on the store thread once a record's transaction has committed (or
/// failed: see [`WriterHandle::failure`]). Keep it short: it holds up the
/// next transaction.
pub type AfterCommit = Box<dyn FnOnce() + Send>;

/// Run on the store thread after the [`AfterCommit`]s of each transaction.
type Hook = Arc<dyn Fn() + Send + Sync>;

/// Owns the writer thread; [`Writer::finish`] flushes and returns the store.
pub struct Writer {
    handle: WriterHandle,
    join: JoinHandle<Store>,
}

/// A cheap, cloneable way to talk to the writer thread.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<Msg>,
    failure: Arc<Mutex<Option<String>>>,
    hooks: Arc<Mutex<Vec<Hook>>>,
    /// The store thread: a lookup wakes it while it lets writes gather or
    /// holds quiet ones, a write someone waits for while it holds them.
    thread: std::thread::Thread,
    /// Whether the store thread is asleep holding quiet writes.
    holding: Arc<AtomicBool>,
    /// The store's file, for work beside the thread (clearing the cache).
    path: Arc<std::path::Path>,
}

impl Writer {
    pub fn spawn(store: Store) -> Writer {
        Writer::spawn_lingering(store, Duration::ZERO)
    }

    /// A writer that, when only writes are waiting, lets more gather for
    /// `linger` before it commits them: fewer, larger transactions, for a
    /// front end that does not wait for its records to be durable (a
    /// server). A lookup is never held back.
    pub fn spawn_lingering(store: Store, linger: Duration) -> Writer {
        Writer::spawn_holding(store, linger, QUIET_LINGER)
    }

    /// A writer that holds quiet writes back for `quiet` at most.
    fn spawn_holding(store: Store, linger: Duration, quiet: Duration) -> Writer {
        let (tx, rx) = mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let hooks = Arc::new(Mutex::new(Vec::new()));
        let holding = Arc::new(AtomicBool::new(false));
        let (thread_failure, thread_hooks) = (failure.clone(), hooks.clone());
        let thread_holding = holding.clone();
        let path: Arc<std::path::Path> = store.path().into();
        let join = std::thread::Builder::new()
            .name("llmroute-store".into())
            .spawn(move || {
                let shared = Shared {
                    failure: thread_failure,
                    hooks: thread_hooks,
                    holding: thread_holding,
                };
                hold::run(store, rx, shared, linger, quiet)
            })
            .expect("spawning the store thread");
        Writer {
            handle: WriterHandle {
                tx,
                failure,
                hooks,
                thread: join.thread().clone(),
                holding,
                path,
            },
            join,
        }
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Waits for every queued write to commit and gives the store back.
    /// Other handles must have been dropped, or this waits for them.
    pub fn finish(self) -> Store {
        drop(self.handle);
        self.join.thread().unpark();
        self.join.join().expect("the store thread does not panic")
    }
}

impl WriterHandle {
    /// Removes every cached answer, after the writes queued before: what
    /// `DELETE /cache` does to the local store. The number removed.
    pub async fn clear_cache(&self) -> Result<u64, String> {
        self.clear_cache_before(None).await
    }

    /// Removes the cached answers made before `before` (unix ms), or all.
    pub async fn clear_cache_before(&self, before: Option<i64>) -> Result<u64, String> {
        self.sync().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let store = Store::open(&path).map_err(|e| e.to_string())?;
            store
                .cache_remove(before)
                .map(|n| n as u64)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// A cached answer, or `None` (also when the store has failed).
    pub async fn lookup(&self, key: Key, min_created_at: i64) -> Option<CachedAnswer> {
        self.look_up(key, min_created_at, None).await.hit()
    }

    /// A cached answer; else, with `claim`, the lease on making it, or who
    /// holds it. [`Looked::Miss`] when the store has failed.
    pub async fn look_up(&self, key: Key, min_created_at: i64, claim: Option<Claim>) -> Looked {
        let (reply, rx) = oneshot::channel();
        let sent = self.tx.send(Msg::Lookup {
            key,
            min_created_at,
            claim,
            reply,
        });
        if sent.is_err() {
            return Looked::Miss;
        }
        self.thread.unpark();
        rx.await.unwrap_or(Looked::Miss)
    }

    /// Lets go of `owner`'s lease on `key`, after what was queued before.
    pub fn release(&self, key: Key, owner: Arc<str>) {
        let _ = self.tx.send(Msg::Release { key, owner });
    }

    /// Waits until everything queued before it has committed: what a
    /// lingering writer gathers is then seen by other connections.
    pub async fn sync(&self) {
        self.write(LineRecord::default()).await;
    }

    /// Queues a record and waits until it has committed (or failed; see
    /// [`WriterHandle::failure`]).
    pub async fn write(&self, record: LineRecord) {
        let (ack, rx) = oneshot::channel();
        self.write_then(
            Box::new(record),
            Box::new(move || {
                let _ = ack.send(());
            }),
        );
        let _ = rx.await;
    }

    /// Queues a record; `then` runs once it has committed (or failed). With
    /// the store thread gone, `then` runs at once, here, and the hooks after it.
    pub fn write_then(&self, record: Box<LineRecord>, then: AfterCommit) {
        if let Err(mpsc::SendError(Msg::Line { then: Some(f), .. })) = self.tx.send(Msg::Line {
            record,
            then: Some(then),
        }) {
            f();
            run_hooks(&self.hooks);
            return;
        }
        // Someone waits for it: it must not wait out quiet writes' hold.
        // (A writer letting writes gather is not woken: it commits them
        // when its linger ends.) The fence pairs with the writer's: either
        // it sees this write before it sleeps, or this sees it asleep.
        fence(Ordering::SeqCst);
        if self.holding.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
    }

    /// Runs `hook` on the store thread after the `then`s of every
    /// transaction: the place to hand on in one go what they gathered.
    pub fn after_each_commit(&self, hook: impl Fn() + Send + Sync + 'static) {
        lock(&self.hooks).push(Arc::new(hook));
    }

    /// Queues a record without waiting for it.
    pub fn write_nowait(&self, record: LineRecord) {
        let _ = self.tx.send(Msg::Line {
            record: Box::new(record),
            then: None,
        });
    }

    /// The first error the store reported, if any. After one, the run goes
    /// on without recording (and answers are not cached).
    pub fn failure(&self) -> Option<String> {
        lock(&self.failure).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_hooks(hooks: &Mutex<Vec<Hook>>) {
    // Called without the lock held: a hook may add another.
    let hooks: Vec<Hook> = lock(hooks).clone();
    for hook in hooks {
        hook();
    }
}

/// What the store thread shares with the handles.
struct Shared {
    failure: Arc<Mutex<Option<String>>>,
    hooks: Arc<Mutex<Vec<Hook>>>,
    holding: Arc<AtomicBool>,
}

fn is_write(m: &Msg) -> bool {
    matches!(m, Msg::Line { .. } | Msg::Release { .. })
}
