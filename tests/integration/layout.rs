//! The shape of `src/`: no import circles among its files, no file grown
//! past what a reader takes in at once, and a pure core that reaches
//! nothing outside itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines of code in a file, tests not counted.
const MAX_FILE_LINES: usize = 650;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `core/ranking.rs` -> `core::ranking`; `batch/mod.rs` -> `batch`.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap().with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let parts = match parts.last().map(String::as_str) {
        Some("mod") => &parts[..parts.len() - 1],
        _ => &parts[..],
    };
    parts.join("::")
}

/// The code of a file without its unit tests and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module of `src/` and the modules of `src/` its code names:
/// `crate::a::b` paths, and `super::x` paths.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|p| (module_of(p), code(&std::fs::read_to_string(p).unwrap())))
        .collect();
    let known = |path: &[&str]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].join("::"))
            .find(|m| modules.contains_key(m))
    };
    let mut graph = BTreeMap::new();
    for (module, text) in &modules {
        let mut uses = BTreeSet::new();
        let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        for (i, _) in text.match_indices("crate::") {
            let rest: String = text[i + 7..].chars().take_while(|c| ident(*c)).collect();
            let path: Vec<&str> = rest.split("::").filter(|p| !p.is_empty()).collect();
            uses.extend(known(&path));
        }
        // `super::x` from `a::b` (a file) names `a::x`; from `a::b` (a
        // directory's mod.rs) too, as the file's own parent is `a`.
        let parent: Vec<&str> = module.split("::").collect();
        let parent = &parent[..parent.len().saturating_sub(1)];
        for (i, _) in text.match_indices("super::") {
            let rest: String = text[i + 7..].chars().take_while(|c| ident(*c)).collect();
            let mut path: Vec<&str> = parent.to_vec();
            path.extend(rest.split("::").filter(|p| !p.is_empty()));
            uses.extend(known(&path));
        }
        uses.remove(module);
        uses.remove("");
        graph.insert(module.clone(), uses);
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        at: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_file_of_src_imports_itself_back_through_others() {
    let graph = imports();
    assert!(graph.len() > 20, "found only {} modules", graph.len());
    assert!(
        graph["batch"].contains("wiring") && graph["serve::http"].contains("engine"),
        "the scan sees imports: {:?}",
        graph["batch"]
    );
    for module in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, module) {
            panic!("an import circle: {} -> {module}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_core_uses_nothing_but_itself_and_front_ends_not_each_other() {
    let graph = imports();
    for (module, uses) in &graph {
        let top = |m: &str| m.split("::").next().unwrap_or("").to_string();
        if top(module) == "core" {
            let outside: Vec<&String> = uses.iter().filter(|u| top(u) != "core").collect();
            assert!(outside.is_empty(), "{module} uses {outside:?}");
        }
        if top(module) == "engine" {
            let outside: Vec<&String> = uses
                .iter()
                .filter(|u| !["core", "engine"].contains(&top(u).as_str()))
                .collect();
            assert!(outside.is_empty(), "{module} uses {outside:?}");
        }
        // Front ends and commands use the engine, never one another.
        let apart = ["batch", "serve", "commands"];
        if apart.contains(&top(module).as_str()) {
            let others: Vec<&str> = apart
                .iter()
                .copied()
                .filter(|o| *o != top(module))
                .collect();
            assert!(
                !uses
                    .iter()
                    .any(|u| others.contains(&top(u).as_str()) || u == "app"),
                "{module} uses {uses:?}"
            );
        }
    }
}

#[test]
fn no_file_of_src_is_too_long_to_read() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => text[..i].lines().count(),
            None => text.lines().count(),
        };
        let is_tests = f.file_name().is_some_and(|n| n == "tests.rs");
        assert!(
            is_tests || lines <= MAX_FILE_LINES,
            "{} has {lines} lines of code (at most {MAX_FILE_LINES})",
            f.display()
        );
    }
}
