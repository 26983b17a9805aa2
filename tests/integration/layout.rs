//! The shape of `src/`: no import circles among the modules of a
//! directory, no file grown past what a reader takes in at once, and a
//! pure core that reaches nothing outside itself.

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
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn skip_space(t: &[u8], i: &mut usize) {
    while t.get(*i).is_some_and(u8::is_ascii_whitespace) {
        *i += 1;
    }
}

/// The paths of the use tree (or the plain path) at `t[*i..]`, each after
/// `path`: `a::{b, c::{d, e}}` names `a::b`, `a::c::d` and `a::c::e`.
fn use_tree(t: &[u8], i: &mut usize, mut path: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        skip_space(t, i);
        if t.get(*i) == Some(&b'{') {
            *i += 1;
            loop {
                skip_space(t, i);
                match t.get(*i) {
                    None => return,
                    Some(b'}') => {
                        *i += 1;
                        return;
                    }
                    Some(b',') => *i += 1,
                    _ => {
                        use_tree(t, i, path.clone(), out);
                        // Past what follows a branch, e.g. `as name`.
                        while t.get(*i).is_some_and(|b| !b",}{".contains(b)) {
                            *i += 1;
                        }
                        if t.get(*i) == Some(&b'{') {
                            return;
                        }
                    }
                }
            }
        }
        let start = *i;
        while t.get(*i).copied().is_some_and(is_ident) {
            *i += 1;
        }
        if *i == start {
            out.push(path);
            return;
        }
        path.push(String::from_utf8_lossy(&t[start..*i]).into_owned());
        if !t[*i..].starts_with(b"::") {
            out.push(path);
            return;
        }
        *i += 2;
    }
}

/// The module paths `text`, the code of `module`, names: paths from
/// `crate::`, `super::` and `self::`, and paths from the module's own
/// children (`http::routes` in `serve/mod.rs`), braces and all.
fn paths_named(module: &str, text: &str, is_child: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    let here: Vec<String> = module
        .split("::")
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let t = text.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let fresh = i == 0 || !(is_ident(t[i - 1]) || t[i - 1] == b':' || t[i - 1] == b'$');
        let end = (i..t.len()).find(|&j| !is_ident(t[j])).unwrap_or(t.len());
        if !fresh || end == i {
            i = end.max(i + 1);
            continue;
        }
        let word = &text[i..end];
        let relative = ["crate", "super", "self"].contains(&word)
            || (is_child(word) && t[end..].starts_with(b"::"));
        if !relative || !t[end..].starts_with(b"::") {
            i = end;
            continue;
        }
        let mut raw = Vec::new();
        let mut at = i;
        use_tree(t, &mut at, Vec::new(), &mut raw);
        for segments in raw {
            let mut path = if segments[0] == "crate" {
                Vec::new()
            } else {
                here.clone()
            };
            for s in segments {
                match s.as_str() {
                    "crate" | "self" => {}
                    "super" => {
                        path.pop();
                    }
                    _ => path.push(s),
                }
            }
            found.push(path);
        }
        i = end;
    }
    found
}

/// Every module of `src/` and the modules of `src/` its code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|p| (module_of(p), code(&std::fs::read_to_string(p).unwrap())))
        .collect();
    let known = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .map(|k| path[..k].join("::"))
            .find(|m| modules.contains_key(m))
    };
    let mut graph = BTreeMap::new();
    for (module, text) in &modules {
        let is_child = |name: &str| {
            let child = match module.as_str() {
                "" => name.to_string(),
                m => format!("{m}::{name}"),
            };
            modules.contains_key(&child)
        };
        let mut uses: BTreeSet<String> = paths_named(module, text, is_child)
            .iter()
            .filter_map(|p| known(p))
            .collect();
        uses.remove(module);
        uses.remove("");
        graph.insert(module.clone(), uses);
    }
    graph
}

/// The modules of each directory of `src/` (and of `src/` itself, under
/// `""`), each with the modules below it, and which of them each uses.
fn siblings(
    graph: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut dirs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (module, uses) in graph {
        let from: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
        for used in uses {
            let to: Vec<&str> = used.split("::").collect();
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                dirs.entry(from[..common].join("::"))
                    .or_default()
                    .entry(from[..=common].join("::"))
                    .or_default()
                    .insert(to[..=common].join("::"));
            }
        }
    }
    dirs
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
        let lines = match text.find("#[cfg(test)]\nmod tests {") {
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

/// A circle of imports among the modules of one directory (or of `src/`
/// itself) ties them into one piece to read and change at once. Each
/// module counts with the modules below it; a module using its parent's
/// items (`super::Store`) is no circle, as the parent declares its children.
#[test]
fn no_module_of_a_directory_imports_itself_back_through_its_siblings() {
    let graph = imports();
    assert!(graph.len() > 20, "found only {} modules", graph.len());
    assert!(
        graph["batch"].contains("wiring") && graph["serve::chat"].contains("engine"),
        "the scan sees imports: {:?}",
        graph["batch"]
    );
    assert!(
        graph["serve"].contains("serve::http") && graph["serve::http"].contains("serve::chat"),
        "the scan sees a module's own children and paths in braces: {:?}",
        graph["serve"]
    );
    let mut circles = Vec::new();
    for (dir, graph) in &siblings(&graph) {
        for module in graph.keys() {
            if let Some(cycle) = cycle_from(graph, module) {
                circles.push(format!("in {dir:?}: {} -> {module}", cycle.join(" -> ")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}
