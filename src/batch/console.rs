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
    /// `-q`: no warnings or notes, only what stops the run.
    pub quiet: bool,
}

impl Console {
    /// Writes a message on stderr, taking the progress bar (if any) off
    /// while it does, so that the two never share a line. A message is one
    /// line, whatever an upstream put in it.
    pub fn say(&self, message: std::fmt::Arguments<'_>) {
        if !self.quiet {
            self.alert(message);
        }
    }

    /// [`Self::say`], even with `-q`: for what stops the run.
    pub fn alert(&self, message: std::fmt::Arguments<'_>) {
        let text = one_line(&message.to_string());
        let message = format_args!("{text}");
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

/// `text` on one line: each run of whitespace holding a line break becomes
/// one space, and other control characters go, as do the characters that
/// reorder or hide text (a model name's right-to-left override).
pub fn one_line(text: &str) -> String {
    use crate::view::text::is_hidden;
    if !text.chars().any(is_hidden) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        let dropped = (pending_space && c.is_whitespace()) || (is_hidden(c) && c != '\t');
        if c == '\n' || c == '\r' {
            pending_space = true;
        } else if !dropped {
            if pending_space {
                let trimmed = out.trim_end().len();
                out.truncate(trimmed);
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

/// The engine's observer for a batch: `-v` logs, and what stops the run.
pub struct BatchObserver {
    pub console: Console,
    /// The models a wait was said for: without `-v`, each is said once.
    pub waited_for: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl BatchObserver {
    pub fn new(console: Console) -> BatchObserver {
        BatchObserver {
            console,
            waited_for: Default::default(),
        }
    }
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
        self.console.alert(format_args!(
            "llmroute: stopping: the API refused the request ({message}); no further requests will be sent"
        ));
    }

    fn waiting(&self, tag: u64, model: &str, wait: std::time::Duration, why: &str) {
        let first = self
            .waited_for
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(model.to_string());
        let wait = crate::core::duration::human(wait);
        if self.console.verbose {
            self.console.say(format_args!(
                "llmroute: line {tag}: waiting {wait} for {model}: {why}"
            ));
        } else if first {
            self.console
                .say(format_args!("llmroute: waiting {wait} for {model}: {why}"));
        }
    }

    fn budget_reached(&self, o: &crate::engine::ports::OverBudget) {
        use crate::core::numbers::usd;
        self.console.say(format_args!(
            "llmroute: budget reached: {} spent and {} reserved by requests in flight, of {}; lines whose estimate does not fit get budget_exceeded",
            usd(o.spent),
            usd(o.reserved),
            usd(o.max)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_one_line() {
        assert_eq!(one_line("plain"), "plain");
        assert_eq!(
            one_line("broke:\n  line two\r\nline three\n"),
            "broke: line two line three"
        );
        assert_eq!(one_line("a\u{1b}[31mb"), "a[31mb");
        assert_eq!(one_line("pins m/\u{202e}cba"), "pins m/cba");
    }
}
