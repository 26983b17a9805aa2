//! A small harness that runs the built `llmroute` binary against a fake
//! OpenRouter server on 127.0.0.1, each test in its own temporary directory
//! with its own store, and a clean environment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use fake_openrouter::{Behavior, CatalogueBehavior, FakeServer, ModelSpec, StreamUsage};
use serde_json::Value;

/// The API key the tests pass; it must never show up anywhere.
pub const KEY: &str = "sk-or-v1-test-7f3a9c1e5b2d4f6a8c0e";

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_llmroute"))
}

/// One test's world: a temporary directory, a store path and a fake server.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: FakeServer,
}

impl Env {
    pub fn new(models: Vec<ModelSpec>) -> Env {
        Env {
            dir: tempfile::tempdir().expect("a temporary directory"),
            server: FakeServer::start(models),
        }
    }

    /// Three models with distinct prices and quality.
    pub fn three() -> Env {
        Env::new(vec![
            ModelSpec::new("t/a")
                .prices("0.000001", "0.000002")
                .intelligence(50.0),
            ModelSpec::new("t/b")
                .prices("0.000002", "0.000004")
                .intelligence(40.0),
            ModelSpec::new("t/c")
                .prices("0.000004", "0.000008")
                .intelligence(30.0),
        ])
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db(&self) -> PathBuf {
        self.path("store.db")
    }

    /// A command with the environment every test starts from. Exploration
    /// is off (`LLMROUTE_EXPLORE=0`): it sends early lines on a fresh store
    /// to candidates that are not the best, to measure them, which the
    /// tests of scoring and fallback do not want. Tests of learning turn it
    /// on with `--explore`.
    pub fn cmd(&self) -> Cmd {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("OPENROUTER_API_KEY", KEY)
            .env("LLMROUTE_BASE_URL", self.server.base_url())
            .env("LLMROUTE_DB", self.db())
            .env("LLMROUTE_EXPLORE", "0")
            .current_dir(self.dir.path());
        Cmd {
            cmd: c,
            stdin: Vec::new(),
        }
    }

    /// Starts llmroute with `args` on `file`: no stdin, stdout and stderr piped.
    pub fn spawn(&self, args: &[&str], file: &Path) -> std::process::Child {
        self.cmd()
            .args(args)
            .arg(file)
            .cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("llmroute starts")
    }

    /// Runs llmroute with `args` on a pseudo-terminal (util-linux's
    /// `script`): standard input, output and error are the terminal, and
    /// standard input ends at once. Its `stdout` is everything written to
    /// the terminal, stdout and stderr together, with `\r\n` line ends.
    pub fn on_terminal(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let mut line = quote(&bin().to_string_lossy());
        for a in args {
            line.push(' ');
            line.push_str(&quote(a));
        }
        let mut cmd = self.cmd();
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let out = Command::new("script")
            .args(["-q", "-e", "-c", &line, "/dev/null"])
            .env_clear()
            .envs(cmd.cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("script (util-linux) runs");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Opens the store read-only for assertions.
    pub fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(self.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the store opens")
    }

    /// The one value `sql` selects from the store.
    pub fn value<T: rusqlite::types::FromSql>(&self, sql: &str) -> T {
        self.sql()
            .query_row(sql, [], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    pub fn count(&self, sql: &str) -> i64 {
        self.value(sql)
    }

    /// Writes a file in the test directory.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).expect("writing a test file");
        p
    }
}

pub struct Cmd {
    pub cmd: Command,
    stdin: Vec<u8>,
}

impl Cmd {
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.cmd.env_remove(k);
        self
    }

    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Self {
        self.stdin = input.as_ref().to_vec();
        self
    }

    /// Runs to completion.
    pub fn run(mut self) -> Output {
        self.cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("llmroute starts");
        let mut stdin = child.stdin.take().unwrap();
        let input = std::mem::take(&mut self.stdin);
        let feeder = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("llmroute runs");
        feeder.join().unwrap();
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Every stdout line, parsed; panics on a line that is not JSON.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("output line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit status\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// `n` shorthand lines with ids `r1..rn` and prompts `p1..pn`.
pub fn prompts(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"id\":\"r{i}\",\"prompt\":\"p{i}\"}}\n"))
        .collect()
}

/// `n` prompts that each allow `max_tokens` completion tokens: their cost
/// estimate stays that of `max_tokens`, however short the answers were.
pub fn prompts_with_max_tokens(n: usize, max_tokens: u64) -> String {
    (1..=n)
        .map(|i| format!("{{\"id\":\"r{i}\",\"prompt\":\"p{i}\",\"max_tokens\":{max_tokens}}}\n"))
        .collect()
}

/// A finished llmroute's exit status, output lines and stderr.
pub fn lines_of(child: std::process::Child) -> (i32, Vec<Value>, String) {
    let out = child.wait_with_output().unwrap();
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The model named in a fake completion's content, `[model] prompt`.
pub fn answered_by(line: &Value) -> String {
    let content = line["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {line}"));
    content
        .trim_start_matches('[')
        .split(']')
        .next()
        .unwrap()
        .to_string()
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

/// A running `llmroute serve`: its address, and its stderr as it comes.
/// Killed when dropped (unless [`Served::stop`] stopped it).
pub struct Served {
    pub child: std::process::Child,
    pub addr: std::net::SocketAddr,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Env {
    /// Starts `llmroute serve` on a free loopback port with `args` (and
    /// the environment of [`Env::cmd`], changed by `env`), and waits for
    /// the line that names its address.
    pub fn serve_with(&self, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut cmd = self.cmd();
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let mut c = cmd.cmd;
        c.arg("serve");
        if !args.contains(&"--listen") {
            c.args(["--listen", "127.0.0.1:0"]);
        }
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("llmroute serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                {
                    let mut l = sink.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                if let Some(addr) = line.split("listening on http://").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(a) => a.parse().expect("an address"),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                let _ = reader.join();
                panic!(
                    "llmroute serve did not start ({status:?}):\n{}",
                    log.lock().unwrap()
                );
            }
        };
        Served {
            child,
            addr,
            log,
            reader: Some(reader),
        }
    }

    pub fn serve(&self, args: &[&str]) -> Served {
        self.serve_with(args, &[])
    }
}

impl Served {
    /// `http://ADDR`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What it wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for it to exit; returns its status code and
    /// everything it wrote on stderr.
    pub fn stop(mut self) -> (i32, String) {
        signal(self.child.id(), "TERM");
        let status = self.child.wait().expect("llmroute serve exits");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.code().unwrap_or(-1), self.log())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal by name (`TERM`, `INT`) to a process.
pub fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "kill -{name} {pid}");
}

/// Sends `n` copies of `body` to a server at once; their statuses.
pub fn together(s: &Served, body: &Value, n: usize) -> Vec<u16> {
    let url = s.url("/v1/chat/completions");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let c = reqwest::Client::new();
            let sent = (0..n).map(|_| {
                let r = c.post(&url).json(body).send();
                async move { r.await.unwrap().status().as_u16() }
            });
            futures_util::future::join_all(sent).await
        })
}

/// A chat body with one user message.
pub fn chat(model: Option<&str>, prompt: &str) -> Value {
    let mut body = serde_json::json!({"messages": [{"role": "user", "content": prompt}]});
    if let Some(m) = model {
        body["model"] = Value::String(m.to_string());
    }
    body
}

/// A `redis-server` of a test's own: a free port on loopback, persistence
/// off, its files in a temporary directory; killed when dropped.
pub struct RedisServer {
    pub child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

/// A port a listener got from the system, free again once it closes.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port(), tempfile::tempdir().unwrap())
    }

    /// A Redis that asks for `password`.
    pub fn start_with_password(password: &str) -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        RedisServer::start_with(free_port(), dir, &["--requirepass", password])
    }

    fn start_on(port: u16, dir: tempfile::TempDir) -> RedisServer {
        RedisServer::start_with(port, dir, &[])
    }

    fn start_with(port: u16, dir: tempfile::TempDir, extra: &[&str]) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(extra)
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/test installs it)");
        let r = RedisServer {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if r.client().get_connection().is_ok() {
                return r;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("redis-server did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).unwrap()
    }

    /// Every key and its value (strings and hashes), as text.
    pub fn dump(&self) -> Vec<(String, String)> {
        let mut c = self.client().get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        keys.into_iter()
            .map(|k| {
                let kind: String = redis::cmd("TYPE").arg(&k).query(&mut c).unwrap();
                let v = match kind.as_str() {
                    "hash" => {
                        let h: Vec<String> = redis::cmd("HGETALL").arg(&k).query(&mut c).unwrap();
                        h.join(" ")
                    }
                    _ => redis::cmd("GET").arg(&k).query(&mut c).unwrap_or_default(),
                };
                (k, v)
            })
            .collect()
    }

    /// Kills it (`kill -9`) and starts it again on the same port, empty.
    pub fn restart(mut self) -> RedisServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let port = self.port;
        let dir = tempfile::tempdir().unwrap();
        RedisServer::start_on(port, dir)
    }
}

impl RedisServer {
    /// Saves its data and kills it; runs `meanwhile`; then starts it again
    /// on the same port with that data: Redis away, and back as it was.
    pub fn down_and_back(mut self, meanwhile: impl FnOnce()) -> RedisServer {
        let mut c = self.client().get_connection().unwrap();
        let () = redis::cmd("SAVE").query(&mut c).unwrap();
        drop(c);
        let _ = self.child.kill();
        let _ = self.child.wait();
        meanwhile();
        let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
        RedisServer::start_on(self.port, dir)
    }
}

impl RedisServer {
    /// Kills it; runs `meanwhile`; then starts it again on the same port,
    /// empty: Redis away, and back without its data.
    pub fn down_and_back_empty(mut self, meanwhile: impl FnOnce()) -> RedisServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        meanwhile();
        RedisServer::start_on(self.port, tempfile::tempdir().unwrap())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `done` every 50 ms, for up to 20 s.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..400 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
