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
//!
//! usage: cargo run --release --example routing_quality [-- LLMROUTE_BINARY]

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

fn main() {
    let bin = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/release/llmroute"));
    let off = heavy_tail(&bin, "off");
    let auto = heavy_tail(&bin, "auto");
    let cut =
        off["p99_ms"].as_f64().unwrap_or(0.0) / auto["p99_ms"].as_f64().unwrap_or(1.0).max(1.0);
    let result = json!({
        "cold_start": cold_start(&bin),
        "failing": failing(&bin),
        "drift": drift(&bin),
        "heavy_tail": { "off": off, "auto": auto, "p99_cut": round(cut) },
    });
    println!("{}", serde_json::to_string_pretty(&result).expect("JSON"));
}
