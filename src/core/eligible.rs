//! Which candidates a request may go to: what the catalogue says a model
//! can take (context window, completion limit, tools, `response_format`),
//! and the request's limits on latency and cost and what is left of the
//! budget. Plain data, no I/O.

use crate::core::request::Request;
use crate::core::scoring::Candidate;

/// Per-request limits: a candidate whose estimate is over one is not
/// eligible for the request.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub max_latency_ms: Option<f64>,
    pub max_cost_usd: Option<f64>,
}

/// Why a candidate was left out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Excluded {
    ContextWindow,
    MaxTokens,
    Tools,
    ResponseFormat,
    /// Its latency estimate is over the request's `max_latency_ms`.
    TooSlow {
        estimate_ms: f64,
        max_ms: f64,
    },
    /// Its cost estimate is over the request's `max_cost_usd`.
    TooDear {
        estimate_usd: f64,
        max_usd: f64,
    },
    /// Its cost estimate is over what is left of the run's budget.
    OverBudget {
        estimate_usd: f64,
        left_usd: f64,
    },
}

impl Excluded {
    pub fn reason(self) -> String {
        match self {
            Excluded::ContextWindow => "prompt and max_tokens do not fit its context window".into(),
            Excluded::MaxTokens => "max_tokens is above its completion limit".into(),
            Excluded::Tools => "it does not support tools".into(),
            Excluded::ResponseFormat => "it does not support response_format".into(),
            Excluded::TooSlow {
                estimate_ms,
                max_ms,
            } => {
                // The limit may be the line's or the run's (`max_latency_ms`,
                // `--max-latency`): named by what it is, not by either.
                format!("its latency estimate {estimate_ms:.0} ms is over the limit of {max_ms} ms")
            }
            Excluded::TooDear {
                estimate_usd,
                max_usd,
            } => format!(
                "its cost estimate {} is over the limit of {} a request",
                crate::core::numbers::usd(estimate_usd),
                crate::core::numbers::usd(max_usd)
            ),
            Excluded::OverBudget {
                estimate_usd,
                left_usd,
            } => format!(
                "its cost estimate {} is over the {} left of the budget",
                crate::core::numbers::usd(estimate_usd),
                crate::core::numbers::usd(left_usd)
            ),
        }
    }
}

/// Whether `model` can take `req`, by what the catalogue says of it. Models
/// the catalogue does not know are assumed able.
pub fn eligibility(
    req: &Request,
    info: Option<&crate::core::catalogue::ModelInfo>,
) -> Result<(), Excluded> {
    let Some(info) = info else { return Ok(()) };
    if let Some(ctx) = info.context_length {
        if req.prompt_tokens.saturating_add(req.completion_tokens()) > ctx {
            return Err(Excluded::ContextWindow);
        }
    }
    if let (Some(max), Some(limit)) = (req.max_tokens, info.max_completion_tokens) {
        if max > limit {
            return Err(Excluded::MaxTokens);
        }
    }
    if req.needs_tools && !info.supports("tools") {
        return Err(Excluded::Tools);
    }
    if req.needs_response_format && !info.supports("response_format") {
        return Err(Excluded::ResponseFormat);
    }
    Ok(())
}

/// Which limit a candidate's estimates are over, if any. A latency never
/// measured is over no limit: it is not known to be.
pub fn over_limits(
    c: &Candidate,
    worst_cost: Option<f64>,
    limits: Limits,
    budget_left: Option<f64>,
) -> Option<Excluded> {
    if let (Some(est), Some(max)) = (c.latency_ms, limits.max_latency_ms) {
        if est > max {
            return Some(Excluded::TooSlow {
                estimate_ms: est,
                max_ms: max,
            });
        }
    }
    let cost = c.cost_usd.or(worst_cost);
    if let (Some(est), Some(max)) = (cost, limits.max_cost_usd) {
        if est > max + 1e-12 {
            return Some(Excluded::TooDear {
                estimate_usd: est,
                max_usd: max,
            });
        }
    }
    if let Some(left) = budget_left {
        let est = cost.unwrap_or(0.0);
        if left <= 0.0 || est > left + 1e-12 {
            return Some(Excluded::OverBudget {
                estimate_usd: est,
                left_usd: left.max(0.0),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_named_by_what_it_is_wherever_it_was_set() {
        let slow = Excluded::TooSlow {
            estimate_ms: 250.4,
            max_ms: 200.0,
        };
        assert_eq!(
            slow.reason(),
            "its latency estimate 250 ms is over the limit of 200 ms"
        );
        let dear = Excluded::TooDear {
            estimate_usd: 0.002,
            max_usd: 0.001,
        };
        assert!(!dear.reason().contains("max_cost_usd"), "{}", dear.reason());
        assert!(
            dear.reason().contains("limit of $0.001 a request"),
            "{}",
            dear.reason()
        );
    }
}
