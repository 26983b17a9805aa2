//! Routing settings, and the plan of one request: ranking and the order of
//! models to try.
//!
//! [`Settings`] are the flags (or a line's `llmroute` object) that decide a
//! choice; [`rank`] applies eligibility ([`crate::core::eligible`]: context window,
//! supported parameters, limits) and the scorer to one request; [`plan`] adds the pinned model
//! and the fallback list.

use std::collections::HashMap;
use std::sync::Arc;

use crate::core::attempts::Planned;
use crate::core::catalogue::Catalogue;
use crate::core::health::{HealthView, ModelStat, State};
use crate::core::request::{Overrides, Request};
use crate::core::scoring::{self, Candidate, Priority, Weights};
use crate::core::{pooled, quality};

use crate::core::eligible::over_limits;
pub use crate::core::eligible::{eligibility, Excluded, Limits};

/// The built-in candidates: popular models across price tiers, all listed
/// with prices, context window and intelligence index in the catalogue.
pub const DEFAULT_MODELS: &[&str] = &[
    "deepseek/deepseek-v4-flash",
    "openai/gpt-5.4-nano",
    "qwen/qwen3.6-plus",
    "openai/gpt-5.4-mini",
    "anthropic/claude-haiku-4.5",
    "google/gemini-3.5-flash",
    "anthropic/claude-sonnet-4.6",
    "openai/gpt-5.4",
];

/// Routing settings that decide a choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The priority's name (or `custom` for explicit weights), for metrics.
    pub priority: String,
    pub weights: Weights,
    pub models: Arc<Vec<String>>,
    pub fallback: Arc<Vec<String>>,
    pub quality: Arc<HashMap<String, f64>>,
    /// Per-request limits on the estimates of a candidate. They narrow the
    /// choice but are not in the cache key: a cached answer is free and
    /// instant, so it meets any limit.
    pub limits: Limits,
    fingerprint: String,
}

/// Named weight presets beyond the built-in priorities.
pub type Presets = HashMap<String, Weights>;

/// Resolves a priority name: a built-in one or a preset.
pub fn resolve_priority(name: &str, presets: &Presets) -> Result<Weights, String> {
    if let Some(w) = presets.get(name) {
        return Ok(*w);
    }
    Priority::from_name(name)
        .map(Priority::weights)
        .ok_or_else(|| {
            let mut known: Vec<&str> = Priority::ALL.iter().map(|p| p.name()).collect();
            known.extend(presets.keys().map(String::as_str));
            format!("unknown priority '{name}' (known: {})", known.join(", "))
        })
}

impl Settings {
    pub fn new(
        priority: String,
        weights: Weights,
        models: Vec<String>,
        fallback: Vec<String>,
        quality: HashMap<String, f64>,
    ) -> Settings {
        let mut s = Settings {
            priority,
            weights,
            models: Arc::new(models),
            fallback: Arc::new(fallback),
            quality: Arc::new(quality),
            limits: Limits::default(),
            fingerprint: String::new(),
        };
        s.fingerprint = s.compute_fingerprint();
        s
    }

    /// These settings with per-request limits.
    pub fn with_limits(mut self, limits: Limits) -> Settings {
        self.limits = limits;
        self
    }

    /// These settings with a line's overrides applied.
    pub fn with_overrides(&self, o: &Overrides, presets: &Presets) -> Result<Settings, String> {
        let (priority, weights) = match (&o.weights, &o.priority) {
            (Some(w), _) => ("custom".to_string(), *w),
            (None, Some(p)) => (p.clone(), resolve_priority(p, presets)?),
            (None, None) => (self.priority.clone(), self.weights),
        };
        let mut s = Settings {
            priority,
            weights,
            models: o
                .models
                .clone()
                .map_or_else(|| self.models.clone(), Arc::new),
            fallback: o
                .fallback
                .clone()
                .map_or_else(|| self.fallback.clone(), Arc::new),
            quality: self.quality.clone(),
            limits: Limits {
                max_latency_ms: o.max_latency_ms.or(self.limits.max_latency_ms),
                max_cost_usd: o.max_cost_usd.or(self.limits.max_cost_usd),
            },
            fingerprint: String::new(),
        };
        s.fingerprint = s.compute_fingerprint();
        Ok(s)
    }

    /// These settings with `model` among the candidates too (a request's
    /// model routed as a hint); `None` when it already is one.
    pub fn with_candidate(&self, model: &str) -> Option<Settings> {
        if self.models.iter().any(|m| m == model) {
            return None;
        }
        let mut models = (*self.models).clone();
        models.push(model.to_string());
        let mut s = Settings {
            models: Arc::new(models),
            ..self.clone()
        };
        s.fingerprint = s.compute_fingerprint();
        Some(s)
    }

    /// What the cache key takes from these settings. Candidate order does
    /// not change a choice, so candidates are sorted; fallback order does.
    fn compute_fingerprint(&self) -> String {
        let mut models: Vec<&str> = self.models.iter().map(String::as_str).collect();
        models.sort_unstable();
        models.dedup();
        let mut quality: Vec<(&String, &f64)> = self.quality.iter().collect();
        quality.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let quality: Vec<String> = quality.iter().map(|(m, q)| format!("{m}={q}")).collect();
        format!(
            "models={}\nweights={:.6},{:.6},{:.6}\nfallback={}\nquality={}\n",
            models.join(","),
            self.weights.latency,
            self.weights.cost,
            self.weights.quality,
            self.fallback.join(","),
            quality.join(","),
        )
    }

    /// The routing part of a cache key: the settings, and the pinned model.
    pub fn fingerprint(&self, pinned: Option<&str>) -> std::borrow::Cow<'_, str> {
        match pinned {
            None => std::borrow::Cow::Borrowed(&self.fingerprint),
            Some(m) => {
                let [a, b, c] = pinned_part(m);
                std::borrow::Cow::Owned([&*self.fingerprint, a, b, c].concat())
            }
        }
    }
}

/// What a pinned model adds to the settings' fingerprint.
pub fn pinned_part(model: &str) -> [&str; 3] {
    ["pinned=", model, "\n"]
}

/// What a routed request's task adds to the settings' fingerprint: the
/// task decides the model by the quality learned for it (the default
/// task adds nothing, so keys made before tasks still hit).
pub fn task_part(task: &str) -> [&str; 3] {
    ["task=", task, "\n"]
}

/// One eligible candidate, scored.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub model: String,
    pub score: f64,
    pub latency_ms: Option<f64>,
    pub cost_usd: Option<f64>,
    /// The quality the score used: the prior, or learned from outcomes.
    pub quality: f64,
    /// Feedback events the quality learned from on this request's task.
    pub quality_events: u64,
    /// Where that quality comes from.
    pub quality_source: pooled::Source,
    pub context_length: Option<u64>,
    /// Whether `latency_ms` was measured (else it is the prior of a model
    /// never measured).
    pub latency_measured: bool,
    /// Its state and why, when asked for ([`with_states`]).
    pub state: Option<(State, String)>,
}

/// Answers of a model before their lengths, rather than the default, set
/// what its requests without `max_tokens` are expected to use: a few short
/// answers say little of the next ones, and a budget holds what in-flight
/// requests are expected to cost.
pub const LENGTHS_MIN_ANSWERS: i64 = 20;

/// The completion tokens to expect of `model` for `req`: its `max_tokens`;
/// else a long answer of the model's: the recency-weighted mean length
/// plus two standard deviations, rounded up (few answers are longer), once
/// it has [`LENGTHS_MIN_ANSWERS`] answers, and never less than the default
/// before. The cost estimate, and so what the budget holds for a request
/// in flight, rests on it.
pub fn expected_completion(req: &Request, stat: Option<&ModelStat>) -> u64 {
    if let Some(max) = req.max_tokens {
        return max;
    }
    let default = req.completion_tokens();
    stat.filter(|s| s.fit.n > 0 && s.fit.x.is_finite() && s.fit.x >= 1.0)
        .map_or(default, |s| {
            let spread = (s.fit.xx - s.fit.x * s.fit.x).max(0.0).sqrt();
            let long = s.fit.x + 2.0 * if spread.is_finite() { spread } else { 0.0 };
            let long = long.ceil() as u64;
            match s.fit.n >= LENGTHS_MIN_ANSWERS {
                true => long,
                false => long.max(default),
            }
        })
}

/// The outcome of ranking one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ranking {
    /// Eligible candidates, best first.
    pub ranked: Vec<Ranked>,
    /// Candidates left out, with why.
    pub excluded: Vec<(String, Excluded)>,
}

/// An eligible candidate: its model, context window, cost at its own
/// measured length, and its feedback events on the task and where its
/// quality comes from.
type Eligible<'a> = (&'a str, Option<u64>, Option<f64>, (u64, pooled::Source));

/// The candidates of one request, gathered before they are scored: the
/// eligible ones (with what the scorer takes of each) and those left out.
struct Gathered<'a> {
    eligible: Vec<Eligible<'a>>,
    inputs: Vec<Candidate>,
    excluded: Vec<(String, Excluded)>,
}

/// Ranks `settings.models` for `req`: the candidates the catalogue says can
/// take it, whose estimates meet the request's limits and fit what is left
/// of the budget (`budget_left`), scored.
pub fn rank(
    req: &Request,
    settings: &Settings,
    catalogue: &Catalogue,
    health: &(impl HealthView + ?Sized),
    budget_left: Option<f64>,
) -> Ranking {
    let mut g = gather(req, settings, catalogue, health);
    if settings.limits != Limits::default() || budget_left.is_some() {
        drop_over_limits(&mut g, settings.limits, budget_left);
    }
    let Gathered {
        eligible,
        inputs,
        excluded,
    } = g;
    let scored = scoring::rank(&inputs, &settings.weights);
    let ranked = scored
        .into_iter()
        .map(|s| {
            let (model, context_length, expected, (events, source)) = eligible[s.index];
            Ranked {
                model: model.to_string(),
                score: s.score,
                latency_ms: s.latency_ms,
                cost_usd: expected,
                quality: s.quality,
                quality_events: events,
                quality_source: source,
                context_length,
                latency_measured: inputs[s.index].latency_ms.is_some(),
                state: None,
            }
        })
        .collect();
    Ranking { ranked, excluded }
}

/// Each distinct candidate of `settings.models` the catalogue says can
/// take `req`: its model, context window, and what it would cost at its
/// own measured length (what the budget holds and the limits judge); and
/// what the scorer compares, every candidate at the same length, so that
/// a model measured on short answers does not look cheaper than one never
/// measured, with its quality pooled from what was learned.
fn gather<'a>(
    req: &Request,
    settings: &'a Settings,
    catalogue: &Catalogue,
    health: &(impl HealthView + ?Sized),
) -> Gathered<'a> {
    let n = settings.models.len();
    let mut g = Gathered {
        eligible: Vec::with_capacity(n),
        inputs: Vec::with_capacity(n),
        excluded: Vec::new(),
    };
    let mut evidence = Vec::with_capacity(n);
    // Duplicates go: by a scan of the few candidates a request has, by a
    // set past that, so that a long list costs linear time.
    let mut seen = (n > 32).then(|| std::collections::HashSet::with_capacity(n));
    for model in settings.models.iter() {
        let repeated = match &mut seen {
            Some(set) => !set.insert(model.as_str()),
            None => settings
                .models
                .iter()
                .take_while(|m| !std::ptr::eq(*m, model))
                .any(|m| m == model),
        };
        if repeated {
            continue;
        }
        let info = catalogue.get(model);
        if let Err(why) = eligibility(req, info) {
            g.excluded.push((model.clone(), why));
            continue;
        }
        let stat = health.stat(model);
        let expected = info.and_then(|i| {
            i.estimate_cost(
                req.prompt_tokens,
                expected_completion(req, stat.as_ref()) * req.choices,
            )
        });
        let prior = quality::prior(
            model,
            info.and_then(|i| i.intelligence_index),
            &settings.quality,
        );
        let here = health.learned(req.task(), model);
        evidence.push(pooled::Evidence {
            prior,
            here,
            // Every task's sum, less this task's own.
            elsewhere: health.learned_overall(model).map(|o| o.less(here.as_ref())),
        });
        g.eligible.push((
            model,
            info.and_then(|i| i.context_length),
            expected,
            (here.map_or(0, |p| p.events), pooled::Source::Prior),
        ));
        g.inputs.push(Candidate {
            latency_ms: stat.and_then(|s| s.estimate_ms(req.max_tokens)),
            cost_usd: info.and_then(|i| {
                i.estimate_cost(req.prompt_tokens, req.completion_tokens() * req.choices)
            }),
            quality: prior,
            error_rate: stat.map_or(0.0, |s| s.error_rate),
        });
    }
    let mut learned = Vec::with_capacity(evidence.len());
    pooled::qualities(&evidence, &mut learned);
    for ((input, e), (q, source)) in g.inputs.iter_mut().zip(&mut g.eligible).zip(learned) {
        input.quality = q;
        e.3 .1 = source;
    }
    g
}

/// Leaves out the candidates whose estimates are over `limits` or what is
/// left of the budget, each judged at its own measured length.
fn drop_over_limits(g: &mut Gathered<'_>, limits: Limits, budget_left: Option<f64>) {
    // An unknown price counts as the dearest known one.
    let worst = g.eligible.iter().filter_map(|e| e.2).reduce(f64::max);
    let mut i = 0;
    while i < g.inputs.len() {
        let judged = Candidate {
            cost_usd: g.eligible[i].2,
            ..g.inputs[i]
        };
        match over_limits(&judged, worst, limits, budget_left) {
            Some(why) => {
                g.excluded.push((g.eligible[i].0.to_string(), why));
                g.inputs.remove(i);
                g.eligible.remove(i);
            }
            None => i += 1,
        }
    }
}

/// Fills in the state of each candidate, as `--explain` shows it.
pub fn with_states(
    ranked: &mut [Ranked],
    health: &(impl HealthView + ?Sized),
    now: std::time::Instant,
) {
    for r in ranked {
        let state = health.state(&r.model, now);
        let paused = health
            .cooling_until(&r.model)
            .map(|t| t.saturating_duration_since(now).as_secs());
        let why = crate::core::health::describe(state, health.stat(&r.model), paused);
        r.state = Some((state, why));
    }
}

/// Measured latencies alone, with no pauses: what `llmroute models` and
/// tests rank with.
impl HealthView for HashMap<String, ModelStat> {
    fn stat(&self, model: &str) -> Option<ModelStat> {
        self.get(model).copied()
    }
    fn cooling_until(&self, _: &str) -> Option<std::time::Instant> {
        None
    }
}

/// The plan of one request: the models to try, in order, and what went
/// into choosing them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// The ranking (or the pinned model), then the fallback models.
    pub order: Vec<Planned>,
    /// The ranking, when it was asked for: empty for a pinned request.
    pub ranking: Option<Vec<Ranked>>,
    /// Candidates and fallback models left out, with why.
    pub excluded: Vec<(String, Excluded)>,
}

impl Plan {
    /// Whether every candidate left out was left out for the budget alone.
    pub fn over_budget(&self) -> bool {
        !self.excluded.is_empty()
            && self
                .excluded
                .iter()
                .all(|(_, e)| matches!(e, Excluded::OverBudget { .. }))
    }

    /// Why nothing can be tried, for a plan with an empty order.
    pub fn why_empty(&self) -> String {
        if self.excluded.is_empty() {
            return "no candidate models".to_string();
        }
        let why: Vec<String> = self
            .excluded
            .iter()
            .map(|(m, e)| format!("{m}: {}", e.reason()))
            .collect();
        format!("no candidate can take this request ({})", why.join("; "))
    }
}

/// The order of models to try for `req`: the ranking (or the pinned model),
/// then the fallback models, leaving out any the catalogue says cannot take
/// it or whose estimates are over the limits or the budget left. When the
/// catalogue came from the API itself, candidates it does not list go after
/// those it does: the API may not serve them. With `keep_ranking` the plan
/// keeps the ranking (for `--explain`).
pub fn plan(
    req: &Request,
    settings: &Settings,
    catalogue: &Catalogue,
    health: &(impl HealthView + ?Sized),
    budget_left: Option<f64>,
    keep_ranking: bool,
) -> Plan {
    let mut plan = Plan::default();
    let planned = |model: &str| {
        let info = catalogue.get(model);
        let completion = expected_completion(req, health.stat(model).as_ref()) * req.choices;
        Planned {
            model: model.to_string(),
            score: None,
            context_length: info.and_then(|i| i.context_length),
            est_cost: info.and_then(|i| i.estimate_cost(req.prompt_tokens, completion)),
        }
    };
    if let Some(pinned) = &req.pinned {
        // A pinned model skips the scoring, not the budget: its ranking,
        // kept, is empty.
        if keep_ranking {
            plan.ranking = Some(Vec::new());
        }
        let p = planned(pinned);
        let cost = Candidate {
            latency_ms: None,
            cost_usd: p.est_cost,
            quality: 0.0,
            error_rate: 0.0,
        };
        match over_limits(&cost, None, Limits::default(), budget_left) {
            None => plan.order.push(p),
            Some(why) => plan.excluded.push((pinned.clone(), why)),
        }
    } else {
        let mut ranking = rank(req, settings, catalogue, health, budget_left);
        if !matches!(catalogue.origin, crate::core::catalogue::Origin::Embedded) {
            // A stable sort: the ranking's order within each group.
            ranking
                .ranked
                .sort_by_key(|r| catalogue.get(&r.model).is_none());
        }
        let planned = |r: &Ranked, model: String| Planned {
            model,
            score: Some(r.score),
            context_length: r.context_length,
            est_cost: r.cost_usd,
        };
        if keep_ranking {
            plan.order
                .extend(ranking.ranked.iter().map(|r| planned(r, r.model.clone())));
            plan.ranking = Some(ranking.ranked);
        } else {
            plan.order.extend(ranking.ranked.into_iter().map(|mut r| {
                let model = std::mem::take(&mut r.model);
                planned(&r, model)
            }));
        }
        plan.excluded = ranking.excluded;
    }
    for model in settings.fallback.iter() {
        if plan.order.iter().any(|p| &p.model == model) {
            continue;
        }
        let p = planned(model);
        let limits = Candidate {
            latency_ms: health
                .stat(model)
                .and_then(|s| s.latency())
                .map(|a| a.value),
            cost_usd: p.est_cost,
            quality: 0.0,
            error_rate: 0.0,
        };
        match eligibility(req, catalogue.get(model)).and_then(|()| {
            over_limits(&limits, None, settings.limits, budget_left).map_or(Ok(()), Err)
        }) {
            Ok(()) => plan.order.push(p),
            Err(why) => plan.excluded.push((model.clone(), why)),
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_estimate_is_written_with_its_digits_not_as_0() {
        let over = Excluded::OverBudget {
            estimate_usd: 0.00008,
            left_usd: 0.0,
        };
        assert_eq!(
            over.reason(),
            "its cost estimate $0.00008 is over the $0 left of the budget"
        );
    }

    #[test]
    fn a_model_with_answers_is_expected_to_answer_at_its_measured_length() {
        let req = parse_line(br#"{"prompt":"x"}"#).unwrap();
        assert_eq!(
            expected_completion(&req, None),
            crate::core::request::DEFAULT_COMPLETION_TOKENS
        );
        let mut stat = ModelStat::default();
        stat.fit.n = LENGTHS_MIN_ANSWERS;
        stat.fit.x = 37.2;
        stat.fit.xx = 37.2 * 37.2;
        assert_eq!(expected_completion(&req, Some(&stat)), 38, "all alike");
        stat.fit.xx = 37.2 * 37.2 + 25.0;
        assert_eq!(expected_completion(&req, Some(&stat)), 48, "a spread of 5");
        let capped = parse_line(br#"{"prompt":"x","max_tokens":9}"#).unwrap();
        assert_eq!(expected_completion(&capped, Some(&stat)), 9);
    }

    #[test]
    fn a_model_measured_on_short_answers_does_not_look_cheaper_than_one_never_measured() {
        let cat = Catalogue::from_models(
            vec![
                info("cheap/a", 1e-6, 100_000, &[], Some(50.0)),
                info("dear/c", 4e-6, 100_000, &[], Some(50.0)),
            ],
            0,
            Origin::Live,
        );
        let mut short = ModelStat::default();
        short.fit.n = LENGTHS_MIN_ANSWERS;
        short.fit.x = 5.0;
        let health = HashMap::from([("dear/c".to_string(), short)]);
        let req = parse_line(br#"{"prompt":"x"}"#).unwrap();
        let mut s = settings(&["cheap/a", "dear/c"]);
        s.weights = Priority::Cost.weights();
        let r = rank(&req, &s, &cat, &health, None);
        assert_eq!(r.ranked[0].model, "cheap/a", "{r:?}");
        // What it is expected to cost (and holds of a budget) is its own.
        let c = r.ranked.iter().find(|x| x.model == "dear/c").unwrap();
        assert!(c.cost_usd.unwrap() < 512.0 * 4e-6);
    }

    #[test]
    fn a_few_short_answers_do_not_cut_what_a_request_is_expected_to_use() {
        let req = parse_line(br#"{"prompt":"x"}"#).unwrap();
        let default = req.completion_tokens();
        let stat = |n, x: f64, spread: f64| {
            let mut s = ModelStat::default();
            s.fit.n = n;
            s.fit.x = x;
            s.fit.xx = x * x + spread * spread;
            s
        };
        assert_eq!(expected_completion(&req, None), default);
        // One answer of 3 tokens: no spread, and too few to go by.
        assert_eq!(expected_completion(&req, Some(&stat(1, 3.0, 0.0))), default);
        let few = LENGTHS_MIN_ANSWERS - 1;
        assert_eq!(
            expected_completion(&req, Some(&stat(few, 3.0, 1.0))),
            default
        );
        // Few but long answers raise it at once.
        assert_eq!(expected_completion(&req, Some(&stat(2, 900.0, 50.0))), 1000);
        // Enough answers: their lengths decide, short or long.
        let enough = LENGTHS_MIN_ANSWERS;
        assert_eq!(
            expected_completion(&req, Some(&stat(enough, 30.0, 5.0))),
            40
        );
        // `max_tokens` always wins.
        let capped = parse_line(br#"{"prompt":"x","max_tokens":7}"#).unwrap();
        assert_eq!(expected_completion(&capped, Some(&stat(1, 900.0, 0.0))), 7);
    }

    #[test]
    fn each_choice_asked_for_counts_in_the_cost_estimate() {
        let cat = Catalogue::from_models(
            vec![info("m/a", 1e-6, 100_000, &[], Some(50.0))],
            0,
            Origin::Live,
        );
        let none = HashMap::<String, ModelStat>::new();
        let cost = |line: &[u8]| {
            let req = parse_line(line).unwrap();
            rank(&req, &settings(&["m/a"]), &cat, &none, None).ranked[0]
                .cost_usd
                .unwrap()
        };
        let one = cost(br#"{"prompt":"x","max_tokens":100}"#);
        let three = cost(br#"{"prompt":"x","max_tokens":100,"n":3}"#);
        let prompt = cost(br#"{"prompt":"x","max_tokens":0}"#);
        assert!(
            ((three - prompt) - 3.0 * (one - prompt)).abs() < 1e-12,
            "{one} {three}"
        );
    }

    #[test]
    fn a_pinned_model_is_held_to_the_budget() {
        let cat = Catalogue::from_models(
            vec![info("dear/m", 1e-3, 1_000_000, &[], Some(50.0))],
            0,
            Origin::Live,
        );
        let req = parse_line(br#"{"prompt":"x","model":"dear/m","max_tokens":100000}"#).unwrap();
        let settings = settings(&["dear/m"]);
        let none = HashMap::<String, ModelStat>::new();
        let p = plan(&req, &settings, &cat, &none, Some(1.0), false);
        assert!(p.order.is_empty(), "{p:?}");
        assert!(p.over_budget());
        let p = plan(&req, &settings, &cat, &none, None, false);
        assert_eq!(p.order[0].model, "dear/m", "without a budget it is sent");
    }
    use crate::core::catalogue::{ModelInfo, Origin};
    use crate::core::request::parse_line;

    fn info(id: &str, prompt: f64, ctx: u64, params: &[&str], index: Option<f64>) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            prompt_price: Some(prompt),
            completion_price: Some(prompt * 2.0),
            context_length: Some(ctx),
            max_completion_tokens: None,
            supported_parameters: params.iter().map(|s| s.to_string()).collect(),
            intelligence_index: index,
        }
    }

    fn settings(models: &[&str]) -> Settings {
        Settings::new(
            "balanced".into(),
            Priority::Balanced.weights(),
            models.iter().map(|s| s.to_string()).collect(),
            vec![],
            HashMap::new(),
        )
    }

    #[test]
    fn eligibility_filters_context_and_parameters() {
        let cat = Catalogue::from_models(
            vec![
                info("small/ctx", 1e-6, 600, &["tools"], Some(30.0)),
                info("no/tools", 1e-6, 100_000, &["max_tokens"], Some(30.0)),
                info(
                    "big/ok",
                    2e-6,
                    100_000,
                    &["tools", "max_tokens"],
                    Some(50.0),
                ),
            ],
            0,
            Origin::Live,
        );
        let req =
            parse_line(br#"{"prompt":"hello","max_tokens":1000,"tools":[{"type":"function"}]}"#)
                .unwrap();
        let r = rank(
            &req,
            &settings(&["small/ctx", "no/tools", "big/ok", "not/in/catalogue"]),
            &cat,
            &HashMap::new(),
            None,
        );
        let names: Vec<&str> = r.ranked.iter().map(|c| c.model.as_str()).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"big/ok") && names.contains(&"not/in/catalogue"));
        assert_eq!(
            r.excluded,
            vec![
                ("small/ctx".to_string(), Excluded::ContextWindow),
                ("no/tools".to_string(), Excluded::Tools)
            ]
        );
    }

    #[test]
    fn measured_latency_decides_under_speed() {
        let cat = Catalogue::from_models(
            vec![
                info("a/slow", 1e-6, 100_000, &[], Some(30.0)),
                info("b/fast", 1e-6, 100_000, &[], Some(30.0)),
            ],
            0,
            Origin::Live,
        );
        let mut stats = HashMap::new();
        stats.insert(
            "a/slow".to_string(),
            ModelStat {
                ewma_ms: 900.0,
                samples: 5,
                tries: 5,
                ..Default::default()
            },
        );
        stats.insert(
            "b/fast".to_string(),
            ModelStat {
                ewma_ms: 90.0,
                samples: 5,
                tries: 5,
                ..Default::default()
            },
        );
        let req = parse_line(br#"{"prompt":"x"}"#).unwrap();
        let mut s = settings(&["a/slow", "b/fast"]);
        s.weights = Priority::Speed.weights();
        let r = rank(&req, &s, &cat, &stats, None);
        assert_eq!(r.ranked[0].model, "b/fast");
        assert_eq!(r.ranked[0].latency_ms, Some(90.0));
    }

    #[test]
    fn a_pinned_seal_carried_on_from_the_runs_is_the_seal_of_the_whole() {
        use crate::core::cachekey::{Seal, SealBase};
        let s = settings(&["x/1", "x/2"]);
        let base = SealBase::new("https://api.example/v1", &s.fingerprint(None));
        assert_eq!(
            base.seal(),
            Seal::new("https://api.example/v1", &s.fingerprint(None))
        );
        for m in ["x/1", "other/model", ""] {
            assert_eq!(
                base.seal_with(&pinned_part(m)),
                Seal::new("https://api.example/v1", &s.fingerprint(Some(m))),
                "pinned {m:?}"
            );
        }
        assert_ne!(base.seal_with(&pinned_part("x/1")), base.seal());
    }

    #[test]
    fn fingerprint_tracks_what_decides_the_choice() {
        let a = settings(&["x/1", "x/2"]);
        let b = settings(&["x/2", "x/1"]);
        assert_eq!(
            a.fingerprint(None),
            b.fingerprint(None),
            "candidate order does not matter"
        );
        let mut c = a.clone();
        c.weights = Priority::Speed.weights();
        c.fingerprint = c.compute_fingerprint();
        assert_ne!(a.fingerprint(None), c.fingerprint(None));
        assert_ne!(a.fingerprint(None), a.fingerprint(Some("x/1")));
        let o = Overrides {
            fallback: Some(vec!["y/1".into()]),
            ..Default::default()
        };
        assert_ne!(
            a.fingerprint(None),
            a.with_overrides(&o, &Presets::new())
                .unwrap()
                .fingerprint(None)
        );
    }

    #[test]
    fn overrides_resolve_priorities_and_presets() {
        let base = settings(&["x/1"]);
        let mut presets = Presets::new();
        presets.insert("nightly".into(), Weights::new(0.1, 0.8, 0.1).unwrap());
        let o = Overrides {
            priority: Some("nightly".into()),
            ..Default::default()
        };
        let s = base.with_overrides(&o, &presets).unwrap();
        assert_eq!(s.priority, "nightly");
        assert!((s.weights.cost - 0.8).abs() < 1e-12);
        let bad = Overrides {
            priority: Some("fastest".into()),
            ..Default::default()
        };
        assert!(base
            .with_overrides(&bad, &presets)
            .unwrap_err()
            .contains("unknown priority 'fastest'"));
    }
}
