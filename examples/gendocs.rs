//! Writes the man page and the shell completions into the repository:
//! `man/llmroute.1` and `completions/`. Run by `scripts/generate-docs`.

use std::path::Path;

fn main() -> std::io::Result<()> {
    llmroute::gendocs::write_all(Path::new(env!("CARGO_MANIFEST_DIR")))
}
