//! `llmroute models`: the candidate models (or the whole catalogue) with
//! their prices, context window, quality prior, measured latency, error
//! rate, cooldown, and the score each would get now, best first.
//!
//! Scores are for a reference request of [`REF_PROMPT_TOKENS`] prompt tokens
//! and [`REF_COMPLETION_TOKENS`] completion tokens, under `--priority` or
//! `--weights`; measurements are over the attempts the store holds.

use std::collections::HashMap;
use std::time::Duration;

use comfy_table::presets::NOTHING;
use comfy_table::{CellAlignment, Table};
use serde::Serialize;

use crate::cli::ModelsArgs;
use crate::core::health::{describe, HealthView, State};
use crate::core::learned::Posterior;
use crate::core::quality;
use crate::core::ranking;
use crate::core::request::Request;
use crate::options::Options;
use crate::setup as app;
use crate::store::{self, Store};
use crate::upstream::Client;

pub const REF_PROMPT_TOKENS: u64 = 500;
pub const REF_COMPLETION_TOKENS: u64 = 512;

/// One row of the listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub model: String,
    pub in_catalogue: bool,
    /// USD per million prompt / completion tokens.
    pub prompt_usd_per_mtok: Option<f64>,
    pub completion_usd_per_mtok: Option<f64>,
    pub context_length: Option<u64>,
    /// The quality the score uses on the task: the prior, or learned.
    pub quality: f64,
    /// `prior`, or `learned`.
    pub quality_source: &'static str,
    /// The feedback events it learned from on the task.
    pub quality_events: u64,
    pub latency_ms: Latency,
    pub attempts: i64,
    pub errors: i64,
    pub error_rate: Option<f64>,
    /// Unix ms until which the model is paused (a rate limit, or its
    /// circuit open after failures).
    pub cooldown_until: Option<i64>,
    /// `prior` (never tried), `probing` (tried fewer than 3 times),
    /// `measured`, or `cooling` (paused).
    pub state: &'static str,
    /// Why it is in that state.
    pub why: String,
    /// `null` when the model cannot take the reference request.
    pub score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    /// The recency-weighted average routing uses.
    pub ewma: Option<f64>,
    pub p95: Option<f64>,
    pub samples: i64,
}

/// Runs `llmroute models`.
pub fn main(args: &ModelsArgs, options: &Options) -> anyhow::Result<i32> {
    let settings = options.settings()?;
    let base = options.base_url.clone();
    let key = app::api_key().map(|(_, k)| k);
    let client = Client::new(&base, key.as_deref(), 1).map_err(anyhow::Error::msg)?;
    let path = options.store_path()?;
    // The default store is where the catalogue is kept, so a first look
    // at the models may create it; a store named by --db must exist.
    let mut store = match (&options.db, &args.reset) {
        (Some(_), None) => crate::setup::open_to_read(&path)?,
        (Some(_), Some(_)) => crate::setup::open_existing(&path)?,
        (None, _) => Store::open(&path)?,
    };
    store.set_upstream(&crate::upstream::identity(&base));
    if let Some(models) = &args.reset {
        return reset(&store, models, options, &path);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let catalogue = match args.refresh {
        true => app::refresh_catalogue(&store, &client, &base, &rt)?,
        false => app::load_catalogue(&store, Some(&client), &base, &rt, false, false),
    };
    // Every upstream's candidates, `NAME:model`, with the prices each lists or its table sets.
    let fetch = match args.refresh {
        true => crate::wiring::Fetch::Again,
        false => crate::wiring::Fetch::WhenStale,
    };
    let (_, catalogue) =
        crate::wiring::with_named_candidates(options, &store, &rt, 1, fetch, false, catalogue)?;

    let ids: Vec<String> = if args.all {
        catalogue.models().iter().map(|m| m.id.clone()).collect()
    } else {
        settings.models.to_vec()
    };
    let mut settings = settings;
    settings = ranking::Settings::new(
        settings.priority.clone(),
        settings.weights,
        ids.clone(),
        Vec::new(),
        (*settings.quality).clone(),
    );
    if !args.all {
        if let Some(w) = app::unknown_candidates(&settings, &catalogue) {
            eprintln!("{w}");
        }
    }
    app::warn_no_prices(&settings, &catalogue);
    let stats = store.model_stats().map_err(app::store_fatal(&path))?;
    let cooldowns = store
        .cooldowns_and_why(store::now_ms())
        .map_err(app::store_fatal(&path))?;
    let mut reference = reference_request();
    let task = args
        .task
        .clone()
        .unwrap_or_else(|| crate::core::learned::DEFAULT_TASK.to_string());
    reference.default_task(&task);
    let (learned, overall) = learned_of(options, &store, &rt, &ids, &task)?;
    let seen = Learned {
        stats: &stats,
        learned: &learned,
        overall: &overall,
    };
    let ranking = ranking::rank(&reference, &settings, &catalogue, &seen, None);

    let known = Known {
        catalogue: &catalogue,
        store: &store,
        path: &path,
        settings: &settings,
        stats: &stats,
        cooldowns: &cooldowns,
        ranking: &ranking,
    };
    let mut rows = ids
        .iter()
        .map(|id| row(id, &known))
        .collect::<anyhow::Result<Vec<Row>>>()?;
    rows.sort_by(|a, b| match (a.score, b.score) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.model.cmp(&b.model),
    });
    app::write_stdout(render(&rows, args.json, &settings)?.as_bytes())
}

/// Each model's quality learned on `task`, and over every task, as routing
/// sees it: a task past the bound is learned under `other`, and with
/// --redis what every machine learned counts.
fn learned_of(
    options: &Options,
    store: &Store,
    rt: &tokio::runtime::Runtime,
    ids: &[String],
    task: &str,
) -> anyhow::Result<(HashMap<String, Posterior>, HashMap<String, Posterior>)> {
    let book = crate::wiring::learned_book(options, store, rt)?;
    let now = store::now_ms();
    let learned = ids
        .iter()
        .filter_map(|m| Some((m.clone(), book.get(task, m, now)?)))
        .collect();
    let overall = ids
        .iter()
        .filter_map(|m| Some((m.clone(), book.overall(m, now)?)))
        .collect();
    Ok((learned, overall))
}

/// The rows as JSON, or as a table under a line that says what they score.
fn render(rows: &[Row], json: bool, settings: &ranking::Settings) -> anyhow::Result<String> {
    if json {
        let mut s = serde_json::to_string_pretty(rows)?;
        s.push('\n');
        return Ok(s);
    }
    let header = format!(
        "{}, priority {} ({}); scores for {} prompt + {} completion tokens\n",
        crate::core::numbers::counted(rows.len() as u64, "model"),
        settings.priority,
        settings.weights,
        REF_PROMPT_TOKENS,
        REF_COMPLETION_TOKENS
    );
    Ok(format!("{header}{}\n", table(rows, store::now_ms())))
}

/// `models --reset`: forgets the health of `models` (every model when
/// empty) on this upstream, in the store and, with `--redis`, in Redis.
fn reset(
    store: &Store,
    models: &[String],
    options: &Options,
    path: &std::path::Path,
) -> anyhow::Result<i32> {
    let names: Vec<String> = options.upstreams.keys().cloned().collect();
    let forgotten = store.reset_health(models).map_err(app::store_fatal(path))?;
    // `lcoal:llama3`, of which nothing was known: a misspelt upstream, not
    // a model whose health is now forgotten.
    for m in models.iter().filter(|m| !forgotten.contains(m)) {
        if let Some(why) = crate::upstreams::misspelt(m, &names, |_| false) {
            anyhow::bail!("{why}");
        }
    }
    let mut shared = None;
    if let Some(r) = &options.redis {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        shared = rt.block_on(async {
            let link = crate::shared::Link::open(&r.url, &r.prefix, r.timeout).await?;
            anyhow::Ok(crate::shared::health::forget(&link, store.upstream(), models).await)
        })?;
        if shared.is_none() {
            anyhow::bail!("cannot reach Redis at {}", crate::shared::shown(&r.url));
        }
    }
    let which = match models.is_empty() {
        true => "every model".to_string(),
        false => models.join(", "),
    };
    let n = forgotten.len();
    // Where: a named upstream's candidates by its name, the rest on the
    // default upstream's URL.
    let mut places: Vec<String> = models
        .iter()
        .map(|m| crate::upstreams::label(m, &names))
        .collect();
    places.sort();
    places.dedup();
    let place = match places.as_slice() {
        [] => format!("on {}", store.upstream()),
        _ => places
            .iter()
            .map(|p| match p.as_str() {
                "default" => format!("on {}", store.upstream()),
                named => format!("on upstream {named}"),
            })
            .collect::<Vec<_>>()
            .join(" and "),
    };
    let mut text = format!(
        "forgot the health of {which} {place} ({n} {} had some in the store",
        if n == 1 { "model" } else { "models" }
    );
    if let Some(keys) = shared {
        text.push_str(&format!(
            ", {keys} Redis {}",
            if keys == 1 { "key" } else { "keys" }
        ));
    }
    text.push_str(")\n");
    app::write_stdout(text.as_bytes())
}

/// What one listing needs to know.
struct Known<'a> {
    catalogue: &'a crate::core::catalogue::Catalogue,
    store: &'a Store,
    path: &'a std::path::Path,
    settings: &'a ranking::Settings,
    stats: &'a std::collections::HashMap<String, crate::core::health::ModelStat>,
    /// Each paused model's until (unix ms) and why.
    cooldowns: &'a std::collections::HashMap<String, (i64, String)>,
    ranking: &'a ranking::Ranking,
}

/// The listing's row of `id`.
fn row(id: &str, k: &Known<'_>) -> anyhow::Result<Row> {
    let info = k.catalogue.get(id);
    let (latencies, attempts, errors) = k
        .store
        .model_measurements(id, i64::MIN)
        .map_err(app::store_fatal(k.path))?;
    let stat = k.stats.get(id);
    let now_ms = store::now_ms();
    let pause = k.cooldowns.get(id).filter(|(until, _)| *until > now_ms);
    let paused = pause.map(|(until, _)| ((until - now_ms) / 1000) as u64);
    let ranked = k.ranking.ranked.iter().find(|r| r.model == id);
    // A circuit opened by failures in a row is open, not cooling.
    let state = match pause {
        Some((_, why)) if why == crate::engine::ports::Pause::Circuit.name() => State::Open,
        Some(_) => State::Cooling,
        None => k.stats.state(id, std::time::Instant::now()),
    };
    Ok(Row {
        model: id.to_string(),
        in_catalogue: info.is_some(),
        prompt_usd_per_mtok: info.and_then(|i| i.prompt_price).map(|p| round(p * 1e6, 6)),
        completion_usd_per_mtok: info
            .and_then(|i| i.completion_price)
            .map(|p| round(p * 1e6, 6)),
        context_length: info.and_then(|i| i.context_length),
        quality: round(
            ranked.map_or_else(
                || {
                    quality::prior(
                        id,
                        info.and_then(|i| i.intelligence_index),
                        &k.settings.quality,
                    )
                },
                |r| r.quality,
            ),
            4,
        ),
        quality_source: ranked.map_or("prior", |r| r.quality_source.name()),
        quality_events: ranked.map_or(0, |r| r.quality_events),
        latency_ms: Latency {
            ewma: stat.filter(|s| s.samples > 0).map(|s| round(s.ewma_ms, 3)),
            p95: crate::core::health::percentile(&latencies, 95).map(|p| round(p, 3)),
            samples: stat.map_or(0, |s| s.samples),
        },
        attempts,
        errors,
        error_rate: (attempts > 0).then(|| errors as f64 / attempts as f64),
        cooldown_until: k.cooldowns.get(id).map(|(until, _)| *until),
        state: state.name(),
        why: describe(state, stat.copied(), paused),
        score: ranked.map(|r| round(r.score, 4)),
    })
}

/// What a listing knows of the models: their measurements, and what
/// feedback taught of them on the task listed.
struct Learned<'a> {
    stats: &'a std::collections::HashMap<String, crate::core::health::ModelStat>,
    learned: &'a HashMap<String, Posterior>,
    overall: &'a HashMap<String, Posterior>,
}

impl HealthView for Learned<'_> {
    fn stat(&self, model: &str) -> Option<crate::core::health::ModelStat> {
        self.stats.stat(model)
    }
    fn cooling_until(&self, model: &str) -> Option<std::time::Instant> {
        self.stats.cooling_until(model)
    }
    fn learned(&self, _task: &str, model: &str) -> Option<Posterior> {
        self.learned.get(model).copied()
    }
    fn learned_overall(&self, model: &str) -> Option<Posterior> {
        self.overall.get(model).copied()
    }
}

fn round(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// The request scores are shown for.
fn reference_request() -> Request {
    Request {
        id: serde_json::Value::Null,
        body: serde_json::Map::new(),
        wire: Vec::new(),
        digest: None,
        pinned: None,
        overrides: None,
        prompt_tokens: REF_PROMPT_TOKENS,
        max_tokens: Some(REF_COMPLETION_TOKENS),
        needs_tools: false,
        needs_response_format: false,
        choices: 1,
    }
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.decimals$}"))
}

/// A price, or `unknown`: never a dash that could be read as free.
fn price(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".to_string(), |x| format!("{x:.3}"))
}

/// The listing as a table for people.
pub fn table(rows: &[Row], now: i64) -> Table {
    let mut t = Table::new();
    t.load_preset(NOTHING);
    t.set_header([
        "model", "$/M in", "$/M out", "context", "quality", "ewma ms", "p95 ms", "n", "err%",
        "state", "cooldown", "score",
    ]);
    for r in rows {
        let cooldown = match r.cooldown_until {
            Some(until) if until > now => {
                crate::core::duration::human(Duration::from_millis((until - now) as u64))
            }
            _ => "-".into(),
        };
        let name = crate::view::text::printable(&r.model);
        let model = if r.in_catalogue {
            name
        } else {
            format!("{name} (unknown)")
        };
        t.add_row([
            model,
            price(r.prompt_usd_per_mtok),
            price(r.completion_usd_per_mtok),
            r.context_length
                .map_or_else(|| "-".into(), |c| c.to_string()),
            match r.quality_events {
                0 if r.quality_source == "pooled" => format!("{:.2} (pooled)", r.quality),
                0 => format!("{:.2}", r.quality),
                n => format!("{:.2} ({n} fb)", r.quality),
            },
            opt(r.latency_ms.ewma, 0),
            opt(r.latency_ms.p95, 0),
            r.latency_ms.samples.to_string(),
            opt(r.error_rate.map(|e| e * 100.0), 1),
            r.state.to_string(),
            cooldown,
            opt(r.score, 3),
        ]);
    }
    for i in (1..=9).chain(11..=12) {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}
