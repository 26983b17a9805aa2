//! Messages on stderr during a run, and the progress bar they share it
//! with; the engine's observer for a batch.

use std::io::Write;

use indicatif::ProgressBar;

use crate::engine::ports::Observer;

/// stderr, shared with the progress bar (when one is shown).
pub struct Console {
    pub progress: Option<ProgressBar>,
    /// Log every attempt and cache hit.
    pub verbose: bool,
}

impl Console {
    /// Writes a message on stderr, taking the progress bar (if any) off
    /// while it does, so that the two never share a line.
    pub fn say(&self, message: std::fmt::Arguments<'_>) {
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
}

/// The engine's observer for a batch: `-v` logs, and what stops the run.
pub struct BatchObserver {
    pub console: Console,
}

impl Observer for BatchObserver {
    fn cache_hit(&self, tag: u64, model: &str) {
        if self.console.verbose {
            self.console
                .say(format_args!("llmroute: line {tag}: cache hit ({model})"));
        }
    }

    fn attempt(&self, tag: u64, model: &str, result: Result<u16, &str>, ms: f64) {
        if !self.console.verbose {
            return;
        }
        match result {
            Ok(status) => self.console.say(format_args!(
                "llmroute: line {tag}: {model}: HTTP {status} in {ms:.1} ms"
            )),
            Err(message) => self.console.say(format_args!(
                "llmroute: line {tag}: {model}: failed in {ms:.1} ms: {message}"
            )),
        }
    }

    fn stopping(&self, message: &str) {
        self.console.say(format_args!(
            "llmroute: stopping: the API refused the request ({message}); no further requests will be sent"
        ));
    }

    fn budget_reached(&self, spent: f64, max: f64) {
        self.console.say(format_args!(
            "llmroute: budget reached: ${spent:.4} spent of ${max}; no more requests are sent, remaining lines get budget_exceeded"
        ));
    }
}
