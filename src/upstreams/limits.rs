//! What llmroute keeps for a named upstream's limits: its tokens a
//! minute, counted as answers come in, and the slots kept for requests
//! whose turn came.

use std::time::Duration;

use crate::core::failure::Failure;

/// Tokens used in the current calendar minute against a limit. The tokens
/// of an answer are known only once it is in, so the last request of a
/// minute may go past the limit by its own tokens; the next waits for the
/// next minute.
#[derive(Debug, Clone, PartialEq)]
pub struct TokensAMinute {
    limit: u64,
    window: crate::core::minute::Window,
}

impl TokensAMinute {
    pub fn new(limit: u64) -> TokensAMinute {
        TokensAMinute {
            limit,
            window: crate::core::minute::Window::default(),
        }
    }

    /// Whether a request may go now (at `now_ms`, Unix ms): some of the
    /// minute's tokens are left.
    pub fn open(&mut self, now_ms: i64) -> bool {
        self.window.at(now_ms).tokens < self.limit
    }

    /// Counts `tokens` an answer used, at `now_ms`.
    pub fn add(&mut self, now_ms: i64, tokens: u64) {
        let w = self.window.at(now_ms);
        w.tokens = w.tokens.saturating_add(tokens);
    }
}

/// The tokens a usage counts, prompt and completion.
pub(super) fn tokens_of(usage: &crate::core::failure::Usage) -> u64 {
    let n = |t: Option<i64>| t.unwrap_or(0).max(0) as u64;
    n(usage.prompt_tokens) + n(usage.completion_tokens)
}

/// A slot kept for the request whose turn came: the task it runs in,
/// and when, as a slot kept for a request that gave up is let go after
/// [`KEPT_FOR`].
pub(super) struct Kept {
    pub task: Option<tokio::task::Id>,
    pub at: std::time::Instant,
    pub slot: tokio::sync::OwnedSemaphorePermit,
}

/// How long a slot is kept for a request whose turn came.
const KEPT_FOR: Duration = Duration::from_secs(2);

/// The slots kept, those kept too long let go; whether one is this task's.
pub(super) fn kept_here(kept: &mut Vec<Kept>) -> Option<usize> {
    kept.retain(|k| k.at.elapsed() < KEPT_FOR);
    let me = tokio::task::try_id();
    kept.iter().position(|k| k.task == me)
}

/// `events`, with the usage they report (or, when they report none, their
/// content at four characters a token) counted in `tokens` once they end.
pub(super) fn counted(
    events: crate::engine::ports::Chunks,
    tokens: std::sync::Arc<std::sync::Mutex<TokensAMinute>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, Failure>> + Send {
    use crate::core::sse::{Events, Fold};
    struct Count {
        split: Events,
        fold: Fold,
        tokens: std::sync::Arc<std::sync::Mutex<TokensAMinute>>,
    }
    impl Drop for Count {
        fn drop(&mut self) {
            let usage = self.fold.usage();
            let n = match tokens_of(&usage) {
                0 => self
                    .fold
                    .content()
                    .map_or(0, |c| c.chars().count() as u64 / 4),
                n => n,
            };
            let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            t.add(crate::engine::now_ms(), n);
        }
    }
    let mut count = Count {
        split: Events::default(),
        fold: Fold::default(),
        tokens,
    };
    let mut out = Vec::new();
    futures_util::StreamExt::map(events, move |chunk| {
        if let Ok(bytes) = &chunk {
            count.split.push(bytes, &mut out);
            for e in out.drain(..) {
                count.fold.add_event(&e);
            }
        }
        chunk
    })
}
