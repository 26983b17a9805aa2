//! Writes `llmroute`'s man page and shell completions into the repository.
//!
//! The generation itself is [`llmroute::docs`], the same code that
//! `llmroute man` and `llmroute completions SHELL` run: this crate is the
//! binary `scripts/generate-docs` runs to write `man/llmroute.1` and
//! `completions/`, and a library for the integration test
//! `generated_docs_are_fresh`, which fails when the committed files differ
//! from what the code produces.

use std::io;
use std::path::{Path, PathBuf};

pub use llmroute::docs::{completions, man_page, Shell};

/// Produces the text of one generated file.
type Generator = fn() -> String;

/// Every generated file: its path relative to the repository root, and how
/// to produce it.
const FILES: [(&str, Generator); 4] = [
    ("man/llmroute.1", man_page),
    ("completions/llmroute.bash", || completions(Shell::Bash)),
    ("completions/_llmroute", || completions(Shell::Zsh)),
    ("completions/llmroute.fish", || completions(Shell::Fish)),
];

/// The root of the repository (the `llmroute` package), where the generated
/// files live.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("this crate is crates/llmroute-docs in the repository")
        .to_path_buf()
}

/// Writes `man/llmroute.1`, `completions/llmroute.bash`,
/// `completions/_llmroute` (zsh) and `completions/llmroute.fish` under `dir`,
/// creating the directories as needed.
pub fn write_all(dir: &Path) -> io::Result<()> {
    for (relative, generate) in FILES {
        let path = dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, generate())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_all_writes_the_four_files() {
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path()).unwrap();
        for (relative, generate) in FILES {
            let written = std::fs::read_to_string(dir.path().join(relative)).unwrap();
            assert_eq!(written, generate(), "{relative}");
        }
    }
}
