//! The entry point: loads the config file, resolves it with the flags into
//! [`Options`], and hands the run to the batch front end or a command. Errors that end the
//! program arrive here and leave as one line on stderr and status 2.

use crate::cli::{Cli, Command};
use crate::config::Loaded;
use crate::options::Options;
use crate::setup::exit;

/// Runs the parsed command line and returns the exit status.
pub fn main(cli: Cli) -> i32 {
    let result = Loaded::load(cli.common.config.as_deref())
        .map_err(anyhow::Error::msg)
        .and_then(|loaded| {
            let options = Options::resolve(&cli, &loaded.config);
            match &cli.command {
                None => crate::batch::main(&cli.run, &options),
                Some(Command::Report(args)) => crate::commands::report::main(args, &options),
                Some(Command::Models(args)) => crate::commands::models::main(args, &options),
                Some(Command::Cache(args)) => crate::commands::cache::main(args, &options),
                Some(Command::Serve(_)) => crate::serve::main(&options),
                Some(Command::Config(args)) => {
                    crate::commands::config::main(&args.action, &options, &loaded)
                }
            }
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("llmroute: error: {e:#}");
            exit::FATAL
        }
    }
}
