//! Integration tests: the real binary against a fake OpenRouter server.

mod util;

mod batch;
mod browser;
mod cache;
mod catalogue;
mod colour;
mod commands;
mod costs;
mod crashes;
mod dashboard;
mod docs;
mod faults;
mod hostile;
mod input;
mod keys;
mod layout;
mod learning;
mod numbers;
mod offline;
mod openai;
mod prompt;
mod props;
mod readme;
mod report;
mod report_html;
mod route;
mod serve;
mod serve_limits;
mod serve_streams;
mod serve_upkeep;
mod shared;
mod signals;
mod tls;
mod toolchain;
mod usage;
