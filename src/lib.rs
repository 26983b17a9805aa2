//! llmroute: a streaming JSONL filter that routes chat requests to the best
//! OpenRouter model by measured latency, live price and quality.
//!
//! The binary (`src/main.rs`) is a thin shell over these modules:
//!
//! | module       | concern                                                        |
//! |--------------|----------------------------------------------------------------|
//! | [`app`]      | turns parsed flags into a run and an exit status                |
//! | [`cli`]      | the command-line definition (clap)                              |
//! | [`config`]   | the config file: defaults for every routing flag                |
//! | [`input`]    | parsing one JSONL line into a [`input::Request`]                |
//! | [`cachekey`] | canonical form of a request and its cache key                   |
//! | [`scoring`]  | the pure weighted scorer                                        |
//! | [`quality`]  | quality priors (catalogue index, built-in table, overrides)     |
//! | [`catalogue`]| OpenRouter's model catalogue: parse, store, embedded snapshot   |
//! | [`routing`]  | routing settings, eligibility and ranking of one request        |
//! | [`upstream`] | the HTTP client for `/chat/completions` and `/models`           |
//! | [`limits`]   | requests/tokens per minute and the spending cap                 |
//! | [`pipeline`] | concurrency, ordering, retries, fallback, cooldowns             |
//! | [`progress`] | the progress bar on stderr                                        |
//! | [`store`]    | SQLite: cache, metrics, model statistics, schema migrations     |
//! | [`output`]   | the JSON object written for every input line                    |
//! | [`report`]   | `llmroute report`: percentiles, usage, cost from the store      |
//! | [`models`]   | `llmroute models`: candidates, prices, measurements, scores now |
//! | [`cache`]    | `llmroute cache`: stats, clear, prune                           |
//! | [`duration`] | humantime durations on the command line                         |

pub mod app;
pub mod cache;
pub mod cachekey;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod duration;
pub mod input;
pub mod limits;
pub mod models;
pub mod output;
pub mod pipeline;
pub mod progress;
pub mod quality;
pub mod report;
pub mod routing;
pub mod scoring;
pub mod store;
pub mod upstream;
