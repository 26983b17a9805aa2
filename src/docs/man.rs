//! The roff man page: clap_mangen renders the options and commands of the
//! clap definition, and the sections clap does not know are written out
//! here ([`super::prose`]).

use std::io;

use clap::{Arg, Command, CommandFactory};
use clap_mangen::Man;
use roff::{bold, italic, roman, Inline, Roff};

use super::prose::{ENVIRONMENT, EXAMPLES, EXIT_STATUS, FILES_SECTION};
use super::BIN;
use crate::cli::Cli;

/// The first line of the man page.
const HEADER_COMMENT: &str =
    ".\\\" Generated from src/cli and src/docs by scripts/generate-docs; do not edit.\n";

/// The date in the page header. A constant, so that the page depends only on
/// the source; formatters such as mandoc warn when the header has no date.
const DATE: &str = "2026-11-25";

/// The roff man page for `llmroute`, with every option and command of the
/// clap definition and the prose sections. The output depends only on the
/// source: its date is a constant, and it holds no paths of the machine that
/// built it.
pub fn man_page() -> String {
    let cmd = documented_command();
    let mut page = String::from(HEADER_COMMENT);
    page.push_str(&Roff::new().render()); // the apostrophe preamble, once
    page.push_str(&title_line(&cmd));
    // Left-aligned and unhyphenated, so that flags and paths stay whole.
    page.push_str(".ad l\n.nh\n");

    let man = Man::new(cmd.clone());
    page.push_str(&piece(|w| man.render_name_section(w)));
    page.push_str(&synopsis(&cmd));
    page.push_str(&piece(|w| man.render_description_section(w)));
    page.push_str(&description(&cmd));
    page.push_str(&piece(|w| man.render_options_section(w)));
    page.push_str(&commands(&cmd));
    page.push_str(&definition_list("EXIT STATUS", EXIT_STATUS));
    page.push_str(&environment(&cmd));
    page.push_str(&definition_list("FILES", FILES_SECTION));
    page.push_str(&examples());
    page.push_str(&see_also());
    page
}

/// The command as documented: built (so help and version flags and global
/// options are in place), without the `help` subcommand.
fn documented_command() -> Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Renders one piece with clap_mangen or the roff crate, tidied: without the
/// apostrophe preamble that every render starts with (the page carries it
/// once), with `.sp` for the `.br`, blank line, `.br` that clap_mangen puts
/// before a list of possible values (mandoc warns about it), and without
/// trailing spaces.
fn piece(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    render(&mut out).expect("writing to a Vec cannot fail");
    let text = String::from_utf8(out).expect("roff output is UTF-8");
    let preamble = Roff::new().render();
    let text = text.strip_prefix(&preamble).unwrap_or(&text);
    text.replace("\n.br\n\n.br\n", "\n.sp\n")
        .lines()
        .flat_map(|line| [trim_end_spaces(line), "\n"])
        .collect()
}

/// `line` without trailing spaces, unless the last one is escaped (`\ `).
fn trim_end_spaces(line: &str) -> &str {
    let trimmed = line.trim_end_matches(' ');
    let backslashes = trimmed.len() - trimmed.trim_end_matches('\\').len();
    if backslashes % 2 == 1 {
        &line[..trimmed.len() + 1]
    } else {
        trimmed
    }
}

/// `piece` without its `.SH` lines, for options and synopses placed under a
/// heading of the page's own.
fn piece_without_headings(render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
    piece(render)
        .lines()
        .filter(|line| !line.starts_with(".SH"))
        .flat_map(|line| [line, "\n"])
        .collect()
}

/// Renders roff built with the `roff` crate, without the preamble.
fn render(roff: &Roff) -> String {
    piece(|w| roff.to_writer(w))
}

/// `.TH`: title, section, date, source and manual.
fn title_line(cmd: &Command) -> String {
    format!(
        ".TH {} 1 {DATE} \"{} {}\" \"User Commands\"\n",
        cmd.get_name().to_uppercase(),
        cmd.get_name(),
        cmd.get_version().unwrap_or_default()
    )
}

/// The routing form (the top-level options and files), then one line per
/// command.
fn synopsis(cmd: &Command) -> String {
    // The same arguments without the subcommands: routing and the commands
    // are alternatives, not one command line.
    let mut run = Command::new(BIN)
        .bin_name(BIN)
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_flag(true)
        .disable_version_flag(true);
    for arg in cmd.get_arguments() {
        run = run.arg(arg.clone());
    }
    let mut out = piece(|w| Man::new(run).render_synopsis_section(w));
    // clap_mangen shows a repeatable positional once; llmroute reads
    // several files in order.
    out = out.replacen(r"[\fIFILE\fR]", r"[\fIFILE\fR]...", 1);
    for sub in leaf_commands(cmd) {
        out.push_str(".br\n");
        out.push_str(&piece_without_headings(|w| {
            Man::new(without_global_args(sub)).render_synopsis_section(w)
        }));
    }
    out
}

/// The input and output contract, in a few paragraphs.
fn description(cmd: &Command) -> String {
    let name = cmd.get_name();
    let mut roff = Roff::new();
    roff.control("PP", []);
    roff.text([
        bold(name),
        roman(
            " reads JSONL chat requests on standard input, or from the files given \
             (read in order as one stream; - is standard input), picks the best model for \
             each by a weighted score of measured latency, live price and quality, calls it, \
             and writes one JSON line per non-blank input line to standard output, \
             in input order unless --unordered is given.",
        ),
    ]);
    roff.control("PP", []);
    roff.text([roman(
        "Each input line is an OpenAI chat-completions body, an OpenAI Batch API line, \
         or the shorthand {\"prompt\": \"...\", \"system\": \"...\"}. \
         An \"llmroute\" object on a line overrides the routing options for that line, \
         and a \"model\" other than \"auto\" pins the model.",
    )]);
    roff.control("PP", []);
    roff.text([roman(
        "Each output line carries the echoed id, the line number, the model that answered, \
         its score, the latency, whether the answer was cached, the cost, every attempt, \
         an error object or null, the content of the first choice, and the upstream response. \
         When a model fails, the next-best one is tried, then the --fallback models. \
         Identical requests are answered from the cache in the store.",
    )]);
    render(&roff)
}

/// A COMMANDS section: for every subcommand (and theirs), its synopsis,
/// description and options.
fn commands(cmd: &Command) -> String {
    let subs = all_commands(cmd);
    if subs.is_empty() {
        return String::new();
    }
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    let mut intro = vec![
        roman("Without a command, "),
        bold(cmd.get_name()),
        roman(" routes its input."),
    ];
    let globals: Vec<&Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set() && !a.is_hide_set())
        .collect();
    if !globals.is_empty() {
        intro.push(roman(" The options "));
        for (i, arg) in globals.iter().enumerate() {
            if i > 0 {
                intro.push(roman(if i + 1 == globals.len() {
                    " and "
                } else {
                    ", "
                }));
            }
            intro.push(bold(flag_name(arg)));
        }
        intro.push(roman(" apply to every command as well."));
    }
    roff.text(intro);
    let mut out = render(&roff);

    for sub in subs {
        let sub = without_global_args(sub);
        let full_name = sub.get_bin_name().unwrap_or(sub.get_name()).to_owned();
        let mut heading = Roff::new();
        heading.control("SS", [full_name.as_str()]);
        out.push_str(&render(&heading));
        let man = Man::new(sub.clone());
        out.push_str(&piece_without_headings(|w| man.render_synopsis_section(w)));
        out.push_str(".PP\n");
        out.push_str(&piece_without_headings(|w| {
            man.render_description_section(w)
        }));
        if sub.get_arguments().any(|a| !a.is_hide_set()) {
            out.push_str(&piece_without_headings(|w| man.render_options_section(w)));
        }
    }
    out
}

/// Every subcommand, depth first, parents before their own subcommands.
fn all_commands(cmd: &Command) -> Vec<&Command> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(sub);
        out.extend(all_commands(sub));
    }
    out
}

/// The subcommands that take no subcommand of their own.
fn leaf_commands(cmd: &Command) -> Vec<&Command> {
    all_commands(cmd)
        .into_iter()
        .filter(|c| !c.has_subcommands())
        .collect()
}

/// A copy of `sub` with the global options (documented once, at the top)
/// and the help flag hidden, its own subcommands called COMMAND.
fn without_global_args(sub: &Command) -> Command {
    sub.clone()
        .subcommand_value_name("COMMAND")
        .mut_args(|arg| {
            if arg.is_global_set() || arg.get_id() == "help" {
                arg.hide(true)
            } else {
                arg
            }
        })
}

/// `--long`, else `-s`, else the argument's id.
fn flag_name(arg: &Arg) -> String {
    match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => arg.get_id().to_string(),
    }
}

/// A section of `.TP` entries: a bold term, then its meaning.
fn definition_list(title: &str, entries: &[(&str, &str)]) -> String {
    let mut roff = Roff::new();
    roff.control("SH", [title]);
    for (term, meaning) in entries {
        roff.control("TP", []);
        roff.text([bold(*term)]);
        roff.text([roman(*meaning)]);
    }
    render(&roff)
}

/// The ENVIRONMENT section: the variables above, then any other variable the
/// clap definition reads, so that one added there is listed too.
fn environment(cmd: &Command) -> String {
    let mut entries: Vec<(String, String)> = ENVIRONMENT
        .iter()
        .map(|(name, meaning)| (name.to_string(), meaning.to_string()))
        .collect();
    let mut commands = vec![cmd];
    commands.extend(all_commands(cmd));
    for arg in commands.iter().flat_map(|c| c.get_arguments()) {
        if let Some(env) = arg.get_env() {
            let env = env.to_string_lossy().into_owned();
            if !entries.iter().any(|(name, _)| *name == env) {
                entries.push((env, format!("As {}.", flag_name(arg))));
            }
        }
    }
    let mut roff = Roff::new();
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "A flag wins over its environment variable, and an environment variable over the \
         config file.",
    )]);
    for (name, meaning) in &entries {
        roff.control("TP", []);
        roff.text([bold(name.as_str())]);
        roff.text([roman(meaning.as_str())]);
    }
    render(&roff)
}

/// The EXAMPLES section: each example's purpose, then its command lines
/// unfilled and indented.
fn examples() -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["EXAMPLES"]);
    for (i, (purpose, lines)) in EXAMPLES.iter().enumerate() {
        if i > 0 {
            roff.control("PP", []);
        }
        roff.text([roman(*purpose)]);
        roff.control("PP", []);
        roff.control("RS", ["4"]);
        roff.control("nf", []);
        for line in *lines {
            roff.text([roman(*line)]);
        }
        roff.control("fi", []);
        roff.control("RE", []);
    }
    render(&roff)
}

/// The SEE ALSO section.
fn see_also() -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["SEE ALSO"]);
    let refs: Vec<Inline> = ["jq", "sqlite3"]
        .iter()
        .enumerate()
        .flat_map(|(i, name)| {
            let sep = if i == 0 { "" } else { ", " };
            [roman(sep), bold(*name), roman("(1)")]
        })
        .collect();
    roff.text(refs);
    roff.control("PP", []);
    roff.text([
        roman("The README of the source distribution describes the routing, the store and the output in full: "),
        italic(env!("CARGO_PKG_HOMEPAGE")),
        roman("."),
    ]);
    render(&roff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_has_every_section() {
        let page = man_page();
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH COMMANDS",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH EXAMPLES",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(page.contains(section), "missing {section}");
        }
        for (name, _) in ENVIRONMENT {
            assert!(page.contains(&format!("\\fB{name}\\fR")), "missing {name}");
        }
        for status in ["0", "1", "2", "130", "143"] {
            assert!(page.contains(&format!(".TP\n\\fB{status}\\fR\n")));
        }
        assert!(page.contains("llmroute.db") && page.contains("config.toml"));
        assert!(page.contains("\\fBjq\\fR(1)") && page.contains("\\fBsqlite3\\fR(1)"));
    }

    #[test]
    fn man_page_documents_every_flag_and_command() {
        let page = man_page();
        let cmd = documented_command();
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                let flag = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
                assert!(page.contains(&flag), "--{long} is not documented");
            }
        }
        for sub in all_commands(&cmd) {
            let name = sub.get_bin_name().unwrap();
            assert!(
                page.contains(&format!(".SS \"{name}\"")),
                "{name} has no subsection"
            );
            for arg in sub.get_arguments().filter(|a| !a.is_global_set()) {
                if let Some(long) = arg.get_long().filter(|l| *l != "help") {
                    let flag = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
                    assert!(page.contains(&flag), "{name} --{long} is not documented");
                }
            }
        }
    }

    #[test]
    fn man_page_is_deterministic_and_has_no_paths() {
        let page = man_page();
        assert_eq!(page, man_page());
        assert!(!page.contains(env!("CARGO_MANIFEST_DIR")));
        assert!(page.starts_with(".\\\""));
        assert!(
            page.lines().all(|line| !line.ends_with(' ')),
            "trailing spaces"
        );
        assert_eq!(page.matches(".ds Aq").count(), 2, "one preamble");
    }

    #[test]
    fn curl_examples_send_their_body_as_json() {
        // `curl -d` alone sends a form, which the server answers with 415.
        let mut bodies = 0;
        for (purpose, lines) in EXAMPLES {
            let command = lines.join(" ").to_lowercase();
            if command.contains("curl ")
                && [" -d ", " --data", " --json "]
                    .iter()
                    .any(|f| command.contains(f))
            {
                bodies += 1;
                assert!(
                    command.contains(" --json ")
                        || command.contains("content-type: application/json"),
                    "{purpose} sends its body as a form: {command}"
                );
            }
        }
        assert!(bodies > 0, "an example sends a body with curl");
    }

    #[test]
    fn trailing_spaces_go_unless_escaped() {
        assert_eq!(trim_end_spaces("a b  "), "a b");
        assert_eq!(trim_end_spaces("a\\ "), "a\\ ");
        assert_eq!(trim_end_spaces("a\\\\ "), "a\\\\");
        assert_eq!(trim_end_spaces("   "), "");
    }
}
