//! The Rust version the README and `Cargo.toml` state is one every locked
//! package builds with.

use std::process::Command;

use serde_json::Value;

/// `1.88` or `1.88.0` as (1, 88, 0).
fn version(text: &str) -> (u64, u64, u64) {
    let mut parts = text.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("version {text}"))
    });
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

#[test]
fn no_locked_package_needs_a_newer_rust_than_stated() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .arg("--manifest-path")
        .arg(format!("{root}/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours = packages
        .iter()
        .find(|p| p["name"] == "llmroute")
        .and_then(|p| p["rust_version"].as_str())
        .expect("Cargo.toml states rust-version");
    let stated = version(ours);
    let newer: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            Some((
                p["name"].as_str()?,
                p["version"].as_str()?,
                p["rust_version"].as_str()?,
            ))
        })
        .filter(|(_, _, rv)| version(rv) > stated)
        .map(|(n, v, rv)| format!("{n} {v} needs {rv}"))
        .collect();
    assert!(
        newer.is_empty(),
        "Cargo.toml states rust-version {ours}, but {}",
        newer.join(", ")
    );
    // The README states the same minimum.
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    assert!(
        readme.contains(&format!("Rust toolchain ({ours} or newer)")),
        "README does not state Rust {ours}"
    );
}
