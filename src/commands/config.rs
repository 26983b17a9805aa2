//! `llmroute config path` and `llmroute config show`.

use anyhow::Context;

use crate::cli::{Cli, ConfigAction};
use crate::config::{Config, Loaded, WeightsTable};
use crate::core::ranking;
use crate::setup::{
    base_url, store_path, write_stdout, API_KEY_VAR, DEFAULT_CACHE_TTL, DEFAULT_CONCURRENCY,
    DEFAULT_MAX_ATTEMPTS, DEFAULT_RETENTION, DEFAULT_TIMEOUT,
};

/// `llmroute config path` and `llmroute config show`.
pub fn main(action: &ConfigAction, cli: &Cli, loaded: &Loaded) -> anyhow::Result<i32> {
    let text = match action {
        ConfigAction::Path => {
            let config = match (&loaded.path, &loaded.location) {
                (Some(p), _) => p.display().to_string(),
                (None, Some(p)) => format!("{} (not present)", p.display()),
                (None, None) => "(no home directory)".into(),
            };
            let store = store_path(&cli.common)?;
            format!(
                "config     {config}\nstore      {}\ncatalogue  {} (table catalogue, one copy per base URL)\n",
                store.display(),
                store.display()
            )
        }
        ConfigAction::Show => {
            let run = &cli.run;
            let routing = &run.routing;
            let presets = loaded.config.presets.clone();
            let effective = Config {
                priority: Some(
                    routing
                        .priority
                        .clone()
                        .unwrap_or_else(|| "balanced".into()),
                )
                .filter(|_| routing.weights.is_none()),
                weights: routing.weights.map(|w| WeightsTable {
                    latency: w.latency,
                    cost: w.cost,
                    quality: w.quality,
                }),
                models: Some(routing.models.clone().unwrap_or_else(|| {
                    ranking::DEFAULT_MODELS
                        .iter()
                        .map(|m| m.to_string())
                        .collect()
                })),
                fallback: Some(routing.fallback.clone().unwrap_or_default()),
                quality: routing.quality.iter().cloned().collect(),
                presets,
                concurrency: Some(run.concurrency.unwrap_or(DEFAULT_CONCURRENCY)),
                rpm: run.rpm,
                tpm: run.tpm,
                max_cost: run.max_cost,
                timeout: Some(run.timeout.unwrap_or(DEFAULT_TIMEOUT)),
                max_attempts: Some(run.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)),
                cache_ttl: Some(run.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL)),
                retention: Some(run.retention.unwrap_or(DEFAULT_RETENTION)),
                base_url: Some(base_url(&cli.common)),
                db: Some(store_path(&cli.common)?),
            };
            let key = if std::env::var(API_KEY_VAR).is_ok_and(|k| !k.trim().is_empty()) {
                "set"
            } else {
                "not set"
            };
            let body = toml::to_string(&effective).context("cannot show the configuration")?;
            let source = match &loaded.path {
                Some(p) => format!("flags, environment, {}, built-in defaults", p.display()),
                None => "flags, environment, built-in defaults (no config file)".into(),
            };
            format!("# Effective configuration, from {source}\n# {API_KEY_VAR} is {key}\n{body}")
        }
    };
    write_stdout(text.as_bytes())
}
