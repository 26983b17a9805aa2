//! The floor under every llmroute run: posts each line of a JSONL file to an
//! OpenRouter-compatible API with llmroute's own upstream client (the same
//! reqwest set-up, runtime, allocator and response parsing) and does nothing
//! else: no routing, no cache, no store, no output lines. `bench/run` runs it
//! beside llmroute and the raw-HTTP load generator, so that the gap between
//! llmroute and the raw limit can be split into what the HTTP client costs
//! and what llmroute's own work costs.
//!
//! ```text
//! cargo run --release --example client_floor -- BASE_URL CONCURRENCY MODELS FILE
//! ```
//!
//! Prints one JSON object: requests, errors, seconds and requests per second.

use std::sync::Arc;
use std::time::{Duration, Instant};

use llmroute::upstream::Client;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base_url, concurrency, models, file] = args.as_slice() else {
        return Err("usage: client_floor BASE_URL CONCURRENCY MODELS FILE".into());
    };
    let concurrency: usize = concurrency
        .parse()
        .map_err(|e| format!("concurrency: {e}"))?;
    let models: Vec<&str> = models.split(',').collect();
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    // Bodies are built before the clock starts: only the HTTP work is timed.
    let bodies = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let mut v: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(l).map_err(|e| format!("{file}: line {}: {e}", i + 1))?;
            v.remove("id");
            v.remove("llmroute");
            v.insert("model".into(), models[i % models.len()].into());
            Ok(serde_json::to_vec(&v).expect("a JSON map serialises"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let client = Arc::new(Client::new(base_url, Some("bench"), concurrency)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let requests = bodies.len();
    let (errors, seconds) = rt.block_on(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(requests);
        for body in bodies {
            let slot = slots.clone().acquire_owned().await.expect("never closed");
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let ok = client.complete(body, Duration::from_secs(60)).await.is_ok();
                drop(slot);
                ok
            }));
        }
        let mut errors = 0usize;
        for t in tasks {
            if !t.await.unwrap_or(false) {
                errors += 1;
            }
        }
        (errors, started.elapsed().as_secs_f64())
    });
    println!(
        "{}",
        serde_json::json!({
            "requests": requests,
            "errors": errors,
            "seconds": seconds,
            "requests_per_s": requests as f64 / seconds,
        })
    );
    Ok(())
}
