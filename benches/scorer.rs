//! Decision time: how long llmroute takes to choose a model for one request.
//!
//! Two levels, each over 8 candidates (the built-in list) and over the whole
//! real catalogue (`tests/fixtures/openrouter-models.json`, 337 models):
//!
//! - `decision/route/*`: `routing::rank`, the full decision of a live run:
//!   eligibility against the catalogue, cost estimate, quality prior, scoring
//!   and the ranked list it returns.
//! - `decision/score/*`: `scoring::rank_into` alone, the pure scorer over
//!   ready-made candidates, with a reused output buffer.
//!
//! Every model has a measured latency, as after a few runs. `bench/run` runs
//! this with `cargo bench --bench scorer` and reads the medians that criterion
//! writes under `target/criterion/`.
//!
//! `learned/*` is the same decision over the 8 candidates for a request with
//! a task, when quality was learned from feedback: each candidate's quality
//! is a posterior looked up by task and model among 58 tasks, decayed to
//! now, as a live process holds them (`engine::learned::QualityBook`), and
//! each start pooled from its other tasks and the other candidates.
//! `learned/plan` is the whole choice at a request where exploration looks
//! for a quality probe (every candidate's posterior's spread weighed).

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use llmroute::core::catalogue::{Catalogue, Origin};
use llmroute::core::explore;
use llmroute::core::health::HealthView;
use llmroute::core::learned::{Posterior, HALF_LIFE_MS};
use llmroute::core::quality;
use llmroute::core::ranking::plan;
use llmroute::core::ranking::{rank, Settings, DEFAULT_MODELS};
use llmroute::core::request::parse_line;
use llmroute::core::scoring::{rank_into, Candidate, Priority, Scored, Weights};
use llmroute::engine::learned::QualityBook;
use llmroute::store::ModelStat;

const FIXTURE: &[u8] = include_bytes!("../tests/fixtures/openrouter-models.json");

/// A typical line: a system and a user message, `max_tokens`, `temperature`.
const LINE: &[u8] = br#"{"id":"r1","messages":[{"role":"system","content":"You are a concise assistant. Answer in one sentence."},{"role":"user","content":"Question 1: explain how a pipe connects two processes. Please keep the answer short and concrete, and mention one example."}],"max_tokens":256,"temperature":0.2}"#;

/// A deterministic latency between 150 and 2,500 ms for model number `i`.
fn latency(i: usize) -> f64 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    150.0 + (x % 2351) as f64
}

fn stats_for(models: &[String]) -> HashMap<String, ModelStat> {
    models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                m.clone(),
                ModelStat {
                    ewma_ms: latency(i),
                    samples: 20,
                    tries: 20,
                    ..Default::default()
                },
            )
        })
        .collect()
}

fn settings(models: Vec<String>) -> Settings {
    Settings::new(
        "balanced".into(),
        Priority::Balanced.weights(),
        models,
        vec![],
        HashMap::new(),
    )
}

/// The scorer's inputs for `models`, as `routing::rank` builds them.
fn candidates(
    catalogue: &Catalogue,
    models: &[String],
    prompt: u64,
    completion: u64,
) -> Vec<Candidate> {
    let none = HashMap::new();
    models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let info = catalogue.get(m);
            Candidate {
                latency_ms: Some(latency(i)),
                cost_usd: info.and_then(|i| i.estimate_cost(prompt, completion)),
                quality: quality::prior(m, info.and_then(|i| i.intelligence_index), &none),
                error_rate: 0.0,
            }
        })
        .collect()
}

fn decision(c: &mut Criterion) {
    let catalogue = Catalogue::parse(FIXTURE, Origin::Live).expect("the fixture parses");
    let req = parse_line(LINE).expect("the request parses");
    let eight: Vec<String> = DEFAULT_MODELS.iter().map(|m| m.to_string()).collect();
    let all: Vec<String> = catalogue.models().iter().map(|m| m.id.clone()).collect();
    let weights: Weights = Priority::Balanced.weights();

    let mut group = c.benchmark_group("decision");
    for (name, models) in [("8_candidates", &eight), ("catalogue", &all)] {
        let s = settings(models.clone());
        let stats = stats_for(models);
        let ranking = rank(&req, &s, &catalogue, &stats, None);
        assert!(!ranking.ranked.is_empty(), "{name}: no eligible model");
        group.bench_function(format!("route/{name}"), |b| {
            b.iter(|| rank(black_box(&req), &s, &catalogue, &stats, None))
        });
        // The whole choice of a request: the plan (ranking, fallback,
        // limits) and exploration's probe.
        let now = std::time::Instant::now();
        group.bench_function(format!("plan/{name}"), |b| {
            b.iter(|| {
                let p = plan(black_box(&req), &s, &catalogue, &stats, None, false);
                black_box(explore::choose(&p.order, &stats, now, (7, 0.05), None))
            })
        });

        let cands = candidates(
            &catalogue,
            models,
            req.prompt_tokens,
            req.completion_tokens(),
        );
        let mut out: Vec<Scored> = Vec::with_capacity(cands.len());
        group.bench_function(format!("score/{name}"), |b| {
            b.iter(|| {
                rank_into(black_box(&cands), &weights, &mut out);
                black_box(out.first().map(|s| s.index))
            })
        });
    }
    group.finish();
}

/// The line above with a task.
const TASK_LINE: &[u8] = br#"{"id":"r1","messages":[{"role":"system","content":"You are a concise assistant. Answer in one sentence."},{"role":"user","content":"Question 1: explain how a pipe connects two processes. Please keep the answer short and concrete, and mention one example."}],"max_tokens":256,"temperature":0.2,"llmroute":{"task":"mmlu/task-7"}}"#;

/// What a decision sees when quality was learned: measured latencies, and
/// the posteriors of a [`QualityBook`] as of `now_ms`, as the engine's view
/// of its health holds them.
struct Learned<'a> {
    stats: &'a HashMap<String, ModelStat>,
    book: &'a QualityBook,
    now_ms: i64,
}

impl HealthView for Learned<'_> {
    fn stat(&self, model: &str) -> Option<ModelStat> {
        self.stats.get(model).copied()
    }
    fn learned(&self, task: &str, model: &str) -> Option<Posterior> {
        self.book.get(task, model, self.now_ms)
    }
    fn learned_overall(&self, model: &str) -> Option<Posterior> {
        self.book.overall(model, self.now_ms)
    }
    fn cooling_until(&self, _: &str) -> Option<std::time::Instant> {
        None
    }
}

fn learned(c: &mut Criterion) {
    let catalogue = Catalogue::parse(FIXTURE, Origin::Live).expect("the fixture parses");
    let req = parse_line(TASK_LINE).expect("the request parses");
    let eight: Vec<String> = DEFAULT_MODELS.iter().map(|m| m.to_string()).collect();
    let s = settings(eight.clone());
    let stats = stats_for(&eight);
    // 58 tasks, as MMLU's subjects and GSM8K; every model has feedback on
    // each, an hour old (so every lookup decays it).
    let now_ms = 1_800_000_000_000;
    let book = QualityBook::new(HALF_LIFE_MS);
    for t in 0..58 {
        for (i, m) in eight.iter().enumerate() {
            let n = 10 + ((t * 7 + i * 13) % 90) as u64;
            let good = n as f64 * (0.3 + 0.6 * latency(t * 8 + i) / 2500.0);
            book.set(
                &format!("mmlu/task-{t}"),
                m,
                Posterior {
                    good,
                    bad: n as f64 - good,
                    events: n,
                    at_ms: now_ms - 3_600_000,
                },
            );
        }
    }
    let view = Learned {
        stats: &stats,
        book: &book,
        now_ms,
    };
    let ranking = rank(&req, &s, &catalogue, &view, None);
    assert!(
        ranking.ranked.iter().all(|r| r.quality_events > 0),
        "every candidate's quality is learned"
    );
    let mut group = c.benchmark_group("learned");
    group.bench_function("route/8_candidates", |b| {
        b.iter(|| rank(black_box(&req), &s, &catalogue, &view, None))
    });
    // Tick 20 of a 0.05 share: an exploring request that weighs a quality
    // probe first.
    let now = std::time::Instant::now();
    let terms = explore::Terms {
        task: req.task(),
        quality: s.weights.quality,
        latency: s.weights.latency,
    };
    group.bench_function("plan/8_candidates", |b| {
        b.iter(|| {
            let p = plan(black_box(&req), &s, &catalogue, &view, None, false);
            black_box(explore::choose(
                &p.order,
                &view,
                now,
                (20, 0.05),
                Some(terms),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, decision, learned);
criterion_main!(benches);
