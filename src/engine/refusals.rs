//! How a request ends that is not sent, or not sent again: a budget that
//! its estimate does not fit (the run's or its client key's), a plan with
//! no candidate, the run's end.

use std::sync::atomic::Ordering;

use super::ports::{Allowance, OverBudget};
use super::record::Job;
use super::Router;
use crate::core::attempts::Ending;
use crate::core::failure::error_type;
use crate::core::numbers::{counted, usd};
use crate::core::ranking;

impl Router {
    /// Why a plan has no model: the budget (the client's own, `own`, when
    /// it is the tighter), or no candidate can take the request.
    pub(super) fn empty_plan(
        &self,
        job: &Job<'_>,
        plan: &ranking::Plan,
        own: Option<&Allowance>,
    ) -> Ending {
        if !plan.over_budget() {
            return Ending::new(error_type::NO_ELIGIBLE_MODEL, plan.why_empty());
        }
        let view = match own {
            Some(a) => a.0.budget(),
            None => self.parts.admission.budget(),
        }
        .unwrap_or_default();
        let estimate = plan
            .excluded
            .iter()
            .filter_map(|(_, e)| match e {
                ranking::Excluded::OverBudget { estimate_usd, .. } => Some(*estimate_usd),
                _ => None,
            })
            .fold(f64::INFINITY, f64::min);
        let o = OverBudget {
            spent: view.spent,
            reserved: view.reserved,
            estimate,
            max: view.max,
        };
        match own {
            Some(_) => over_own_budget(&o, job.opts.client.as_deref(), 0),
            None => self.over_budget(&o, 0),
        }
    }

    /// The ending of a request the run's budget refuses after `sent`
    /// attempts; the observer hears of the first.
    pub(super) fn over_budget(&self, o: &OverBudget, sent: usize) -> Ending {
        if !self.budget_warned.swap(true, Ordering::Relaxed) {
            self.parts.observer.budget_reached(o);
        }
        Ending::new(error_type::BUDGET_EXCEEDED, over(o, "the", sent))
    }
}

/// A request the client's own budget refused after `sent` attempts: it
/// alone ends, the run goes on.
pub(super) fn over_own_budget(o: &OverBudget, client: Option<&str>, sent: usize) -> Ending {
    let whose = client.map_or("the client's".to_string(), |c| format!("key {c}'s"));
    let mut e = Ending::new(error_type::KEY_BUDGET_EXCEEDED, over(o, &whose, sent));
    e.for_good = o.estimate > o.max;
    e
}

/// Why `whose` budget refused a request: "not sent", or, when some of its
/// attempts were (and may have been billed), "not sent again after N".
fn over(o: &OverBudget, whose: &str, sent: usize) -> String {
    let estimate = match o.estimate.is_finite() {
        true => format!("its estimate of {}", usd(o.estimate)),
        false => "its cheapest candidate".to_string(),
    };
    let unsent = match sent {
        0 => "not sent".to_string(),
        n => format!("not sent again after {}", counted(n as u64, "attempt")),
    };
    format!(
        "{unsent}: {estimate} does not fit {whose} budget of {} ({} spent, {} reserved by requests in flight)",
        usd(o.max),
        usd(o.spent),
        usd(o.reserved)
    )
}

/// The ending of a request the run's end interrupted after `sent`
/// attempts.
pub(super) fn interrupted_after(sent: usize) -> Ending {
    Ending::new(
        error_type::INTERRUPTED,
        format!("interrupted after {}", counted(sent as u64, "attempt")),
    )
}
