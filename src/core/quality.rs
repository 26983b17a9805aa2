//! Quality priors in [0, 1].
//!
//! In order of precedence, a model's quality is:
//! 1. the user's override (`--quality MODEL=SCORE`, per-line or config);
//! 2. derived from the catalogue's `benchmarks.artificial_analysis.intelligence_index`
//!    as `clamp((index - 10) / 50, 0, 1)`: the index runs from about 10 to 60 across
//!    OpenRouter's catalogue (2026-06), so the scale spans the whole unit interval;
//! 3. the same mapping over [`BUILTIN_INDEX`], for popular models the catalogue
//!    carries no index for;
//! 4. [`UNKNOWN`] (0.5).

use std::collections::HashMap;

/// Quality of a model nothing is known about.
pub const UNKNOWN: f64 = 0.5;

/// Index value that maps to quality 0.
pub const INDEX_FLOOR: f64 = 10.0;
/// Index value that maps to quality 1.
pub const INDEX_CEIL: f64 = 60.0;

/// Artificial Analysis Intelligence Index (v4 scale), approximate readings
/// from the public leaderboard at artificialanalysis.ai (2026-06), for widely
/// used models that OpenRouter's catalogue of 2026-06-16 lists without an index.
pub const BUILTIN_INDEX: &[(&str, f64)] = &[
    ("anthropic/claude-3.5-haiku", 14.0),
    ("deepseek/deepseek-chat", 16.0),
    ("google/gemini-2.5-flash", 21.0),
    ("google/gemini-2.5-flash-lite", 15.0),
    ("google/gemini-2.5-pro", 30.0),
    ("meta-llama/llama-3.1-8b-instruct", 10.0),
    ("meta-llama/llama-3.3-70b-instruct", 14.0),
    ("mistralai/mistral-nemo", 10.0),
    ("mistralai/mistral-small-3.2-24b-instruct", 15.0),
    ("openai/gpt-4.1", 20.0),
    ("openai/gpt-4.1-mini", 18.0),
    ("openai/gpt-4o", 17.0),
    ("openai/gpt-4o-mini", 13.0),
];

/// Maps an intelligence index onto [0, 1].
pub fn from_index(index: f64) -> f64 {
    if !index.is_finite() {
        return UNKNOWN;
    }
    ((index - INDEX_FLOOR) / (INDEX_CEIL - INDEX_FLOOR)).clamp(0.0, 1.0)
}

/// The built-in index of a model, matching its id with any `:variant`
/// suffix (`:free`, `:nitro`) removed.
pub fn builtin_index(model: &str) -> Option<f64> {
    let base = model.split_once(':').map_or(model, |(b, _)| b);
    BUILTIN_INDEX
        .iter()
        .find(|(id, _)| *id == base)
        .map(|&(_, v)| v)
}

/// The quality prior of `model`, given what the catalogue says and the
/// user's overrides.
pub fn prior(model: &str, catalogue_index: Option<f64>, overrides: &HashMap<String, f64>) -> f64 {
    if let Some(&q) = overrides.get(model) {
        return q;
    }
    match catalogue_index.or_else(|| builtin_index(model)) {
        Some(i) => from_index(i),
        None => UNKNOWN,
    }
}

/// Parses `MODEL=SCORE[,MODEL=SCORE...]` with each score in [0, 1].
/// Empty parts (a trailing comma) are skipped, and a model named twice is
/// refused, as `--weights` does.
pub fn parse_overrides(s: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (model, q) = parse_override(part)?;
        if out.iter().any(|(m, _)| *m == model) {
            return Err(format!("the quality of '{model}' is given twice"));
        }
        out.push((model, q));
    }
    if out.is_empty() {
        return Err(format!(
            "'{s}' is not MODEL=SCORE (e.g. openai/gpt-5.4-mini=0.8)"
        ));
    }
    Ok(out)
}

/// Parses one `MODEL=SCORE`.
pub fn parse_override(s: &str) -> Result<(String, f64), String> {
    let (model, score) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("'{s}' is not MODEL=SCORE (e.g. openai/gpt-5.4-mini=0.8)"))?;
    let model = model.trim();
    if model.is_empty() {
        return Err(format!("'{s}' names no model"));
    }
    let score: f64 = score
        .trim()
        .parse()
        .map_err(|_| format!("'{}' is not a number in '{s}'", score.trim()))?;
    if !(0.0..=1.0).contains(&score) {
        return Err(format!("quality {score} for '{model}' is outside [0, 1]"));
    }
    // -0 is 0, and is shown so.
    Ok((model.to_string(), score + 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_skips_empty_parts_and_refuses_a_model_named_twice() {
        let list = parse_overrides("a/b=0.5, c/d=1,").unwrap();
        assert_eq!(list, vec![("a/b".into(), 0.5), ("c/d".into(), 1.0)]);
        let e = parse_overrides("a/b=0.5,a/b=0.6").unwrap_err();
        assert!(e.contains("given twice"), "{e}");
        assert!(parse_overrides(" , ").is_err());
    }

    #[test]
    fn an_override_of_minus_zero_is_zero() {
        let (_, q) = parse_override("a/b=-0").unwrap();
        assert!(q == 0.0 && q.is_sign_positive());
    }

    #[test]
    fn index_maps_linearly_and_clamps() {
        assert_eq!(from_index(10.0), 0.0);
        assert_eq!(from_index(60.0), 1.0);
        assert!((from_index(35.0) - 0.5).abs() < 1e-12);
        assert_eq!(from_index(5.0), 0.0);
        assert_eq!(from_index(75.0), 1.0);
        assert_eq!(from_index(f64::NAN), UNKNOWN);
    }

    #[test]
    fn precedence_override_catalogue_builtin_unknown() {
        let mut o = HashMap::new();
        o.insert("x/overridden".to_string(), 0.9);
        assert_eq!(prior("x/overridden", Some(60.0), &o), 0.9);
        assert_eq!(prior("x/indexed", Some(60.0), &o), 1.0);
        assert!((prior("openai/gpt-4o-mini", None, &o) - from_index(13.0)).abs() < 1e-12);
        assert!((prior("openai/gpt-4o-mini:free", None, &o) - from_index(13.0)).abs() < 1e-12);
        assert_eq!(prior("nobody/knows", None, &o), UNKNOWN);
    }

    #[test]
    fn overrides_parse() {
        let v = parse_overrides("a/b=0.8, c/d:free=1").unwrap();
        assert_eq!(
            v,
            vec![("a/b".to_string(), 0.8), ("c/d:free".to_string(), 1.0)]
        );
        assert!(parse_overrides("a/b").is_err());
        assert!(parse_overrides("a/b=1.5").is_err());
        assert!(parse_overrides("=0.5").is_err());
        assert!(parse_overrides("a/b=high").is_err());
    }
}
