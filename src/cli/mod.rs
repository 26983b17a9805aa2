//! The command-line definition. Defaults live in [`crate::app`], so that a
//! flag left out can be filled from the environment or, later, a config file.
//! The readers of flag values are in [`values`].

pub mod environment;
mod keys;
mod serve;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::core::scoring::Weights;
use crate::engine::Hedge;
pub use keys::{KeyCreateArgs, KeysAction, KeysArgs};
pub use serve::{LogFormat, ServeArgs};
pub use values::{at_least, parse_duration, parse_size, MIN_MAX_BODY, MIN_RETENTION, MIN_TIMEOUT};
use values::{
    parse_hedge, parse_quality, parse_retention, parse_share, parse_timeout, parse_usd,
    parse_weights,
};

const AFTER_HELP: &str = "\
Input: one JSON object per line: an OpenAI chat-completions body, an OpenAI Batch API line, or
{\"prompt\": \"...\", \"system\": \"...\"}. Output: one JSON object per non-blank input line, in input order.

API key: LLMROUTE_API_KEY, else OPENROUTER_API_KEY (needed except with --dry-run; never shown).

Exit status: 0 every line answered; 1 some line has an error; 2 usage, configuration or fatal error
(including a key the API refuses); 130 interrupted (143 on SIGTERM).

Examples:
  llmroute -P \"What is 2+2?\"
  llmroute --dry-run < requests.jsonl | jq -c '{line, model, score}'
  llmroute -p cost requests.jsonl | jq -r .content
  llmroute -p speed --models openai/gpt-5.4-mini,google/gemini-3.5-flash --fallback openai/gpt-5.4 batch.jsonl";

/// Route JSONL chat requests to the best OpenRouter model, call it, and write one annotated JSON line per request.
#[derive(Debug, Parser)]
#[command(name = "llmroute", version, about, after_help = AFTER_HELP, max_term_width = 100)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Parses the command line, with clap's help and usage errors coloured as
/// `--color` says (it is read ahead, as they are written while parsing).
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let choice = match values::color_flag(&args) {
        Some(ColorWhen::Always) => clap::ColorChoice::Always,
        Some(ColorWhen::Never) => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    };
    // Help shows no variable's value: the API's and Redis's URLs may hold a password.
    fn hidden(c: clap::Command) -> clap::Command {
        c.mut_args(|a| a.hide_env_values(true))
            .mut_subcommands(hidden)
    }
    let mut command = hidden(Cli::command().color(choice));
    let matches = match command.try_get_matches_from_mut(&args) {
        Ok(m) => m,
        Err(e) => {
            let e = environment::from_the_environment(e, &command, &args);
            // A value typed where a flag's goes is quoted back: not a key.
            let text = e.render().to_string();
            let hidden = crate::setup::hide_keys(text.clone());
            if hidden != text {
                eprint!("{hidden}");
                std::process::exit(e.exit_code());
            }
            e.exit()
        }
    };
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Options every command shares.
#[derive(Debug, Args, Clone)]
pub struct CommonArgs {
    /// The SQLite store (cache and metrics) [default: $XDG_DATA_HOME/llmroute/llmroute.db]
    #[arg(long, value_name = "PATH", env = "LLMROUTE_DB", global = true)]
    pub db: Option<PathBuf>,

    /// The config file [default: $XDG_CONFIG_HOME/llmroute/config.toml]
    #[arg(long, value_name = "PATH", env = "LLMROUTE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// The OpenAI-compatible API to call [default: https://openrouter.ai/api/v1]
    #[arg(long, value_name = "URL", env = "LLMROUTE_BASE_URL", global = true)]
    pub base_url: Option<String>,

    /// Colour and terminal escapes: auto (on a terminal, unless NO_COLOR is set), always, never
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto, global = true)]
    pub color: ColorWhen,
}

/// When to colour output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ColorWhen {
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Whether output bound for a terminal (or not: `terminal`) is
    /// coloured, with `NO_COLOR` as the environment has it: `always` wins
    /// over `NO_COLOR`, and `auto` colours a terminal unless `NO_COLOR` is
    /// set to something.
    pub fn colours(self, terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
}

/// What decides a choice: shared by routing runs and `llmroute models`.
#[derive(Debug, Args, Clone, Default)]
pub struct RoutingArgs {
    /// What to favour: speed, cost, quality or balanced [default: balanced]
    #[arg(short, long, value_name = "PRIORITY", env = "LLMROUTE_PRIORITY")]
    pub priority: Option<String>,

    /// Explicit weights, e.g. latency=0.5,cost=0.2,quality=0.3 (normalised to sum 1); overrides --priority
    #[arg(short, long, value_name = "WEIGHTS", value_parser = parse_weights)]
    pub weights: Option<Weights>,

    /// Candidate models, comma-separated [default: a built-in list across price tiers]
    #[arg(
        short,
        long,
        value_name = "MODELS",
        value_delimiter = ',',
        env = "LLMROUTE_MODELS"
    )]
    pub models: Option<Vec<String>>,

    /// Models to try, in order, after the ranked candidates have failed
    #[arg(
        short,
        long,
        value_name = "MODELS",
        value_delimiter = ',',
        env = "LLMROUTE_FALLBACK"
    )]
    pub fallback: Option<Vec<String>>,

    /// Quality priors in [0, 1] that override the built-in ones, e.g. openai/gpt-5.4-mini=0.8
    #[arg(long, value_name = "MODEL=SCORE", value_parser = parse_quality)]
    pub quality: Vec<QualityList>,
}

/// One `--quality` value: `MODEL=SCORE` pairs, comma-separated, each model
/// once. A later value's score for a model replaces an earlier one's.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityList(pub Vec<(String, f64)>);

impl RoutingArgs {
    /// Every `--quality` pair, in the order given.
    pub fn quality(&self) -> impl Iterator<Item = &(String, f64)> {
        self.quality.iter().flat_map(|l| &l.0)
    }
}

/// Routing and running.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Input files, read in order as one stream; none or `-` reads standard input
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Route this one prompt instead of reading input, and print the answer's text
    #[arg(
        short = 'P',
        long,
        value_name = "TEXT",
        conflicts_with = "files",
        value_parser = values::prompt_text
    )]
    pub prompt: Option<String>,

    /// With --prompt: print the JSON output line instead of the answer's text
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub routing: RoutingArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// Choose models but call none (needs no API key; works offline); implies --explain
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Add the full ranking (`candidates`) to every output line
    #[arg(short = 'e', long)]
    pub explain: bool,

    /// Write output lines as they complete instead of in input order
    #[arg(long)]
    pub unordered: bool,

    /// Neither read nor write the response cache (attempts are still recorded)
    #[arg(long)]
    pub no_cache: bool,

    /// Print nothing on stderr but errors
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log every upstream attempt and cache hit on stderr
    #[arg(short, long)]
    pub verbose: bool,

    /// Progress bar on stderr: auto (only on a terminal), always, never
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = Progress::Auto)]
    pub progress: Progress,

    /// Route every line, taking a line's `model` (as every OpenAI Batch line has) as a hint that routing may override, not a pin
    #[arg(long)]
    pub route_all: bool,

    /// The task of every line that names none (`llmroute.task`): outcomes teach each model's quality per task
    #[arg(long, value_name = "TASK", value_parser = parse_task)]
    pub task: Option<String>,

    /// Grade each answer with this command (`sh -c CMD`): it reads the request and answer as JSON on stdin and prints a score (0..1, true or false), which teaches the router as the run goes
    #[arg(long, value_name = "CMD", conflicts_with = "dry_run", value_parser = values::parse_command)]
    pub grade: Option<String>,

    /// How long the grader may take for one answer, at least 100ms, before it (and whatever it started) is killed and the line goes out without a grade
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = values::parse_grade_timeout, requires = "grade")]
    pub grade_timeout: Duration,

    /// The output lines' shape: llmroute (with its annotations) or openai-batch (OpenAI's batch output: id, custom_id, response, error)
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Llmroute)]
    pub output_format: OutputFormat,
}

/// The shape of a batch's output lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// llmroute's own: the answer with the model, score, latency, cost and attempts.
    #[default]
    Llmroute,
    /// OpenAI's batch output file: `id`, `custom_id`, `response: {status_code, request_id, body}`, `error`.
    OpenaiBatch,
}

/// The options a run is tuned with beyond its routing: shared by a run and
/// `llmroute config show`, which prints them resolved.
#[derive(Debug, Args, Clone, Default)]
pub struct TuningArgs {
    /// Requests in flight at once [default: 8]
    #[arg(short = 'j', long, value_name = "N", env = "LLMROUTE_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: Option<u32>,

    /// Time limit of one upstream attempt, at least 100ms, e.g. 30s, 2m [default: 60s]
    #[arg(long, value_name = "DURATION", env = "LLMROUTE_TIMEOUT", value_parser = parse_timeout)]
    pub timeout: Option<Duration>,

    /// Upstream attempts per line, across models [default: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: Option<u32>,

    /// How long a cached answer is reused, e.g. 12h, 7d [default: 7d]
    #[arg(long, value_name = "DURATION", env = "LLMROUTE_CACHE_TTL", value_parser = parse_duration)]
    pub cache_ttl: Option<Duration>,

    /// Requests per minute at most, shared by all requests in flight
    #[arg(long, value_name = "N", env = "LLMROUTE_RPM", value_parser = clap::value_parser!(u32).range(1..))]
    pub rpm: Option<u32>,

    /// Tokens per minute at most (estimated before a call; usage after charges the extra and gives back the unused)
    #[arg(long, value_name = "N", env = "LLMROUTE_TPM", value_parser = clap::value_parser!(u32).range(1..))]
    pub tpm: Option<u32>,

    /// Spend at most this many USD in this run: a line whose estimate does not fit what is left gets a budget_exceeded error, and later lines that fit are still sent
    #[arg(long, value_name = "USD", env = "LLMROUTE_MAX_COST", value_parser = parse_usd)]
    pub max_cost: Option<f64>,

    /// Share of requests that re-measure a candidate tried longest ago, in [0, 1]; 0 turns exploration off [default: 0.05]
    #[arg(long, value_name = "SHARE", env = "LLMROUTE_EXPLORE", value_parser = parse_share)]
    pub explore: Option<f64>,

    /// Send a slow request to the next-best model too: after its model's p95 latency kept within 1.5 to 3 times its median (auto), after DURATION, or never (off) [default: off]
    #[arg(long, value_name = "auto|off|DURATION", env = "LLMROUTE_HEDGE", value_parser = parse_hedge)]
    pub hedge: Option<Hedge>,

    /// Leave out candidates whose latency estimate for a line is over this, e.g. 2s
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_latency: Option<Duration>,

    /// Leave out candidates whose cost estimate for a line is over this many USD
    #[arg(long, value_name = "USD", value_parser = parse_usd)]
    pub max_line_cost: Option<f64>,

    /// Metrics older than this, at least 1m, are pruned from the store after a run (and by a server as it runs) [default: 90d]
    #[arg(long, value_name = "DURATION", env = "LLMROUTE_RETENTION", value_parser = parse_retention)]
    pub retention: Option<Duration>,

    /// Share answers and model health with other machines through Redis or Valkey, e.g. redis://host:6379/0 (rediss:// for TLS)
    #[arg(long, value_name = "URL", env = "LLMROUTE_REDIS_URL")]
    pub redis: Option<String>,

    /// The prefix of llmroute's keys in Redis [default: llmroute:v1:]
    #[arg(long, value_name = "PREFIX", env = "LLMROUTE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,

    /// Time limit of one Redis call; past it, local state answers [default: 50ms]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub redis_timeout: Option<Duration>,

    /// Share --rpm, --tpm and --max-cost with every process on the same Redis
    #[arg(long)]
    pub shared_limits: bool,

    /// The name of the budget --max-cost shares with --shared-limits, e.g. a date [default: default]
    #[arg(long, value_name = "ID", env = "LLMROUTE_BUDGET_ID")]
    pub budget_id: Option<String>,
}

/// When to show the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Progress {
    #[default]
    Auto,
    Always,
    Never,
}

/// Subcommands; without one, llmroute routes its input.
#[derive(Debug, Subcommand, Clone)]
pub enum Command {
    /// Latency percentiles, per-model usage, errors, cost and cache hit rate from the store
    Report(ReportArgs),
    /// The candidate models with prices, quality, measured latency and the score each would get now
    Models(ModelsArgs),
    /// Inspect and trim the response cache
    Cache(CacheArgs),
    /// Client keys for `serve`: each with its token, and optionally a budget, rates, models and more
    Keys(KeysArgs),
    /// Take in feedback on answers (JSONL {"request_id", "score"}), or outcomes of an evaluation: the router learns each model's quality per task
    Feedback(FeedbackArgs),
    /// Where the config, store and catalogue live, and the effective configuration
    Config(ConfigArgs),
    /// Serve the router as an OpenAI-compatible HTTP API (POST /v1/chat/completions)
    #[command(after_help = SERVE_AFTER_HELP)]
    Serve(Box<ServeArgs>),
    /// Print the completion script for a shell, e.g. `llmroute completions bash > ~/.local/share/bash-completion/completions/llmroute`
    Completions(CompletionsArgs),
    /// Print the man page (roff), e.g. `llmroute man | man -l -`
    Man,
}

/// `llmroute completions`.
#[derive(Debug, Args, Clone)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

const SERVE_AFTER_HELP: &str = "\
Clients set their base URL to http://ADDR/v1. The model \"auto\" (or none) routes with the server's
priority; \"llmroute/speed\", \"llmroute/cost\", \"llmroute/quality\", \"llmroute/balanced\" or
\"llmroute/<preset>\" pick one; any other model is pinned.

Client tokens: LLMROUTE_AUTH_TOKENS (comma-separated) or --auth-token-file; admin tokens (DELETE /cache):
LLMROUTE_ADMIN_TOKENS or --admin-token-file. Without client tokens the server listens on loopback only.

Endpoints: POST /v1/chat/completions, GET /v1/models, POST /route, GET /health, GET /ready,
GET /cache/stats, DELETE /cache, GET /metrics; a dashboard at GET /dashboard (and /), behind the
client tokens when they are set.

Examples:
  llmroute serve
  LLMROUTE_AUTH_TOKENS=s3cret llmroute serve --listen 0.0.0.0:8080 -p speed";

/// `llmroute config`.
#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub action: ConfigAction,
}

#[derive(Debug, Subcommand, Clone)]
pub enum ConfigAction {
    /// Print where the config file, the store and the catalogue live
    Path,
    /// Print the effective configuration (flags, environment, file, defaults) as TOML
    Show(Box<ShowArgs>),
}

/// `llmroute config show`: the routing and tuning flags a run takes, to
/// show what they resolve to.
#[derive(Debug, Args, Clone, Default)]
pub struct ShowArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,

    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// `llmroute models`.
#[derive(Debug, Args, Clone)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub routing: RoutingArgs,

    /// Every model in the catalogue, not only the candidates
    #[arg(long)]
    pub all: bool,

    /// Quality and scores for this task: learned from its feedback where there was any, else pooled from other tasks and models, else the prior
    #[arg(long, value_name = "TASK", value_parser = parse_task)]
    pub task: Option<String>,

    /// JSON for scripts
    #[arg(long)]
    pub json: bool,

    /// Fetch the catalogue again now
    #[arg(long)]
    pub refresh: bool,

    /// Forget the health learned of these models (all when none is named) on
    /// this --base-url: latency and error averages, pauses, open circuits
    #[arg(long, value_name = "MODEL", num_args = 0.., value_delimiter = ',')]
    pub reset: Option<Vec<String>>,

    /// The Redis whose shared quality a listing reads, and, with --reset, whose shared health is forgotten too (or the config's `redis`)
    #[arg(long, value_name = "URL", env = "LLMROUTE_REDIS_URL")]
    pub redis: Option<String>,

    /// The prefix of llmroute's keys in that Redis, as the servers on it have it [default: llmroute:v1:]
    #[arg(long, value_name = "PREFIX", env = "LLMROUTE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
}

/// `llmroute cache`.
#[derive(Debug, Args, Clone)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Debug, Subcommand, Clone)]
pub enum CacheAction {
    /// Entries, size, oldest and newest entry, and the hit rate over a window
    Stats {
        /// The window of the hit rate: a duration back from now (1h, 7d) or `all`
        #[arg(long, value_name = "DURATION|all", default_value = "24h", value_parser = parse_since)]
        since: Since,
        /// JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Remove every cached answer
    Clear,
    /// Remove cached answers older than a duration
    Prune {
        /// e.g. 30d
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        older_than: Duration,
    },
}

/// `llmroute report`.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// The window to report on: a duration back from now (1h, 7d) or `all`
    #[arg(long, value_name = "DURATION|all", default_value = "24h", value_parser = parse_since)]
    pub since: Since,

    /// Only these models (repeatable)
    #[arg(long = "model", value_name = "MODEL")]
    pub models: Vec<String>,

    /// The rows of the table: one per model, one per client key of `serve`, one per task and model with its feedback and learned quality, or one per upstream (JSON, Prometheus and HTML have them all)
    #[arg(long, value_enum, value_name = "ROWS", default_value = "model")]
    pub by: ReportBy,

    /// Same as --format json
    #[arg(long)]
    pub json: bool,

    /// Output format [default: table]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ReportFormat>,

    /// Write the report to FILE (replaced whole, never half-written) instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

fn parse_task(s: &str) -> Result<String, String> {
    crate::core::learned::check_task(s.trim()).map(|()| s.trim().to_string())
}

/// `llmroute feedback`.
#[derive(Debug, Args, Clone)]
pub struct FeedbackArgs {
    /// JSONL feedback: {"request_id": ID, "score": 0..1 | true | false, "weight": W}; none or `-` reads standard input
    #[arg(value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,

    /// Read outcomes of an evaluation instead: JSONL {"task": T, "model": M, "score": 0..1 | true | false, "weight": W}
    #[arg(long, value_name = "FILE", conflicts_with = "file")]
    pub outcomes: Option<std::path::PathBuf>,

    /// Print nothing for the lines taken in, only the errors, and no summary
    #[arg(short, long)]
    pub quiet: bool,

    /// Share what it teaches through this Redis too, with every process on it, and judge the requests other machines on it answered (or the config's `redis`)
    #[arg(long, value_name = "URL", env = "LLMROUTE_REDIS_URL")]
    pub redis: Option<String>,

    /// The prefix of llmroute's keys in that Redis, as the servers on it have it [default: llmroute:v1:]
    #[arg(long, value_name = "PREFIX", env = "LLMROUTE_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
}

/// What a report's table has a row for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportBy {
    Model,
    Key,
    Task,
    Upstream,
}

/// How far back a report looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    All,
    Last(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// For people: totals and a row per model
    Table,
    /// For scripts
    Json,
    /// Prometheus text exposition, for node_exporter's textfile collector
    Prometheus,
    /// One self-contained HTML page with charts, to open offline or mail
    Html,
}

fn parse_since(s: &str) -> Result<Since, String> {
    if s.trim().eq_ignore_ascii_case("all") {
        Ok(Since::All)
    } else {
        crate::core::duration::parse(s).map(Since::Last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_key_s_negative_limits_reach_their_own_check() {
        // Not clap's "unexpected argument" with a tip that does not work:
        // the value is the key's to judge, and its error says why.
        for (flag, value) in [("--budget", "-1"), ("--rpm", "-3"), ("--expires", "-5d")] {
            let r = Cli::try_parse_from(["llmroute", "keys", "create", "k", flag, value]);
            match r {
                Ok(_) => {}
                Err(e) => assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{e}"),
            }
        }
        let cli =
            Cli::try_parse_from(["llmroute", "keys", "create", "k", "--budget", "-1"]).unwrap();
        let Some(Command::Keys(k)) = cli.command else {
            panic!("keys")
        };
        let crate::cli::keys::KeysAction::Create(c) = k.action else {
            panic!("create")
        };
        assert_eq!(c.budget, Some(-1.0));
    }

    #[test]
    fn lists_and_values_parse() {
        let cli = Cli::try_parse_from([
            "llmroute",
            "-p",
            "cost",
            "--models",
            "a/b,c/d",
            "--quality",
            "a/b=0.9",
            "--timeout",
            "500ms",
            "-j",
            "3",
            "x.jsonl",
        ])
        .unwrap();
        assert_eq!(cli.run.routing.priority.as_deref(), Some("cost"));
        assert_eq!(cli.run.routing.models.clone().unwrap(), vec!["a/b", "c/d"]);
        let quality: Vec<_> = cli.run.routing.quality().cloned().collect();
        assert_eq!(quality, vec![("a/b".to_string(), 0.9)]);
        assert_eq!(cli.run.tuning.timeout, Some(Duration::from_millis(500)));
        assert_eq!(cli.run.tuning.concurrency, Some(3));
        assert_eq!(cli.run.files, vec![PathBuf::from("x.jsonl")]);
    }

    #[test]
    fn colour_needs_a_terminal_and_no_no_color_unless_forced() {
        use std::ffi::OsStr;
        let auto = ColorWhen::Auto;
        assert!(auto.colours(true, None));
        assert!(auto.colours(true, Some(OsStr::new(""))));
        assert!(!auto.colours(true, Some(OsStr::new("1"))));
        assert!(!auto.colours(false, None));
        assert!(ColorWhen::Always.colours(false, Some(OsStr::new("1"))));
        assert!(!ColorWhen::Never.colours(true, None));
    }

    #[test]
    fn the_color_flag_is_read_ahead() {
        let read = |args: &[&str]| {
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            values::color_flag(&args)
        };
        assert_eq!(read(&["llmroute", "report"]), None);
        assert_eq!(
            read(&["llmroute", "--color", "never", "x"]),
            Some(ColorWhen::Never)
        );
        assert_eq!(
            read(&["llmroute", "--color=never", "--color=always"]),
            Some(ColorWhen::Always)
        );
        assert_eq!(read(&["llmroute", "--", "--color=never"]), None);
        assert_eq!(read(&["llmroute", "--color", "sometimes"]), None);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["llmroute", "--weights", "latency=-1"][..],
            &["llmroute", "--weights", "latency=0,cost=0"],
            &["llmroute", "--timeout", "soon"],
            &["llmroute", "-j", "0"],
            &["llmroute", "--quality", "a/b=2"],
            &["llmroute", "--quality", "a/b=0.5,a/b=0.6"],
            &["llmroute", "--quality", ","],
            // No aliases beyond the three names every message gives.
            &["llmroute", "-w", "speed=1"],
            &["llmroute", "-w", "price=1,quality=1"],
        ] {
            let err = Cli::try_parse_from(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
