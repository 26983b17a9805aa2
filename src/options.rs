//! Options resolved once. Flags and their environment variables (resolved
//! by clap), then the config file, then the built-in defaults, become one
//! immutable [`Options`] value: what a run or a command reads, and what
//! `llmroute config show` prints. Nothing changes it afterwards.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;

use crate::cli::{
    Cli, ColorWhen, Command, ConfigAction, ConfigArgs, LogFormat, RoutingArgs, ServeArgs,
    TuningArgs,
};
use crate::config::{Config, ServeConfig, WeightsTable};
use crate::core::ranking::{self, Presets, Settings};
use crate::core::scoring::Weights;
use crate::engine::Hedge;

pub const DEFAULT_PRIORITY: &str = "balanced";
pub const DEFAULT_CONCURRENCY: u32 = 8;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(7 * 86400);
/// Metrics older than this are pruned after each run.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(90 * 86400);
/// OpenRouter's API.
pub const DEFAULT_BASE_URL: &str = "https://openrouter.ai/api/v1";

/// A base URL without surrounding spaces or trailing slashes, so that
/// `{base}/models` and `{base}/chat/completions` have one slash whether it
/// was written `http://host:port/` or `http://host:port`, and both name
/// one upstream in the store.
fn bare_base(base: &str) -> String {
    base.trim().trim_end_matches('/').to_string()
}

/// What decides a choice.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    /// A named priority (built-in or preset); unused when `weights` is set.
    pub priority: String,
    /// Explicit weights.
    pub weights: Option<Weights>,
    /// `None`: the built-in candidates.
    pub models: Option<Vec<String>>,
    pub fallback: Vec<String>,
    /// Quality priors that override the built-in ones.
    pub quality: BTreeMap<String, f64>,
    /// Named weights beyond the built-in priorities.
    pub presets: Presets,
}

/// Every option of a run or a command, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub routing: Routing,
    /// Named upstreams beside `base_url` (the config file's `[upstreams]`).
    pub upstreams: std::collections::BTreeMap<String, crate::upstreams::UpstreamConfig>,
    /// A line's `model` is routed as a hint (`--route-all`, `route_all`).
    pub route_all: bool,
    pub concurrency: u32,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// Spending cap of a run in USD.
    pub max_cost: Option<f64>,
    pub timeout: Duration,
    pub max_attempts: u32,
    /// The share of requests that re-measure a candidate.
    pub explore: f64,
    /// When to hedge a request.
    pub hedge: Hedge,
    /// Per-line limits on a candidate's latency and cost estimates.
    pub max_latency: Option<Duration>,
    pub max_line_cost: Option<f64>,
    pub cache_ttl: Duration,
    pub retention: Duration,
    pub base_url: String,
    /// `None`: the default store path (see [`crate::store::default_path`]).
    pub db: Option<PathBuf>,
    /// What only `llmroute serve` uses.
    pub serve: ServeOptions,
    /// Redis, when state is shared with other machines.
    pub redis: Option<RedisOptions>,
    /// `--shared-limits` was asked for (it needs `redis`).
    pub shared_limits: bool,
    /// When to colour output (`--color`).
    pub color: ColorWhen,
}

/// How state is shared through Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisOptions {
    pub url: String,
    pub prefix: String,
    pub timeout: Duration,
    /// Share the rate limits and the budget too.
    pub shared_limits: bool,
    pub budget_id: String,
}

/// The routing and tuning flags of the command being run: a run's, `config
/// show`'s, `serve`'s; `models` takes the routing ones and `--redis`.
fn flags_of(cli: &Cli) -> (RoutingArgs, TuningArgs) {
    match &cli.command {
        None => (cli.run.routing.clone(), cli.run.tuning.clone()),
        Some(Command::Config(ConfigArgs {
            action: ConfigAction::Show(show),
        })) => (show.routing.clone(), show.tuning.clone()),
        Some(Command::Models(m)) => (
            m.routing.clone(),
            TuningArgs {
                redis: m.redis.clone(),
                redis_prefix: m.redis_prefix.clone(),
                ..TuningArgs::default()
            },
        ),
        Some(Command::Serve(serve)) => (serve.routing.clone(), serve.tuning.clone()),
        Some(Command::Feedback(f)) => (
            RoutingArgs::default(),
            TuningArgs {
                redis: f.redis.clone(),
                redis_prefix: f.redis_prefix.clone(),
                ..TuningArgs::default()
            },
        ),
        Some(Command::Keys(k)) => (
            RoutingArgs::default(),
            TuningArgs {
                redis: k.redis.clone(),
                redis_prefix: k.redis_prefix.clone(),
                ..TuningArgs::default()
            },
        ),
        _ => (RoutingArgs::default(), TuningArgs::default()),
    }
}

impl Routing {
    /// The routing flags over the config file.
    fn resolve(flags: RoutingArgs, file: &Config) -> Routing {
        let mut quality: BTreeMap<String, f64> = file.quality.clone();
        quality.extend(flags.quality().cloned());
        let (priority, weights) = match (flags.weights, flags.priority) {
            (Some(w), p) => (p, Some(w)),
            (None, Some(p)) => (Some(p), None),
            // In the file too, a priority wins over weights, which apply
            // only when no priority is given anywhere.
            (None, None) => match &file.priority {
                Some(p) => (Some(p.clone()), None),
                None => (None, file.weights.and_then(|w| w.weights().ok())),
            },
        };
        Routing {
            priority: priority.unwrap_or_else(|| DEFAULT_PRIORITY.into()),
            weights,
            models: flags.models.or_else(|| file.models.clone()),
            fallback: flags
                .fallback
                .or_else(|| file.fallback.clone())
                .unwrap_or_default(),
            quality,
            presets: file.presets(),
        }
    }
}

impl RedisOptions {
    /// `--redis` and its companions over the config file; none without a URL.
    fn resolve(run: &TuningArgs, file: &Config) -> Option<RedisOptions> {
        // An empty LLMROUTE_REDIS_URL, as a script may export, names none.
        run.redis
            .clone()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| file.redis.clone())
            .map(|url| RedisOptions {
                url,
                prefix: run
                    .redis_prefix
                    .clone()
                    .or_else(|| file.redis_prefix.clone())
                    .unwrap_or_else(|| crate::shared::DEFAULT_PREFIX.into()),
                timeout: run
                    .redis_timeout
                    .or(file.redis_timeout)
                    .unwrap_or(crate::shared::DEFAULT_TIMEOUT),
                shared_limits: run.shared_limits || file.shared_limits.unwrap_or(false),
                budget_id: run
                    .budget_id
                    .clone()
                    .or_else(|| file.budget_id.clone())
                    .unwrap_or_else(|| "default".into()),
            })
    }
}

/// Whether a header of this name carries a credential (`Authorization`,
/// `X-Api-Key`, `X-Auth-Token`, ...), whose value `config show` hides.
fn credential(header: &str) -> bool {
    let h = header.to_ascii_lowercase();
    ["auth", "key", "token", "secret", "password", "cookie"]
        .iter()
        .any(|w| h.contains(w))
}

/// A URL with its password, if any, replaced: what `config show` prints.
fn hide_password(url: &str) -> String {
    crate::core::urls::without_password(url)
}

pub const DEFAULT_SERVE_CONCURRENCY: u32 = 256;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_QUEUE: u32 = 4096;
/// Client connections a server holds open at once.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8192;
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_UPKEEP_EVERY: Duration = Duration::from_secs(600);

/// `llmroute serve`'s options, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeOptions {
    pub listen: String,
    pub auth_token_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub queue: u32,
    pub max_connections: u32,
    pub max_body: u64,
    pub deadline: Duration,
    pub grace: Duration,
    pub header_timeout: Duration,
    pub cache_max_size: Option<u64>,
    pub upkeep_every: Duration,
    pub no_cache: bool,
    pub log_format: LogFormat,
    pub log_bodies: bool,
    /// The dashboard at `/` and `/dashboard`.
    pub dashboard: bool,
    pub quiet: bool,
    /// Origins whose web apps may call the API (`--cors-origin`), as given.
    pub cors_origins: Vec<String>,
    /// One cache for every client token (`--shared-cache`).
    pub shared_cache: bool,
    /// Requests may name models nobody configured (`--allow-any-model`).
    pub allow_any_model: bool,
    /// Sampled requests are answered from the cache (`--cache-sampled`).
    pub cache_sampled: bool,
}

impl ServeOptions {
    fn resolve(cli: &Cli, file: &Config) -> ServeOptions {
        let flags = match &cli.command {
            Some(Command::Serve(s)) => (**s).clone(),
            // `config show` says what a server would take from the
            // environment too.
            _ => ServeArgs {
                listen: std::env::var("LLMROUTE_LISTEN")
                    .ok()
                    .filter(|v| !v.trim().is_empty()),
                ..ServeArgs::default()
            },
        };
        let f = file.serve.clone().unwrap_or_default();
        ServeOptions {
            listen: flags
                .listen
                .or(f.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.into()),
            auth_token_file: flags.auth_token_file.or(f.auth_token_file),
            admin_token_file: flags.admin_token_file.or(f.admin_token_file),
            queue: flags.queue.or(f.queue).unwrap_or(DEFAULT_QUEUE),
            max_connections: flags
                .max_connections
                .or(f.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_body: flags.max_body.or(f.max_body).unwrap_or(DEFAULT_MAX_BODY),
            deadline: flags.deadline.or(f.deadline).unwrap_or(DEFAULT_DEADLINE),
            grace: flags.grace.or(f.grace).unwrap_or(DEFAULT_GRACE),
            header_timeout: flags
                .header_timeout
                .or(f.header_timeout)
                .unwrap_or(DEFAULT_HEADER_TIMEOUT),
            cache_max_size: flags.cache_max_size.or(f.cache_max_size),
            upkeep_every: flags
                .upkeep_every
                .or(f.upkeep_every)
                .unwrap_or(DEFAULT_UPKEEP_EVERY)
                .max(Duration::from_millis(100)),
            no_cache: flags.no_cache,
            log_format: flags.log_format.or(f.log_format).unwrap_or_default(),
            log_bodies: flags.log_bodies,
            dashboard: !flags.no_dashboard && f.dashboard.unwrap_or(true),
            quiet: flags.quiet,
            cors_origins: match flags.cors_origin.is_empty() {
                true => f.cors_origins.unwrap_or_default(),
                false => flags.cors_origin,
            },
            shared_cache: flags.shared_cache || f.shared_cache.unwrap_or(false),
            allow_any_model: flags.allow_any_model || f.allow_any_model.unwrap_or(false),
            cache_sampled: flags.cache_sampled || f.cache_sampled.unwrap_or(false),
        }
    }

    /// In the config file's form.
    fn to_config(&self) -> ServeConfig {
        ServeConfig {
            listen: Some(self.listen.clone()),
            auth_token_file: self.auth_token_file.clone(),
            admin_token_file: self.admin_token_file.clone(),
            queue: Some(self.queue),
            max_connections: Some(self.max_connections),
            max_body: Some(self.max_body),
            deadline: Some(self.deadline),
            grace: Some(self.grace),
            header_timeout: Some(self.header_timeout),
            cache_max_size: self.cache_max_size,
            upkeep_every: Some(self.upkeep_every),
            log_format: Some(self.log_format),
            dashboard: Some(self.dashboard),
            cors_origins: Some(self.cors_origins.clone()),
            shared_cache: Some(self.shared_cache),
            allow_any_model: Some(self.allow_any_model),
            cache_sampled: Some(self.cache_sampled),
        }
    }
}

impl Options {
    /// Resolves the command line over the config file and the defaults.
    /// A priority from the same or a higher level wins over weights: `-w`
    /// overrides `-p` on the command line, while the file's `[weights]`
    /// apply only when no priority is given anywhere (flags, environment
    /// or the file's `priority`).
    pub fn resolve(cli: &Cli, file: &Config) -> Options {
        let (flags, run) = flags_of(cli);
        let route_all = match &cli.command {
            None => cli.run.route_all,
            _ => false,
        } || file.route_all.unwrap_or(false);
        Options {
            route_all,
            upstreams: file.upstreams.clone(),
            routing: Routing::resolve(flags, file),
            concurrency: run
                .concurrency
                .or(file.concurrency)
                .unwrap_or(match cli.command {
                    Some(Command::Serve(_)) => DEFAULT_SERVE_CONCURRENCY,
                    _ => DEFAULT_CONCURRENCY,
                }),
            rpm: run.rpm.or(file.rpm),
            tpm: run.tpm.or(file.tpm),
            max_cost: run.max_cost.or(file.max_cost),
            timeout: run.timeout.or(file.timeout).unwrap_or(DEFAULT_TIMEOUT),
            max_attempts: run
                .max_attempts
                .or(file.max_attempts)
                .unwrap_or(DEFAULT_MAX_ATTEMPTS),
            explore: run
                .explore
                .or(file.explore)
                .unwrap_or(crate::core::explore::DEFAULT_SHARE),
            hedge: run.hedge.or(file.hedge).unwrap_or_default(),
            max_latency: run.max_latency.or(file.max_latency),
            max_line_cost: run.max_line_cost.or(file.max_line_cost),
            cache_ttl: run
                .cache_ttl
                .or(file.cache_ttl)
                .unwrap_or(DEFAULT_CACHE_TTL),
            retention: run
                .retention
                .or(file.retention)
                .unwrap_or(DEFAULT_RETENTION),
            base_url: bare_base(
                cli.common
                    .base_url
                    .as_deref()
                    .or(file.base_url.as_deref())
                    .unwrap_or(DEFAULT_BASE_URL),
            ),
            db: cli.common.db.clone().or_else(|| file.db.clone()),
            serve: ServeOptions::resolve(cli, file),
            color: cli.common.color,
            shared_limits: run.shared_limits || file.shared_limits.unwrap_or(false),
            redis: RedisOptions::resolve(&run, file),
        }
    }

    /// Whether output bound for a terminal (or not: `terminal`) is
    /// coloured, by `--color` and `NO_COLOR`.
    pub fn colours(&self, terminal: bool) -> bool {
        self.color
            .colours(terminal, std::env::var_os("NO_COLOR").as_deref())
    }

    /// The routing settings these options give a request.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let r = &self.routing;
        let (priority, weights) = match r.weights {
            Some(w) => ("custom".to_string(), w),
            None => {
                let w = ranking::resolve_priority(&r.priority, &r.presets)
                    .map_err(|e| anyhow!("{e}{}", crate::cli::environment::tip("priority")))?;
                (r.priority.clone(), w)
            }
        };
        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|m| m.trim().to_string())
                .filter(|m| !m.is_empty())
                .collect()
        };
        let named_nothing = clean(&r.fallback)
            .into_iter()
            .chain(r.models.as_deref().map(clean).unwrap_or_default())
            .find(|m| m.ends_with(':'));
        if let Some(m) = named_nothing {
            return Err(anyhow!(
                "{m:?} names no model after its ':' (an upstream's model is NAME:model)"
            ));
        }
        let models = match &r.models {
            Some(m) if clean(m).is_empty() => {
                let tip = crate::cli::environment::tip("models");
                return Err(anyhow!("--models lists no model{tip}"));
            }
            Some(m) => clean(m),
            None => ranking::DEFAULT_MODELS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let quality: HashMap<String, f64> = r.quality.clone().into_iter().collect();
        let limits = ranking::Limits {
            max_latency_ms: self.max_latency.map(|d| d.as_secs_f64() * 1000.0),
            max_cost_usd: self.max_line_cost,
        };
        Ok(
            Settings::new(priority, weights, models, clean(&r.fallback), quality)
                .with_limits(limits),
        )
    }

    /// The store: `--db`, `LLMROUTE_DB`, the config file's `db`, or the XDG
    /// data directory.
    pub fn store_path(&self) -> anyhow::Result<PathBuf> {
        match &self.db {
            Some(p) => Ok(p.clone()),
            None => crate::store::default_path().map_err(anyhow::Error::msg),
        }
    }

    /// These options in the config file's form, every key filled in.
    pub fn to_config(&self) -> anyhow::Result<Config> {
        let r = &self.routing;
        let table = |w: &Weights| WeightsTable {
            latency: w.latency,
            cost: w.cost,
            quality: w.quality,
        };
        Ok(Config {
            priority: Some(r.priority.clone()).filter(|_| r.weights.is_none()),
            weights: r.weights.as_ref().map(table),
            models: Some(r.models.clone().unwrap_or_else(|| {
                ranking::DEFAULT_MODELS
                    .iter()
                    .map(|m| m.to_string())
                    .collect()
            })),
            fallback: Some(r.fallback.clone()),
            quality: r.quality.clone(),
            presets: r
                .presets
                .iter()
                .map(|(k, w)| (k.clone(), table(w)))
                .collect(),
            concurrency: Some(self.concurrency),
            rpm: self.rpm,
            tpm: self.tpm,
            max_cost: self.max_cost,
            timeout: Some(self.timeout),
            max_attempts: Some(self.max_attempts),
            explore: Some(self.explore),
            hedge: Some(self.hedge),
            max_latency: self.max_latency,
            max_line_cost: self.max_line_cost,
            cache_ttl: Some(self.cache_ttl),
            retention: Some(self.retention),
            base_url: Some(hide_password(&self.base_url)),
            db: Some(self.store_path()?),
            redis: self.redis.as_ref().map(|r| hide_password(&r.url)),
            redis_prefix: self.redis.as_ref().map(|r| r.prefix.clone()),
            redis_timeout: self.redis.as_ref().map(|r| r.timeout),
            shared_limits: self.redis.as_ref().map(|r| r.shared_limits),
            budget_id: self.redis.as_ref().map(|r| r.budget_id.clone()),
            route_all: Some(self.route_all),
            serve: Some(self.serve.to_config()),
            upstreams: self
                .upstreams
                .iter()
                .map(|(name, u)| {
                    let mut u = u.clone();
                    u.base_url = hide_password(&u.base_url);
                    // A header that authenticates holds a provider's key.
                    for (header, value) in &mut u.headers {
                        if credential(header) {
                            *value = crate::core::urls::REDACTED.into();
                        }
                    }
                    (name.clone(), u)
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use clap::Parser;

    fn resolve(args: &[&str], file: &str) -> Options {
        let cli = Cli::try_parse_from(args).unwrap();
        Options::resolve(&cli, &parse(file).unwrap())
    }

    /// The `[default: ...]` that `--help` gives for `--long` of `cmd`.
    fn help_default(cmd: &clap::Command, long: &str) -> String {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .unwrap_or_else(|| panic!("no --{long}"));
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let at = help.find("[default: ").map(|i| i + 10);
        let at = at.unwrap_or_else(|| panic!("--{long} gives no default: {help}"));
        help[at..at + help[at..].find(']').unwrap()].to_string()
    }

    #[test]
    fn the_help_gives_the_defaults_that_apply() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        cli.build();
        let serve = cli.find_subcommand("serve").unwrap();
        // A duration the help gives, read as the flag would read it.
        let duration = |text: String| crate::core::duration::parse(&text).unwrap();
        for (args, cmd) in [(&["llmroute"][..], &cli), (&["llmroute", "serve"], serve)] {
            let o = resolve(args, "");
            let says = |long: &str| help_default(cmd, long);
            assert_eq!(says("concurrency"), o.concurrency.to_string(), "{args:?}");
            assert_eq!(duration(says("timeout")), o.timeout, "{args:?}");
            assert_eq!(says("max-attempts"), o.max_attempts.to_string());
            assert_eq!(duration(says("cache-ttl")), o.cache_ttl);
            assert_eq!(duration(says("retention")), o.retention);
            assert_eq!(says("explore"), o.explore.to_string());
            assert_eq!(says("priority"), o.routing.priority);
        }
        let s = resolve(&["llmroute", "serve"], "").serve;
        let says = |long: &str| help_default(serve, long);
        assert_eq!(says("listen"), s.listen);
        assert_eq!(says("queue"), s.queue.to_string());
        assert_eq!(duration(says("deadline")), s.deadline);
        assert_eq!(duration(says("grace")), s.grace);
        assert_eq!(duration(says("header-timeout")), s.header_timeout);
        assert_eq!(duration(says("upkeep-every")), s.upkeep_every);
        assert_eq!(says("max-body"), "16MiB");
        assert_eq!(s.max_body, crate::cli::parse_size("16MiB").unwrap());
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let file = "priority = \"cost\"\nconcurrency = 16\nmodels = [\"x/y\"]\ntimeout = \"5s\"\n[quality]\n\"m/1\" = 0.1\n\"m/2\" = 0.2\n";
        let o = resolve(&["llmroute", "-j", "2", "--quality", "m/1=0.9"], file);
        assert_eq!(o.concurrency, 2, "the flag wins");
        assert_eq!(o.routing.priority, "cost", "the file fills the gap");
        assert_eq!(o.routing.models, Some(vec!["x/y".to_string()]));
        assert_eq!(o.timeout, Duration::from_secs(5));
        assert_eq!(
            (o.routing.quality["m/1"], o.routing.quality["m/2"]),
            (0.9, 0.2)
        );
        let o = resolve(&["llmroute", "-p", "speed"], file);
        assert_eq!(o.routing.priority, "speed");
    }

    #[test]
    fn defaults_fill_what_nothing_sets() {
        let o = resolve(&["llmroute"], "");
        assert_eq!(o.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        assert_eq!(o.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert_eq!(o.cache_ttl, DEFAULT_CACHE_TTL);
        assert_eq!(o.retention, DEFAULT_RETENTION);
        assert_eq!(o.base_url, DEFAULT_BASE_URL);
        assert_eq!(o.routing.priority, DEFAULT_PRIORITY);
        let s = o.settings().unwrap();
        assert_eq!(s.models.len(), ranking::DEFAULT_MODELS.len());
    }

    #[test]
    fn a_base_url_loses_its_trailing_slashes() {
        for given in [
            "http://127.0.0.1:8/",
            "http://127.0.0.1:8",
            " http://127.0.0.1:8// ",
        ] {
            let o = resolve(&["llmroute", "--base-url", given], "");
            assert_eq!(o.base_url, "http://127.0.0.1:8", "{given:?}");
        }
        let o = resolve(&["llmroute"], "base_url = \"http://h:1/v1/\"\n");
        assert_eq!(o.base_url, "http://h:1/v1");
    }

    #[test]
    fn file_weights_apply_only_without_a_priority_from_flags() {
        let file = "[weights]\nlatency = 1\n";
        let o = resolve(&["llmroute"], file);
        assert_eq!(o.settings().unwrap().priority, "custom");
        let o = resolve(&["llmroute", "-p", "cost"], file);
        assert_eq!(o.settings().unwrap().priority, "cost");
        let o = resolve(&["llmroute", "-w", "quality=1"], file);
        let s = o.settings().unwrap();
        assert_eq!((s.priority.as_str(), s.weights.quality), ("custom", 1.0));
    }

    #[test]
    fn a_priority_in_the_file_beats_its_weights() {
        // The README's own example: a preset named as the priority, and
        // weights for when no priority is given anywhere.
        let file = "priority = \"nightly\"\n[weights]\nlatency = 0.5\ncost = 0.2\nquality = 0.3\n[presets.nightly]\nlatency = 0.1\ncost = 0.8\nquality = 0.1\n";
        let o = resolve(&["llmroute"], file);
        let s = o.settings().unwrap();
        assert_eq!((s.priority.as_str(), s.weights.cost), ("nightly", 0.8));
        let shown = o.to_config().unwrap();
        assert_eq!(shown.priority.as_deref(), Some("nightly"));
        // -w on the command line still overrides any priority.
        let o = resolve(&["llmroute", "-w", "quality=1"], file);
        assert_eq!(o.settings().unwrap().priority, "custom");
        // Weights alone in the file apply.
        let o = resolve(&["llmroute"], "[weights]\nlatency = 1\n");
        assert_eq!(o.settings().unwrap().priority, "custom");
    }

    #[test]
    fn a_server_has_its_own_defaults_and_table() {
        let o = resolve(
            &["llmroute", "serve"],
            "[serve]\nlisten = \"127.0.0.1:9\"\nmax_body = \"1MiB\"\n",
        );
        assert_eq!(o.concurrency, DEFAULT_SERVE_CONCURRENCY);
        assert_eq!(o.serve.listen, "127.0.0.1:9");
        assert_eq!(o.serve.max_body, 1024 * 1024);
        assert_eq!(o.serve.queue, DEFAULT_QUEUE);
        let o = resolve(
            &["llmroute", "serve", "-j", "3", "--listen", "127.0.0.1:7"],
            "",
        );
        assert_eq!((o.concurrency, o.serve.listen.as_str()), (3, "127.0.0.1:7"));
        assert_eq!(resolve(&["llmroute"], "").concurrency, DEFAULT_CONCURRENCY);
    }

    #[test]
    fn an_empty_model_list_is_an_error() {
        let o = resolve(&["llmroute", "--models", " , "], "");
        assert!(o.settings().unwrap_err().to_string().contains("no model"));
    }
}
