//! The man page and the shell completions of `llmroute`, generated from its
//! clap definition in [`crate::cli`]: what `llmroute man` and `llmroute
//! completions SHELL` print, and what `scripts/generate-docs` (through
//! `crates/llmroute-docs`) writes to `man/llmroute.1` and `completions/`.
//! The options and commands come from clap, so new flags and subcommands
//! appear without changes here; the prose sections (exit status,
//! environment, files, examples) are written out in [`prose`].

mod man;
mod prose;

use clap::CommandFactory;

use crate::cli::Cli;
pub use man::man_page;

/// The shells that [`completions`] writes for (clap_complete's).
pub use clap_complete::Shell;

/// The binary's name, as used in the man page and the completions.
const BIN: &str = "llmroute";

/// Completions for `shell`, for the binary `llmroute`.
pub fn completions(shell: Shell) -> String {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut out);
    let script = String::from_utf8(out).expect("clap_complete writes UTF-8");
    match shell {
        Shell::Bash => bash_priorities(&script),
        _ => script,
    }
}

/// The priorities `--priority` takes, besides the config file's presets.
const PRIORITIES: &str = "speed cost quality balanced";

/// Lists the config file's presets, from `llmroute config show`.
const BASH_PRESETS: &str = "\
# The presets of the config file, as `llmroute config show` prints them.
__llmroute_presets() {
    command llmroute config show 2>/dev/null | sed -n 's/^\\[presets\\.\\(.*\\)\\]$/\\1/p' | tr -d '\"'
}

";

/// clap_complete completes file names after `--priority`, which takes a
/// free-form name: the bash script offers the priorities and the config
/// file's presets instead.
fn bash_priorities(script: &str) -> String {
    let files = r#"COMPREPLY=($(compgen -f "${cur}"))"#;
    let names =
        format!(r#"COMPREPLY=($(compgen -W "{PRIORITIES} $(__llmroute_presets)" -- "${{cur}}"))"#);
    let mut out = String::from(BASH_PRESETS);
    let mut after_priority = false;
    for line in script.lines() {
        let trimmed = line.trim();
        if after_priority && trimmed == files {
            out.push_str(&line.replace(files, &names));
        } else {
            out.push_str(line);
        }
        out.push('\n');
        after_priority = matches!(trimmed, "--priority)" | "-p)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_know_flags_and_commands() {
        let names: Vec<String> = Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect();
        assert!(!names.is_empty());
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completions(shell);
            assert!(
                script.contains("--priority") || script.contains("-l priority"),
                "{shell}: no --priority"
            );
            for name in &names {
                assert!(script.contains(name.as_str()), "{shell}: no {name}");
            }
        }
    }
}
