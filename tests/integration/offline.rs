//! The catalogue when the API cannot give it: a refresh that fails says so,
//! and a failed fetch is not retried on every command.

use crate::util::*;

fn fetches(env: &Env) -> usize {
    env.server
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/models"))
        .count()
}

#[test]
fn a_refresh_that_cannot_fetch_fails_and_says_why() {
    let env = Env::three();
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Status(500));
    let out = env.cmd().args(["models", "--refresh", "--json"]).run();
    out.assert_code(2);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(
        out.stderr.contains("cannot refresh the catalogue") && out.stderr.contains("HTTP 500"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failed_fetch_is_remembered_for_a_few_minutes() {
    let env = Env::three();
    env.cmd().args(["--dry-run", "-q"]).run().assert_code(0);
    env.server
        .set_catalogue_behavior(CatalogueBehavior::Status(503));
    let first = env.cmd().args(["models", "--json"]).run();
    first.assert_code(0);
    assert!(first.stderr.contains("HTTP 503"), "{}", first.stderr);
    assert_eq!(fetches(&env), 1);
    for args in [&["models", "--json"][..], &["models", "--all", "--json"]] {
        let out = env.cmd().args(args).run();
        out.assert_code(0);
        assert!(
            out.stderr.contains("the last fetch") && out.stderr.contains("HTTP 503"),
            "{}",
            out.stderr
        );
    }
    let run = env.cmd().args(["--models", "t/a"]).stdin(prompts(1)).run();
    run.assert_code(0);
    assert_eq!(fetches(&env), 1, "not looked up again");
    // A refresh asks again, whatever failed before.
    env.server.set_catalogue_behavior(CatalogueBehavior::Models);
    env.cmd()
        .args(["models", "--refresh", "--json"])
        .run()
        .assert_code(0);
    assert_eq!(fetches(&env), 2);
}

/// A dry run needs no key and works offline, so a store it cannot create
/// (`--db` under a file) is no reason to fail: it goes on in memory, and
/// says so.
#[test]
fn a_dry_run_without_a_store_goes_on_in_memory() {
    let env = Env::three();
    let file = env.write("a-file", "");
    let db = file.join("sub").join("x.db");
    let out = env
        .cmd()
        .args(["--dry-run", "-m", "t/a,t/b", "--db"])
        .arg(&db)
        .env_remove("OPENROUTER_API_KEY")
        .stdin(prompts(2))
        .run();
    out.assert_code(0);
    assert_eq!(out.lines().len(), 2);
    assert!(out.stderr.contains("store in memory"), "{}", out.stderr);
    // A real run still fails on it.
    let real = env
        .cmd()
        .args(["-m", "t/a", "--db"])
        .arg(&db)
        .stdin(prompts(1))
        .run();
    assert_ne!(real.code, 0, "{}", real.stderr);
}

/// `report` and `cache stats` only read: a store in a directory this user
/// may not write is opened read-only. As root (whom permissions do not
/// stop), the commands run as `nobody`.
#[cfg(unix)]
#[test]
fn a_store_in_a_read_only_directory_can_be_reported_on() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::three();
    env.cmd()
        .args(["-m", "t/a"])
        .stdin(prompts(3))
        .run()
        .assert_code(0);
    let dir = env.dir.path();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    mode(dir, 0o555);
    mode(&env.db(), 0o444);
    let as_root = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid() == 0
    };
    let mut cmd = if as_root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
        c.arg(bin());
        c
    } else {
        std::process::Command::new(bin())
    };
    let run = |cmd: &mut std::process::Command, args: &[&str]| {
        let out = cmd
            .args(args)
            .arg("--db")
            .arg(env.db())
            .env_clear()
            .env("HOME", dir)
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .current_dir("/")
            .output()
            .expect("llmroute runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = run(&mut cmd, &["report", "--json"]);
    mode(dir, 0o755);
    assert_eq!(code, Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(stdout.contains("t/a"), "{report}");
}
