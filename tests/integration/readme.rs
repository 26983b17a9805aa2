//! README's option tables and the command-line definition say the same:
//! every flag of a run and of `llmroute serve` has a row, and each row's
//! default (and its minimum, where it gives one) is the one `--help` gives.

use std::collections::BTreeMap;

use clap::{Arg, Command, CommandFactory};
use llmroute::cli::Cli;

/// One row of an option table: the default cell and the meaning cell,
/// by long flag.
type Table = BTreeMap<String, (String, String)>;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The cells of a table row, split on `|` outside backticks and `\|`.
fn cells(row: &str) -> Vec<String> {
    let (mut out, mut cell, mut code) = (Vec::new(), String::new(), false);
    let mut chars = row.trim().trim_matches('|').chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => cell.push(chars.next().unwrap()),
            '`' => {
                code = !code;
                cell.push(c);
            }
            '|' if !code => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

/// The option table right under the heading `heading`.
fn table_under(text: &str, heading: &str) -> Table {
    let start = text
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"));
    let mut table = Table::new();
    let rows = text[start..]
        .lines()
        .skip_while(|l| !l.starts_with("| "))
        .take_while(|l| l.starts_with('|'));
    for row in rows.skip(2) {
        let c = cells(row);
        assert_eq!(c.len(), 3, "a row of {heading}: {row}");
        let long = c[0]
            .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '-'))
            .find(|w| w.starts_with("--"))
            .unwrap_or_else(|| panic!("no --flag in {row}"));
        table.insert(long.to_string(), (c[1].clone(), c[2].clone()));
    }
    assert!(table.len() >= 5, "{heading}: {table:?}");
    table
}

/// What `[key: ...]`, or `key ...` up to a space, says in `text`.
fn bracketed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(&format!("[{key}: "))? + key.len() + 3;
    Some(&text[at..at + text[at..].find(']')?])
}

/// The default clap's definition gives `arg`: its default value, else the
/// `[default: ...]` of its help; none for a flag that takes no value.
fn clap_default(arg: &Arg) -> Option<String> {
    if !arg.get_action().takes_values() {
        return None;
    }
    let values: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !values.is_empty() {
        return Some(values.join(","));
    }
    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    bracketed(&help, "default").map(str::to_string)
}

/// A README default cell as clap writes defaults: without backticks;
/// empty or `none` for none.
fn readme_default(cell: &str) -> Option<String> {
    let cell = cell.replace('`', "");
    (!cell.is_empty() && cell != "none").then_some(cell)
}

/// The minimum a help or a README meaning gives: `at least 100ms`.
fn at_least(text: &str) -> Option<String> {
    let at = text.find("at least ")? + 9;
    let word: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Checks every visible flag of `cmd` against the first of `tables` that
/// has a row for it.
fn check(cmd: &Command, tables: &[(&str, &Table)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long().filter(|l| !["help", "version"].contains(l)) else {
            continue;
        };
        let flag = format!("--{long}");
        let Some((name, (default, meaning))) = tables
            .iter()
            .find_map(|(name, t)| t.get(&flag).map(|row| (name, row)))
        else {
            wrong.push(format!("{} {flag}: no row in README", cmd.get_name()));
            continue;
        };
        let (theirs, ours) = (clap_default(arg), readme_default(default));
        if theirs != ours {
            wrong.push(format!(
                "{} {flag}: the definition's default is {theirs:?}, README's ({name}) {ours:?}",
                cmd.get_name()
            ));
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        if let Some(min) = at_least(&meaning.replace('`', "")) {
            if at_least(&help) != Some(min.clone()) {
                wrong.push(format!(
                    "{} {flag}: README says at least {min}, the help {help:?}",
                    cmd.get_name()
                ));
            }
        }
    }
    wrong
}

#[test]
fn readme_option_tables_agree_with_the_definition() {
    let text = readme();
    let run = table_under(&text, "### Options");
    let serve = table_under(&text, "### Options of serve");
    let mut cmd = Cli::command();
    cmd.build();
    let mut wrong = check(&cmd, &[("Options", &run)]);
    let serve_cmd = cmd.find_subcommand("serve").unwrap();
    wrong.extend(check(
        serve_cmd,
        &[("Options of serve", &serve), ("Options", &run)],
    ));
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Every row names a flag that exists.
    for (table, rows, cmds) in [
        ("Options", &run, vec![&cmd]),
        ("Options of serve", &serve, vec![serve_cmd]),
    ] {
        for flag in rows.keys() {
            assert!(
                cmds.iter()
                    .any(|c| c.get_arguments().any(|a| a.get_long() == Some(&flag[2..]))),
                "README's {table} has {flag}, which the definition has not"
            );
        }
    }
}

/// The `--weights` row's placeholder names weights the flag takes.
#[test]
fn the_weights_placeholder_names_the_weights() {
    let text = readme();
    let run = table_under(&text, "### Options");
    assert!(run.contains_key("--weights"));
    let row = text
        .lines()
        .find(|l| l.contains("--weights ") && l.starts_with("| `"))
        .unwrap();
    let flag = cells(row)[0].replace('`', "");
    let value = flag.split_whitespace().last().unwrap();
    let example = value.trim_end_matches(",..").replace("..", "1");
    assert!(
        llmroute::core::scoring::Weights::parse(&example).is_ok(),
        "README's --weights {value}: {example} is refused"
    );
}

#[test]
fn the_table_reader_reads_rows_as_written() {
    assert_eq!(
        cells("| `--hedge auto\\|off\\|DURATION` | `off` | a \\| b |"),
        ["`--hedge auto|off|DURATION`", "`off`", "a | b"]
    );
    assert_eq!(readme_default("`90d`").as_deref(), Some("90d"));
    assert_eq!(readme_default("none"), None);
    assert_eq!(
        at_least("limit; at least `100ms`".replace('`', "").as_str()).as_deref(),
        Some("100ms")
    );
    assert_eq!(bracketed("N at once [default: 8]", "default"), Some("8"));
}
