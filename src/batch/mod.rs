//! The batch front end: `llmroute [FILE]...` reads JSONL requests, routes
//! each through the engine, and writes one annotated JSON line per input
//! line, in order, with progress, signals and an exit status.
//!
//! | module       | concern                                                   |
//! |--------------|-----------------------------------------------------------|
//! | this one     | a run's set-up from the flags, its summary, exit status   |
//! | [`reader`]   | the input reader thread: sources, lines, parsing          |
//! | [`run`]      | the dispatcher, line tasks, the grace period, the summary |
//! | `sink`       | the output thread: input order, the outbox, stdout        |
//! | [`stop`]     | why a run stops early                                     |
//! | [`output`]   | the JSON object written for every input line              |
//! | [`console`]  | messages on stderr and the engine's observer               |
//! | [`progress`] | the progress bar                                          |
//! | [`prompt`]   | one prompt from the command line (`--prompt`)             |
//! | [`signals`]  | Ctrl-C and SIGTERM                                        |

pub mod console;
mod counters;
pub mod grade;
mod openai_batch;
pub mod output;
pub mod progress;
pub mod prompt;
pub mod reader;
pub mod run;
mod shared;
mod signals;
mod sink;
pub mod stop;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::cli::RunArgs;
use crate::core::numbers::{counted, usd};
use crate::options::Options;
use crate::setup::{self, exit};
use crate::store::{self, writer::Writer};
use crate::wiring::{self, Wants};
use console::{BatchObserver, Console};
use reader::Source;
use run::{Batch, StopReason, Summary};

/// Runs a batch over the files (or stdin) of `run`, and returns the exit status.
pub fn main(run: &RunArgs, options: &Options) -> anyhow::Result<i32> {
    // Bad routing settings are reported before anything else.
    options.settings()?;
    flags_that_do_not_mix(run)?;
    // Before the key: `llmroute reprot` is a typo, not a missing key.
    let sources = sources(run)?;
    if !stdout_is_open() {
        anyhow::bail!(
            "standard output is closed: no answer could be written, so none is asked for"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("llmroute")
        .build()
        .context("cannot start the async runtime")?;
    // One prompt has no progress to show, unless asked for.
    let progress = progress::bar(
        run.progress,
        run.quiet || run.prompt.is_some(),
        |terminal| options.colours(terminal),
        &sources,
    );
    let console = || Console {
        progress: progress.clone(),
        verbose: run.verbose,
        quiet: run.quiet,
    };
    let run_id = wiring::run_id();
    let shape = shape(run, &run_id);
    let wants = wants(run, options, run_id.clone());
    let use_cache = wants.use_cache;
    let observer = Arc::new(BatchObserver::new(console()));
    let wired = wiring::wire(options, wants, observer, &rt)?;
    let router = wired.router;
    let grader = run.grade.as_ref().map(|cmd| {
        Arc::new(grade::Grader::start(
            (cmd.clone(), run.grade_timeout),
            wired.store_path.clone(),
            router.config().upstream.clone(),
            router.learned().clone(),
            wired.redis.clone(),
        ))
    });
    let batch = Batch {
        router: router.clone(),
        concurrency: options.concurrency as usize,
        unordered: run.unordered,
        keyed: use_cache,
        console: console(),
        route_all: options.route_all,
        shape,
        notes: wired.notes,
        run_id,
        task: run.task.clone(),
        grader: grader.clone(),
        upstreams: options.upstreams.keys().cloned().collect(),
    };
    // A prompt's line is kept, to print its answer once the run has ended.
    let kept = run.prompt.as_ref().map(|_| prompt::Kept::default());
    if tells_how_to_end_input(run, std::io::stdin().is_terminal()) {
        console().say(format_args!(
            "llmroute: reading requests from standard input (Ctrl-D to end)"
        ));
    }
    let out: Box<dyn std::io::Write + Send> = match &kept {
        Some(kept) => Box::new(kept.clone()),
        None => Box::new(std::io::stdout()),
    };
    let summary = rt
        .block_on(run::run(batch, sources, out))
        .map_err(anyhow::Error::msg)?;
    if let Some(g) = &grader {
        // The last grades reach the store.
        g.finish();
    }
    if let Some(link) = &wired.redis {
        // The last answers reach Redis before the run ends.
        rt.block_on(link.flush(Duration::from_secs(2)));
    }
    let refused = router.stopped();
    let store_failure = router.record_failure();
    drop(router);
    drop(wired.health_reader);
    // Tasks still running after the grace period are dropped here.
    rt.shutdown_timeout(Duration::from_millis(200));
    // A stopped run's output may be blocked for good (nobody reads it),
    // holding the engine and so the writer: the wait for it is bounded.
    let bound = summary.stop.is_some().then_some(STOPPED_FLUSH);
    flush_and_prune(wired.writer, run.quiet, options.retention, bound);
    let code = finish(&summary, run, refused, store_failure);
    match kept {
        Some(kept) => show_prompt(&kept.bytes(), run.json, code),
        None => Ok(code),
    }
}

/// Whether standard output was closed when the process started (`>&-`),
/// as seen before Rust's runtime puts /dev/null on a closed standard
/// descriptor: by then a closed output cannot be told from a /dev/null
/// opened read-write on purpose (Python's `subprocess.DEVNULL`, systemd's
/// `StandardOutput=null`).
static STDOUT_CLOSED_AT_START: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Looks at standard output as the C runtime starts the process, before
/// Rust's runtime does: run from `.init_array`, as a C constructor is.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static LOOK_AT_STDOUT: extern "C" fn() = {
    extern "C" fn look() {
        // SAFETY: F_GETFD reads descriptor 1's flags and changes nothing.
        if unsafe { libc::fcntl(1, libc::F_GETFD) } == -1 {
            STDOUT_CLOSED_AT_START.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    look
};

/// Whether standard output can take the answers: it was not closed when
/// the process started.
fn stdout_is_open() -> bool {
    #[cfg(target_os = "linux")]
    let _ = &LOOK_AT_STDOUT;
    !STDOUT_CLOSED_AT_START.load(std::sync::atomic::Ordering::Relaxed)
}

/// The output lines' shape.
fn shape(run: &RunArgs, run_id: &str) -> output::Shape {
    match run.output_format {
        crate::cli::OutputFormat::Llmroute => output::Shape::Llmroute,
        crate::cli::OutputFormat::OpenaiBatch => output::Shape::OpenAiBatch {
            run_id: run_id.to_string(),
        },
    }
}

/// Flags that each make sense, but not together.
fn flags_that_do_not_mix(run: &RunArgs) -> anyhow::Result<()> {
    if run.json && run.prompt.is_none() {
        anyhow::bail!("--json goes with --prompt; the lines of a run are JSON already");
    }
    if run.output_format == crate::cli::OutputFormat::OpenaiBatch {
        if run.dry_run {
            anyhow::bail!("--output-format openai-batch cannot be used with --dry-run: a dry run has no answers to write in it");
        }
        if run.prompt.is_some() {
            anyhow::bail!("--output-format openai-batch cannot be used with --prompt, which prints the answer's text (or, with --json, its output line)");
        }
    }
    Ok(())
}

/// Where a run's lines come from: its prompt, its files, or stdin.
fn sources(run: &RunArgs) -> anyhow::Result<Vec<Source>> {
    Ok(if let Some(text) = &run.prompt {
        vec![prompt::source(text)]
    } else if run.files.is_empty() {
        vec![Source::Stdin]
    } else {
        run.files
            .iter()
            .map(|f| Source::from_arg(f).map_err(|e| missing_file(f, e)))
            .collect::<Result<_, _>>()?
    })
}

/// What a batch run asks of the engine.
fn wants(run: &RunArgs, options: &Options, run_id: String) -> Wants {
    Wants {
        dry_run: run.dry_run,
        explain: run.explain || run.dry_run,
        use_cache: !run.no_cache && !run.dry_run,
        quiet: run.quiet,
        run_id,
        pool: options.concurrency as usize,
        retry_refused: None,
        // A line is written once its record is durable: no lingering.
        linger: Duration::ZERO,
        // A run's cache has no cap to keep: a hit writes nothing to it.
        track_cache_use: false,
    }
}

/// Prints a prompt's answer (or its line, or its error) and returns the
/// run's exit status.
fn show_prompt(line: &[u8], json: bool, code: i32) -> anyhow::Result<i32> {
    let shown = prompt::show(line, json);
    if let Some(message) = &shown.stderr {
        eprintln!("{}", console::one_line(message));
    }
    setup::write_stdout(&shown.stdout)?;
    Ok(code)
}

/// Whether a run says where it reads from: when that is standard input,
/// for want of a FILE, and standard input is a terminal, someone may be
/// left waiting for a run that waits for them.
fn tells_how_to_end_input(run: &RunArgs, stdin_is_terminal: bool) -> bool {
    stdin_is_terminal && run.files.is_empty() && run.prompt.is_none() && !run.quiet
}

/// The error of an input that cannot be opened. A missing file named like
/// a subcommand is one placed after options (`llmroute --db x report`),
/// and one close to a subcommand's name is a typo (`llmroute reprot`):
/// both say so.
fn missing_file(arg: &std::path::Path, error: String) -> anyhow::Error {
    use clap::CommandFactory;
    let name = arg.to_string_lossy();
    if arg.exists() || arg.components().count() != 1 {
        return anyhow!(error);
    }
    let commands: Vec<String> = crate::cli::Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .filter(|c| c != "help")
        .collect();
    if commands.iter().any(|c| *c == name) {
        // The command line with the subcommand moved to the front.
        let mut args: Vec<String> = std::env::args().skip(1).collect();
        if let Some(i) = args.iter().position(|a| *a == name) {
            args.remove(i);
        }
        // Suggested only if it would run: the options may be a run's, and
        // the subcommand may need one of its own (`cache stats`).
        let moved = ["llmroute", &name]
            .into_iter()
            .map(String::from)
            .chain(args.clone());
        return match <crate::cli::Cli as clap::Parser>::try_parse_from(moved) {
            Ok(_) => anyhow!(
                "no such file '{name}'; options go after a subcommand: did you mean `llmroute {name} {}`?",
                args.join(" ")
            ),
            Err(_) => anyhow!(
                "no such file '{name}'; options go after a subcommand, and not all of these are its own: see `llmroute {name} --help`"
            ),
        };
    }
    match commands
        .iter()
        .map(|c| (strsim::damerau_levenshtein(c, &name), c))
        .filter(|(d, _)| *d <= 2)
        .min()
    {
        Some((_, c)) => anyhow!("no such file '{name}'; did you mean `llmroute {c}`?"),
        None => anyhow!(error),
    }
}

/// How long a stopped run waits for the store's writer to end.
const STOPPED_FLUSH: Duration = Duration::from_secs(10);

/// Commits what is queued and prunes old metrics. Ctrl-C still quits
/// while it does (the store stays consistent either way). With `bound`,
/// the run ends after it all the same: every line written was committed
/// before it was, and the store's transactions keep it consistent.
fn flush_and_prune(writer: Writer, quiet: bool, retention: Duration, bound: Option<Duration>) {
    let work = move || {
        let store = writer.finish();
        let before = crate::core::duration::before(store::now_ms(), retention);
        if let Err(e) = store.prune_metrics(before, setup::PRUNE_BATCH) {
            if !quiet {
                eprintln!("llmroute: warning: cannot prune old metrics: {e}");
            }
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    match rt {
        Ok(rt) => {
            let ended = rt.block_on(async {
                let late = async {
                    match bound {
                        Some(b) => tokio::time::sleep(b).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::task::spawn_blocking(work) => true,
                    code = signals::signal() => std::process::exit(code),
                    _ = late => false,
                }
            });
            if !ended {
                if !quiet {
                    eprintln!(
                        "llmroute: warning: the store's writer did not end within {}s (is the output read?); every line written is kept, and a re-run sends the rest",
                        bound.unwrap_or_default().as_secs()
                    );
                }
                // Its thread is left, not waited for.
                rt.shutdown_background();
            }
        }
        Err(_) => work(),
    }
}

/// Reports the end of a run on stderr and picks the exit status.
fn finish(
    summary: &Summary,
    run: &RunArgs,
    refused: Option<crate::core::attempts::Ending>,
    store_failure: Option<String>,
) -> i32 {
    let closed = matches!(summary.stop, Some(StopReason::BrokenPipe));
    // A prompt's answer speaks for itself: no summary of one line.
    if !run.quiet && !closed && run.prompt.is_none() {
        let s = summary;
        let spend = match (run.dry_run, s.cost_unknown) {
            (true, _) => "dry run".to_string(),
            (false, 0) => format!("{} spent", usd(s.cost_usd)),
            (false, n) => format!(
                "{} spent (cost unknown for {})",
                usd(s.cost_usd),
                counted(n, "line")
            ),
        };
        // Lines read but never sent are said, so that the counts add up
        // to the lines read; a re-run sends them.
        let unsent = match s.unsent {
            0 => String::new(),
            n => format!(", {n} not sent"),
        };
        eprintln!(
            "llmroute: {}: {} answered, {} cached, {}{unsent}; {spend}; {}",
            counted(s.lines, "line"),
            s.answered,
            s.cached,
            counted(s.errors, "error"),
            crate::core::duration::human(s.elapsed)
        );
    }
    if let Some(f) = &store_failure {
        eprintln!("llmroute: warning: the store failed during the run ({f}); some answers were not cached");
    }
    if let Some(e) = &summary.input_error {
        eprintln!("llmroute: error: reading input: {e}");
        return exit::FATAL;
    }
    if let Some(r) = refused {
        eprintln!("llmroute: error: the API refused the run: {}", r.message);
        return exit::FATAL;
    }
    match &summary.stop {
        Some(StopReason::Interrupted { exit_code }) => return *exit_code,
        Some(StopReason::BrokenPipe) => return exit::OK,
        Some(StopReason::OutputError(e)) => {
            eprintln!("llmroute: error: writing output: {e}");
            return exit::FATAL;
        }
        None => {}
    }
    if summary.errors > 0 {
        exit::LINE_ERRORS
    } else {
        exit::OK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminal_waiting_on_standard_input_is_told_how_to_end_it() {
        let run = |args: &[&str]| {
            use clap::Parser;
            let mut all = vec!["llmroute"];
            all.extend_from_slice(args);
            crate::cli::Cli::parse_from(all).run
        };
        assert!(tells_how_to_end_input(&run(&[]), true));
        assert!(tells_how_to_end_input(&run(&["-n"]), true));
        assert!(!tells_how_to_end_input(&run(&[]), false));
        assert!(!tells_how_to_end_input(&run(&["-q"]), true));
        assert!(!tells_how_to_end_input(&run(&["in.jsonl"]), true));
        assert!(!tells_how_to_end_input(&run(&["-"]), true));
        assert!(!tells_how_to_end_input(&run(&["-P", "hi"]), true));
    }
}
