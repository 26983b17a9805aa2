//! The JSON object written for every input line.
//!
//! Fields, in order: `id`, `line`, `model`, `score`, `latency_ms`, `cached`,
//! `cost_usd`, `attempts`, `error`, `content`, then `candidates` (with
//! `--explain` and `--dry-run`) and `dry_run` (with `--dry-run`), and last
//! `response`, the upstream body spliced in verbatim (it is already compact
//! JSON, so it is never parsed and serialised again).

use serde::Serialize;
use serde_json::Value;

pub use crate::core::failure::{error_type, INTERNAL_MESSAGE};
use crate::core::numbers::{round_ms, round_score, round_usd};
use crate::core::ranking::Ranked;
pub use crate::engine::Attempt;
use crate::engine::{Outcome, Routed};

/// One entry of the ranking shown by `--explain`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateOut {
    pub model: String,
    pub score: f64,
    /// The latency the score used: measured, or the prior of a model never
    /// measured (twice the slowest measured candidate; `latency_source`
    /// says which).
    pub latency_ms: Option<f64>,
    /// `measured`, or `prior`.
    pub latency_source: &'static str,
    pub cost_usd: Option<f64>,
    /// The quality the score used: the prior, or learned from outcomes on
    /// the request's task (`quality_source` says which).
    pub quality: f64,
    /// `prior`, `pooled` (from its other tasks, and the other candidates
    /// on this one), or `learned` (from its feedback on this task).
    pub quality_source: &'static str,
    /// The feedback events it learned from on the request's task.
    pub quality_events: u64,
    /// `prior` (never tried), `probing`, `measured`, `cooling` or `open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// Why it is in that state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

impl From<&Ranked> for CandidateOut {
    fn from(r: &Ranked) -> CandidateOut {
        CandidateOut {
            model: r.model.clone(),
            score: round_score(r.score),
            latency_ms: r.latency_ms.map(round_ms),
            latency_source: if r.latency_measured {
                "measured"
            } else {
                "prior"
            },
            cost_usd: r.cost_usd.map(round_usd),
            quality: round_score(r.quality),
            quality_source: r.quality_source.name(),
            quality_events: r.quality_events,
            state: r.state.as_ref().map(|(s, _)| s.name()),
            why: r.state.as_ref().map(|(_, w)| w.clone()),
        }
    }
}

/// The shape of the output lines (`--output-format`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Shape {
    /// llmroute's own, with its annotations.
    #[default]
    Llmroute,
    /// OpenAI's batch output; ids are made from the run's id and the line.
    OpenAiBatch { run_id: String },
}

/// The `error` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorOut {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub message: String,
}

/// Everything an output line says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Line {
    pub id: Value,
    pub line: u64,
    pub model: Option<String>,
    pub score: Option<f64>,
    pub latency_ms: f64,
    pub cached: bool,
    pub cost_usd: Option<f64>,
    pub attempts: Vec<Attempt>,
    pub error: Option<ErrorOut>,
    pub content: Option<String>,
    pub candidates: Option<Vec<CandidateOut>>,
    pub dry_run: bool,
    /// The upstream body: compact JSON on one line.
    pub response: Option<String>,
    /// The request's id, unique across runs and machines, for feedback.
    pub request_id: Option<std::sync::Arc<str>>,
    /// The answer's score by `--grade`.
    pub grade: Option<f64>,
    /// The upstream that answered, when several are configured.
    pub upstream: Option<String>,
}

#[derive(Serialize)]
struct Head<'a> {
    id: &'a Value,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grade: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    model: Option<&'a str>,
    score: Option<f64>,
    latency_ms: f64,
    cached: bool,
    cost_usd: Option<f64>,
    attempts: Vec<AttemptOut<'a>>,
    error: Option<&'a ErrorOut>,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    candidates: Option<&'a [CandidateOut]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    dry_run: bool,
}

/// An attempt as its line shows it.
#[derive(Serialize)]
struct AttemptOut<'a> {
    model: &'a str,
    status: Option<u16>,
    error: Option<&'a str>,
    latency_ms: f64,
}

impl Line {
    /// An error line.
    pub fn error(id: Value, line: u64, kind: &'static str, message: impl Into<String>) -> Line {
        Line {
            id,
            line,
            error: Some(ErrorOut {
                kind,
                message: message.into(),
            }),
            ..Default::default()
        }
    }

    /// The line of a routed request: `id` and `line` from the input, the
    /// rest from the engine's outcome. `None` for a request that was never
    /// sent (the run was interrupted first).
    pub fn from_routed(id: Value, line: u64, routed: Routed) -> Option<Line> {
        let candidates = routed
            .candidates
            .as_ref()
            .map(|r| r.iter().map(CandidateOut::from).collect());
        let cost = routed.cost_usd();
        let cached = matches!(routed.outcome, Outcome::Cached(_));
        let mut out = Line {
            id,
            line,
            latency_ms: routed.latency_ms,
            attempts: routed.attempts,
            candidates,
            ..Default::default()
        };
        match routed.outcome {
            Outcome::Unsent => return None,
            Outcome::Answered(a) | Outcome::Cached(a) => {
                out.cost_usd = cost;
                out.cached = cached;
                out.model = Some(a.model);
                out.score = a.score;
                out.content = a.content;
                out.response = Some(a.response);
            }
            Outcome::Planned(p) => {
                // What the call would cost, as the chosen candidate's estimate.
                out.cost_usd = p.est_cost;
                out.model = Some(p.model);
                out.score = p.score;
                out.dry_run = true;
                out.candidates.get_or_insert_with(Vec::new);
            }
            // A batch never asks for a stream.
            Outcome::Streaming(_) => {
                out.error = Some(ErrorOut {
                    kind: crate::core::failure::error_type::INTERNAL,
                    message: crate::core::failure::INTERNAL_MESSAGE.into(),
                });
            }
            Outcome::Failed(e) => {
                out.error = Some(ErrorOut {
                    kind: e.kind,
                    message: e.message,
                });
            }
        }
        Some(out)
    }

    /// Appends this line and its newline to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let head = Head {
            id: &self.id,
            line: self.line,
            request_id: self.request_id.as_deref(),
            grade: self.grade,
            upstream: self.upstream.as_deref(),
            model: self.model.as_deref(),
            score: self.score.map(round_score),
            latency_ms: round_ms(self.latency_ms),
            cached: self.cached,
            cost_usd: self.cost_usd.map(round_usd),
            attempts: self
                .attempts
                .iter()
                .map(|a| AttemptOut {
                    model: &a.model,
                    status: a.status,
                    error: a.error.as_deref(),
                    latency_ms: round_ms(a.latency_ms),
                })
                .collect(),
            error: self.error.as_ref(),
            content: self.content.as_deref(),
            candidates: self.candidates.as_deref(),
            dry_run: self.dry_run,
        };
        serde_json::to_writer(&mut *out, &head).expect("serialising to a Vec cannot fail");
        out.pop(); // the closing brace
        out.extend_from_slice(b",\"response\":");
        match &self.response {
            Some(raw) => out.extend_from_slice(raw.as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}\n");
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.response.as_ref().map_or(0, String::len));
        self.write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let line = Line {
            id: json!("a"),
            line: 3,
            model: Some("m/x".into()),
            score: Some(0.75),
            latency_ms: 12.345_678_9,
            cost_usd: Some(0.002),
            attempts: vec![Attempt {
                model: "m/x".into(),
                status: Some(200),
                error: None,
                latency_ms: 12.0,
            }],
            content: Some("hi\nthere".into()),
            response: Some(r#"{"choices":[{"message":{"content":"hi\nthere"}}]}"#.into()),
            ..Default::default()
        };
        let bytes = line.to_bytes();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(bytes.ends_with(b"}\n"));
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        for field in [
            "id",
            "line",
            "model",
            "score",
            "latency_ms",
            "cached",
            "cost_usd",
            "attempts",
            "error",
            "content",
            "response",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["latency_ms"], json!(12.346));
        assert_eq!(
            v["response"]["choices"][0]["message"]["content"],
            json!("hi\nthere")
        );
        assert_eq!(v["error"], Value::Null);
        assert!(v.get("candidates").is_none() && v.get("dry_run").is_none());
    }

    #[test]
    fn error_lines_carry_type_and_message() {
        let v: Value = serde_json::from_slice(
            &Line::error(json!(7), 2, error_type::INVALID_INPUT, "bad").to_bytes(),
        )
        .unwrap();
        assert_eq!(
            v["error"],
            json!({"type": "invalid_input", "message": "bad"})
        );
        assert_eq!(
            (v["id"].clone(), v["line"].clone(), v["model"].clone()),
            (json!(7), json!(2), Value::Null)
        );
        assert_eq!(v["response"], Value::Null);
        assert_eq!(v["cached"], json!(false));
    }
}
