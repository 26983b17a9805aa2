//! The routing-quality benchmark: scripted scenarios run through the real
//! binary against the fake upstream, each measured against an oracle that
//! knows the true latencies. Prints one JSON object; `bench/run` (scenario
//! 8, in `bench/suite/commands.py`) puts it in BENCHMARKS.md.
//!
//! - `cold_start`: three unknown models of 300, 120 and 15 ms, listed
//!   slowest first, `-p speed`, 200 lines at `-j 8`.
//! - `failing`: the best model by its priors answers 500 every time; two
//!   runs of 100 lines on one store.
//! - `drift`: a 10 ms model slows to 100 ms for 60 lines, then recovers for
//!   80 (one line at a time); the other model takes 60 ms.
//! - `heavy_tail`: 4% of the best model's answers take 100 times its 10 ms;
//!   the other takes 15 ms; 500 lines at `-j 8`, `-p quality`, without and
//!   with `--hedge auto`.
//! - `every_tail`: three 20 ms models, each with a 4% tail of 2.5 s, prices
//!   apart; 60 lines to warm up, then 200 at `-j 8`, `-p cost`, without and
//!   with `--hedge auto`, in several trials (each its own tail draws).
//!
//! usage: cargo run --release --example routing_quality [-- LLMROUTE_BINARY [SCENARIO...]]
//!
//! `ROUTING_TRIALS` sets the trials of `every_tail` (default 8);
//! `ROUTING_DUMP=DIR` writes each of its trials' output lines there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fake_openrouter::{Behavior, FakeServer, ModelSpec};
use serde_json::{json, Value};

struct World {
    dir: tempfile::TempDir,
    server: FakeServer,
    bin: PathBuf,
}

impl World {
    fn new(bin: &Path, models: &[(&str, f64)]) -> World {
        let specs = models
            .iter()
            .map(|(m, intelligence)| {
                ModelSpec::new(m)
                    .prices("0.000001", "0.000002")
                    .intelligence(*intelligence)
            })
            .collect();
        World {
            dir: tempfile::tempdir().expect("a temporary directory"),
            server: FakeServer::start(specs),
            bin: bin.to_path_buf(),
        }
    }

    /// Runs llmroute on `lines` prompts (named `tag`) and returns its output lines.
    fn run(&self, args: &[&str], tag: &str, lines: usize) -> Vec<Value> {
        let input: String = (0..lines)
            .map(|i| format!("{{\"prompt\":\"{tag} {i}\"}}\n"))
            .collect();
        let mut child = Command::new(&self.bin)
            .args(args)
            .arg("-q")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("OPENROUTER_API_KEY", "bench")
            .env("LLMROUTE_BASE_URL", self.server.base_url())
            .env("LLMROUTE_DB", self.dir.path().join("store.db"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("llmroute starts");
        let mut stdin = child.stdin.take().expect("stdin");
        let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("llmroute runs");
        feeder.join().expect("the feeder").expect("input written");
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON lines"))
            .collect()
    }
}

fn model(l: &Value) -> &str {
    l["model"].as_str().unwrap_or("")
}

fn first_model(l: &Value) -> &str {
    l["attempts"][0]["model"].as_str().unwrap_or("")
}

fn latencies(lines: &[Value]) -> Vec<f64> {
    let mut ms: Vec<f64> = lines
        .iter()
        .map(|l| l["latency_ms"].as_f64().unwrap_or(0.0))
        .collect();
    ms.sort_by(f64::total_cmp);
    ms
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.saturating_sub(1).min(sorted.len() - 1)]
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn cold_start(bin: &Path) -> Value {
    let w = World::new(bin, &[("m/slow", 40.0), ("m/mid", 40.0), ("m/fast", 40.0)]);
    for (m, ms) in [("m/slow", 300), ("m/mid", 120), ("m/fast", 15)] {
        w.server.set_default(m, Behavior::ok_after(ms));
    }
    let lines = w.run(
        &["--models", "m/slow,m/mid,m/fast", "-p", "speed", "-j", "8"],
        "cold",
        200,
    );
    let off_best = lines.iter().filter(|l| model(l) != "m/fast").count();
    json!({
        "lines": lines.len(),
        "on_best": lines.len() - off_best,
        "off_best": off_best,
        "extra_latency_ms": round(mean(&latencies(&lines)) - 15.0),
    })
}

fn failing(bin: &Path) -> Value {
    let w = World::new(bin, &[("m/bad", 58.0), ("m/good", 40.0)]);
    w.server.set_default("m/bad", Behavior::status(500));
    w.server.set_default("m/good", Behavior::ok_after(40));
    let mut first_failed = 0;
    let mut all = Vec::new();
    for run in 0..2 {
        let lines = w.run(
            &["--models", "m/bad,m/good", "-p", "quality", "-j", "4"],
            &format!("fail{run}"),
            100,
        );
        first_failed += lines.iter().filter(|l| first_model(l) == "m/bad").count();
        all.extend(lines);
    }
    json!({
        "lines": all.len(),
        "failed_first_attempts": first_failed,
        "unanswered": all.iter().filter(|l| !l["error"].is_null()).count(),
        "extra_latency_ms": round(mean(&latencies(&all)) - 40.0),
    })
}

fn drift(bin: &Path) -> Value {
    let w = World::new(bin, &[("m/a", 40.0), ("m/b", 40.0)]);
    w.server.set_default("m/a", Behavior::ok_after(10));
    w.server.set_default("m/b", Behavior::ok_after(60));
    let args = [
        "--models",
        "m/a,m/b",
        "-p",
        "speed",
        "-j",
        "1",
        "--no-cache",
    ];
    w.run(&args, "warm", 40);
    w.server.set_default("m/a", Behavior::ok_after(100));
    let slow = w.run(&args, "slow", 60);
    w.server.set_default("m/a", Behavior::ok_after(10));
    let back = w.run(&args, "back", 80);
    let on_a = |ls: &[Value]| ls.iter().filter(|l| model(l) == "m/a").count();
    // Lines until a model holds nine of the next ten.
    let settled = |ls: &[Value], m: &str| {
        (0..ls.len())
            .find(|i| ls[*i..].iter().take(10).filter(|l| model(l) == m).count() >= 9)
            .unwrap_or(ls.len())
    };
    json!({
        "slowdown": {
            "lines": slow.len(),
            "lines_to_adapt": settled(&slow, "m/b"),
            "lines_on_slow_model": on_a(&slow),
            "extra_latency_ms": round(mean(&latencies(&slow)) - 60.0),
        },
        "recovery": {
            "lines": back.len(),
            "lines_to_adapt": settled(&back, "m/a"),
            "extra_latency_ms": round(mean(&latencies(&back)) - 10.0),
        },
    })
}

fn heavy_tail(bin: &Path, hedge: &str) -> Value {
    // The tail model is the smarter: it is the choice under -p quality.
    let w = World::new(bin, &[("m/tail", 58.0), ("m/steady", 40.0)]);
    w.server.set_default(
        "m/tail",
        Behavior::Tail {
            latency: Duration::from_millis(10),
            slow: Duration::from_millis(1000),
            slow_rate: 0.04,
            seed: 11,
        },
    );
    w.server.set_default("m/steady", Behavior::ok_after(15));
    let args = [
        "--models",
        "m/tail,m/steady",
        "-p",
        "quality",
        "-j",
        "8",
        "--no-cache",
        "--hedge",
        hedge,
    ];
    // Warm: both measured, enough answers for a percentile.
    w.run(&args, "warm", 100);
    w.server.clear_log();
    let lines = w.run(&args, "tail", 500);
    let ms = latencies(&lines);
    let requests = w.server.completions().len();
    json!({
        "hedge": hedge,
        "lines": lines.len(),
        "p50_ms": round(pct(&ms, 50.0)),
        "p99_ms": round(pct(&ms, 99.0)),
        "requests": requests,
        "extra_requests": round(100.0 * (requests as f64 / lines.len() as f64 - 1.0)),
    })
}

/// The tail of the `every_tail` scenario: 4% of answers take 2.5 s.
const TAIL_MS: u64 = 2_500;

/// One trial of `every_tail`: every model has the same heavy tail, so a
/// hedge can only cut it by going to another model that tails too.
fn every_tail_trial(bin: &Path, hedge: &str, trial: u64) -> Value {
    let models = [
        ("m/cheap", "0.000001"),
        ("m/mid", "0.000002"),
        ("m/dear", "0.000004"),
    ];
    let specs = models
        .iter()
        .map(|(m, price)| ModelSpec::new(m).prices(*price, *price).intelligence(40.0))
        .collect();
    let w = World {
        dir: tempfile::tempdir().expect("a temporary directory"),
        server: FakeServer::start(specs),
        bin: bin.to_path_buf(),
    };
    for (k, (m, _)) in models.iter().enumerate() {
        w.server.set_default(
            m,
            Behavior::Tail {
                latency: Duration::from_millis(20),
                slow: Duration::from_millis(TAIL_MS),
                slow_rate: 0.04,
                // Far apart: a model's draws are the next one's, shifted by
                // the difference of their seeds.
                seed: (trial << 32) + ((k as u64) << 20),
            },
        );
    }
    let args = [
        "--models",
        "m/cheap,m/mid,m/dear",
        "-p",
        "cost",
        "-j",
        "8",
        "--no-cache",
        "--hedge",
        hedge,
    ];
    w.run(&args, "warm", 60);
    // The draws go on where the warm-up left them; requests count from here.
    let before = w.server.completions().len();
    let lines = w.run(&args, "tail", 200);
    let requests = w.server.completions().len() - before;
    if let Ok(dir) = std::env::var("ROUTING_DUMP") {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let path = Path::new(&dir).join(format!("{hedge}-{trial}.jsonl"));
        std::fs::write(path, text).expect("the dump is written");
    }
    let ms = latencies(&lines);
    let slow = |l: &&Value| l["latency_ms"].as_f64().unwrap_or(0.0) >= TAIL_MS as f64 * 0.9;
    let attempts = |l: &Value| l["attempts"].as_array().map_or(0, Vec::len);
    let hedged = lines.iter().filter(|l| attempts(l) > 1).count();
    let sent: usize = lines.iter().map(attempts).sum();
    json!({
        "lines": lines.len(),
        "p50_ms": round(pct(&ms, 50.0)),
        "p95_ms": round(pct(&ms, 95.0)),
        "p99_ms": round(pct(&ms, 99.0)),
        "max_ms": round(pct(&ms, 100.0)),
        "slow_lines": lines.iter().filter(slow).count(),
        "hedged_lines": hedged,
        // Sent by llmroute; some, cancelled at once, never reached the server.
        "extra_attempts": sent.saturating_sub(lines.len()),
        "extra_requests": requests.saturating_sub(lines.len()),
        "errors": lines.iter().filter(|l| !l["error"].is_null()).count(),
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => 0.0,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

fn every_tail(bin: &Path) -> Value {
    let trials: u64 = std::env::var("ROUTING_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(8)
        .max(1);
    let mut result = serde_json::Map::new();
    for hedge in ["off", "auto"] {
        let runs: Vec<Value> = (1..=trials)
            .map(|t| every_tail_trial(bin, hedge, t))
            .collect();
        let of = |k: &str| median(runs.iter().map(|r| r[k].as_f64().unwrap_or(0.0)).collect());
        let under = runs
            .iter()
            .filter(|r| r["p99_ms"].as_f64().unwrap_or(f64::MAX) < TAIL_MS as f64 * 0.5)
            .count();
        result.insert(
            hedge.to_string(),
            json!({
                "trials": runs,
                "p99_ms": round(of("p99_ms")),
                "p95_ms": round(of("p95_ms")),
                "extra_attempts": of("extra_attempts"),
                "extra_requests": of("extra_requests"),
                "p99_under_tail": under,
            }),
        );
    }
    result.insert("tail_ms".into(), json!(TAIL_MS));
    Value::Object(result)
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let bin = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/llmroute"));
    let only: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    let mut result = serde_json::Map::new();
    if wanted("cold_start") {
        result.insert("cold_start".into(), cold_start(&bin));
    }
    if wanted("failing") {
        result.insert("failing".into(), failing(&bin));
    }
    if wanted("drift") {
        result.insert("drift".into(), drift(&bin));
    }
    if wanted("heavy_tail") {
        let off = heavy_tail(&bin, "off");
        let auto = heavy_tail(&bin, "auto");
        let cut =
            off["p99_ms"].as_f64().unwrap_or(0.0) / auto["p99_ms"].as_f64().unwrap_or(1.0).max(1.0);
        result.insert(
            "heavy_tail".into(),
            json!({ "off": off, "auto": auto, "p99_cut": round(cut) }),
        );
    }
    if wanted("every_tail") {
        result.insert("every_tail".into(), every_tail(&bin));
    }
    let result = Value::Object(result);
    println!("{}", serde_json::to_string_pretty(&result).expect("JSON"));
}
