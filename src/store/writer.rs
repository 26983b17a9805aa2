//! The store's writer thread: every cache lookup and write of a run goes
//! through it, grouped into as few transactions as the load allows (group
//! commit). What a write asks to be done after it (acknowledge it, hand its
//! output line on) is done only after its transaction has committed, so an
//! output line written then is never lost from the cache, whatever happens
//! to the process next.

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::TransactionBehavior;
use tokio::sync::oneshot;

use super::{CachedAnswer, LatencyFold, LineRecord, Statements, Store, StoreError};
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
        reply: oneshot::Sender<Option<CachedAnswer>>,
    },
    Line {
        record: Box<LineRecord>,
        then: Option<AfterCommit>,
    },
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
        let join = std::thread::Builder::new()
            .name("llmroute-store".into())
            .spawn(move || {
                let shared = Shared {
                    failure: thread_failure,
                    hooks: thread_hooks,
                    holding: thread_holding,
                };
                run(store, rx, shared, linger, quiet)
            })
            .expect("spawning the store thread");
        Writer {
            handle: WriterHandle {
                tx,
                failure,
                hooks,
                thread: join.thread().clone(),
                holding,
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
    /// A cached answer, or `None` (also when the store has failed).
    pub async fn lookup(&self, key: Key, min_created_at: i64) -> Option<CachedAnswer> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Lookup {
                key,
                min_created_at,
                reply,
            })
            .ok()?;
        self.thread.unpark();
        rx.await.ok().flatten()
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

/// A write nobody waits for that caches nothing: it may be held back.
fn quiet(m: &Msg) -> bool {
    match m {
        Msg::Line { record, then } => then.is_none() && record.cache.is_none(),
        Msg::Lookup { .. } => false,
    }
}

/// What the store thread shares with the handles.
struct Shared {
    failure: Arc<Mutex<Option<String>>>,
    hooks: Arc<Mutex<Vec<Hook>>>,
    holding: Arc<AtomicBool>,
}

/// What came while quiet writes were held.
enum Held {
    Came(Msg),
    TimeUp,
    Ended,
}

/// Sleeps until a message comes, or `deadline`: asleep, not waiting on
/// the channel, so that quiet writes do not wake the thread one by one (a
/// lookup, a write someone waits for, or the end does). A wake-up with
/// nothing to take (spurious, or left by an earlier unpark) sleeps again.
fn sleep_holding(rx: &mpsc::Receiver<Msg>, holding: &AtomicBool, deadline: Instant) -> Held {
    holding.store(true, Ordering::SeqCst);
    fence(Ordering::SeqCst);
    let held = loop {
        match rx.try_recv() {
            Ok(m) => break Held::Came(m),
            Err(mpsc::TryRecvError::Disconnected) => break Held::Ended,
            Err(mpsc::TryRecvError::Empty) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break Held::TimeUp;
                }
                std::thread::park_timeout(left);
            }
        }
    };
    holding.store(false, Ordering::SeqCst);
    held
}

fn run(
    store: Store,
    rx: mpsc::Receiver<Msg>,
    shared: Shared,
    linger: Duration,
    hold: Duration,
) -> Store {
    let mut t = Transactions {
        store: &store,
        failure: &shared.failure,
        hooks: &shared.hooks,
        after: Vec::with_capacity(MAX_BATCH),
        #[cfg(debug_assertions)]
        delay: commit_delay(),
    };
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut lookups = Vec::with_capacity(MAX_BATCH);
    // Quiet writes held back, in the order they came, and since when.
    let mut held: Vec<Msg> = Vec::new();
    let mut held_since: Option<Instant> = None;
    loop {
        let first = match held_since {
            None => rx.recv().ok(),
            Some(since) => match sleep_holding(&rx, &shared.holding, since + hold) {
                Held::Came(m) => Some(m),
                Held::TimeUp => None,
                Held::Ended => {
                    t.commit(&mut held);
                    break;
                }
            },
        };
        let due = match first {
            Some(m) => {
                batch.push(m);
                drain(&rx, &mut batch)
                    || held.len() + batch.len() >= MAX_BATCH
                    || held_since.is_some_and(|s| s.elapsed() >= hold)
            }
            // Nothing came: the end, or the held writes' time is up.
            None if held_since.is_none() => break,
            None => true,
        };
        if !linger.is_zero() {
            gather(&rx, &mut batch, linger);
        }
        let holds = linger.is_zero() && !due && batch.iter().all(|m| quiet(m) || !is_write(m));
        if holds {
            // The writes stay, the lookups are answered now; no new vectors.
            let before = held.len();
            for m in batch.drain(..) {
                if is_write(&m) {
                    held.push(m);
                } else {
                    lookups.push(m);
                }
            }
            if held.len() > before {
                held_since.get_or_insert_with(Instant::now);
            }
            if !lookups.is_empty() {
                t.commit(&mut lookups);
            }
            continue;
        }
        // Everything commits: what was held first, as it came first.
        if !held.is_empty() {
            batch.splice(0..0, held.drain(..));
            held_since = None;
        }
        t.commit(&mut batch);
    }
    if !held.is_empty() {
        t.commit(&mut held);
    }
    drop(t);
    store
}

fn is_write(m: &Msg) -> bool {
    matches!(m, Msg::Line { .. })
}

/// What committing a batch needs, and its after-commit work.
struct Transactions<'a> {
    store: &'a Store,
    failure: &'a Mutex<Option<String>>,
    hooks: &'a Mutex<Vec<Hook>>,
    after: Vec<AfterCommit>,
    #[cfg(debug_assertions)]
    delay: Duration,
}

impl Transactions<'_> {
    /// Handles `batch` in one transaction (emptying it), then runs what
    /// waited for its writes, and the hooks.
    fn commit(&mut self, batch: &mut Vec<Msg>) {
        let writes = batch.iter().any(is_write);
        #[cfg(debug_assertions)]
        if writes {
            std::thread::sleep(self.delay);
        }
        if let Err(e) = apply(self.store, batch, &mut self.after, writes) {
            let mut slot = lock(self.failure);
            slot.get_or_insert_with(|| e.to_string());
        }
        // What a failed BEGIN left in the batch: lookups miss, and what
        // waits for a write still runs (the write is lost, the line is not).
        for m in batch.drain(..) {
            match m {
                Msg::Lookup { reply, .. } => {
                    let _ = reply.send(None);
                }
                Msg::Line { then, .. } => self.after.extend(then),
            }
        }
        // Only now: after the commit, or after the failure.
        let handed_on = !self.after.is_empty();
        for then in self.after.drain(..) {
            then();
        }
        if handed_on {
            run_hooks(self.hooks);
        }
    }
}

/// Lets writes gather for `linger`, unless a lookup comes: a lookup is
/// answered at once, with the writes gathered so far. The thread sleeps
/// meanwhile, so that writes do not wake it one by one; a lookup wakes it.
fn gather(rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Msg>, linger: Duration) {
    let lookup = |m: &Msg| matches!(m, Msg::Lookup { .. });
    let deadline = Instant::now() + linger;
    loop {
        let ended = drain(rx, batch);
        if ended || batch.len() >= MAX_BATCH || batch.iter().any(lookup) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::park_timeout(left);
    }
}

/// Takes what is queued, up to a batch; whether every sender has gone.
fn drain(rx: &mpsc::Receiver<Msg>, batch: &mut Vec<Msg>) -> bool {
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(m) => batch.push(m),
            Err(mpsc::TryRecvError::Empty) => return false,
            Err(mpsc::TryRecvError::Disconnected) => return true,
        }
    }
    false
}

/// In debug builds only: `LLMROUTE_COMMIT_DELAY_MS` holds every write
/// transaction back that long, so that tests can see that nothing waiting
/// for a commit goes ahead of it.
#[cfg(debug_assertions)]
fn commit_delay() -> std::time::Duration {
    let ms = std::env::var("LLMROUTE_COMMIT_DELAY_MS").ok();
    std::time::Duration::from_millis(ms.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Handles a batch in one transaction. Lookups are answered (and removed
/// from the batch) as they are met; what waits for a write is moved to
/// `after`. Should the transaction not even begin, the batch is left as it
/// is. Should a record fail to be written, the transaction is rolled back
/// and its records written again, each under a savepoint of its own, so
/// that a bad record fails alone.
fn apply(
    store: &Store,
    batch: &mut Vec<Msg>,
    after: &mut Vec<AfterCommit>,
    writes: bool,
) -> Result<(), StoreError> {
    let behavior = if writes {
        TransactionBehavior::Immediate
    } else {
        TransactionBehavior::Deferred
    };
    let tx = rusqlite::Transaction::new_unchecked(store.conn(), behavior)?;
    let mut result = Ok(());
    let mut latencies = LatencyFold::default();
    let mut records = Vec::new();
    let mut statements = Statements::default();
    for m in batch.drain(..) {
        match m {
            Msg::Lookup {
                key,
                min_created_at,
                reply,
            } => {
                let hit = store
                    .lookup_held(&key, min_created_at, &mut statements)
                    .unwrap_or(None);
                let _ = reply.send(hit);
            }
            Msg::Line { record, then } => {
                if result.is_ok() {
                    result = store.write_line_folded(&record, &mut latencies, &mut statements);
                }
                records.push(record);
                after.extend(then);
            }
        }
    }
    drop(statements);
    if result.is_ok() {
        result = store.write_latencies(&mut latencies);
    }
    if result.is_ok() {
        return Ok(tx.commit()?);
    }
    let _ = tx.rollback();
    let first = result;
    let tx = rusqlite::Transaction::new_unchecked(store.conn(), TransactionBehavior::Immediate)?;
    let mut latencies = LatencyFold::default();
    for record in &records {
        let mut fold = LatencyFold::default();
        let conn = store.conn();
        conn.execute_batch("SAVEPOINT record")?;
        match store.write_line_folded(record, &mut fold, &mut Statements::default()) {
            Ok(()) => latencies.extend(fold),
            Err(_) => conn.execute_batch("ROLLBACK TO record")?,
        }
        conn.execute_batch("RELEASE record")?;
    }
    store.write_latencies(&mut latencies)?;
    tx.commit()?;
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CacheEntry;

    /// A runtime to wait for the writer's answers on.
    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    fn found_answer() -> CachedAnswer {
        CachedAnswer {
            model: "m".into(),
            response: "{}".into(),
            content: None,
            cost_usd: None,
            prompt_tokens: None,
            completion_tokens: None,
            score: None,
            created_at: 10,
        }
    }

    #[test]
    fn a_lingering_writer_answers_a_lookup_at_once_and_commits_what_gathered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        // An hour's linger: only a lookup (or the end) ends the wait.
        let w = Writer::spawn_lingering(store, Duration::from_secs(3600));
        let h = w.handle();
        let key = Key([7; 32]);
        h.write_nowait(LineRecord {
            cache: Some(CacheEntry {
                key,
                answer: found_answer(),
            }),
            ..Default::default()
        });
        let rt = rt();
        let found = rt.block_on(h.lookup(key, 0));
        assert_eq!(found.map(|a| a.model), Some("m".to_string()));
        // A write gathering when the writer finishes is committed then,
        // not an hour later.
        h.write_nowait(LineRecord {
            cache: Some(CacheEntry {
                key: Key([8; 32]),
                answer: found_answer(),
            }),
            ..Default::default()
        });
        drop(h);
        let store = w.finish();
        assert_eq!(store.cache_stats(None).unwrap().entries, 2);
    }

    /// A record nobody waits for: a failed line's, with one attempt row.
    fn quiet_record(model: &str) -> LineRecord {
        LineRecord {
            attempts: vec![crate::store::AttemptRow {
                ts: 1,
                model: model.into(),
                status: Some(500),
                ok: false,
                cached: false,
                latency_ms: Some(1.0),
                prompt_tokens: None,
                completion_tokens: None,
                cost_usd: None,
                score: None,
                error_type: Some("server_error"),
                ttft_ms: None,
            }],
            ..Default::default()
        }
    }

    fn attempts_seen(path: &std::path::Path) -> i64 {
        let other = rusqlite::Connection::open(path).unwrap();
        other
            .query_row("SELECT count(*) FROM attempts", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn quiet_records_go_with_the_next_durable_one_or_soon_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let writer = Writer::spawn(Store::open(&path).unwrap());
        let h = writer.handle();
        let rt = rt();
        for i in 0..10 {
            h.write_nowait(quiet_record(&format!("m/{i}")));
        }
        // A lookup is answered while they are held.
        assert_eq!(rt.block_on(h.lookup(Key([9; 32]), 0)), None);
        // A write someone waits for takes them along.
        rt.block_on(h.write(quiet_record("m/durable")));
        assert_eq!(attempts_seen(&path), 11);
        // Alone, they commit soon, with nothing else to carry them.
        h.write_nowait(quiet_record("m/alone"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts_seen(&path) < 12 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(attempts_seen(&path), 12);
        // And what is held when the writer finishes is committed then.
        h.write_nowait(quiet_record("m/last"));
        drop(h);
        let store = writer.finish();
        drop(store);
        assert_eq!(attempts_seen(&path), 13);
    }

    #[test]
    fn a_write_someone_waits_for_does_not_wait_out_the_quiet_ones_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        // Quiet writes held for an hour: only a wake-up commits them sooner.
        let hour = Duration::from_secs(3600);
        let writer = Writer::spawn_holding(Store::open(&path).unwrap(), Duration::ZERO, hour);
        let h = writer.handle();
        h.write_nowait(quiet_record("m/quiet"));
        // Let the writer take it and fall asleep holding it.
        std::thread::sleep(Duration::from_millis(50));
        let (done, acked) = mpsc::channel();
        let waiter = {
            let h = h.clone();
            std::thread::spawn(move || {
                let rt = rt();
                rt.block_on(h.write(quiet_record("m/durable")));
                let _ = done.send(());
            })
        };
        assert!(
            acked.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the durable write waited for the held ones' hour"
        );
        waiter.join().unwrap();
        assert_eq!(attempts_seen(&path), 2);
        // The end wakes the writer too: what it holds then is committed.
        h.write_nowait(quiet_record("m/last"));
        drop(h);
        drop(writer.finish());
        assert_eq!(attempts_seen(&path), 3);
    }

    #[test]
    fn under_a_stream_of_lookups_held_records_still_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let writer = Writer::spawn(Store::open(&path).unwrap());
        let h = writer.handle();
        let rt = rt();
        h.write_nowait(quiet_record("m/a"));
        // Lookups without pause, faster than they are answered, so that the
        // queue is never empty: the held record does not wait for a quiet
        // moment that never comes.
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flood = {
            let (tx, stop) = (h.tx.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for _ in 0..1000 {
                        let (reply, _) = oneshot::channel();
                        let _ = tx.send(Msg::Lookup {
                            key: Key([1; 32]),
                            min_created_at: 0,
                            reply,
                        });
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while attempts_seen(&path) < 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        flood.join().unwrap();
        assert_eq!(attempts_seen(&path), 1);
        assert!(rt.block_on(h.lookup(Key([1; 32]), 0)).is_none());
        drop(h);
        writer.finish();
    }

    #[test]
    fn writes_commit_before_they_are_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let writer = Writer::spawn(Store::open(&path).unwrap());
        let h = writer.handle();
        let rt = rt();
        let answer = CachedAnswer {
            model: "m".into(),
            response: "{}".into(),
            content: None,
            cost_usd: None,
            prompt_tokens: None,
            completion_tokens: None,
            score: None,
            created_at: 10,
        };
        rt.block_on(h.write(LineRecord {
            cache: Some(CacheEntry {
                key: Key([7; 32]),
                answer: answer.clone(),
            }),
            ..Default::default()
        }));
        // A second connection sees the committed row at once.
        let other = Store::open(&path).unwrap();
        assert_eq!(
            other.lookup(&Key([7; 32]), 0).unwrap(),
            Some(answer.clone())
        );
        assert_eq!(rt.block_on(h.lookup(Key([7; 32]), 0)), Some(answer));
        assert_eq!(rt.block_on(h.lookup(Key([8; 32]), 0)), None);
        assert_eq!(h.failure(), None);
        drop(h);
        writer.finish();
    }

    #[test]
    fn hooks_run_after_the_thens_of_a_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::spawn(Store::open(&dir.path().join("s.db")).unwrap());
        let h = writer.handle();
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = events.clone();
        h.after_each_commit(move || log.lock().unwrap().push("hook".to_string()));
        for i in 0..50 {
            let log = events.clone();
            h.write_then(
                Box::<LineRecord>::default(),
                Box::new(move || log.lock().unwrap().push(format!("then {i}"))),
            );
        }
        h.write_nowait(LineRecord::default());
        drop(h);
        writer.finish();
        let events = events.lock().unwrap();
        let thens: Vec<&String> = events.iter().filter(|e| e.starts_with("then")).collect();
        assert_eq!(thens.len(), 50);
        assert_eq!(thens[0], "then 0", "in the order written");
        assert_eq!(thens[49], "then 49");
        let hooks = events.iter().filter(|e| *e == "hook").count();
        assert!((1..=50).contains(&hooks), "{events:?}");
        assert_eq!(
            events.last().unwrap(),
            "hook",
            "nothing is left behind a hook"
        );
        assert_ne!(events[0], "hook", "a hook follows thens, never leads");
    }

    #[test]
    fn what_waits_for_a_write_runs_even_when_the_transaction_cannot_begin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        store
            .conn()
            .busy_timeout(std::time::Duration::from_millis(20))
            .unwrap();
        // Another connection holds the write lock, so BEGIN IMMEDIATE fails.
        let other = rusqlite::Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let writer = Writer::spawn(store);
        let h = writer.handle();
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = events.clone();
        h.after_each_commit(move || log.lock().unwrap().push("hook"));
        let log = events.clone();
        let rt = rt();
        h.write_then(
            Box::<LineRecord>::default(),
            Box::new(move || log.lock().unwrap().push("then")),
        );
        assert_eq!(rt.block_on(h.lookup(Key([1; 32]), 0)), None);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while events.lock().unwrap().len() < 2 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(*events.lock().unwrap(), ["then", "hook"]);
        assert!(
            h.failure().is_some_and(|f| f.contains("locked")),
            "{:?}",
            h.failure()
        );
        drop(h);
        let store = writer.finish();
        other.execute_batch("ROLLBACK").unwrap();
        drop(store);
    }

    #[test]
    fn a_bad_record_fails_alone_and_the_rest_of_its_transaction_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        // Any attempt row naming model "bad" is refused.
        store
            .conn()
            .execute_batch(
                "CREATE TEMP TRIGGER refuse BEFORE INSERT ON attempts WHEN NEW.model = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'a bad row'); END;",
            )
            .unwrap();
        let record = |key: u8, model: &str| LineRecord {
            cache: Some(CacheEntry {
                key: Key([key; 32]),
                answer: CachedAnswer {
                    model: model.into(),
                    response: "{}".into(),
                    content: None,
                    cost_usd: None,
                    prompt_tokens: None,
                    completion_tokens: None,
                    score: None,
                    created_at: 1,
                },
            }),
            attempts: vec![crate::store::AttemptRow {
                ts: 1,
                model: model.into(),
                status: Some(200),
                ok: true,
                cached: false,
                latency_ms: Some(10.0),
                prompt_tokens: None,
                completion_tokens: None,
                cost_usd: None,
                score: None,
                error_type: None,
                ttft_ms: None,
            }],
            ..Default::default()
        };
        let mut batch: Vec<Msg> = [(1, "good/a"), (2, "bad"), (3, "good/b")]
            .into_iter()
            .map(|(k, m)| Msg::Line {
                record: Box::new(record(k, m)),
                then: None,
            })
            .collect();
        let result = apply(&store, &mut batch, &mut Vec::new(), true);
        assert!(result.is_err(), "the bad record's error is reported");
        for (key, cached) in [(1u8, true), (2, false), (3, true)] {
            assert_eq!(
                store.lookup(&Key([key; 32]), 0).unwrap().is_some(),
                cached,
                "record {key}"
            );
        }
        let stats = store.model_stats().unwrap();
        assert_eq!(
            stats.len(),
            2,
            "the good records' latencies count: {stats:?}"
        );
    }
}
