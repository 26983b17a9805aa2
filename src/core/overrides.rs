//! The `llmroute` object of a line or body: routing for one request
//! (priority or weights, candidates, fallback, limits, task), checked.

use serde_json::{Map, Value};

use crate::core::scoring::Weights;

/// The `llmroute` object of a line.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Overrides {
    pub priority: Option<String>,
    pub weights: Option<Weights>,
    pub models: Option<Vec<String>>,
    pub fallback: Option<Vec<String>>,
    /// Candidates whose latency estimate is over this are not eligible.
    pub max_latency_ms: Option<f64>,
    /// Candidates whose cost estimate is over this are not eligible.
    pub max_cost_usd: Option<f64>,
    /// `llmroute.route`: whether the line's `model` is routed as a hint
    /// (true) or pins the model (false); unset, the run's `--route-all` says.
    pub route: Option<bool>,
    /// The model the request named, routed as a hint: it joins the
    /// candidates when the catalogue lists it (set by
    /// [`Request::pin_as_hint`], never read from input).
    pub hint: Option<String>,
    /// `llmroute.task`: the kind of request, whose outcomes teach the
    /// router each model's quality at it.
    pub task: Option<String>,
}

impl Overrides {
    /// Whether it names a task and nothing else.
    /// Asked of every request that has overrides: it compares, and copies
    /// nothing.
    pub fn only_task(&self) -> bool {
        let Overrides {
            priority,
            weights,
            models,
            fallback,
            max_latency_ms,
            max_cost_usd,
            route,
            hint,
            task: _,
        } = self;
        priority.is_none()
            && weights.is_none()
            && models.is_none()
            && fallback.is_none()
            && max_latency_ms.is_none()
            && max_cost_usd.is_none()
            && route.is_none()
            && hint.is_none()
    }
}

/// The most models a line's `llmroute.models` or `llmroute.fallback` may
/// list: far more than any routing needs, and few enough that one request
/// cannot make ranking its candidates costly.
pub const MAX_LISTED_MODELS: usize = 256;

fn string_list(v: Value, field: &str) -> Result<Vec<String>, String> {
    let listed = match &v {
        Value::Array(items) => items.len(),
        Value::String(s) => s.split(',').count(),
        _ => 0,
    };
    if listed > MAX_LISTED_MODELS {
        return Err(format!(
            "llmroute.{field} lists {listed} models; at most {MAX_LISTED_MODELS} are allowed"
        ));
    }
    let list: Vec<String> = match v {
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                other => Err(format!(
                    "llmroute.{field} must list model ids, found {}",
                    kind(&other)
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(format!(
                "llmroute.{field} must be an array of model ids, got {}",
                kind(&other)
            ))
        }
    };
    Ok(list)
}

/// The `llmroute` object of a line, checked.
pub fn parse_overrides(v: Value) -> Result<Overrides, String> {
    let Value::Object(mut o) = v else {
        return Err(format!("\"llmroute\" must be an object, got {}", kind(&v)));
    };
    let mut out = Overrides::default();
    if let Some(p) = o.remove("priority") {
        match p {
            Value::String(s) => out.priority = Some(s),
            Value::Null => {}
            other => {
                return Err(format!(
                    "llmroute.priority must be a string, got {}",
                    kind(&other)
                ))
            }
        }
    }
    if let Some(w) = o.remove("weights") {
        out.weights = weights_of(w)?;
    }
    for field in ["models", "fallback"] {
        if let Some(v) = o.remove(field) {
            let list = if v.is_null() {
                None
            } else {
                Some(string_list(v, field)?)
            };
            match field {
                // As with --models "": no candidate is a mistake, not the
                // built-in list.
                "models" if list.as_ref().is_some_and(Vec::is_empty) => {
                    return Err(
                        "llmroute.models lists no model (leave it out for the default candidates)"
                            .into(),
                    )
                }
                "models" => out.models = list,
                _ => out.fallback = list,
            }
        }
    }
    match o.remove("route") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => out.route = Some(b),
        Some(other) => {
            return Err(format!(
                "llmroute.route must be true or false, got {}",
                kind(&other)
            ))
        }
    }
    match o.remove("task") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => {
            crate::core::learned::check_task(&t).map_err(|e| format!("llmroute.{e}"))?;
            out.task = Some(t);
        }
        Some(other) => {
            return Err(format!(
                "llmroute.task must be a string, got {}",
                kind(&other)
            ))
        }
    }
    out.max_latency_ms = limit_of(&mut o, "max_latency_ms")?;
    out.max_cost_usd = limit_of(&mut o, "max_cost_usd")?;
    if let Some(k) = o.keys().next() {
        return Err(format!(
            "unknown key llmroute.{k} (known: priority, weights, models, fallback, max_latency_ms, max_cost_usd, route, task)"
        ));
    }
    Ok(out)
}

/// `llmroute.weights`: an object (`{"latency": 1, "cost": 1}`) or a
/// string as for `--weights`; `null` for none.
fn weights_of(w: Value) -> Result<Option<Weights>, String> {
    let parse = |text: &str| Weights::parse(text).map_err(|e| format!("llmroute.weights: {e}"));
    match w {
        Value::Null => Ok(None),
        Value::String(s) => parse(&s).map(Some),
        Value::Object(m) => {
            let mut parts = Vec::new();
            for (k, v) in m {
                let n = v
                    .as_f64()
                    .ok_or_else(|| format!("llmroute.weights.{k} must be a number"))?;
                parts.push(format!("{k}={n}"));
            }
            parse(&parts.join(",")).map(Some)
        }
        other => Err(format!(
            "llmroute.weights must be an object, got {}",
            kind(&other)
        )),
    }
}

/// A limit of the `llmroute` object (`max_latency_ms`, `max_cost_usd`),
/// taken out of it: a number at least 0, or none.
fn limit_of(o: &mut Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match o.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
            _ => Err(format!(
                "llmroute.{field} must be a number at least 0, got {}",
                if v.is_number() {
                    v.to_string()
                } else {
                    kind(&v).to_string()
                }
            )),
        },
    }
}

/// What a JSON value is, as an error message names it.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
