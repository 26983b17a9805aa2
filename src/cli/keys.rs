//! The arguments of `llmroute keys`.

use clap::{Args, Subcommand};

/// `llmroute keys`.
#[derive(Debug, Args, Clone)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub action: KeysAction,

    /// Keep and read keys in this Redis too, so every server on it knows them (or the config's `redis`)
    #[arg(long, value_name = "URL", env = "LLMROUTE_REDIS_URL", global = true)]
    pub redis: Option<String>,

    /// The prefix of llmroute's keys in that Redis, as the servers on it have it [default: llmroute:v1:]
    #[arg(
        long,
        value_name = "PREFIX",
        env = "LLMROUTE_REDIS_PREFIX",
        global = true
    )]
    pub redis_prefix: Option<String>,
}

#[derive(Debug, Subcommand, Clone)]
pub enum KeysAction {
    /// Make a key and print its token, once: only its SHA-256 is kept
    Create(KeyCreateArgs),
    /// Every key, with its limits, and whether it is live, revoked or expired
    List {
        /// JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// One key's policy and what it spent this period
    Show {
        /// The key's name
        name: String,
        /// JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: a running server refuses its token within seconds
    Revoke {
        /// The key's name
        name: String,
    },
}

/// `llmroute keys create`.
#[derive(Debug, Args, Clone)]
pub struct KeyCreateArgs {
    /// The key's name: ASCII letters, digits, '-', '_', '.', '@' (recorded with each request)
    pub name: String,

    /// What the key may spend a period, in USD
    #[arg(long, value_name = "USD", allow_negative_numbers = true)]
    pub budget: Option<f64>,

    /// The budget's period (UTC calendar days or months, or the key's whole life) [default: total]
    #[arg(long, value_name = "PERIOD", value_parser = ["day", "month", "total"], requires = "budget")]
    pub per: Option<String>,

    /// Requests a minute
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub rpm: Option<u32>,

    /// Tokens a minute (prompt and completion, as the upstream counts them)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub tpm: Option<u32>,

    /// Models the key may use, as patterns with `*` (e.g. 'openai/*'); routing stays within them
    #[arg(long, value_name = "PATTERN", num_args = 1.., value_delimiter = ',')]
    pub models: Vec<String>,

    /// Priorities the key may ask for; the first is its default when the server's is not one
    #[arg(long, value_name = "PRIORITY", num_args = 1.., value_delimiter = ',')]
    pub priorities: Vec<String>,

    /// The most max_tokens a request may ask for (a request that asks none gets this)
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_tokens: Option<u64>,

    /// Whose cache the key's requests use: its own, or the one keys share [default: own]
    #[arg(long, value_name = "CACHE", value_parser = ["own", "shared"])]
    pub cache: Option<String>,

    /// Whether the key's feedback (POST /v1/feedback) teaches the router every key is routed by [default: on]
    #[arg(long, value_name = "ON_OFF", value_parser = ["on", "off"])]
    pub feedback: Option<String>,

    /// When the key stops working: a duration from now (30d) or a UTC date or time (2027-01-31, 2027-01-31T12:00:00Z)
    #[arg(long, value_name = "WHEN", allow_hyphen_values = true)]
    pub expires: Option<String>,

    /// JSON for scripts (the token included)
    #[arg(long)]
    pub json: bool,
}
