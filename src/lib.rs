//! llmroute: routes chat requests to the best model of an OpenAI-compatible
//! API (OpenRouter by default) by measured latency, live price and quality.
//!
//! One line's way through, by module:
//!
//! ```text
//! main.rs ─▶ app ─▶ batch (front end) ─▶ batch::reader ─▶ engine::Router::route ─▶ batch::output
//!                                                          │  core: request, cachekey, ranking,
//!                                                          │        attempts, health, failure
//!                                                          └─ ports: upstream (HTTP), store (SQLite)
//! ```
//!
//! | module       | concern                                                            |
//! |--------------|--------------------------------------------------------------------|
//! | [`app`]      | the entry point: config file, dispatch, fatal errors               |
//! | [`cli`]      | the command-line definition (clap)                                  |
//! | [`config`]   | the config file: defaults for every routing flag                    |
//! | [`options`]  | flags, environment, config file and defaults, resolved once         |
//! | [`setup`]    | what runs and commands share: store path, base URL, catalogue, key  |
//! | [`core`]     | the pure core: request, cache key, ranking, attempt policy, health  |
//! | [`engine`]   | the routing engine ([`engine::Router`]) and its traits              |
//! | [`upstream`] | the HTTP client: the engine's upstream                              |
//! | [`store`]    | SQLite: cache, records, model health, schema migrations             |
//! | [`shared`]   | Redis: answers, model health, limits shared with other machines     |
//! | [`wiring`]   | the engine wired to the HTTP client and the store, for front ends   |
//! | [`batch`]    | the batch front end: JSONL in, one annotated line out per line      |
//! | [`serve`]    | the server front end: an OpenAI-compatible HTTP API                  |
//! | [`commands`] | `report`, `models`, `cache`, `config`                               |
//! | [`view`]     | charts and HTML pages of traffic, for the report and the dashboard  |
//! | [`docs`]     | the man page and shell completions, from the clap definition        |
//!
//! Dependencies point down the table's groups: front ends and commands use
//! the engine and the store; the engine uses the core and its own traits;
//! the store and the HTTP client implement those traits; the core uses
//! nothing of llmroute's but itself.

/// Every `eprintln!` of the crate: std's, without its panic. With stderr a
/// pipe whose reader has gone, std's panics, and the panic hook's own message
/// then aborts the process; a message nobody can read is lost, not the run.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

pub mod app;
pub mod batch;
pub mod cli;
pub mod commands;
pub mod config;
pub mod core;
pub mod docs;
pub mod engine;
pub mod options;
pub mod serve;
pub mod setup;
pub mod shared;
pub mod store;
pub mod upstream;
pub mod upstreams;
pub mod view;
pub mod wiring;
