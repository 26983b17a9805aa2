//! The report in the Prometheus text exposition format (version 0.0.4), for
//! node_exporter's textfile collector and the like.
//!
//! Gauges hold the totals over the report's window (they go down when old
//! rows leave the window or are pruned, so they are not counters, and
//! their names do not end in `_total`); summaries give the exact latency
//! quantiles with their `_sum` and `_count`. Per-model families are
//! left out when no model was called.

use std::fmt::Write;

use super::{Latencies, Report, QUANTILES};

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    totals(&mut out, r);
    // Per-model families are left out when no model was called.
    if !r.models.is_empty() {
        per_model(&mut out, r);
    }
    if !r.upstreams.is_empty() {
        per_upstream(&mut out, r);
    }
    if !r.keys.is_empty() {
        per_key(&mut out, r);
    }
    if !r.tasks.is_empty() {
        per_task(&mut out, r);
    }
    out
}

/// A gauge family: its name, its help, and its value for a row.
type Gauge<'a, R, V = f64> = (&'a str, &'a str, &'a dyn Fn(&R) -> V);

/// The families by client key of `serve`.
fn per_key(o: &mut String, r: &Report) {
    let per = |value: &dyn Fn(&super::keys::KeyReport) -> f64| -> Vec<Sample> {
        let labels = |k: &super::keys::KeyReport| vec![("key", k.key.clone())];
        r.keys.iter().map(|k| (labels(k), value(k))).collect()
    };
    let families: [Gauge<super::keys::KeyReport>; 5] = [
        (
            "llmroute_key_requests",
            "Requests of each client key, refused ones too.",
            &|k| k.requests as f64,
        ),
        (
            "llmroute_key_answered",
            "Requests of each client key answered upstream (cache hits not included).",
            &|k| k.answered as f64,
        ),
        (
            "llmroute_key_cache_hits",
            "Requests of each client key answered from the cache.",
            &|k| k.cache_hits as f64,
        ),
        (
            "llmroute_key_errors",
            "Requests of each client key that ended with an error.",
            &|k| k.errors as f64,
        ),
        (
            "llmroute_key_charged_usd",
            "What each client key's budget was charged in US dollars: the known cost and the estimates kept for requests sent whose cost is not known.",
            &|k| crate::core::numbers::round_usd(k.charged_usd),
        ),
    ];
    for (name, help, value) in families {
        some_family(o, name, help, per(value));
    }
    some_family(
        o,
        "llmroute_key_cost_usd",
        "Known cost of each client key's requests in US dollars (absent when only unknown costs).",
        r.keys
            .iter()
            .flat_map(|k| {
                known_cost(
                    vec![("key", k.key.clone())],
                    k.cost_usd,
                    k.cost_known,
                    k.cost_unknown_lines,
                )
            })
            .collect(),
    );
}

/// The families by task and model: answers, feedback, and what the router
/// learned (as `report --by task`).
fn per_task(o: &mut String, r: &Report) {
    type Row = super::tasks::TaskReport;
    let per = |value: &dyn Fn(&Row) -> Option<f64>| -> Vec<Sample> {
        r.tasks
            .iter()
            .filter_map(|t| {
                let labels = vec![("task", t.task.clone()), ("model", t.model.clone())];
                value(t).map(|v| (labels, v))
            })
            .collect()
    };
    let families: [Gauge<Row, Option<f64>>; 5] = [
        ("llmroute_task_answered", "Requests of each task each model answered (cache hits included).", &|t| Some(t.answered as f64)),
        ("llmroute_task_feedback", "Feedback given on those answers.", &|t| Some(t.feedback as f64)),
        ("llmroute_task_mean_score", "The mean score of that feedback (absent without any).", &|t| t.mean_score),
        ("llmroute_task_learned_good_share", "What the router learned of the model on the task: the share of good outcomes (absent when nothing was learned).", &|t| t.learned_good_share),
        ("llmroute_task_learned_events", "The feedback events learning took in on the model and task (a count; their weight decays, not it).", &|t| Some(t.learned_events as f64)),
    ];
    for (name, help, value) in families {
        some_family(o, name, help, per(value));
    }
}

/// The families by upstream.
fn per_upstream(o: &mut String, r: &Report) {
    let per = |value: &dyn Fn(&super::upstreams::UpstreamReport) -> f64| -> Vec<Sample> {
        r.upstreams
            .iter()
            .map(|u| (vec![("upstream", u.upstream.clone())], value(u)))
            .collect()
    };
    family(
        o,
        "llmroute_upstream_requests",
        "gauge",
        "Lines ended by a candidate of each upstream (`default`, or a named one).",
        per(&|u| u.requests as f64),
    );
    family(
        o,
        "llmroute_upstream_errors",
        "gauge",
        "Lines that ended with an error on each upstream (that of the last candidate tried).",
        per(&|u| u.errors as f64),
    );
    family(
        o,
        "llmroute_upstream_cost_usd",
        "gauge",
        "Known cost of the lines on each upstream in US dollars (absent when only unknown costs).",
        r.upstreams
            .iter()
            .flat_map(|u| {
                let labels = vec![("upstream", u.upstream.clone())];
                known_cost(labels, u.cost_usd, u.cost_known, u.cost_unknown_lines)
            })
            .collect(),
    );
}

/// The window's totals.
fn totals(o: &mut String, r: &Report) {
    let plain = |v: i64| vec![(vec![], v as f64)];

    family(
        o,
        "llmroute_requests",
        "gauge",
        "Input lines routed, cache hits included.",
        plain(r.requests),
    );
    family(
        o,
        "llmroute_answered",
        "gauge",
        "Lines answered by a model (not from the cache).",
        plain(r.answered),
    );
    family(
        o,
        "llmroute_errors",
        "gauge",
        "Lines that ended with an error.",
        plain(r.errors),
    );
    family(
        o,
        "llmroute_cache_hits",
        "gauge",
        "Lines answered from the cache.",
        plain(r.cache_hits),
    );
    family(
        o,
        "llmroute_cost_usd",
        "gauge",
        "Known cost of the lines in US dollars (absent when only unknown costs).",
        known_cost(vec![], r.cost_usd, r.cost_known, r.cost_unknown_lines),
    );
    family(
        o,
        "llmroute_cost_unknown_lines",
        "gauge",
        "Answered lines whose cost is unknown (no price, no usage.cost).",
        plain(r.cost_unknown_lines),
    );
    family(
        o,
        "llmroute_tokens",
        "gauge",
        "Tokens of the answered lines.",
        vec![
            (vec![("kind", "prompt".into())], r.tokens.prompt as f64),
            (
                vec![("kind", "completion".into())],
                r.tokens.completion as f64,
            ),
        ],
    );
    family(
        o,
        "llmroute_attempts",
        "gauge",
        "Upstream attempts, across models.",
        plain(r.attempts),
    );
    summary_family(
        o,
        "llmroute_latency_seconds",
        "End-to-end latency of answered lines in seconds (exact quantiles).",
        vec![(vec![], &r.latencies)],
    );
}

/// The families by model.
fn per_model(o: &mut String, r: &Report) {
    let per_model = |value: &dyn Fn(&super::ModelReport) -> f64| -> Vec<Sample> {
        r.models
            .iter()
            .map(|m| (vec![("model", m.model.clone())], value(m)))
            .collect()
    };
    family(
        o,
        "llmroute_model_attempts",
        "gauge",
        "Upstream attempts by model.",
        per_model(&|m| m.requests as f64),
    );
    family(
        o,
        "llmroute_model_errors",
        "gauge",
        "Failed upstream attempts by model.",
        per_model(&|m| m.errors as f64),
    );
    family(
        o,
        "llmroute_model_cost_usd",
        "gauge",
        "Cost of the upstream attempts by model in US dollars.",
        r.models
            .iter()
            .flat_map(|m| {
                let labels = vec![("model", m.model.clone())];
                known_cost(labels, m.cost_usd, m.cost_known, m.cost_unknown_attempts)
            })
            .collect(),
    );
    family(
        o,
        "llmroute_model_cost_unknown_attempts",
        "gauge",
        "Successful upstream attempts whose cost is unknown, by model.",
        per_model(&|m| m.cost_unknown_attempts as f64),
    );
    summary_family(
        o,
        "llmroute_model_latency_seconds",
        "Latency of successful upstream attempts by model in seconds (exact quantiles).",
        r.models
            .iter()
            .map(|m| (vec![("model", m.model.clone())], &m.latencies))
            .collect(),
    );
}

type Labels = Vec<(&'static str, String)>;
type Sample = (Labels, f64);

/// A known cost's sample, without float noise; none when the costs are
/// unknown, never a 0 for them.
/// The sample of a known cost: none when every cost is unknown (`any_known`
/// false with some unknown); a free model's $0 is a cost known.
fn known_cost(labels: Labels, known: f64, any_known: bool, unknown: i64) -> Vec<Sample> {
    if unknown > 0 && !any_known {
        Vec::new()
    } else {
        vec![(labels, crate::core::numbers::round_usd(known))]
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A gauge family, left out when it has no sample (the format has no
/// family without one).
fn some_family(out: &mut String, name: &str, help: &str, samples: Vec<Sample>) {
    if !samples.is_empty() {
        family(out, name, "gauge", help, samples);
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<Sample>) {
    header(out, name, kind, help);
    for (labels, value) in samples {
        sample(out, name, &labels, value);
    }
}

/// A summary of latencies kept in milliseconds, given in seconds as
/// Prometheus has it: quantiles (NaN when there are no observations),
/// `_sum`, `_count`.
fn summary_family(out: &mut String, name: &str, help: &str, series: Vec<(Labels, &Latencies)>) {
    const SECONDS_PER_MS: f64 = 1e-3;
    header(out, name, "summary", help);
    for (labels, l) in series {
        for q in QUANTILES {
            let mut with_q = labels.clone();
            with_q.push(("quantile", format!("{}", f64::from(q) / 100.0)));
            let v = l.percentile(q).map_or(f64::NAN, |ms| ms * SECONDS_PER_MS);
            sample(out, name, &with_q, v);
        }
        sample(
            out,
            &format!("{name}_sum"),
            &labels,
            l.sum() * SECONDS_PER_MS,
        );
        sample(out, &format!("{name}_count"), &labels, l.len() as f64);
    }
}

fn sample(out: &mut String, name: &str, labels: &[(&str, String)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", crate::view::text::label_value(v));
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&number(value));
    out.push('\n');
}

/// A sample value as Go's `ParseFloat` reads it.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// A `# HELP` text: backslash and line feed escaped.
fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_model_s_cost_is_a_cost_known() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::Store::open(&dir.path().join("s.db")).unwrap();
        for cost in [Some(0.0), None] {
            s.conn()
                .execute(
                    "INSERT INTO requests (ts, run_id, line, model, ok, cached, latency_ms, attempts, cost_usd)
                     VALUES (10, 'r', 1, 'local:m', 1, 0, 5.0, 1, ?1)",
                    [cost],
                )
                .unwrap();
        }
        let window = super::super::Window::new(crate::cli::Since::All, 20);
        let r = super::super::query::load(s.conn(), &window, &[]).unwrap();
        let text = render(&r);
        assert!(text.contains("\nllmroute_cost_usd 0\n"), "{text}");
    }

    #[test]
    fn a_key_s_answers_and_cache_hits_are_counted_apart_as_in_the_totals() {
        let dir = tempfile::tempdir().unwrap();
        let s = crate::store::Store::open(&dir.path().join("s.db")).unwrap();
        for cached in [0, 1, 1] {
            s.conn()
                .execute(
                    "INSERT INTO requests (ts, run_id, line, model, ok, cached, latency_ms, attempts, key_name)
                     VALUES (10, 'r', 1, 'm/a', 1, ?1, 5.0, 1 - ?1, 'k')",
                    [cached],
                )
                .unwrap();
        }
        let window = super::super::Window::new(crate::cli::Since::All, 20);
        let mut r = super::super::query::load(s.conn(), &window, &[]).unwrap();
        r.keys = super::super::keys::load(s.conn(), &window, &[]).unwrap();
        let text = render(&r);
        assert!(text.contains("\nllmroute_answered 1\n"), "{text}");
        assert!(text.contains("\nllmroute_cache_hits 2\n"), "{text}");
        assert!(
            text.contains("llmroute_key_answered{key=\"k\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("llmroute_key_cache_hits{key=\"k\"} 2\n"),
            "{text}"
        );
    }

    #[test]
    fn escapes_label_values_and_help() {
        assert_eq!(crate::view::text::label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(crate::view::text::label_value("x\ny"), r"x\ny");
        assert_eq!(escape_help("a\\b\nc \"d\""), "a\\\\b\\nc \"d\"");
    }

    #[test]
    fn values_read_as_go_floats() {
        assert_eq!(number(10.0), "10");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn a_summary_without_observations_has_nan_quantiles() {
        let mut out = String::new();
        summary_family(
            &mut out,
            "x_seconds",
            "h",
            vec![(vec![("model", "a\"b".into())], &Latencies::default())],
        );
        assert_eq!(
            out,
            "# HELP x_seconds h\n# TYPE x_seconds summary\n\
             x_seconds{model=\"a\\\"b\",quantile=\"0.5\"} NaN\n\
             x_seconds{model=\"a\\\"b\",quantile=\"0.95\"} NaN\n\
             x_seconds{model=\"a\\\"b\",quantile=\"0.99\"} NaN\n\
             x_seconds_sum{model=\"a\\\"b\"} 0\n\
             x_seconds_count{model=\"a\\\"b\"} 0\n"
        );
    }
}
