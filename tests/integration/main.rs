//! Integration tests: the real binary against a fake OpenRouter server.

mod util;

mod batch;
mod catalogue;
mod commands;
mod docs;
mod report;
mod route;
mod signals;
