//! Errors of values that came from environment variables: clap names the
//! flag, and the error says which variable held the value.

/// A bad value clap names by its flag, when the flag is not on the command
/// line but came from its environment variable: the error says so, or a
/// cron job's `LLMROUTE_EXPLORE=abc` reads as a `--explore` nobody gave.
pub(super) fn from_the_environment(
    mut e: clap::Error,
    command: &clap::Command,
    args: &[std::ffi::OsString],
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return e;
    }
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else {
        return e;
    };
    let Some(long) = arg.strip_prefix("--").and_then(|a| a.split(' ').next()) else {
        return e;
    };
    let given = given(args.iter().filter_map(|a| a.to_str()), long, None);
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(v)) => v.clone(),
        _ => return e,
    };
    // The variable's, when it holds the value refused (a short flag, -j 0,
    // may have given it too: then the variable is not blamed).
    let var = env_of(command, long)
        .filter(|var| std::env::var_os(var).is_some_and(|v| v.to_string_lossy() == value));
    if let (false, Some(var)) = (given, var) {
        e.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![blame(&var).into()]),
        );
    }
    e
}

/// Flag `--long` of `command` or of a subcommand.
fn arg_of<'a>(command: &'a clap::Command, long: &str) -> Option<&'a clap::Arg> {
    command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .or_else(|| command.get_subcommands().find_map(|c| arg_of(c, long)))
}

/// The environment variable of flag `--long`, in `command` or a subcommand.
fn env_of(command: &clap::Command, long: &str) -> Option<String> {
    arg_of(command, long)?
        .get_env()
        .map(|v| v.to_string_lossy().into_owned())
}

/// Whether `args` give `--long` (or its `short` form).
fn given<'a>(mut args: impl Iterator<Item = &'a str>, long: &str, short: Option<char>) -> bool {
    args.any(|a| {
        a == format!("--{long}")
            || a.starts_with(&format!("--{long}="))
            || short.is_some_and(|s| a.starts_with(&format!("-{s}")))
    })
}

/// What a tip says of a value that is variable `var`'s.
fn blame(var: &str) -> String {
    format!("the value is the environment variable {var}'s: set it right, or unset it")
}

/// For an error about `--long`'s value that is found after parsing (a
/// priority the config's presets do not name, an empty list, a URL): the
/// tip that the value is its environment variable's, when it is (the flag
/// is not on the command line and the variable is set); else "".
pub fn tip(long: &str) -> String {
    use clap::CommandFactory;
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let command = super::Cli::command();
    let short = arg_of(&command, long).and_then(|a| a.get_short());
    let given = given(args.iter().map(String::as_str), long, short);
    match env_of(&command, long).filter(|v| !given && std::env::var_os(v).is_some()) {
        Some(var) => format!(" (tip: {})", blame(&var)),
        None => String::new(),
    }
}
