//! A batch run: reads lines, routes them concurrently through the engine,
//! and writes one output line per input line.
//!
//! ```text
//! reader thread ──(bounded)──▶ dispatcher ──spawn──▶ line tasks: Router::route ──(outbox)──▶ output thread ──▶ stdout
//!                                  ▲                          │ an answer is handed on          ▲    │
//!                                  │                          ▼ once its record commits         │    │
//!                                  │                    the store's writer ─────(outbox)────────┘    │
//!                                  └──────────────── window permits (released when written) ─────────┘
//! ```
//!
//! A line that waits for no commit (a cache hit, an error) goes through the
//! outbox too: a task hands the outbox on once a turn of the runtime.
//!
//! Memory is bounded by the window: at most `window` lines are between being
//! read and being written, whatever the input length. A line's answer is
//! durable in the cache before its output line is written.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::console::Console;
use super::counters::tick;
pub use super::output::Shape;
use super::output::{error_type, Line};
use super::reader::{self, InputEvent, Source};
pub(super) use super::shared::Shared;
use super::sink::{output_thread, DrainRequest, OutMsg, OutSender};
pub use super::stop::{Stop, StopReason};
use crate::core::request::{InputError, Request};
use crate::engine::{RouteOptions, Router};
use crate::upstreams::label;

/// Most lines between being read and being written, for `-j concurrency`.
/// It bounds memory, and what a crash can make a re-run pay again: at most
/// the lines in the window (requests in flight and answers whose commit had
/// not finished), never a line whose output was written.
pub fn window(concurrency: usize) -> usize {
    (concurrency * 4).max(256)
}

/// How long requests in flight may run on after Ctrl-C or a closed output.
pub const GRACE: Duration = Duration::from_secs(10);
/// How long lines may take to be written once the grace period is over and
/// requests in flight were ended.
const AFTER_GRACE: Duration = Duration::from_secs(5);

/// What a batch run is asked to do, beyond what the engine does.
pub struct Batch {
    pub router: Arc<Router>,
    pub concurrency: usize,
    pub unordered: bool,
    /// Whether lines are prepared with a cache key.
    pub keyed: bool,
    pub console: Console,
    /// A line's `model` is a hint, not a pin (`--route-all`).
    pub route_all: bool,
    /// The output lines' shape.
    pub shape: Shape,
    /// Warnings to say once there is a line to route.
    pub notes: Vec<String>,
    /// The run's id: each line's request id is `req_{run_id}_{line}`.
    pub run_id: String,
    /// The task of lines that name none (`--task`).
    pub task: Option<String>,
    /// Grades each answer (`--grade`).
    pub grader: Option<Arc<super::grade::Grader>>,
    /// The named upstreams' names: an output line names its upstream.
    pub upstreams: Vec<String>,
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
    /// Lines answered at a cost nobody knows (no price, no `usage.cost`):
    /// not in `cost_usd`, which is not their cost as 0.
    pub cost_unknown: u64,
    /// Lines read but not sent, the run stopping first (not written).
    pub unsent: u64,
    pub stop: Option<StopReason>,
    /// The input could not be read to its end.
    pub input_error: Option<String>,
    pub elapsed: Duration,
}

/// The output thread's receivers and its end signal.
type OutputEnds = (
    std::sync::mpsc::Receiver<OutMsg>,
    std::sync::mpsc::Receiver<DrainRequest>,
    tokio::sync::oneshot::Sender<()>,
);

/// Starts the output thread: it writes lines to `out` in `shape`, in input
/// order when `ordered`, and stops the run when the output breaks.
fn spawn_output(
    ctx: Arc<Shared>,
    (out_rx, drain_rx, done_tx): OutputEnds,
    out: Box<dyn Write + Send>,
    (ordered, shape): (bool, Shape),
    window_sem: Arc<Semaphore>,
) -> Result<std::thread::JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name("llmroute-output".into())
        .spawn(move || {
            let on_stop = |reason| {
                ctx.stop(reason);
            };
            output_thread(
                out_rx,
                drain_rx,
                out,
                (ordered, &shape),
                &window_sem,
                &on_stop,
            );
            let _ = done_tx.send(());
        })
        .map_err(|e| format!("cannot start the output thread: {e}"))
}

/// Runs the batch over `sources`, writing to `out`.
pub async fn run(
    batch: Batch,
    sources: Vec<Source>,
    out: Box<dyn Write + Send>,
) -> Result<Summary, String> {
    let started = Instant::now();
    let concurrency = batch.concurrency.max(1);
    let window = window(concurrency);
    let ctx = Shared::start(
        batch.router,
        batch.console,
        batch.route_all,
        batch.notes,
        (batch.run_id, batch.task, batch.grader),
        batch.upstreams,
    );

    let (in_tx, mut in_rx) = mpsc::channel::<Vec<InputEvent>>(reader::CHANNEL_BATCHES);
    reader::spawn(sources, batch.keyed, in_tx)
        .map_err(|e| format!("cannot start the input thread: {e}"))?;

    let window_sem = Arc::new(Semaphore::new(window));
    let (out_tx, out_rx) = std::sync::mpsc::channel::<OutMsg>();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
    let (drain_tx, drain_rx) = std::sync::mpsc::channel::<DrainRequest>();
    let output = spawn_output(
        ctx.clone(),
        (out_rx, drain_rx, done_tx),
        out,
        (!batch.unordered, batch.shape),
        window_sem.clone(),
    )?;

    let signals = tokio::spawn(watch_signals(ctx.clone()));
    let shown = tokio::spawn(hand_on_shown(ctx.clone()));
    let ticker = ctx
        .progress()
        .cloned()
        .map(|pb| tokio::spawn(tick(ctx.counters.clone(), pb)));

    let (seq, input_error, left) =
        dispatch(&ctx, &mut in_rx, &window_sem, concurrency, &out_tx).await;
    drop(in_rx);
    drop(out_tx);
    if finish_lines(&ctx, &mut done_rx, &drain_tx).await {
        // Every line is written: the thread is ending, and is waited for
        // so that nothing it writes can race the process's exit.
        let _ = tokio::task::spawn_blocking(move || output.join()).await;
        shown.abort();
    }
    // Else lines may still come, late, from tasks past the grace period:
    // the hand-off task stays, to pass them on while the process lives.
    signals.abort();
    if let Some(t) = ticker {
        t.abort();
    }
    if let Some(pb) = ctx.progress() {
        // Its last frame agrees with the summary.
        pb.set_message(super::counters::message(&ctx.counters));
        pb.finish_and_clear();
    }
    let c = &ctx.counters;
    Ok(Summary {
        lines: seq + left,
        answered: c.answered.load(Ordering::Relaxed),
        cached: c.cached.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        cost_usd: c.cost(),
        cost_unknown: c.cost_unknown.load(Ordering::Relaxed),
        unsent: c.unsent.load(Ordering::Relaxed) + left,
        stop: ctx.stop.get(),
        input_error,
        elapsed: started.elapsed(),
    })
}

/// Hands lines out to tasks, in input order, as the window and `-j` allow,
/// until the input ends or the run stops. Returns the lines handed out,
/// the input's error, if reading it failed, and the lines read but not
/// handed out when the run stopped.
async fn dispatch(
    ctx: &Arc<Shared>,
    in_rx: &mut mpsc::Receiver<Vec<InputEvent>>,
    window_sem: &Semaphore,
    concurrency: usize,
    out_tx: &OutSender,
) -> (u64, Option<String>, u64) {
    let concurrency_sem = Arc::new(Semaphore::new(concurrency));
    let mut seq = 0u64;
    let mut noted = false;
    let mut input_error = None;
    let mut events = Vec::new().into_iter();
    // The line in hand when the run stopped, if any.
    let mut left = 0u64;
    loop {
        // Permits taken without waiting spend no budget of the runtime's:
        // this makes the loop yield now and then all the same, so that the
        // signal watcher runs (a run of bad lines takes no permit at all).
        tokio::task::consume_budget().await;
        let event = match events.next() {
            Some(e) => Some(e),
            None => tokio::select! {
                biased;
                _ = ctx.stop.halted() => break,
                b = in_rx.recv() => b.and_then(|b| {
                    events = b.into_iter();
                    events.next()
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
        if ctx.stop.get().is_some() {
            left = 1;
            break;
        }
        // The notes are about the default candidates: said before the
        // first line that routes over them, and not for lines that pin
        // their model or list their own.
        if !noted && parsed.as_ref().is_ok_and(routes_over_the_defaults) {
            noted = true;
            let notes = std::mem::take(&mut *ctx.notes.lock().unwrap_or_else(|e| e.into_inner()));
            for note in notes {
                ctx.console.say(format_args!("{note}"));
            }
        }
        let free = window_sem.try_acquire();
        let Some(slot) = ctx.stop.permit(free, || window_sem.acquire()).await else {
            left = 1;
            break;
        };
        slot.forget();
        // Lines start in input order: the permit is taken here, not in the task.
        let free = concurrency_sem.clone().try_acquire_owned();
        let next = || concurrency_sem.clone().acquire_owned();
        let Some(permit) = ctx.stop.permit(free, next).await else {
            left = 1;
            break;
        };
        seq += 1;
        match parsed {
            Err(e) => {
                drop(permit);
                ctx.refused((seq, line_no), e, out_tx);
            }
            Ok(req) => start_line(ctx, (seq, line_no), req, permit, out_tx),
        }
    }
    // Lines read and never handed out, the run stopping first: said in the
    // summary as not sent, so that its counts add up to the lines read.
    match ctx.stop.get() {
        Some(_) => (
            seq,
            input_error,
            left + super::reader::lines_in(events, in_rx),
        ),
        None => (seq, input_error, 0),
    }
}

/// Whether `req` is routed over the configured candidates: it neither pins
/// a model nor lists its own.
fn routes_over_the_defaults(req: &Request) -> bool {
    req.pinned.is_none() && req.overrides.as_ref().is_none_or(|o| o.models.is_none())
}

/// Starts routing line `seq` (line `line_no` of its input) in a task of
/// its own, or refuses it: a candidate it names that no upstream has.
fn start_line(
    ctx: &Arc<Shared>,
    (seq, line_no): (u64, u64),
    mut req: Request,
    permit: OwnedSemaphorePermit,
    out_tx: &OutSender,
) {
    if let Some(t) = &ctx.task {
        req.default_task(t);
    }
    let pinned = !req.pin_as_hint(ctx.route_all);
    let refusal = ctx.router.no_secret_in(&req).err();
    if let Some(message) = refusal.or_else(|| ctx.misspelt(&req)) {
        drop(permit);
        let e = InputError {
            id: req.id,
            message,
            kind: "invalid_input",
        };
        ctx.refused((seq, line_no), e, out_tx);
        return;
    }
    if pinned {
        ctx.warn_unknown_pin(line_no, &req);
    }
    tokio::spawn(route_line(
        ctx.clone(),
        seq,
        line_no,
        req,
        permit,
        out_tx.clone(),
    ));
}

/// Routes one line and hands its output line on: within this turn of the
/// runtime, or once its record has committed.
async fn route_line(
    ctx: Arc<Shared>,
    seq: u64,
    line_no: u64,
    mut req: Request,
    permit: OwnedSemaphorePermit,
    out_tx: OutSender,
) {
    // Should this task die, the guard still writes the line.
    let mut guard = LineGuard {
        out: out_tx.clone(),
        seq,
        line_no,
        id: req.id.clone(),
        ctx: ctx.clone(),
        done: false,
    };
    #[cfg(debug_assertions)]
    fail_point(line_no);
    let rid: Arc<str> = format!("req_{}_{line_no}", ctx.run_id).into();
    let opts = RouteOptions {
        rid: Some(rid.clone()),
        ..RouteOptions::tagged(line_no)
    };
    let mut routed = ctx.router.route(&req, opts).await;
    // No more upstream requests for this line: let the next one start
    // while this one is recorded. A graded line keeps its slot until its
    // grade is in: graders count against `-j`, and the lines after it are
    // routed knowing its grade (with `-j 1`, every earlier grade).
    let permit = match ctx.grader {
        Some(_) => Some(permit),
        None => {
            drop(permit);
            None
        }
    };
    ctx.counters.tally(&routed.outcome, routed.cost_usd());
    let commit = routed.commit.take();
    let id = std::mem::take(&mut req.id);
    let Some(mut line) = Line::from_routed(id, line_no, routed) else {
        guard.done = true;
        ctx.counters.unsent.fetch_add(1, Ordering::Relaxed);
        let _ = out_tx.send(OutMsg::Skip(seq));
        return;
    };
    if let Some(g) = &ctx.grader {
        if let Err(e) = g.grade_line(&req, &rid, &mut line).await {
            let n = line.line;
            ctx.console
                .say(format_args!("llmroute: warning: line {n}: {e}"));
        }
    }
    drop(permit);
    // No valid request, nothing to judge: no id (as for a line that did
    // not parse).
    if line
        .error
        .as_ref()
        .is_none_or(|e| e.kind != "invalid_input")
    {
        line.request_id = Some(rid);
    }
    if !ctx.upstreams.is_empty() {
        line.upstream = line.model.as_deref().map(|m| label(m, &ctx.upstreams));
    }
    if let Some(pb) = ctx.progress() {
        pb.inc(1);
    }
    // Reports a failure of an earlier commit; before `done`,
    // so that should it panic (stderr gone), the guard still
    // writes this line.
    ctx.warn_store_failure();
    let line = Box::new(line);
    guard.done = true;
    match commit {
        None => {
            ctx.outbox.put(seq, line, out_tx);
            ctx.shown.notify_one();
        }
        // Handed on once the record has committed: a re-run
        // never pays again for a line it has shown.
        Some(c) => {
            let ctx2 = ctx.clone();
            let put = Box::new(move || ctx2.outbox.put(seq, line, out_tx));
            if c.on_commit(put) {
                // Durable already: no commit is left to hand it on.
                ctx.outbox.hand_on();
            }
        }
    }
}

/// Hands on the lines that wait for no commit, once a turn of the runtime.
async fn hand_on_shown(ctx: Arc<Shared>) {
    loop {
        ctx.shown.notified().await;
        ctx.outbox.hand_on();
    }
}

/// Waits for every line to be written, and says whether all were. After a
/// stop (Ctrl-C, a closed output) requests in flight get [`GRACE`]; then
/// they are ended, and their lines written as interrupted; should some
/// still not come, what has come is written past the gaps.
async fn finish_lines(
    ctx: &Shared,
    done: &mut tokio::sync::oneshot::Receiver<()>,
    drain: &std::sync::mpsc::Sender<DrainRequest>,
) -> bool {
    tokio::select! {
        _ = &mut *done => return true,
        _ = ctx.stop.halted() => {}
    }
    if tokio::time::timeout(GRACE, &mut *done).await.is_ok() {
        return true;
    }
    ctx.router.abort();
    if tokio::time::timeout(AFTER_GRACE, &mut *done).await.is_ok() {
        return true;
    }
    let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
    if drain.send(ack_tx).is_ok() {
        let _ = tokio::task::spawn_blocking(move || ack_rx.recv_timeout(AFTER_GRACE)).await;
    }
    false
}

/// How soon after the first a SIGINT is taken as the same one delivered
/// again, rather than a person's second Ctrl-C.
const SAME_SIGNAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Watches for signals for the whole run.
async fn watch_signals(ctx: Arc<Shared>) {
    let exit_code = super::signals::signal().await;
    if ctx.stop(StopReason::Interrupted { exit_code }) {
        let again = if exit_code == 130 {
            " (Ctrl-C again to quit now)"
        } else {
            ""
        };
        ctx.console().say(format_args!(
            "llmroute: interrupted: no new requests; waiting up to {}s for those in flight{again}",
            GRACE.as_secs()
        ));
    }
    // A SIGINT again at once is the same one delivered twice (`timeout -s
    // INT` signals llmroute, then its process group), not a second press.
    let first = std::time::Instant::now();
    loop {
        let _ = tokio::signal::ctrl_c().await;
        if first.elapsed() >= SAME_SIGNAL {
            break;
        }
    }
    ctx.console()
        .say(format_args!("llmroute: quitting at once"));
    std::process::exit(exit_code);
}

/// In debug builds only: panics on the line numbered `LLMROUTE_FAIL_LINE`,
/// with the API key in the message, so that tests can see what a bug in a
/// line's task does to the run (an `internal_error` line, the rest goes on)
/// and that the key stays out of the panic message.
#[cfg(debug_assertions)]
fn fail_point(line_no: u64) {
    if crate::setup::fail_point_hit("LLMROUTE_FAIL_LINE", line_no) {
        let key = crate::setup::api_key().map(|(_, k)| k).unwrap_or_default();
        panic!("injected failure on line {line_no} (key {key})");
    }
}

/// Writes an `internal_error` line for a line whose task ended without
/// writing one (a bug), so that no line is lost and the run cannot stall
/// waiting for it.
struct LineGuard {
    out: OutSender,
    seq: u64,
    line_no: u64,
    id: Value,
    ctx: Arc<Shared>,
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
            crate::core::failure::INTERNAL_MESSAGE,
        );
        let _ = self.out.send(OutMsg::Line(self.seq, Box::new(line)));
    }
}
