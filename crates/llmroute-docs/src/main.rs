//! Writes the man page and the shell completions into the repository:
//! `man/llmroute.1` and `completions/`. Run by `scripts/generate-docs`.

fn main() -> std::io::Result<()> {
    llmroute_docs::write_all(&llmroute_docs::repo_root())
}
