//! `llmroute report`: what the store says about past runs.

use crate::app::Fatal;
use crate::cli::{CommonArgs, ReportArgs};

/// Runs `llmroute report` and returns the exit status.
pub fn main(args: &ReportArgs, common: &CommonArgs) -> Result<i32, Fatal> {
    let _ = (args, common);
    Err(Fatal("report is not available yet".into()))
}
