//! [`Router::decide`]: what the engine would do with a request now, without
//! calling anything — for a server's `/route` and `/v1/models`.

use std::time::Instant;

use super::Router;
use crate::core::attempts::{Ending, Planned};
use crate::core::failure::error_type;
use crate::core::ranking::{self, Excluded, Ranked};
use crate::core::request::Request;
use crate::core::scoring::Weights;

/// A choice made without calling.
#[derive(Debug, Clone)]
pub struct Decision {
    /// The priority's name (`custom` for explicit weights) and its weights.
    pub priority: String,
    pub weights: Weights,
    /// The models a call would try, in order; the first is the choice.
    pub order: Vec<Planned>,
    /// Every eligible candidate, best first, with its state.
    pub ranking: Vec<Ranked>,
    /// Candidates left out, with why.
    pub excluded: Vec<(String, String)>,
    /// Why the first model, in one line.
    pub reason: String,
}

impl Decision {
    /// Why `model` was left out, when it was.
    pub fn why_left_out(&self, model: &str) -> Option<&str> {
        self.excluded
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, why)| why.as_str())
    }
}

impl Router {
    /// Plans `req` with its own settings, as a call would, but sends
    /// nothing and probes nothing.
    pub fn decide(&self, req: &Request) -> Result<Decision, Ending> {
        self.decide_within(req, self.parts.admission.budget_left())
    }

    /// [`Router::decide`] as if no budget left anything out: what each
    /// candidate's figures are, for a view that shows them all.
    pub fn decide_unbudgeted(&self, req: &Request) -> Result<Decision, Ending> {
        self.decide_within(req, None)
    }

    fn decide_within(&self, req: &Request, budget_left: Option<f64>) -> Result<Decision, Ending> {
        let settings = self
            .settings_for(req)
            .map_err(|e| Ending::new(error_type::INVALID_INPUT, e))?;
        let settings = &*settings;
        let seen = super::learned::Seen {
            health: &*self.parts.health,
            book: &self.learned,
            now_ms: crate::engine::now_ms(),
        };
        let health = &seen;
        let mut plan = ranking::plan(req, settings, &self.catalogue, health, budget_left, true);
        let mut ranked = plan.ranking.take().unwrap_or_default();
        ranking::with_states(&mut ranked, health, Instant::now());
        let reason = match (plan.order.first(), &req.pinned) {
            (None, _) => plan.why_empty(),
            (Some(p), Some(_)) => format!("{}: pinned by the request", p.model),
            (Some(p), None) => match ranked.iter().find(|r| r.model == p.model) {
                Some(r) => why(r, &settings.priority),
                None => format!("{}: a fallback model", p.model),
            },
        };
        Ok(Decision {
            priority: settings.priority.clone(),
            weights: settings.weights,
            excluded: plan
                .excluded
                .iter()
                .map(|(m, e): &(String, Excluded)| (m.clone(), e.reason()))
                .collect(),
            order: plan.order,
            ranking: ranked,
            reason,
        })
    }
}

/// Why a ranked model comes first, in one line.
fn why(r: &Ranked, priority: &str) -> String {
    let latency = match (r.latency_ms, r.latency_measured) {
        (Some(ms), true) => format!("{ms:.0} ms measured"),
        (Some(ms), false) => format!("{ms:.0} ms assumed, not yet measured"),
        (None, _) => "latency unknown".into(),
    };
    let cost = r
        .cost_usd
        .map_or_else(|| "price unknown".into(), |c| format!("${c:.6}"));
    format!(
        "{}: best score {:.3} for priority {priority} ({latency}, {cost}, quality {:.2})",
        r.model, r.score, r.quality
    )
}
