//! Turns parsed command-line flags into a run: settings, store, catalogue,
//! pipeline, and the exit status.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::catalogue::{self, Catalogue, Origin};
use crate::cli::{Cli, Command, CommonArgs, ConfigAction, RoutingArgs, RunArgs};
use crate::config::{Config, Loaded, WeightsTable};
use crate::input::Source;
use crate::pipeline::{self, Options, Setup, StopReason, Summary};
use crate::routing::{self, Presets, Settings};
use crate::store::{self, writer::Writer, Store};
use crate::upstream::{self, Client};

/// Exit statuses.
pub mod exit {
    pub const OK: i32 = 0;
    pub const LINE_ERRORS: i32 = 1;
    pub const FATAL: i32 = 2;
}

/// An error that ends the program with status 2.
#[derive(Debug)]
pub struct Fatal(pub String);

impl<T: std::fmt::Display> From<T> for Fatal {
    fn from(e: T) -> Self {
        Fatal(e.to_string())
    }
}

pub const DEFAULT_CONCURRENCY: u32 = 8;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 86400);

/// Metrics older than this are pruned after each run.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86400);
/// Most rows of each metrics table one run prunes.
const PRUNE_BATCH: usize = 50_000;

/// The environment variable holding the API key.
pub const API_KEY_VAR: &str = "OPENROUTER_API_KEY";

/// Replaces Rust's panic message with one that says it is a bug, and never
/// shows the API key, whatever the message holds.
pub fn install_panic_hook() {
    let key = std::env::var(API_KEY_VAR)
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty());
    std::panic::set_hook(Box::new(move |info| {
        let mut text = info.to_string();
        if let Some(k) = &key {
            text = text.replace(k.as_str(), "[redacted]");
        }
        eprintln!(
            "llmroute: internal error: {text}\nllmroute: this is a bug; please report it at {}/issues",
            env!("CARGO_PKG_HOMEPAGE")
        );
    }));
}

/// In debug builds only: whether the environment variable `var` names line
/// `line_no`, where a test wants a bug injected (see the fail points of the
/// reader and the pipeline).
#[cfg(debug_assertions)]
pub(crate) fn fail_point_hit(var: &str, line_no: u64) -> bool {
    std::env::var(var).ok().and_then(|v| v.parse().ok()) == Some(line_no)
}

/// Runs the parsed command line and returns the exit status.
pub fn main(mut cli: Cli) -> i32 {
    let result = Loaded::load(cli.common.config.as_deref())
        .map_err(Fatal)
        .and_then(|loaded| {
            loaded.config.apply(&mut cli);
            let presets = loaded.config.presets();
            match &cli.command {
                None => route(&cli.run, &cli.common, presets),
                Some(Command::Report(args)) => crate::report::main(args, &cli.common),
                Some(Command::Models(args)) => crate::models::main(args, &cli.common, &presets),
                Some(Command::Cache(args)) => crate::cache::main(args, &cli.common),
                Some(Command::Config(args)) => config_command(&args.action, &cli, &loaded),
            }
        });
    match result {
        Ok(code) => code,
        Err(Fatal(msg)) => {
            eprintln!("llmroute: error: {msg}");
            exit::FATAL
        }
    }
}

/// `llmroute config path` and `llmroute config show`.
fn config_command(action: &ConfigAction, cli: &Cli, loaded: &Loaded) -> Result<i32, Fatal> {
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
                    routing::DEFAULT_MODELS
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
            let body = toml::to_string(&effective).map_err(|e| Fatal(e.to_string()))?;
            let source = match &loaded.path {
                Some(p) => format!("flags, environment, {}, built-in defaults", p.display()),
                None => "flags, environment, built-in defaults (no config file)".into(),
            };
            format!("# Effective configuration, from {source}\n# {API_KEY_VAR} is {key}\n{body}")
        }
    };
    write_stdout(text.as_bytes())
}

/// The store path: `--db`, `LLMROUTE_DB`, or the XDG data directory.
pub fn store_path(common: &CommonArgs) -> Result<PathBuf, Fatal> {
    match &common.db {
        Some(p) => Ok(p.clone()),
        None => store::default_path().map_err(Fatal),
    }
}

/// Turns a store failure into a fatal error that names the store.
pub fn store_fatal(path: &std::path::Path) -> impl Fn(store::StoreError) -> Fatal + '_ {
    move |e| match e {
        store::StoreError::Sql(e) => Fatal(format!(
            "cannot use the store at {}: {}",
            path.display(),
            store::describe(&e)
        )),
        other => Fatal(other.to_string()),
    }
}

/// The base URL: `--base-url`, `LLMROUTE_BASE_URL`, or OpenRouter's.
pub fn base_url(common: &CommonArgs) -> String {
    common
        .base_url
        .clone()
        .unwrap_or_else(|| upstream::DEFAULT_BASE_URL.to_string())
}

/// Routing settings from the flags.
pub fn settings(run: &RoutingArgs, presets: &Presets) -> Result<Settings, Fatal> {
    let (priority, weights) = match (&run.weights, &run.priority) {
        (Some(w), _) => ("custom".to_string(), *w),
        (None, p) => {
            let name = p.clone().unwrap_or_else(|| "balanced".into());
            let w = routing::resolve_priority(&name, presets).map_err(Fatal)?;
            (name, w)
        }
    };
    let clean = |list: &Option<Vec<String>>| -> Option<Vec<String>> {
        list.as_ref().map(|l| {
            l.iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect::<Vec<_>>()
        })
    };
    let models = match clean(&run.models) {
        Some(m) if m.is_empty() => return Err(Fatal("--models lists no model".into())),
        Some(m) => m,
        None => routing::DEFAULT_MODELS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let fallback = clean(&run.fallback).unwrap_or_default();
    let quality: HashMap<String, f64> = run.quality.iter().cloned().collect();
    Ok(Settings::new(priority, weights, models, fallback, quality))
}

fn route(run: &RunArgs, common: &CommonArgs, presets: Presets) -> Result<i32, Fatal> {
    let settings = settings(&run.routing, &presets)?;
    let base = base_url(common);
    let api_key = std::env::var(API_KEY_VAR)
        .ok()
        .filter(|k| !k.trim().is_empty());
    if !run.dry_run && api_key.is_none() {
        return Err(Fatal(format!(
            "{API_KEY_VAR} is not set (use --dry-run to route without calling)"
        )));
    }
    let sources: Vec<Source> = if run.files.is_empty() {
        vec![Source::Stdin]
    } else {
        run.files.iter().map(|f| Source::from_arg(f)).collect()
    };
    for s in &sources {
        s.check().map_err(Fatal)?;
    }
    let concurrency = run.concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize;
    let client = match run.dry_run {
        true => None,
        false => Some(Client::new(&base, api_key.as_deref(), concurrency).map_err(Fatal)?),
    };
    warn_plain_http(&base, run.quiet);

    let path = store_path(common)?;
    let mut store = Store::open(&path)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("llmroute")
        .build()?;

    let catalogue = load_catalogue(&store, client.as_ref(), &base, &rt, run.quiet, false);
    if !run.quiet {
        let mut warned = std::collections::HashSet::new();
        for m in settings.models.iter().chain(settings.fallback.iter()) {
            if catalogue.get(m).is_none() && warned.insert(m) {
                eprintln!("llmroute: warning: {m} is not in the model catalogue; its price and context window are unknown");
            }
        }
    }
    let stats = store.model_stats().map_err(store_fatal(&path))?;
    let cooldowns = store
        .cooldowns(store::now_ms())
        .map_err(store_fatal(&path))?;
    store.set_run(&run_id(), &settings.priority);

    let writer = Writer::spawn(store);
    let setup = Setup {
        options: Options {
            settings,
            presets,
            dry_run: run.dry_run,
            explain: run.explain || run.dry_run,
            concurrency,
            unordered: run.unordered,
            timeout: run.timeout.unwrap_or(DEFAULT_TIMEOUT),
            cache_ttl: run.cache_ttl.unwrap_or(DEFAULT_CACHE_TTL),
            no_cache: run.no_cache,
            max_attempts: run.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            rpm: run.rpm,
            tpm: run.tpm,
            max_cost: run.max_cost,
            verbose: run.verbose,
        },
        progress: crate::progress::bar(run.progress, run.quiet, &sources),
        client,
        catalogue,
        store: writer.handle(),
        stats,
        cooldowns,
    };
    let out: Box<dyn std::io::Write + Send> = Box::new(std::io::stdout());
    let summary = rt.block_on(pipeline::run(setup, sources, out));
    let dry_run = run.dry_run;
    // Tasks still running after the grace period are dropped here; then the
    // store thread commits what is queued.
    rt.shutdown_timeout(Duration::from_millis(200));
    let store = writer.finish();
    let retention = run.retention.unwrap_or(DEFAULT_RETENTION);
    if let Err(e) = store.prune_metrics(store::now_ms() - retention.as_millis() as i64, PRUNE_BATCH)
    {
        if !run.quiet {
            eprintln!("llmroute: warning: cannot prune old metrics: {e}");
        }
    }
    Ok(finish(&summary, run.quiet, dry_run))
}

/// Writes a subcommand's output; a reader that stopped early (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> Result<i32, Fatal> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(exit::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(Fatal(format!("cannot write to standard output: {e}"))),
    }
}

/// Reports the end of a run on stderr and picks the exit status.
fn finish(summary: &Summary, quiet: bool, dry_run: bool) -> i32 {
    let closed = matches!(summary.stop, Some(StopReason::BrokenPipe));
    if !quiet && !closed {
        let s = summary;
        let spend = if dry_run {
            "dry run".to_string()
        } else {
            format!("${:.4} spent", s.cost_usd)
        };
        eprintln!(
            "llmroute: {} lines: {} answered, {} cached, {} errors; {spend}; {:.1}s",
            s.lines,
            s.answered,
            s.cached,
            s.errors,
            s.elapsed.as_secs_f64()
        );
    }
    if let Some(f) = &summary.store_failure {
        eprintln!("llmroute: warning: the store failed during the run ({f}); some answers were not cached");
    }
    if let Some(e) = &summary.input_error {
        eprintln!("llmroute: error: reading input: {e}");
        return exit::FATAL;
    }
    match &summary.stop {
        Some(StopReason::Fatal { message, .. }) => {
            eprintln!("llmroute: error: the API refused the run: {message}");
            return exit::FATAL;
        }
        Some(StopReason::Interrupted { exit_code }) => return *exit_code,
        Some(StopReason::BrokenPipe) => return exit::OK,
        Some(StopReason::OutputError(e)) => {
            eprintln!("llmroute: error: writing output: {e}");
            return exit::FATAL;
        }
        None => {}
    }
    if summary.errors > 0 {
        exit::LINE_ERRORS
    } else {
        exit::OK
    }
}

/// A plain-http base URL to another host would carry the key in clear.
fn warn_plain_http(base: &str, quiet: bool) {
    let Ok(url) = reqwest::Url::parse(base) else {
        return;
    };
    if url.scheme() != "http" || quiet {
        return;
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !loopback {
        eprintln!("llmroute: warning: {base} is plain http: the API key would travel unencrypted");
    }
}

fn run_id() -> String {
    format!("{:x}-{:x}", store::now_ms(), std::process::id())
}

/// The catalogue to route with: the store's copy while fresh; else a new
/// fetch (kept in the store); else the stale copy, else the embedded
/// snapshot, with a warning. Without a client (dry runs) nothing is fetched;
/// with `refresh` the stored copy is refetched however fresh.
pub fn load_catalogue(
    store: &Store,
    client: Option<&Client>,
    base: &str,
    rt: &tokio::runtime::Runtime,
    quiet: bool,
    refresh: bool,
) -> Catalogue {
    let now = store::now_ms();
    let stored = store.catalogue(base).ok().flatten().and_then(|(at, body)| {
        let age = Duration::from_millis((now - at).max(0) as u64);
        Catalogue::parse(body.as_bytes(), Origin::Stored { age }).ok()
    });
    let fresh =
        |c: &Catalogue| matches!(c.origin, Origin::Stored { age } if age < catalogue::MAX_AGE);
    if let Some(c) = stored.as_ref().filter(|c| fresh(c) && !refresh) {
        return c.clone();
    }
    let Some(client) = client else {
        return stored.unwrap_or_else(Catalogue::embedded);
    };
    let problem = match rt.block_on(client.fetch_models(Duration::from_secs(20))) {
        Ok(bytes) => match Catalogue::parse(&bytes, Origin::Live) {
            Ok(c) => {
                if let Err(e) = store.put_catalogue(base, now, &c.to_json()) {
                    if !quiet {
                        eprintln!("llmroute: warning: cannot keep the catalogue in the store: {e}");
                    }
                }
                return c;
            }
            Err(e) => e.to_string(),
        },
        Err(e) => e,
    };
    match stored {
        Some(c) => {
            if !quiet {
                let age = match c.origin {
                    Origin::Stored { age } => {
                        crate::duration::format(Duration::from_secs(age.as_secs()))
                    }
                    _ => String::new(),
                };
                eprintln!("llmroute: warning: cannot fetch {base}/models ({problem}); using the stored catalogue from {age} ago");
            }
            c
        }
        None => {
            if !quiet {
                eprintln!(
                    "llmroute: warning: cannot fetch {base}/models ({problem}); using the built-in catalogue of {}",
                    catalogue::EMBEDDED_DATE
                );
            }
            Catalogue::embedded()
        }
    }
}
