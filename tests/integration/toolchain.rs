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

/// The platform this test runs on, as `rustc -vV` names it.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .trim()
        .to_string()
}

/// Only the packages this platform builds: a registry that has built the
/// project holds those, and not the crates of other platforms
/// (`anstyle-wincon` on Windows), which `--offline` cannot download.
#[test]
fn no_locked_package_needs_a_newer_rust_than_stated() {
    let root = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
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

/// `scripts/test` run by a user who is not root and has no `sudo`, on a
/// machine that lacks the tests' tools: it names the packages to install by
/// hand and stops, before it calls `apt-get` (which would fail) or cargo.
#[cfg(unix)]
#[test]
fn the_test_script_tells_a_user_without_sudo_what_to_install() {
    use std::os::unix::fs::PermissionsExt;
    let root = env!("CARGO_MANIFEST_DIR");
    let bin = tempfile::tempdir().unwrap();
    let called = bin.path().join("apt-get-called");
    let script = |name: &str, body: &str| {
        let path = bin.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // Not root; apt-get exists but must not run; no sudo, groff, redis,
    // chromium or python3 on this PATH.
    script("id", "echo 1000");
    script("apt-get", &format!("touch '{}'", called.display()));
    for tool in ["bash", "dirname", "cat"] {
        let real = which(tool);
        std::os::unix::fs::symlink(real, bin.path().join(tool)).unwrap();
    }
    let out = Command::new(which("bash"))
        .arg(format!("{root}/scripts/test"))
        .env_clear()
        .env("PATH", bin.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("scripts/test runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apt-get install --no-install-recommends groff-base redis-server"),
        "{stderr}"
    );
    assert!(stderr.contains("chromium-driver"), "{stderr}");
    assert!(!called.exists(), "apt-get ran without root");
}

#[cfg(unix)]
fn which(tool: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} on PATH"))
}
