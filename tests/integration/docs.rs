//! The generated man page and completions: the committed files match what
//! the generator (`crates/llmroute-docs`) produces, and the man page renders
//! without warnings.

use std::path::{Path, PathBuf};
use std::process::Command;

use llmroute_docs::Shell;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn generated_docs_are_fresh() {
    let expected = [
        ("man/llmroute.1", llmroute_docs::man_page()),
        (
            "completions/llmroute.bash",
            llmroute_docs::completions(Shell::Bash),
        ),
        (
            "completions/_llmroute",
            llmroute_docs::completions(Shell::Zsh),
        ),
        (
            "completions/llmroute.fish",
            llmroute_docs::completions(Shell::Fish),
        ),
    ];
    let stale: Vec<&str> = expected
        .iter()
        .filter(|(path, generated)| {
            std::fs::read_to_string(repo().join(path)).ok().as_ref() != Some(generated)
        })
        .map(|(path, _)| *path)
        .collect();
    assert!(
        stale.is_empty(),
        "{} differ from the command-line definition (or are missing); \
         run scripts/generate-docs and commit the result",
        stale.join(", ")
    );
}

/// The first of `names` found on PATH.
fn on_path(names: &[&'static str]) -> Option<(&'static str, PathBuf)> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
            .map(|found| (*name, found))
    })
}

#[test]
fn man_page_renders_without_warnings() {
    let page = repo().join("man/llmroute.1");
    let Some((name, program)) = on_path(&["groff", "mandoc", "man"]) else {
        panic!(
            "none of groff, mandoc or man is on PATH, so the man page cannot be checked; \
             run the tests with scripts/test, which installs groff"
        );
    };
    let mut cmd = Command::new(&program);
    match name {
        "groff" => cmd.args(["-man", "-Tutf8", "-ww", "-z"]).arg(&page),
        "mandoc" => cmd.args(["-Tutf8", "-Wwarning"]).arg(&page),
        _ => cmd
            .args(["--warnings", "-l"])
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80"),
    };
    let out = cmd.output().expect("the formatter runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{name} on man/llmroute.1: {}\n{stderr}",
        out.status
    );
    if name != "groff" {
        assert!(!out.stdout.is_empty(), "{name} rendered nothing");
    }
}

/// Every test the README's "Guarantees" section names exists.
#[test]
fn readme_guarantees_name_real_tests() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let start = readme.find("## Guarantees").expect("a Guarantees section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut named = 0;
    for part in section.split('`').skip(1).step_by(2) {
        let Some((module, test)) = part.split_once("::") else {
            continue;
        };
        let path = format!("{root}/tests/integration/{module}.rs");
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("README names {part}, but {path} is missing"));
        assert!(
            source.contains(&format!("fn {test}(")),
            "README names {part}, which {path} does not define"
        );
        named += 1;
    }
    assert!(named >= 20, "only {named} tests named");
}

#[test]
fn the_man_page_synopsis_takes_several_files() {
    let page = llmroute_docs::man_page();
    let synopsis = &page[page.find(".SH SYNOPSIS").unwrap()..];
    let first = synopsis.lines().nth(1).unwrap();
    assert!(first.ends_with(r"[\fIFILE\fR]..."), "{first}");
}

/// What bash completes after `words`, with the config file `config`.
fn bash_completes(words: &[&str], config: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("llmroute")).unwrap();
    std::fs::write(dir.path().join("llmroute/config.toml"), config).unwrap();
    let bin_dir = crate::util::bin().parent().unwrap().to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let script = format!(
        "source completions/llmroute.bash\n\
         COMP_WORDS=({words})\nCOMP_CWORD={cword}\n\
         _llmroute llmroute '{cur}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        words = quoted.join(" "),
        cword = words.len() - 1,
        cur = words[words.len() - 1],
        prev = words[words.len() - 2],
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(repo())
        .env("PATH", path)
        .env("XDG_CONFIG_HOME", dir.path())
        .env_remove("LLMROUTE_CONFIG")
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_priorities_and_the_config_presets() {
    let config = "[presets.nightly]\ncost = 1\n";
    for words in [
        &["llmroute", "--priority", ""][..],
        &["llmroute", "-p", ""],
        &["llmroute", "models", "-p", ""],
        &["llmroute", "config", "show", "--priority", ""],
    ] {
        let mut got = bash_completes(words, config);
        got.sort();
        assert_eq!(
            got,
            ["balanced", "cost", "nightly", "quality", "speed"],
            "{words:?}"
        );
    }
    assert_eq!(bash_completes(&["llmroute", "-p", "q"], ""), ["quality"]);
}

/// The binary prints the same man page and completions as are committed,
/// whatever the config file holds.
#[test]
fn the_binary_prints_the_committed_man_page_and_completions() {
    let env = crate::util::Env::new(vec![]);
    let broken = env.write("broken.toml", "this is not = = toml");
    let printed = |args: &[&str]| {
        let out = env.cmd().args(args).env("LLMROUTE_CONFIG", &broken).run();
        out.assert_code(0);
        assert_eq!(out.stderr, "", "{args:?}");
        out.stdout
    };
    let committed = |path: &str| std::fs::read_to_string(repo().join(path)).unwrap();
    assert_eq!(printed(&["man"]), committed("man/llmroute.1"));
    for (shell, path) in [
        ("bash", "completions/llmroute.bash"),
        ("zsh", "completions/_llmroute"),
        ("fish", "completions/llmroute.fish"),
    ] {
        assert_eq!(printed(&["completions", shell]), committed(path), "{shell}");
    }
    for shell in ["elvish", "powershell"] {
        let script = printed(&["completions", shell]);
        assert!(
            script.contains("llmroute") && script.contains("--priority"),
            "{shell}: {script}"
        );
    }
    let out = env.cmd().args(["completions", "tcsh"]).run();
    out.assert_code(2);
    assert!(out.stderr.contains("bash"), "{}", out.stderr);
}
