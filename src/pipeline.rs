//! The pipeline: reads lines, routes and answers them concurrently, and
//! writes one output line per input line.
//!
//! ```text
//! reader thread ──(bounded)──▶ dispatcher ──spawn──▶ line tasks ──────────────────────▶ output thread ──▶ stdout
//!                                  ▲                     │ answers                        ▲    │
//!                                  │                     ▼                                │    │
//!                                  │               store thread (cache lookups, ──────────┘    │
//!                                  │               group-committed writes; hands an            │
//!                                  │               answer's line on after its commit)          │
//!                                  └──────────────── window permits (released when written) ───┘
//! ```
//!
//! Memory is bounded by the window: at most `window` lines are between being
//! read and being written, whatever the input length. A line's answer is
//! committed to the cache before its output line is written.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

use crate::catalogue::Catalogue;
use crate::input::{self, InputEvent, Request, Source};
use crate::limits::{Budget, RateLimits};
use crate::output::{error_type, Attempt, CandidateOut, Line};
use crate::routing::{self, Presets, Settings};
use crate::store::writer::WriterHandle;
use crate::store::{self, AttemptRow, CacheEntry, CachedAnswer, LineRecord, ModelStat, RequestRow};
use crate::upstream::{self, Client, FailureKind};
use indicatif::ProgressBar;

/// Most lines between being read and being written, for `-j concurrency`.
/// It bounds memory, and what a crash can make a re-run pay again: at most
/// the lines in the window (requests in flight and answers whose commit had
/// not finished), never a line whose output was written.
pub fn window(concurrency: usize) -> usize {
    (concurrency * 4).max(256)
}

/// How long in-flight requests may run on after Ctrl-C or a closed output.
pub const GRACE: Duration = Duration::from_secs(10);

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: Settings,
    pub presets: Presets,
    pub dry_run: bool,
    pub explain: bool,
    pub concurrency: usize,
    pub unordered: bool,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub no_cache: bool,
    pub max_attempts: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Spending cap of this run in USD.
    pub max_cost: Option<f64>,
    /// Log every attempt and cache hit on stderr.
    pub verbose: bool,
}

impl Options {
    /// Whether lines are looked up in and written to the cache.
    pub fn uses_cache(&self) -> bool {
        !self.no_cache && !self.dry_run
    }
}

/// What a run starts from.
pub struct Setup {
    pub options: Options,
    /// `None` for dry runs, which never call upstream.
    pub client: Option<Client>,
    pub catalogue: Catalogue,
    pub store: WriterHandle,
    pub stats: HashMap<String, ModelStat>,
    /// Cooldowns in force (model -> until unix ms).
    pub cooldowns: HashMap<String, i64>,
    /// A progress bar to advance, when one is shown.
    pub progress: Option<ProgressBar>,
}

/// Why a run ended early.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// The API refused the key or the account (401/402): nothing more is sent.
    Fatal { kind: &'static str, message: String },
    /// SIGINT (130) or SIGTERM (143).
    Interrupted { exit_code: i32 },
    /// The reader of our output went away (`| head`).
    BrokenPipe,
    /// Writing the output failed otherwise.
    OutputError(String),
}

impl StopReason {
    /// Whether no more input is read.
    fn halts_input(&self) -> bool {
        !matches!(self, StopReason::Fatal { .. })
    }
}

/// The end of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Non-blank input lines read.
    pub lines: u64,
    /// Lines answered by a model during this run.
    pub answered: u64,
    /// Lines answered from the cache.
    pub cached: u64,
    /// Lines whose output carries an error.
    pub errors: u64,
    /// Spend of this run in USD, where known.
    pub cost_usd: f64,
    pub stop: Option<StopReason>,
    /// The input could not be read to its end.
    pub input_error: Option<String>,
    /// The store failed during the run (answers after it were not cached).
    pub store_failure: Option<String>,
    pub elapsed: Duration,
}

/// Shared stop state: the first reason wins.
#[derive(Default)]
struct Stop {
    set: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    notify: Notify,
}

impl Stop {
    fn set(&self, reason: StopReason) -> bool {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(reason);
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
        true
    }

    fn get(&self) -> Option<StopReason> {
        if !self.set.load(Ordering::SeqCst) {
            return None;
        }
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves once a reason that halts input is set.
    async fn halted(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.get().is_some_and(|r| r.halts_input()) {
                return;
            }
            notified.await;
        }
    }
}

struct Counters {
    answered: AtomicU64,
    cached: AtomicU64,
    errors: AtomicU64,
    cost_usd: Mutex<f64>,
}

struct Ctx {
    opts: Options,
    client: Option<Client>,
    catalogue: Catalogue,
    store: WriterHandle,
    stats: RwLock<HashMap<String, ModelStat>>,
    /// Models paused by rate limits, and how those limits have gone.
    pauses: Mutex<HashMap<String, Pause>>,
    concurrency: Arc<Semaphore>,
    stop: Stop,
    counters: Counters,
    store_warned: AtomicBool,
    budget_warned: AtomicBool,
    limits: RateLimits,
    budget: Option<Budget>,
    progress: Option<ProgressBar>,
    /// Unix ms and Instant of the same moment, to turn one into the other.
    epoch: (i64, Instant),
}

enum OutMsg {
    /// Serialised by the output thread, off the thread that sends requests.
    Line(u64, Box<Line>),
    /// The lines whose records one transaction committed.
    Committed(Vec<(u64, Box<Line>)>),
    /// A line that will have no output (the run was interrupted before it was sent).
    Skip(u64),
}

/// Lines the store thread hands on after their commit, gathered so that the
/// output thread gets (and is woken for) each transaction's lines at once,
/// not line by line. It holds a sender only while it holds lines, so the
/// output thread still ends when the last line has been handed on.
#[derive(Default)]
struct Outbox(Mutex<Held>);

#[derive(Default)]
struct Held {
    lines: Vec<(u64, Box<Line>)>,
    out: Option<OutSender>,
}

type OutSender = std::sync::mpsc::Sender<OutMsg>;

impl Outbox {
    fn put(&self, seq: u64, line: Box<Line>, out: OutSender) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.lines.push((seq, line));
        held.out.get_or_insert(out);
    }

    fn hand_on(&self) {
        let held = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(out) = held.out {
            let _ = out.send(OutMsg::Committed(held.lines));
        }
    }
}

/// A model's rate-limit state in this run.
struct Pause {
    /// Not tried again before this.
    until: Instant,
    /// Rate limits in a row since its last success.
    streak: u32,
    /// When the last of them came back.
    last_limited: Instant,
}

impl Pause {
    fn until(until: Instant) -> Pause {
        Pause {
            until,
            streak: 0,
            last_limited: until,
        }
    }
}

/// A request to write every pending line now, gaps or not, acknowledged when done.
type DrainRequest = std::sync::mpsc::SyncSender<()>;

/// Runs the pipeline over `sources`, writing to `out`.
pub async fn run(setup: Setup, sources: Vec<Source>, out: Box<dyn Write + Send>) -> Summary {
    let started = Instant::now();
    let epoch = (store::now_ms(), Instant::now());
    let cooldowns = setup
        .cooldowns
        .into_iter()
        .map(|(m, until)| {
            let until = epoch.1 + Duration::from_millis((until - epoch.0).max(0) as u64);
            (m, Pause::until(until))
        })
        .collect();
    let concurrency = setup.options.concurrency.max(1);
    let window = window(concurrency);
    let ctx = Arc::new(Ctx {
        client: setup.client,
        catalogue: setup.catalogue,
        store: setup.store,
        stats: RwLock::new(setup.stats),
        pauses: Mutex::new(cooldowns),
        concurrency: Arc::new(Semaphore::new(concurrency)),
        stop: Stop::default(),
        counters: Counters {
            answered: AtomicU64::new(0),
            cached: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            cost_usd: Mutex::new(0.0),
        },
        store_warned: AtomicBool::new(false),
        budget_warned: AtomicBool::new(false),
        limits: RateLimits::new(setup.options.rpm, setup.options.tpm),
        budget: setup.options.max_cost.map(Budget::new),
        progress: setup.progress,
        epoch,
        opts: setup.options,
    });

    let window_sem = Arc::new(Semaphore::new(window));
    let (out_tx, out_rx) = std::sync::mpsc::channel::<OutMsg>();
    let outbox = Arc::new(Outbox::default());
    {
        let outbox = outbox.clone();
        ctx.store.after_each_commit(move || outbox.hand_on());
    }
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (drain_tx, drain_rx) = std::sync::mpsc::channel::<DrainRequest>();
    {
        let ctx = ctx.clone();
        let window_sem = window_sem.clone();
        let ordered = !ctx.opts.unordered;
        std::thread::Builder::new()
            .name("llmroute-output".into())
            .spawn(move || {
                output_thread(out_rx, drain_rx, out, ordered, &window_sem, &ctx.stop);
                let _ = done_tx.send(());
            })
            .expect("spawning the output thread");
    }

    let (in_tx, mut in_rx) = mpsc::channel::<Vec<InputEvent>>(input::CHANNEL_BATCHES);
    input::spawn_reader(sources, ctx.opts.uses_cache(), in_tx);
    let signals = tokio::spawn(watch_signals(ctx.clone()));
    let ticker = ctx.progress.clone().map(|pb| {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let spent = *ctx
                    .counters
                    .cost_usd
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                pb.set_message(format!(
                    "{} cached · {} errors · ${spent:.4}",
                    ctx.counters.cached.load(Ordering::Relaxed),
                    ctx.counters.errors.load(Ordering::Relaxed),
                ));
            }
        })
    });

    let mut seq = 0u64;
    let mut input_error = None;
    let mut batch = Vec::new().into_iter();
    loop {
        let event = match batch.next() {
            Some(e) => Some(e),
            None => tokio::select! {
                biased;
                _ = ctx.stop.halted() => break,
                b = in_rx.recv() => b.and_then(|b| {
                    batch = b.into_iter();
                    batch.next()
                }),
            },
        };
        let (line_no, parsed) = match event {
            Some(InputEvent::Line(n, p)) => (n, p),
            Some(InputEvent::Error(e)) => {
                input_error = Some(e);
                break;
            }
            None => break,
        };
        tokio::select! {
            biased;
            _ = ctx.stop.halted() => break,
            permit = window_sem.acquire() => permit.expect("the window is never closed").forget(),
        }
        // Lines start in input order: the permit is taken here, not in the task.
        let permit = tokio::select! {
            biased;
            _ = ctx.stop.halted() => break,
            p = ctx.concurrency.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        seq += 1;
        match parsed {
            Err(e) => {
                drop(permit);
                ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(pb) = &ctx.progress {
                    pb.inc(1);
                }
                let line = Line::error(e.id, line_no, e.kind, e.message);
                let _ = out_tx.send(OutMsg::Line(seq, Box::new(line)));
            }
            Ok(req) => {
                let ctx = ctx.clone();
                let out_tx = out_tx.clone();
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    // Should this task die, the guard still writes the line.
                    let mut guard = LineGuard {
                        out: out_tx.clone(),
                        seq,
                        line_no,
                        id: req.id.clone(),
                        ctx: ctx.clone(),
                        done: false,
                    };
                    let (line, record) = match process(&ctx, line_no, req, permit).await {
                        Done::Unsent => {
                            guard.done = true;
                            let _ = out_tx.send(OutMsg::Skip(seq));
                            return;
                        }
                        Done::Line(line) => (line, None),
                        Done::AfterCommit(line, record) => (line, Some(record)),
                    };
                    if line.error.is_some() {
                        ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(pb) = &ctx.progress {
                        pb.inc(1);
                    }
                    // Reports a failure of an earlier commit; before `done`,
                    // so that should it panic (stderr gone), the guard still
                    // writes this line.
                    ctx.warn_store_failure();
                    let line = Box::new(line);
                    guard.done = true;
                    match record {
                        None => {
                            let _ = out_tx.send(OutMsg::Line(seq, line));
                        }
                        // The store thread hands the line on once the record
                        // has committed: a re-run never pays again for a line
                        // it has shown.
                        Some(record) => {
                            ctx.store.write_then(
                                record,
                                Box::new(move || outbox.put(seq, line, out_tx)),
                            );
                        }
                    }
                });
            }
        }
    }
    drop(in_rx);

    // Senders are held by line tasks, by lines waiting for their commit, and
    // by the outbox while it holds lines; the output thread ends when the
    // last is dropped.
    let halted = ctx.stop.get().is_some_and(|r| r.halts_input());
    if halted {
        drop(out_tx);
        let grace = tokio::time::sleep(GRACE);
        tokio::pin!(grace);
        let mut done_rx = done_rx;
        let finished = tokio::select! {
            _ = &mut done_rx => true,
            _ = &mut grace => false,
        };
        if !finished {
            // Write what has finished, even past a gap, and give up on the rest.
            let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
            if drain_tx.send(ack_tx).is_ok() {
                let _ = tokio::task::spawn_blocking(move || {
                    ack_rx.recv_timeout(Duration::from_secs(5))
                })
                .await;
            }
        }
    } else {
        drop(out_tx);
        let _ = done_rx.await;
    }
    signals.abort();
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(pb) = &ctx.progress {
        pb.finish_and_clear();
    }

    let store_failure = ctx.store.failure();
    let cost_usd = *ctx
        .counters
        .cost_usd
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    Summary {
        lines: seq,
        answered: ctx.counters.answered.load(Ordering::Relaxed),
        cached: ctx.counters.cached.load(Ordering::Relaxed),
        errors: ctx.counters.errors.load(Ordering::Relaxed),
        cost_usd,
        stop: ctx.stop.get(),
        input_error,
        store_failure,
        elapsed: started.elapsed(),
    }
}

async fn watch_signals(ctx: Arc<Ctx>) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminated = std::future::pending::<()>();
    let exit_code = tokio::select! {
        _ = tokio::signal::ctrl_c() => 130,
        _ = terminated => 143,
    };
    if ctx.stop.set(StopReason::Interrupted { exit_code }) {
        ctx.say(format_args!(
            "llmroute: interrupted: no new requests; waiting up to {}s for those in flight (Ctrl-C again to quit now)",
            GRACE.as_secs()
        ));
    }
    let _ = tokio::signal::ctrl_c().await;
    ctx.say(format_args!("llmroute: quitting at once"));
    std::process::exit(exit_code);
}

fn output_thread(
    rx: std::sync::mpsc::Receiver<OutMsg>,
    drain: std::sync::mpsc::Receiver<DrainRequest>,
    out: Box<dyn Write + Send>,
    ordered: bool,
    window: &Semaphore,
    stop: &Stop,
) {
    let mut out = std::io::BufWriter::with_capacity(128 * 1024, out);
    let mut broken = false;
    let mut ordered = ordered;
    let mut next = 1u64;
    // Lines that came before their turn; `None` for a line with no output.
    let mut pending: BTreeMap<u64, Option<Box<Line>>> = BTreeMap::new();
    let mut buf = Vec::with_capacity(4096);
    let mut write = |line: Option<Box<Line>>,
                     out: &mut std::io::BufWriter<Box<dyn Write + Send>>,
                     broken: &mut bool| {
        if let (Some(line), false) = (line, *broken) {
            buf.clear();
            line.write_to(&mut buf);
            if let Err(e) = out.write_all(&buf) {
                *broken = true;
                stop.set(output_stop(e));
            }
        }
        window.add_permits(1);
    };
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                if !broken {
                    if let Err(e) = out.flush() {
                        broken = true;
                        stop.set(output_stop(e));
                    }
                }
                // Idle: wait for the next line, looking now and then for a drain request.
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(m) => m,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if let Ok(ack) = drain.try_recv() {
                            for (_, line) in std::mem::take(&mut pending) {
                                write(line, &mut out, &mut broken);
                            }
                            ordered = false;
                            if !broken {
                                let _ = out.flush();
                            }
                            let _ = ack.send(());
                        }
                        continue;
                    }
                }
            }
        };
        let mut place = |seq: u64, line: Option<Box<Line>>| {
            if !ordered {
                write(line, &mut out, &mut broken);
            } else if seq == next {
                write(line, &mut out, &mut broken);
                next += 1;
                while let Some(line) = pending.remove(&next) {
                    write(line, &mut out, &mut broken);
                    next += 1;
                }
            } else {
                pending.insert(seq, line);
            }
        };
        match msg {
            OutMsg::Line(seq, line) => place(seq, Some(line)),
            OutMsg::Committed(lines) => {
                for (seq, line) in lines {
                    place(seq, Some(line));
                }
            }
            OutMsg::Skip(seq) => place(seq, None),
        }
    }
    for (_, line) in std::mem::take(&mut pending) {
        write(line, &mut out, &mut broken);
    }
    if !broken {
        if let Err(e) = out.flush() {
            stop.set(output_stop(e));
        }
    }
}

/// Writes an `internal_error` line for a line whose task ended without
/// writing one (a bug), so that no line is lost and the run cannot stall
/// waiting for it.
struct LineGuard {
    out: std::sync::mpsc::Sender<OutMsg>,
    seq: u64,
    line_no: u64,
    id: Value,
    ctx: Arc<Ctx>,
    done: bool,
}

impl Drop for LineGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.ctx.counters.errors.fetch_add(1, Ordering::Relaxed);
        let line = Line::error(
            std::mem::take(&mut self.id),
            self.line_no,
            error_type::INTERNAL,
            crate::output::INTERNAL_MESSAGE,
        );
        let _ = self.out.send(OutMsg::Line(self.seq, Box::new(line)));
    }
}

fn output_stop(e: std::io::Error) -> StopReason {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StopReason::BrokenPipe
    } else {
        StopReason::OutputError(e.to_string())
    }
}

/// A model in the order of models to try for one line.
struct Planned {
    model: String,
    score: Option<f64>,
    context_length: Option<u64>,
    /// Estimated cost of this request on this model.
    est_cost: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum TryState {
    Untried,
    /// Rate limited: may be tried again once its cooldown is over.
    Cooling,
    Done,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The upstream body: the request with `model` set, without re-serialising
/// the rest for every attempt.
fn body_for(model: &str, rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(rest.len() + model.len() + 12);
    body.extend_from_slice(b"{\"model\":");
    serde_json::to_writer(&mut body, model).expect("writing to a Vec cannot fail");
    if rest.len() > 2 {
        body.push(b',');
        body.extend_from_slice(&rest[1..]);
    } else {
        body.push(b'}');
    }
    body
}

fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Ctx {
    fn cooldown_until(&self, model: &str) -> Option<Instant> {
        let map = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
        map.get(model)
            .map(|p| p.until)
            .filter(|t| *t > Instant::now())
    }

    /// Pauses `model` after a 429/503 on a request sent at `sent`, and
    /// returns until when (unix ms): for Retry-After when given, else for a
    /// backoff that doubles with each rate limit in a row. Requests sent
    /// before the previous rate limit came back belong to the same burst and
    /// do not lengthen it again.
    fn rate_limited(&self, model: &str, sent: Instant, retry_after: Option<Duration>) -> i64 {
        let now = Instant::now();
        let mut map = self.pauses.lock().unwrap_or_else(|e| e.into_inner());
        let p = map
            .entry(model.to_string())
            .or_insert_with(|| Pause::until(now));
        if p.streak == 0 || sent >= p.last_limited {
            p.streak = p.streak.saturating_add(1);
            p.last_limited = now;
        }
        let until = now + retry_after.unwrap_or_else(|| upstream::backoff(p.streak));
        p.until = p.until.max(until);
        self.epoch.0 + until.duration_since(self.epoch.1).as_millis() as i64
    }

    /// A success ends `model`'s run of rate limits (not a pause under way).
    fn answered(&self, model: &str, ms: f64) {
        if let Some(p) = self
            .pauses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(model)
        {
            p.streak = 0;
        }
        let mut stats = self.stats.write().unwrap_or_else(|e| e.into_inner());
        let s = stats
            .get(model)
            .map_or(ModelStat::first(ms), |s| s.update(ms));
        stats.insert(model.to_string(), s);
    }

    /// Writes a message on stderr, taking the progress bar (if any) off
    /// while it does, so that the two never share a line.
    fn say(&self, message: std::fmt::Arguments<'_>) {
        match &self.progress {
            // Not eprintln!: with stderr gone it panics, and inside suspend
            // that would poison the bar for every line after.
            Some(pb) => pb.suspend(|| {
                let _ = writeln!(std::io::stderr(), "{message}");
            }),
            None => {
                let _ = writeln!(std::io::stderr(), "{message}");
            }
        }
    }

    fn warn_store_failure(&self) {
        if let Some(f) = self.store.failure() {
            if !self.store_warned.swap(true, Ordering::Relaxed) {
                self.say(format_args!(
                    "llmroute: warning: the store failed ({f}); going on without caching or recording"
                ));
            }
        }
    }

    fn warn_budget(&self) {
        if let Some(b) = &self.budget {
            if !self.budget_warned.swap(true, Ordering::Relaxed) {
                self.say(format_args!(
                    "llmroute: budget reached: ${:.4} spent of ${}; no more requests are sent, remaining lines get budget_exceeded",
                    b.spent(),
                    b.max()
                ));
            }
        }
    }

    fn add_cost(&self, c: f64) {
        *self
            .counters
            .cost_usd
            .lock()
            .unwrap_or_else(|e| e.into_inner()) += c;
    }
}

/// How a line's task ends.
enum Done {
    /// Write this line now.
    Line(Line),
    /// Write this line once the record has committed.
    AfterCommit(Line, Box<LineRecord>),
    /// The run was interrupted before the line was sent: it gets no output
    /// line, and a re-run will answer it.
    Unsent,
}

/// Routes and answers one line.
async fn process(ctx: &Ctx, line_no: u64, req: Request, permit: OwnedSemaphorePermit) -> Done {
    #[cfg(debug_assertions)]
    fail_point(line_no);
    let interrupted = || ctx.stop.get().is_some_and(|r| r.halts_input());
    let started = Instant::now();
    let owned;
    let settings = match &req.overrides {
        None => &ctx.opts.settings,
        Some(o) => match ctx.opts.settings.with_overrides(o, &ctx.opts.presets) {
            Ok(s) => {
                owned = s;
                &owned
            }
            Err(e) => {
                return Done::Line(Line::error(req.id, line_no, error_type::INVALID_INPUT, e))
            }
        },
    };

    let line_priority = req.overrides.as_ref().map(|_| settings.priority.clone());
    let key = match &req.digest {
        Some(d) if ctx.opts.uses_cache() => {
            Some(d.key(&settings.fingerprint(req.pinned.as_deref())))
        }
        _ => None,
    };
    if let Some(key) = key {
        let min_created = store::now_ms() - ctx.opts.cache_ttl.as_millis() as i64;
        if let Some(hit) = ctx.store.lookup(key, min_created).await {
            if ctx.opts.verbose {
                ctx.say(format_args!(
                    "llmroute: line {line_no}: cache hit ({})",
                    hit.model
                ));
            }
            let candidates = (ctx.opts.explain && req.pinned.is_none())
                .then(|| explain(&rank(ctx, &req, settings)));
            return Done::Line(cached_line(
                ctx,
                line_no,
                req,
                hit,
                started,
                line_priority,
                candidates,
            ));
        }
    }

    // The order of models to try: the ranking (or the pinned model), then
    // the fallback models, leaving out any the catalogue says cannot take it.
    let mut candidates = None;
    let mut order: Vec<Planned> = Vec::new();
    let mut excluded = Vec::new();
    if let Some(pinned) = &req.pinned {
        let info = ctx.catalogue.get(pinned);
        order.push(Planned {
            model: pinned.clone(),
            score: None,
            context_length: info.and_then(|i| i.context_length),
            est_cost: estimate(info, &req),
        });
    } else {
        let ranking = rank(ctx, &req, settings);
        if ctx.opts.explain || ctx.opts.dry_run {
            candidates = Some(explain(&ranking));
        }
        order.extend(ranking.ranked.into_iter().map(|r| Planned {
            model: r.model,
            score: Some(r.score),
            context_length: r.context_length,
            est_cost: r.cost_usd,
        }));
        excluded = ranking.excluded;
    }
    for model in settings.fallback.iter() {
        if order.iter().any(|p| &p.model == model) {
            continue;
        }
        let info = ctx.catalogue.get(model);
        match routing::eligibility(&req, info) {
            Ok(()) => order.push(Planned {
                model: model.clone(),
                score: None,
                context_length: info.and_then(|i| i.context_length),
                est_cost: estimate(info, &req),
            }),
            Err(why) => excluded.push((model.clone(), why)),
        }
    }
    if order.is_empty() {
        let why: Vec<String> = excluded
            .iter()
            .map(|(m, e)| format!("{m}: {}", e.reason()))
            .collect();
        let message = if why.is_empty() {
            "no candidate models".to_string()
        } else {
            format!("no candidate can take this request ({})", why.join("; "))
        };
        let mut line = Line::error(req.id, line_no, error_type::NO_ELIGIBLE_MODEL, message);
        line.candidates = candidates;
        line.latency_ms = ms_since(started);
        return Done::Line(line);
    }

    if ctx.opts.dry_run {
        return Done::Line(Line {
            id: req.id,
            line: line_no,
            model: Some(order[0].model.clone()),
            score: order[0].score,
            latency_ms: ms_since(started),
            candidates: Some(candidates.unwrap_or_default()),
            dry_run: true,
            ..Default::default()
        });
    }

    let Some(client) = ctx.client.as_ref() else {
        return Done::Line(Line::error(
            req.id,
            line_no,
            error_type::ALL_MODELS_FAILED,
            "no upstream client",
        ));
    };
    if interrupted() {
        return Done::Unsent;
    }

    let planned_tokens = req.prompt_tokens.saturating_add(req.completion_tokens());
    let worst_estimate = order.iter().filter_map(|p| p.est_cost).fold(0.0, f64::max);
    let mut state = vec![TryState::Untried; order.len()];
    let mut min_context: Option<u64> = None;
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut rows: Vec<AttemptRow> = Vec::new();
    let mut cooldown_rows: Vec<(String, i64)> = Vec::new();
    let mut last_message = String::new();
    let mut final_error: Option<(&'static str, String)> = None;
    let mut success = None;

    while (attempts.len() as u32) < ctx.opts.max_attempts {
        if let Some(reason) = ctx.stop.get() {
            if attempts.is_empty() && interrupted() {
                return Done::Unsent;
            }
            final_error = Some(stop_error(&reason));
            break;
        }
        // Best untried model not cooling down; else one whose cooldown is
        // over; else wait for the first cooldown to end.
        let mut pick = None;
        let mut retry = None;
        let mut earliest: Option<(usize, Instant)> = None;
        for (i, p) in order.iter().enumerate() {
            if state[i] == TryState::Done
                // After a context-length error, only windows known to be larger.
                || min_context.is_some_and(|c| p.context_length.is_none_or(|x| x <= c))
            {
                continue;
            }
            match ctx.cooldown_until(&p.model) {
                None if state[i] == TryState::Untried => {
                    pick = Some(i);
                    break;
                }
                None => {
                    retry.get_or_insert(i);
                }
                Some(t) => {
                    if earliest.is_none_or(|(_, e)| t < e) {
                        earliest = Some((i, t));
                    }
                }
            }
        }
        let i = match (pick.or(retry), earliest) {
            (Some(i), _) => i,
            (None, Some((i, until))) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(until.into()) => {}
                    _ = ctx.stop.halted() => continue,
                }
                i
            }
            (None, None) => break,
        };

        let model = order[i].model.as_str();
        // The budget holds this attempt's estimate (unknown prices count as
        // the dearest known candidate) until its real cost is known.
        let reservation = match &ctx.budget {
            None => None,
            Some(b) => {
                let est = order[i].est_cost.unwrap_or(worst_estimate);
                match b.reserve(est) {
                    Some(r) => Some(r),
                    None => {
                        ctx.warn_budget();
                        final_error = Some((
                            error_type::BUDGET_EXCEEDED,
                            format!("not sent: the budget of ${} is spent", b.max()),
                        ));
                        break;
                    }
                }
            }
        };
        if !ctx.limits.is_unlimited() {
            let stopped = tokio::select! {
                _ = ctx.limits.acquire(planned_tokens) => ctx.stop.get().is_some(),
                _ = ctx.stop.halted() => true,
            };
            // Stopped while waiting (also by a refused key on another line):
            // not sent; the loop's top says why.
            if stopped {
                if let (Some(b), Some(r)) = (&ctx.budget, reservation) {
                    b.settle(r, Some(0.0));
                }
                continue;
            }
        }
        let t0 = Instant::now();
        let result = client
            .complete(body_for(model, &req.wire), ctx.opts.timeout)
            .await;
        let ms = ms_since(t0);
        let ts = store::now_ms();
        let cost = match &result {
            Ok(s) => actual_cost(ctx, model, &s.usage),
            Err(_) => Some(0.0),
        };
        if ctx.opts.verbose {
            match &result {
                Ok(s) => ctx.say(format_args!(
                    "llmroute: line {line_no}: {model}: HTTP {} in {ms:.1} ms",
                    s.status
                )),
                Err(f) => ctx.say(format_args!(
                    "llmroute: line {line_no}: {model}: failed in {ms:.1} ms: {}",
                    f.message
                )),
            }
        }
        if let (Some(b), Some(r)) = (&ctx.budget, reservation) {
            b.settle(r, cost);
        }
        match result {
            Ok(s) => {
                ctx.answered(model, ms);
                let used = (s.usage.prompt_tokens.unwrap_or(0))
                    .saturating_add(s.usage.completion_tokens.unwrap_or(0));
                let extra = (used.max(0) as u64).saturating_sub(planned_tokens);
                if extra > 0 {
                    // More tokens than planned: the debt slows later requests, not this line.
                    ctx.limits.owe(extra);
                }
                attempts.push(Attempt {
                    model: model.to_string(),
                    status: Some(s.status),
                    error: None,
                    latency_ms: ms,
                });
                success = Some((i, s, ms, ts, cost));
                break;
            }
            Err(f) => {
                attempts.push(Attempt {
                    model: model.to_string(),
                    status: f.status,
                    error: Some(f.message.clone()),
                    latency_ms: ms,
                });
                rows.push(AttemptRow {
                    ts,
                    model: model.to_string(),
                    status: f.status,
                    ok: false,
                    cached: false,
                    latency_ms: Some(ms),
                    prompt_tokens: None,
                    completion_tokens: None,
                    cost_usd: None,
                    score: order[i].score,
                    error_type: Some(f.kind.name()),
                });
                last_message = format!("{model}: {}", f.message);
                match f.kind {
                    k if k.fatal() => {
                        let kind = if k == FailureKind::Auth {
                            error_type::AUTH
                        } else {
                            error_type::PAYMENT_REQUIRED
                        };
                        let reason = StopReason::Fatal {
                            kind,
                            message: f.message.clone(),
                        };
                        if ctx.stop.set(reason.clone()) {
                            ctx.say(format_args!(
                                "llmroute: stopping: the API refused the request ({}); no further requests will be sent",
                                f.message
                            ));
                        }
                        final_error = Some(stop_error(&reason));
                        break;
                    }
                    FailureKind::RateLimited | FailureKind::Unavailable => {
                        let until = ctx.rate_limited(model, t0, f.retry_after);
                        cooldown_rows.push((model.to_string(), until));
                        state[i] = TryState::Cooling;
                    }
                    FailureKind::ContextLength => {
                        // A window the catalogue does not give counts as 0:
                        // any known window may be larger, an unknown one not.
                        let c = order[i].context_length.unwrap_or(0);
                        min_context = Some(min_context.map_or(c, |m| m.max(c)));
                        state[i] = TryState::Done;
                    }
                    k if !k.try_elsewhere() => {
                        final_error = Some((error_type::BAD_REQUEST, last_message.clone()));
                        break;
                    }
                    _ => state[i] = TryState::Done,
                }
            }
        }
    }

    // No more upstream requests for this line: let the next one start while
    // this one is recorded (`-j` counts requests in flight, not commits).
    drop(permit);
    let request_id = id_text(&req.id);
    let Some((i, s, attempt_ms, ts, cost_usd)) = success else {
        let (kind, message) = final_error.unwrap_or_else(|| {
            let message = if attempts.is_empty() {
                "no candidate model could be tried".to_string()
            } else {
                format!("{} attempt(s) failed; last: {last_message}", attempts.len())
            };
            (error_type::ALL_MODELS_FAILED, message)
        });
        let latency_ms = ms_since(started);
        ctx.store.write_nowait(LineRecord {
            cache: None,
            request: Some(RequestRow {
                ts: store::now_ms(),
                line: line_no,
                request_id,
                model: None,
                ok: false,
                cached: false,
                latency_ms,
                cost_usd: None,
                prompt_tokens: None,
                completion_tokens: None,
                score: None,
                attempts: attempts.len() as u32,
                error_type: Some(kind),
            }),
            attempts: rows,
            cooldowns: cooldown_rows,
            priority: line_priority,
        });
        ctx.warn_store_failure();
        let mut line = Line::error(req.id, line_no, kind, message);
        line.attempts = attempts;
        line.candidates = candidates;
        line.latency_ms = latency_ms;
        return Done::Line(line);
    };

    let planned = &order[i];
    if let Some(c) = cost_usd {
        ctx.add_cost(c);
    }
    rows.push(AttemptRow {
        ts,
        model: planned.model.clone(),
        status: Some(s.status),
        ok: true,
        cached: false,
        latency_ms: Some(attempt_ms),
        prompt_tokens: s.usage.prompt_tokens,
        completion_tokens: s.usage.completion_tokens,
        cost_usd,
        score: planned.score,
        error_type: None,
    });
    let latency_ms = ms_since(started);
    let record = LineRecord {
        cache: key.map(|key| CacheEntry {
            key,
            answer: CachedAnswer {
                model: planned.model.clone(),
                response: s.body.clone(),
                content: s.content.clone(),
                cost_usd,
                prompt_tokens: s.usage.prompt_tokens,
                completion_tokens: s.usage.completion_tokens,
                score: planned.score,
                created_at: ts,
            },
        }),
        request: Some(RequestRow {
            ts,
            line: line_no,
            request_id,
            model: Some(planned.model.clone()),
            ok: true,
            cached: false,
            latency_ms,
            cost_usd,
            prompt_tokens: s.usage.prompt_tokens,
            completion_tokens: s.usage.completion_tokens,
            score: planned.score,
            attempts: attempts.len() as u32,
            error_type: None,
        }),
        attempts: rows,
        cooldowns: cooldown_rows,
        priority: line_priority,
    };
    ctx.counters.answered.fetch_add(1, Ordering::Relaxed);
    let line = Line {
        id: req.id,
        line: line_no,
        model: Some(planned.model.clone()),
        score: planned.score,
        latency_ms,
        cached: false,
        cost_usd,
        attempts,
        error: None,
        content: s.content,
        candidates,
        dry_run: false,
        response: Some(s.body),
    };
    Done::AfterCommit(line, Box::new(record))
}

/// In debug builds only: panics on the line numbered `LLMROUTE_FAIL_LINE`,
/// with the API key in the message, so that tests can see what a bug in a
/// line's task does to the run (an `internal_error` line, the rest goes on)
/// and that the key stays out of the panic message.
#[cfg(debug_assertions)]
fn fail_point(line_no: u64) {
    if crate::app::fail_point_hit("LLMROUTE_FAIL_LINE", line_no) {
        let key = std::env::var(crate::app::API_KEY_VAR).unwrap_or_default();
        panic!("injected failure on line {line_no} (key {key})");
    }
}

/// Estimated cost of `req` on a model, from the catalogue's prices.
fn estimate(info: Option<&crate::catalogue::ModelInfo>, req: &Request) -> Option<f64> {
    info?.estimate_cost(req.prompt_tokens, req.completion_tokens())
}

/// What an answer cost: the response's `usage.cost`, else price × usage.
fn actual_cost(ctx: &Ctx, model: &str, usage: &upstream::Usage) -> Option<f64> {
    usage.cost.or_else(|| {
        let info = ctx.catalogue.get(model)?;
        Some(
            info.prompt_price? * usage.prompt_tokens? as f64
                + info.completion_price? * usage.completion_tokens? as f64,
        )
    })
}

fn stop_error(reason: &StopReason) -> (&'static str, String) {
    match reason {
        StopReason::Fatal { kind, message } => {
            (kind, format!("not sent: the run was stopped ({message})"))
        }
        StopReason::Interrupted { .. } => (
            error_type::INTERRUPTED,
            "not sent: the run was interrupted".into(),
        ),
        StopReason::BrokenPipe | StopReason::OutputError(_) => (
            error_type::INTERRUPTED,
            "not sent: the output was closed".into(),
        ),
    }
}

/// The ranking of `req`'s candidates under `settings`, from what is known now.
fn rank(ctx: &Ctx, req: &Request, settings: &Settings) -> routing::Ranking {
    let stats = ctx.stats.read().unwrap_or_else(|e| e.into_inner());
    routing::rank(req, settings, &ctx.catalogue, &stats)
}

/// A ranking as the output's `candidates`.
fn explain(ranking: &routing::Ranking) -> Vec<CandidateOut> {
    ranking
        .ranked
        .iter()
        .map(|r| CandidateOut {
            model: r.model.clone(),
            score: r.score,
            latency_ms: r.latency_ms,
            cost_usd: r.cost_usd,
            quality: r.quality,
        })
        .collect()
}

fn cached_line(
    ctx: &Ctx,
    line_no: u64,
    req: Request,
    hit: CachedAnswer,
    started: Instant,
    priority: Option<String>,
    candidates: Option<Vec<CandidateOut>>,
) -> Line {
    let latency_ms = ms_since(started);
    let ts = store::now_ms();
    ctx.store.write_nowait(LineRecord {
        cache: None,
        request: Some(RequestRow {
            ts,
            line: line_no,
            request_id: id_text(&req.id),
            model: Some(hit.model.clone()),
            ok: true,
            cached: true,
            latency_ms,
            cost_usd: Some(0.0),
            prompt_tokens: hit.prompt_tokens,
            completion_tokens: hit.completion_tokens,
            score: hit.score,
            attempts: 0,
            error_type: None,
        }),
        attempts: vec![AttemptRow {
            ts,
            model: hit.model.clone(),
            status: None,
            ok: true,
            cached: true,
            latency_ms: Some(latency_ms),
            prompt_tokens: hit.prompt_tokens,
            completion_tokens: hit.completion_tokens,
            cost_usd: Some(0.0),
            score: hit.score,
            error_type: None,
        }],
        cooldowns: Vec::new(),
        priority,
    });
    ctx.counters.cached.fetch_add(1, Ordering::Relaxed);
    Line {
        id: req.id,
        line: line_no,
        model: Some(hit.model),
        score: hit.score,
        latency_ms,
        cached: true,
        cost_usd: Some(0.0),
        attempts: Vec::new(),
        error: None,
        content: hit.content,
        candidates,
        dry_run: false,
        response: Some(hit.response),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_gets_the_model_first() {
        assert_eq!(
            body_for("a/b", br#"{"messages":[]}"#),
            br#"{"model":"a/b","messages":[]}"#.to_vec()
        );
        assert_eq!(body_for("a\"b", b"{}"), br#"{"model":"a\"b"}"#.to_vec());
        let v: Value = serde_json::from_slice(&body_for("m", br#"{"x":1,"y":[2]}"#)).unwrap();
        assert_eq!(v, serde_json::json!({"model":"m","x":1,"y":[2]}));
    }
}
