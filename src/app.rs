//! The entry point: loads the config file, resolves it with the flags into
//! [`Options`], and hands the run to the batch front end or a command. Errors that end the
//! program arrive here and leave as one line on stderr and status 2.

use crate::cli::{Cli, Command, ConfigAction};
use crate::config::Loaded;
use crate::options::Options;
use crate::setup::exit;

/// Runs the parsed command line and returns the exit status.
pub fn main(cli: Cli) -> i32 {
    // The man page and completions need no config file: a broken one does
    // not keep them from being printed.
    let result = match docs(&cli.command) {
        Some(text) => crate::setup::write_stdout(text.as_bytes()),
        None => run(&cli),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let text = crate::setup::hide_keys(format!("{e:#}"));
            eprintln!("llmroute: error: {text}");
            exit::FATAL
        }
    }
}

/// What `llmroute man` and `llmroute completions SHELL` print.
fn docs(command: &Option<Command>) -> Option<String> {
    match command {
        Some(Command::Man) => Some(crate::docs::man_page()),
        Some(Command::Completions(args)) => Some(crate::docs::completions(args.shell)),
        _ => None,
    }
}

/// Runs a batch or a command with the config file loaded.
fn run(cli: &Cli) -> anyhow::Result<i32> {
    let explicit = cli.common.config.as_deref();
    // Where things are is told even with a config that cannot be read:
    // it is what one asks to fix it.
    let loaded = match &cli.command {
        Some(Command::Config(c)) if matches!(c.action, ConfigAction::Path) => {
            let loaded = Loaded::load_or_defaults(explicit);
            if let Some(e) = &loaded.unread {
                eprintln!("llmroute: warning: the config file is not read: {e}");
            }
            Ok(loaded)
        }
        _ => Loaded::load(explicit),
    };
    loaded.map_err(anyhow::Error::msg).and_then(|loaded| {
        let options = Options::resolve(cli, &loaded.config);
        match &cli.command {
            None => crate::batch::main(&cli.run, &options),
            Some(Command::Report(args)) => crate::commands::report::main(args, &options),
            Some(Command::Models(args)) => crate::commands::models::main(args, &options),
            Some(Command::Cache(args)) => crate::commands::cache::main(args, &options),
            Some(Command::Keys(args)) => crate::commands::keys::main(args, &options),
            Some(Command::Feedback(args)) => crate::commands::feedback::main(args, &options),
            Some(Command::Serve(_)) => crate::serve::main(&options),
            Some(Command::Config(args)) => {
                crate::commands::config::main(&args.action, &options, &loaded)
            }
            Some(Command::Man | Command::Completions(_)) => {
                unreachable!("printed without a config file, by main")
            }
        }
    })
}
