//! What every line task of a batch run shares: the engine, the run's
//! stop, its counters and console, the outbox, and warnings said once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::ProgressBar;

use super::console::Console;
use super::counters::Counters;
use super::output::Line;
use super::sink::{OutMsg, OutSender, Outbox};
use super::stop::{Stop, StopReason};
use crate::core::request::InputError;
use crate::engine::Router;

/// What every line task shares.
pub(super) struct Shared {
    pub(super) router: Arc<Router>,
    pub(super) stop: Stop,
    pub(super) counters: Arc<Counters>,
    pub(super) console: Console,
    pub(super) store_warned: AtomicBool,
    pub(super) route_all: bool,
    /// A pinned model the catalogue does not list was warned of.
    pub(super) pin_warned: AtomicBool,
    /// Warnings said at the first line, then gone.
    pub(super) notes: Mutex<Vec<String>>,
    pub(super) outbox: Outbox,
    /// Lines put in the outbox with no commit to wait for: the task that
    /// hands them on runs once after the tasks already woken, so the output
    /// thread gets (and is woken for) each turn's lines at once.
    pub(super) shown: tokio::sync::Notify,
    pub(super) run_id: String,
    pub(super) task: Option<String>,
    pub(super) grader: Option<Arc<super::grade::Grader>>,
    pub(super) upstreams: Vec<String>,
}

impl Shared {
    pub(super) fn progress(&self) -> Option<&ProgressBar> {
        self.console.progress.as_ref()
    }

    /// Warns, once a run, of a line that pins a model the catalogue does
    /// not list: an OpenAI Batch file's `body.model` pins every line, and
    /// such a line fails unless routed.
    pub(super) fn warn_unknown_pin(&self, line_no: u64, req: &crate::core::request::Request) {
        let Some(model) = &req.pinned else { return };
        // Once warned, no line looks the catalogue up again.
        if self.pin_warned.load(Ordering::Relaxed) || self.router.catalogue().get(model).is_some() {
            return;
        }
        if !self.pin_warned.swap(true, Ordering::Relaxed) {
            self.console.say(format_args!(
                "llmroute: warning: line {line_no} pins {model} (its \"model\"), which the catalogue does not list; \
                 --route-all takes a line's model as a hint and routes it over the candidates"
            ));
        }
    }

    /// Why a line's pinned or listed model names an upstream that is not
    /// configured, if one does (see [`crate::upstreams::misspelt`]).
    pub(super) fn misspelt(&self, req: &crate::core::request::Request) -> Option<String> {
        if self.upstreams.is_empty() {
            return None;
        }
        let catalogue = self.router.catalogue();
        req.named_models()
            .find_map(|m| crate::upstreams::misspelt_in(m, &self.upstreams, catalogue))
    }

    /// A line that is not routed: recorded, counted, and its error line
    /// written in its turn.
    pub(super) fn refused(&self, (seq, line_no): (u64, u64), mut e: InputError, out: &OutSender) {
        // Echoed and kept, neither its id nor its message may hold a key
        // the line gave where a name goes.
        let id = match &e.id {
            serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
            other => std::borrow::Cow::Owned(other.to_string()),
        };
        if self.router.holds_secret(&id) {
            e.id = crate::core::urls::REDACTED.into();
        }
        if let Some(clean) = self.router.scrub_shown(&e.message) {
            e.message = clean;
        }
        if !self.router.config().dry_run {
            self.router.record_refused(line_no, &e.id, e.kind);
        }
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(pb) = self.progress() {
            pb.inc(1);
        }
        let line = Line::error(e.id, line_no, e.kind, e.message);
        let _ = out.send(OutMsg::Line(seq, Box::new(line)));
    }

    pub(super) fn warn_store_failure(&self) {
        if let Some(f) = self.router.record_failure() {
            if !self.store_warned.swap(true, Ordering::Relaxed) {
                // Said even with -q: a re-run may pay for what it did not keep.
                self.console.alert(format_args!(
                    "llmroute: warning: the store failed ({f}); going on without caching or recording"
                ));
            }
        }
    }
}

impl Shared {
    /// What every line task of a run shares, its outbox handed on after
    /// each commit of the store.
    pub(super) fn start(
        router: Arc<Router>,
        console: Console,
        route_all: bool,
        notes: Vec<String>,
        (run_id, task, grader): (String, Option<String>, Option<Arc<super::grade::Grader>>),
        upstreams: Vec<String>,
    ) -> Arc<Shared> {
        let ctx = Arc::new(Shared {
            router,
            stop: Stop::default(),
            counters: Arc::default(),
            console,
            store_warned: AtomicBool::new(false),
            route_all,
            pin_warned: AtomicBool::new(false),
            notes: Mutex::new(notes),
            outbox: Outbox::default(),
            shown: tokio::sync::Notify::new(),
            run_id,
            task,
            grader,
            upstreams,
        });
        let weak = Arc::downgrade(&ctx);
        ctx.router.after_each_commit(Box::new(move || {
            if let Some(ctx) = weak.upgrade() {
                ctx.outbox.hand_on();
            }
        }));
        ctx
    }
}

impl Shared {
    /// Stops the run for a reason of the front end's: no more input is
    /// read and no request is sent.
    pub(super) fn stop(&self, reason: StopReason) -> bool {
        let first = self.stop.set(reason);
        self.router.cancel();
        if let Some(g) = &self.grader {
            g.stop();
        }
        first
    }

    pub(super) fn console(&self) -> &Console {
        &self.console
    }
}
