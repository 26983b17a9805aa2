//! The arguments of `llmroute serve`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::values::{parse_deadline, parse_duration, parse_max_body, parse_size};
use super::{RoutingArgs, TuningArgs};

/// `llmroute serve`. A server keeps more requests in flight than a run:
/// its `-j` says its own default.
#[derive(Debug, Args, Clone, Default)]
#[command(mut_arg("concurrency", |a| a.help(
    "Upstream requests in flight at once; more wait in the --queue [default: 256]"
)))]
pub struct ServeArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// The address to listen on, IP:PORT [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", env = "LLMROUTE_LISTEN")]
    pub listen: Option<String>,

    /// Client tokens, one per line (# comments); adds to LLMROUTE_AUTH_TOKENS
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Admin tokens (for DELETE /cache), one per line; adds to LLMROUTE_ADMIN_TOKENS
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Requests that may wait for a free upstream slot (-j) before the server answers 503 [default: 4096]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub queue: Option<u32>,

    /// Client connections open at once; past it, new ones wait in the listen backlog [default: 8192]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: Option<u32>,

    /// The largest request body, at least 1KiB, e.g. 16MiB [default: 16MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_max_body)]
    pub max_body: Option<u64>,

    /// Time limit of a whole request from its arrival, queue and fallbacks included, at least 100ms; then 504 [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = parse_deadline)]
    pub deadline: Option<Duration>,

    /// How long requests in flight may finish after SIGTERM or Ctrl-C [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub grace: Option<Duration>,

    /// Time a client has to send a request's headers (a new connection its first byte), and an idle connection stays open [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub header_timeout: Option<Duration>,

    /// Cap of the response cache; past it the least recently used answers go, e.g. 2GiB [default: no cap]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_max_size: Option<u64>,

    /// How often the store drops expired answers, old metrics, and answers past --cache-max-size [default: 10m]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub upkeep_every: Option<Duration>,

    /// Neither read nor write the response cache
    #[arg(long)]
    pub no_cache: bool,

    /// Access log lines as text or JSON [default: text]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Put request and response bodies in the access log (they hold prompts)
    #[arg(long)]
    pub log_bodies: bool,

    /// No dashboard at / and /dashboard (they answer 404)
    #[arg(long)]
    pub no_dashboard: bool,

    /// One cache for every client token, instead of one per token
    #[arg(long)]
    pub shared_cache: bool,

    /// Let requests pin or list models that are neither in the catalogue nor among the configured candidates
    #[arg(long)]
    pub allow_any_model: bool,

    /// Answer sampled requests (temperature above 0 without a seed, or n above 1) from the cache too
    #[arg(long)]
    pub cache_sampled: bool,

    /// Let a web app at this origin (scheme://host[:port]) call the API from a browser: preflights are answered and cross-site POSTs from it accepted; repeatable
    #[arg(long, value_name = "ORIGIN", value_delimiter = ',')]
    pub cors_origin: Vec<String>,

    /// No access log; only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,
}

/// The access log's format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
