//! A key's limits at the door: its requests and tokens a minute (shared
//! through Redis when the server uses it), and what its requests used,
//! counted against them; and the wait a refused budget asks for.

use std::sync::Arc;

use axum::http::StatusCode;

use super::errors::ApiError;
use super::keys::Client;
use super::log::Access;
use super::state::App;
use crate::core::keys::Period;

/// Seconds until a key's budget starts again, for a request its budget
/// refused (none for a budget for the key's whole life, nor for a request
/// larger than the whole budget, which waiting never makes fit).
pub fn key_budget_retry(e: &crate::core::attempts::Ending, c: &Client) -> Option<u64> {
    if e.kind != crate::core::failure::error_type::KEY_BUDGET_EXCEEDED
        || c.policy.period == Period::Total
        || e.for_good
    {
        return None;
    }
    let now = crate::engine::now_ms();
    let (_, end, _) = c.policy.period.at(now);
    u64::try_from((end - now + 999) / 1000).ok()
}

impl App {
    /// Takes a request against its key's requests and tokens a minute
    /// (shared through Redis when the server uses it): over either, 429
    /// with the seconds until the minute ends.
    pub async fn take_rate(&self, c: &Arc<Client>) -> Result<(), ApiError> {
        if !c.has_rates() {
            c.count(crate::engine::now_ms());
            return Ok(());
        }
        let now = crate::engine::now_ms();
        let shared = match &self.redis {
            Some(link) => {
                let (minute, _) = crate::core::minute::minute_of(now);
                crate::shared::clients::take(link, &c.name, minute).await
            }
            None => None,
        };
        c.take(now, shared).map_err(|secs| self.over_rate(c, secs))
    }

    /// Holds a request's estimated tokens (its prompt, and its
    /// `max_tokens` or the default for each choice) against its key's
    /// tokens a minute, once its body is read: see [`Client::hold`].
    pub fn hold_tokens(
        &self,
        c: &Client,
        req: &crate::core::request::Request,
    ) -> Result<Option<super::keys::Held>, ApiError> {
        let estimate = req
            .prompt_tokens
            .saturating_add(req.completion_tokens().saturating_mul(req.choices));
        c.hold(crate::engine::now_ms(), estimate, None)
            .map_err(|secs| self.over_rate(c, secs))
    }

    /// The 429 of a key over its rates, counted.
    fn over_rate(&self, c: &Client, secs: u64) -> ApiError {
        self.metrics.key_refused(&c.name, "rate");
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            format!(
                "key {} is over its {} for this minute; try again in {secs}s",
                c.name,
                {
                    use crate::core::numbers::counted;
                    let (r, t) = (c.policy.rpm.map(u64::from), c.policy.tpm.map(u64::from));
                    match (
                        r.map(|r| counted(r, "request")),
                        t.map(|t| counted(t, "token")),
                    ) {
                        (Some(r), Some(t)) => format!("{r} or {t} a minute"),
                        (Some(r), None) => format!("{r} a minute"),
                        (_, Some(t)) => format!("{t} a minute"),
                        (None, None) => "rates".to_string(),
                    }
                }
            ),
        );
        e.retry_after = Some(secs);
        e
    }

    /// Counts what a request of key `c` used: its tokens against the
    /// minute's, its cost for the dashboard and the metrics. The tokens
    /// are the upstream's: none for an answer from the cache; for one
    /// sent whose usage never came (its client left, it timed out), what
    /// it held, as it may have been billed.
    pub fn key_used(&self, c: &Client, status: u16, access: &Access) {
        let reported = match (access.prompt_tokens, access.completion_tokens) {
            (None, None) => None,
            (p, c) => Some(p.unwrap_or(0) + c.unwrap_or(0)),
        };
        let tokens = match (access.cached, reported) {
            (true, _) => 0,
            (false, Some(n)) => u64::try_from(n).unwrap_or(0),
            (false, None) if access.attempts > 0 => access.held.map_or(0, |h| h.tokens()),
            (false, None) => 0,
        };
        let now = crate::engine::now_ms();
        let cost = access.cost_usd.filter(|_| !access.cached);
        c.used(now, tokens, cost, access.held);
        if let (Some(link), true) = (&self.redis, tokens > 0 && c.policy.tpm.is_some()) {
            crate::shared::clients::add_tokens(
                link,
                &c.name,
                crate::core::minute::minute_of(now).0,
                tokens,
            );
        }
        self.metrics.key_answered(&c.name, status, cost);
    }
}
