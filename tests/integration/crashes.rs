//! Crashes, concurrency, bad stores and secrets: kill -9 in the middle of a
//! batch, several processes on one store, stores that cannot be written, are
//! corrupt or sit on a full disk, and an API key that must never leave the
//! Authorization header.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::{
    assert_attempts_recorded, assert_lines, assert_sane, ids, run_command, run_guarded, Run,
};
use crate::util::*;

/// A fixed-seed xorshift generator, so every run of a test does the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 24) as u8).collect()
    }
}

/// The store's integrity, as the next process to open it sees it. Opened
/// read-write, as llmroute opens it: after a kill a read-only connection
/// may be unable to recover the write-ahead log's index, which needs a
/// write, and fails with "attempt to write a readonly database".
fn integrity(db: &Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .expect("the store opens");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check runs")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The store file and its WAL and shared-memory files, as they are now.
pub fn store_bytes(db: &Path) -> Vec<(String, Vec<u8>)> {
    ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| {
            let mut p = db.as_os_str().to_owned();
            p.push(suffix);
            let p = PathBuf::from(p);
            (p.display().to_string(), read(&p))
        })
        .collect()
}

fn assert_no_key_in_store(db: &Path) {
    for (name, bytes) in store_bytes(db) {
        assert!(!contains(&bytes, KEY), "{name} holds the key");
    }
}

/// Starts llmroute on `file`, kills it with SIGKILL after `after`, and returns
/// its complete output lines and its stderr.
fn run_and_kill(env: &Env, args: &[&str], file: &Path, after: Duration) -> (Vec<Value>, String) {
    let mut child = env.spawn(args, file);
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = so.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = se.read_to_end(&mut b);
        b
    });
    std::thread::sleep(after);
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let stdout = out.join().unwrap();
    let stderr = String::from_utf8_lossy(&err.join().unwrap()).into_owned();
    // The kill may cut the last line short; every complete one is JSON.
    let complete = match stdout.iter().rposition(|b| *b == b'\n') {
        Some(end) => &stdout[..=end],
        None => &stdout[..0],
    };
    let lines = complete
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("a complete output line is not JSON ({e}): {l:?}"))
        })
        .collect();
    (lines, stderr)
}

#[test]
fn kill_9_at_random_moments_never_corrupts_the_store_and_a_re_run_pays_only_for_the_rest() {
    const N: usize = 2000;
    const KILLS: usize = 20;
    const CONCURRENCY: usize = 8;
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(15));
    let file = env.write("batch.jsonl", &prompts(N));
    let args = ["--models", "t/a", "-j", "8", "-q"];
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    // Lines a killed run showed as answered.
    let mut shown: HashSet<String> = HashSet::new();
    for k in 0..KILLS {
        let after = Duration::from_millis(20 + rng.next() % 281);
        let (lines, stderr) = run_and_kill(&env, &args, &file, after);
        assert!(!stderr.contains("panicked"), "run {k}: {stderr}");
        for l in lines {
            if l["error"].is_null() {
                shown.insert(l["id"].as_str().unwrap().to_string());
            }
        }
        if env.db().exists() {
            assert_eq!(integrity(&env.db()), "ok", "after kill {k} at {after:?}");
        }
    }
    let before: Vec<String> = env
        .server
        .completions()
        .iter()
        .map(|r| {
            r.json()["messages"][0]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let committed = env.count("SELECT count(*) FROM cache") as usize;
    assert!(committed >= shown.len());
    assert!(committed < N, "the kills came before the batch was done");
    env.server.clear_log();

    let run = run_guarded(
        env.cmd().args(args).arg(&file),
        Vec::new(),
        Duration::from_secs(60),
    );
    assert_sane(&run.out);
    run.out.assert_code(0);
    let lines = assert_lines(&run.out, &ids(N));
    assert!(lines.iter().all(|l| l["error"].is_null()));
    for l in &lines {
        if shown.contains(l["id"].as_str().unwrap()) {
            assert_eq!(
                l["cached"], true,
                "a line shown before is never paid again: {l}"
            );
        }
    }
    let sent = env.server.completions();
    assert_eq!(
        sent.len(),
        N - committed,
        "the final run sends exactly the lines whose answers were not committed"
    );
    // Across all runs every prompt went upstream, and at most the lines each
    // kill caught in the window (in flight, or answered but not yet
    // committed) went twice. In practice that is about -j a kill.
    let mut per_prompt: HashMap<String, usize> = HashMap::new();
    for p in before.iter().cloned().chain(sent.iter().map(|r| {
        r.json()["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string()
    })) {
        *per_prompt.entry(p).or_default() += 1;
    }
    assert_eq!(per_prompt.len(), N);
    let total: usize = per_prompt.values().sum();
    assert!(
        total <= N + KILLS * llmroute::batch::run::window(CONCURRENCY),
        "{total} upstream requests for {N} lines"
    );
    assert_eq!(integrity(&env.db()), "ok");
    assert_eq!(env.count("SELECT count(*) FROM cache") as usize, N);
}

#[test]
fn four_processes_share_one_fresh_store_without_lock_errors() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(2));
    let per = 300;
    let handles: Vec<_> = (0..4)
        .map(|p| {
            let input: String = (1..=per)
                .map(|i| format!("{{\"id\":\"r{i}\",\"prompt\":\"proc {p} line {i}\"}}\n"))
                .collect();
            let file = env.write(&format!("in{p}.jsonl"), &input);
            let cmd = env.cmd().args(["--models", "t/a", "-j", "8"]).arg(file).cmd;
            std::thread::spawn(move || run_command(cmd, Vec::new(), Duration::from_secs(60)))
        })
        .collect();
    let runs: Vec<Run> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (p, run) in runs.iter().enumerate() {
        assert_sane(&run.out);
        run.out.assert_code(0);
        let lower = run.out.stderr.to_lowercase();
        assert!(
            !lower.contains("locked") && !lower.contains("busy") && !lower.contains("warning"),
            "process {p}: {}",
            run.out.stderr
        );
        for (i, l) in assert_lines(&run.out, &ids(per)).iter().enumerate() {
            assert_eq!(l["content"], format!("[t/a] proc {p} line {}", i + 1));
        }
    }
    assert_eq!(env.server.completions().len(), 4 * per);
    assert_attempts_recorded(&env);
    assert_eq!(env.count("SELECT count(*) FROM requests"), 4 * per as i64);
    assert_eq!(env.count("SELECT count(*) FROM cache"), 4 * per as i64);
    assert_eq!(integrity(&env.db()), "ok");
}

/// A run on `db` that must stop at once: status 2, the path on stderr, no output.
fn assert_unusable(env: &Env, db: &Path) -> Run {
    let run = run_guarded(
        env.cmd().arg("--db").arg(db).args(["--models", "t/a"]),
        prompts(2),
        Duration::from_secs(30),
    );
    assert_sane(&run.out);
    run.out.assert_code(2);
    assert!(
        run.out.stderr.contains("llmroute: error")
            && run.out.stderr.contains(&db.display().to_string()),
        "a clear error naming {}: {}",
        db.display(),
        run.out.stderr
    );
    assert_eq!(run.out.stdout, "", "no output lines");
    assert_eq!(env.server.completions().len(), 0, "nothing is sent");
    run
}

#[test]
fn a_store_that_cannot_be_created_is_a_clear_fatal_error() {
    let env = Env::three();
    // A regular file where a directory should be stops root too.
    env.write("file.txt", "not a directory");
    assert_unusable(&env, &env.path("file.txt/store.db"));
    assert_unusable(&env, &env.path("file.txt/sub/store.db"));
    // /proc takes no new directories.
    assert_unusable(&env, Path::new("/proc/llmroute-test/store.db"));
    // A directory where the store file should be.
    std::fs::create_dir(env.path("dir.db")).unwrap();
    assert_unusable(&env, &env.path("dir.db"));
    // A read-only directory, where permissions apply (not to root).
    let ro = env.path("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    let writable = std::fs::File::create(ro.join("probe")).is_ok();
    if writable {
        let _ = std::fs::remove_file(ro.join("probe"));
        eprintln!(
            "running as root: a 0500 directory is writable, only the file-as-directory cases apply"
        );
    } else {
        assert_unusable(&env, &ro.join("store.db"));
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn a_read_only_file_system_is_a_clear_fatal_error_for_root_too() {
    let env = Env::three();
    let Some(fs) = Tmpfs::mount_or_skip(env.path("ro"), "8m") else {
        return;
    };
    // A store made while the file system was writable...
    let db = fs.0.join("store.db");
    let run = run_guarded(
        env.cmd().arg("--db").arg(&db).args(["--models", "t/a"]),
        prompts(2),
        Duration::from_secs(30),
    );
    run.out.assert_code(0);
    env.server.clear_log();
    fs.remount_read_only();
    // ...and then read-only (file permissions do not stop root; this does).
    assert_unusable(&env, &db);
    assert_unusable(&env, &fs.0.join("new.db"));
}

#[test]
fn a_missing_store_directory_is_created_private() {
    let env = Env::three();
    let db = env.path("new/deeper/store.db");
    let run = run_guarded(
        env.cmd().arg("--db").arg(&db).args(["--models", "t/a"]),
        prompts(2),
        Duration::from_secs(30),
    );
    assert_sane(&run.out);
    run.out.assert_code(0);
    assert_lines(&run.out, &ids(2));
    assert_eq!(mode(&env.path("new")), 0o700);
    assert_eq!(mode(&env.path("new/deeper")), 0o700);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn a_corrupt_store_is_a_clear_fatal_error_and_is_left_alone() {
    let env = Env::three();
    let mut rng = Rng(0xC0DE_F00D_1234_5678);
    // Random bytes.
    let junk = env.path("junk.db");
    let bytes = rng.bytes(64 * 1024);
    std::fs::write(&junk, &bytes).unwrap();
    assert_unusable(&env, &junk);
    assert_eq!(read(&junk), bytes, "the file is not overwritten");
    // A valid SQLite header over garbage.
    let headed = env.path("headed.db");
    let mut bytes = b"SQLite format 3\0".to_vec();
    bytes.extend(rng.bytes(64 * 1024));
    std::fs::write(&headed, &bytes).unwrap();
    assert_unusable(&env, &headed);
    assert_eq!(read(&headed), bytes, "the file is not overwritten");
}

#[test]

fn a_store_with_damaged_pages_is_a_clear_fatal_error_naming_it() {
    let env = Env::three();
    run_guarded(
        env.cmd().args(["--models", "t/a"]),
        prompts(3),
        Duration::from_secs(30),
    )
    .out
    .assert_code(0);
    // Keep the first page (header and schema), ruin the rest.
    let mut bytes = read(&env.db());
    assert!(bytes.len() > 8192, "{} bytes", bytes.len());
    let garbage = Rng(0xBAD_5EED).bytes(bytes.len() - 4096);
    bytes[4096..].copy_from_slice(&garbage);
    std::fs::write(env.db(), &bytes).unwrap();
    env.server.clear_log();
    let run = run_guarded(
        env.cmd().args(["--models", "t/a", "--no-cache"]),
        prompts(3),
        Duration::from_secs(30),
    );
    assert_sane(&run.out);
    run.out.assert_code(2);
    assert!(
        run.out.stderr.contains(&env.db().display().to_string()),
        "{}",
        run.out.stderr
    );
}

#[test]
fn an_empty_store_file_is_a_new_store() {
    let env = Env::three();
    std::fs::write(env.db(), b"").unwrap();
    let run = run_guarded(
        env.cmd().args(["--models", "t/a"]),
        prompts(2),
        Duration::from_secs(30),
    );
    assert_sane(&run.out);
    run.out.assert_code(0);
    assert_eq!(env.count("SELECT count(*) FROM cache"), 2);
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }

    /// Like [`Tmpfs::mount`], but says when the test is skipped, and fails
    /// instead under CI (`CI` set), where it runs as root and must not skip.
    fn mount_or_skip(dir: PathBuf, size: &str) -> Option<Tmpfs> {
        let fs = Tmpfs::mount(dir, size);
        if fs.is_none() {
            assert!(
                std::env::var_os("CI").is_none(),
                "cannot mount a tmpfs under CI"
            );
            eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        }
        fs
    }

    fn remount_read_only(&self) {
        let ok = Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "remount {} read-only", self.0.display());
    }

    /// Fills the file system, then frees `free` bytes again.
    fn fill(&self, free: u64) -> PathBuf {
        use std::io::Write;
        let filler = self.0.join("filler");
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(free)).unwrap();
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// On a full disk llmroute either stops at once with a clear error, or
/// answers every line and warns that answers are not cached.
fn assert_full_disk_handled(run: &Run, n: usize, db: &Path) {
    assert_sane(&run.out);
    match run.out.code {
        2 => {
            assert_eq!(run.out.stdout, "", "no output when it stops");
            assert!(
                run.out.stderr.contains("llmroute: error")
                    && run.out.stderr.contains(&db.display().to_string()),
                "{}",
                run.out.stderr
            );
        }
        0 => {
            for (i, l) in assert_lines(&run.out, &ids(n)).iter().enumerate() {
                assert_eq!(l["error"], Value::Null, "{l}");
                assert_eq!(l["content"], format!("[t/a] p{}", i + 1));
            }
        }
        code => panic!("exit status {code}\n{}", run.out.stderr),
    }
}

#[test]
fn a_full_disk_never_loses_or_garbles_a_line() {
    let env = Env::three();
    let Some(fs) = Tmpfs::mount_or_skip(env.path("small"), "8m") else {
        return;
    };
    let db = fs.0.join("store.db");
    let cmd = |n: usize| {
        run_guarded(
            env.cmd()
                .arg("--db")
                .arg(&db)
                .args(["--models", "t/a", "-j", "8"]),
            prompts(n),
            Duration::from_secs(30),
        )
    };
    // Full before the store exists.
    let filler = fs.fill(0);
    let run = cmd(20);
    assert_full_disk_handled(&run, 20, &db);
    std::fs::remove_file(&filler).unwrap();
    for (name, _) in store_bytes(&db) {
        let _ = std::fs::remove_file(name);
    }

    // Full in the middle of a run: a working store, then little room left.
    cmd(5).out.assert_code(0);
    let filler = fs.fill(48 * 1024);
    let run = cmd(300);
    assert_full_disk_handled(&run, 300, &db);
    if run.out.code == 0 {
        assert!(
            run.out.stderr.contains("store"),
            "the store failure is reported: {}",
            run.out.stderr
        );
    }
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(integrity(&db), "ok", "the store survives a full disk");
    // With room again, the store works and keeps what it had.
    let run = cmd(300);
    run.out.assert_code(0);
    assert!(!run.out.stderr.contains("warning"), "{}", run.out.stderr);
    assert_lines(&run.out, &ids(300));
    assert_eq!(
        rusqlite::Connection::open(&db)
            .unwrap()
            .query_row("SELECT count(*) FROM cache", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        300
    );
    drop(fs);
}

#[test]
fn the_key_never_leaks_on_errors() {
    let env = Env::three();
    env.server.set_default("t/auth", Behavior::status(401));
    env.server.set_default("t/down", Behavior::status(500));
    env.server.set_default("t/hang", Behavior::Hang);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}/api/v1", l.local_addr().unwrap().port())
    };
    let cases: [(&str, Option<&str>, i32); 4] = [
        ("t/auth", None, 2),
        ("t/down", None, 1),
        ("t/hang", None, 1),
        ("t/a", Some(closed.as_str()), 1),
    ];
    for (model, base, code) in cases {
        let mut cmd = env
            .cmd()
            .args(["--models", model, "--timeout", "1s", "--max-attempts", "1"]);
        if let Some(base) = base {
            cmd = cmd.env("LLMROUTE_BASE_URL", base);
        }
        let run = run_guarded(cmd, prompts(2), Duration::from_secs(30));
        assert_sane(&run.out);
        run.out.assert_code(code);
        assert_lines(&run.out, &ids(2));
        assert_no_key_in_store(&env.db());
    }
    // The key was sent, in the header only.
    let sent = env.server.completions();
    assert!(!sent.is_empty());
    for r in &sent {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(!contains(&r.body, KEY));
        assert!(!r.path.contains(KEY));
    }
    // `config show` says whether a key is set, never what it is.
    let out = env.cmd().args(["config", "show"]).run();
    out.assert_code(0);
    assert!(
        out.stdout.contains("OPENROUTER_API_KEY is set"),
        "{}",
        out.stdout
    );
    assert_sane(&out);
}

#[test]
fn a_password_in_the_base_url_stays_out_of_the_store_and_config_show() {
    let env = Env::three();
    let base = env
        .server
        .base_url()
        .replacen("http://", "http://user:URLPASS-5ecret@", 1);
    let out = env
        .cmd()
        .env("LLMROUTE_BASE_URL", &base)
        .args(["--models", "t/a"])
        .stdin(prompts(2))
        .run();
    out.assert_code(0);
    assert!(!out.stdout.contains("URLPASS") && !out.stderr.contains("URLPASS"));
    let raw = read(&env.db());
    assert!(!contains(&raw, "URLPASS"), "the password is in the store");
    let wal = env.path("store.db-wal");
    if wal.exists() {
        assert!(
            !contains(&read(&wal), "URLPASS"),
            "the password is in the WAL"
        );
    }
    let show = env
        .cmd()
        .env("LLMROUTE_BASE_URL", &base)
        .args(["config", "show"])
        .run();
    show.assert_code(0);
    assert!(!show.stdout.contains("URLPASS"), "{}", show.stdout);
}

#[test]
fn a_password_in_a_url_that_does_not_parse_is_not_shown_either() {
    let env = Env::three();
    // A typo in the port: the URL does not parse, and the error that says
    // so, and `config show`, must still hide its password.
    let base = "http://user:URLPASS-5ecret@127.0.0.1:badport/api/v1";
    let redis = "redis://u:REDISPASS-5ecret@127.0.0.1:notaport/0";
    let run = env
        .cmd()
        .env("LLMROUTE_BASE_URL", base)
        .args(["--models", "t/a"])
        .stdin(prompts(1))
        .run();
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("badport"), "{}", run.stderr);
    assert!(!run.stderr.contains("URLPASS"), "{}", run.stderr);
    // `config show` refuses the URL a run refuses, hiding its password.
    let show = env
        .cmd()
        .env("LLMROUTE_BASE_URL", base)
        .args(["config", "show"])
        .run();
    show.assert_code(2);
    assert!(show.stderr.contains("badport"), "{}", show.stderr);
    assert!(!show.stderr.contains("URLPASS"), "{}", show.stderr);
    let show = env.cmd().args(["config", "show", "--redis", redis]).run();
    show.assert_code(2);
    assert!(!show.stderr.contains("REDISPASS"), "{}", show.stderr);
    assert!(show.stderr.contains("notaport"), "{}", show.stderr);
}

#[test]
fn an_upstream_that_echoes_the_key_does_not_make_llmroute_leak_it() {
    let env = Env::three();
    let echo = |code| {
        Behavior::status_with_body(
            code,
            format!(
                r#"{{"error":{{"code":{code},"message":"invalid key {KEY} for this route"}}}}"#
            ),
        )
    };
    env.server.set_default("t/a", echo(500));
    env.server.set_default("t/b", echo(400));
    env.server.set_default("t/c", echo(401));
    // An answer, whole, that repeats the key.
    env.server.set_default(
        "t/d",
        Behavior::status_with_body(
            200,
            format!(
                r#"{{"id":"e","choices":[{{"message":{{"role":"assistant","content":"you sent Bearer {KEY}"}}}}],"usage":{{"prompt_tokens":3,"completion_tokens":5}}}}"#
            ),
        ),
    );
    // The same with the key's dashes written as JSON escapes.
    let escaped = KEY.replace('-', "\\u002d");
    env.server.set_default(
        "t/e",
        Behavior::status_with_body(
            200,
            format!(
                r#"{{"id":"e","choices":[{{"message":{{"role":"assistant","content":"k={escaped}"}}}}]}}"#
            ),
        ),
    );
    for model in ["t/a", "t/b", "t/c", "t/d", "t/e"] {
        let run = run_guarded(
            env.cmd().args(["--models", model, "--max-attempts", "1"]),
            prompts(1),
            Duration::from_secs(30),
        );
        assert_sane(&run.out);
        assert_lines(&run.out, &ids(1));
        assert_no_key_in_store(&env.db());
    }
}

/// What `s` answers to chat `body`, as text (a stream's events whole).
fn chat_text(s: &Served, body: &Value) -> String {
    crate::serve::rt().block_on(async {
        reqwest::Client::new()
            .post(s.url("/v1/chat/completions"))
            .json(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

/// A stream that spells the key out over two events is passed on as it
/// comes, but kept, and replayed from the cache, without it.
#[test]
fn a_key_spelt_over_a_stream_s_events_is_not_kept() {
    // A key of two words: the fake streams a word an event.
    let key = "sk-or-split first-half";
    let env = Env::three();
    let s = env.serve_with(&["--models", "t/a"], &[("OPENROUTER_API_KEY", key)]);
    let body = |stream: bool| {
        serde_json::json!({
            "model": "t/a",
            "stream": stream,
            "messages": [{"role": "user", "content": format!("say {key}")}],
        })
    };
    let live = chat_text(&s, &body(true));
    assert!(live.contains("first-half"), "{live}");
    let again = chat_text(&s, &body(false));
    assert!(again.contains("say [redacted]"), "from the cache: {again}");
    assert!(!again.contains("first-half"), "{again}");
    s.stop();
    for (name, bytes) in store_bytes(&env.db()) {
        assert!(!contains(&bytes, key), "{name} holds the key");
    }
}

/// A stream that repeats the key (here, a prompt that holds it, which the
/// fake echoes) reaches the client and the cache without it.
#[test]
fn a_stream_that_echoes_the_key_is_served_and_kept_without_it() {
    // Asked to stream, the fake sends its answer a word an event: the key
    // whole in one.
    let env = Env::three();
    let s = env.serve(&["--models", "t/a"]);
    let body = serde_json::json!({
        "model": "t/a",
        "stream": true,
        "messages": [{"role": "user", "content": format!("say {KEY}")}],
    });
    let text = chat_text(&s, &body);
    assert!(text.contains("\"[redacted]\""), "{text}");
    assert!(!text.contains(KEY), "{text}");
    s.stop();
    assert_no_key_in_store(&env.db());
}

#[test]
fn the_store_and_its_wal_are_private_while_a_run_writes() {
    let env = Env::three();
    env.server.set_default("t/a", Behavior::ok_after(300));
    let mut child = env
        .cmd()
        .args(["--models", "t/a", "-j", "1"])
        .cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(prompts(4).as_bytes()).unwrap();
    }
    let wal = env.path("store.db-wal");
    let shm = env.path("store.db-shm");
    let started = Instant::now();
    while !(wal.exists() && shm.exists()) && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let modes = [mode(&env.db()), mode(&wal), mode(&shm)];
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(modes, [0o600; 3], "store, WAL and shm files");
    assert_no_key_in_store(&env.db());
}

#[test]
fn plain_http_to_another_host_draws_a_warning_and_loopback_does_not() {
    let env = Env::three();
    // Dry runs make no connection at all, so no traffic leaves the machine.
    let dry = |base: &str, extra: &[&str]| {
        let out = env
            .cmd()
            .env_remove("OPENROUTER_API_KEY")
            .args(["--dry-run", "--base-url", base, "--models", "t/a"])
            .args(extra)
            .stdin(prompts(1))
            .run();
        out.assert_code(0);
        assert_sane(&out);
        assert_eq!(out.lines().len(), 1);
        out.stderr
    };
    for remote in [
        "http://llmroute-test.invalid/api/v1",
        "http://192.0.2.1:9/api/v1",
        "http://[2001:db8::1]:9/api/v1",
    ] {
        let stderr = dry(remote, &[]);
        assert!(
            stderr.contains("unencrypted") && stderr.contains(remote),
            "{remote}: {stderr}"
        );
        assert!(
            !dry(remote, &["-q"]).contains("unencrypted"),
            "-q silences warnings"
        );
    }
    for quiet in [
        "https://llmroute-test.invalid/api/v1",
        "http://127.0.0.1:9/api/v1",
        "http://127.8.9.10:9/api/v1",
        "http://localhost:9/api/v1",
        "http://[::1]:9/api/v1",
    ] {
        let stderr = dry(quiet, &[]);
        assert!(!stderr.contains("unencrypted"), "{quiet}: {stderr}");
    }
    // The environment variable is checked like the flag.
    let out = env
        .cmd()
        .env_remove("OPENROUTER_API_KEY")
        .env("LLMROUTE_BASE_URL", "http://llmroute-test.invalid/api/v1")
        .args(["--dry-run", "--models", "t/a"])
        .stdin(prompts(1))
        .run();
    out.assert_code(0);
    assert!(out.stderr.contains("unencrypted"), "{}", out.stderr);
}

/// Runs three lines with a debug-build fail point (`var`) on line 2 and
/// checks what every such bug must give: an `internal_error` line for line
/// 2, the other two answered, exit 1, and a bug report on stderr.
fn run_with_a_bug_on_line_2(env: &Env, var: &str) -> Output {
    let out = env
        .cmd()
        .env(var, "2")
        .args(["--models", "t/a"])
        .stdin(prompts(3))
        .run();
    out.assert_code(1);
    let lines = out.lines();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(
        lines[1]["error"]["type"], "internal_error",
        "{}",
        out.stdout
    );
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[0]["error"].is_null() && lines[2]["error"].is_null());
    assert!(out.stderr.contains("internal error"), "{}", out.stderr);
    assert_eq!(
        env.server.completions().len(),
        2,
        "only lines 1 and 3 went upstream"
    );
    out
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "needs a debug build: release builds have no fail points"
)]
fn a_bug_on_one_line_gets_an_internal_error_line_and_keeps_the_key_out_of_the_panic() {
    let env = Env::three();
    // Debug builds panic on this line, with the key in the panic's message.
    let out = run_with_a_bug_on_line_2(&env, "LLMROUTE_FAIL_LINE");
    assert_eq!(out.lines()[1]["id"], "r2", "the id is still echoed");
    assert!(out.stderr.contains("[redacted]"), "{}", out.stderr);
    assert!(!out.stderr.contains(KEY), "{}", out.stderr);
    assert!(!out.stdout.contains(KEY));
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "needs a debug build: release builds have no fail points"
)]
fn a_bug_while_reading_one_line_gets_an_internal_error_line_and_the_rest_goes_on() {
    let env = Env::three();
    // Debug builds panic while parsing this line, on the reader's thread.
    run_with_a_bug_on_line_2(&env, "LLMROUTE_FAIL_PARSE_LINE");
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "needs a debug build: release builds have no commit delay hook"
)]
fn a_line_is_shown_only_once_its_answer_has_committed() {
    let env = Env::three();
    let file = env.write("one.jsonl", &prompts(1));
    // Debug builds hold every write transaction back this long.
    let mut child = env
        .cmd()
        .env("LLMROUTE_COMMIT_DELAY_MS", "400")
        .args(["--models", "t/a", "-q"])
        .arg(&file)
        .cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("llmroute starts");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // Killed the moment the line shows: its answer must be in the store.
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let line: Value = serde_json::from_str(&first).expect("a whole JSON line");
    assert!(line["error"].is_null(), "{line}");
    assert_eq!(env.count("SELECT count(*) FROM cache"), 1);
    assert_eq!(env.count("SELECT count(*) FROM requests WHERE ok = 1"), 1);
}

#[test]
#[cfg_attr(
    not(debug_assertions),
    ignore = "needs a debug build: release builds have no fail points"
)]
fn an_input_thread_that_cannot_start_is_a_fatal_error() {
    let env = Env::three();
    let out = env
        .cmd()
        .args(["--models", "t/a"])
        .env("LLMROUTE_FAIL_READER_START", "1")
        .stdin(prompts(2))
        .run();
    out.assert_code(2);
    assert!(
        out.stderr.contains("cannot start the input thread"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());
    assert_eq!(env.server.completions().len(), 0);
}

/// Whether process `pid` has ended: gone, or a zombie nobody reaped yet.
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_grader_does_not_outlive_a_kill_9_of_its_run() {
    // The grader is in a process group of its own (Ctrl-C is the run's to
    // handle), so nothing but llmroute itself can end it: the program the
    // shell runs, and what that starts in turn.
    for (form, tail) in [
        ("exec", "echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 120"),
        (
            "child",
            "sleep 120 & echo $! > {p}.tmp; mv {p}.tmp {p}; wait",
        ),
    ] {
        let env = Env::three();
        let pid_file = env.path("grader.pid");
        let grader = format!(
            "cat >/dev/null; {}",
            tail.replace("{p}", &pid_file.display().to_string())
        );
        let file = env.write("in.jsonl", &prompts(1));
        let mut run = env.spawn(
            &[
                "--models",
                "t/a",
                "--no-cache",
                "--grade",
                &grader,
                "--grade-timeout",
                "300s",
            ],
            &file,
        );
        assert!(
            eventually(|| pid_file.exists()),
            "{form}: the grader started"
        );
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(!ended(pid));
        run.kill().unwrap();
        run.wait().unwrap();
        let gone = eventually(|| ended(pid));
        if !gone {
            signal(pid, "KILL");
        }
        assert!(gone, "{form}: grader {pid} outlived its run");
    }
}
