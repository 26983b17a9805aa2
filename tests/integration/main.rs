//! Integration tests: the real binary against a fake OpenRouter server.

mod util;

mod catalogue;
mod commands;
mod report;
mod route;
mod signals;
