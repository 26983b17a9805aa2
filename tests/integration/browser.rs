//! A real browser for the tests: Debian's Chromium, headless, driven
//! through ChromeDriver's WebDriver API (plain JSON over HTTP). `scripts/test`
//! installs both; `LLMROUTE_TEST_CHROMIUM` and `LLMROUTE_TEST_CHROMEDRIVER`
//! point elsewhere.
//!
//! The browser's host resolver knows 127.0.0.1 only, so a page that asks
//! for anything from another host fails loudly (in the console and in the
//! page's resource timings) instead of reaching the network.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing: run scripts/test, which installs Debian's chromium and chromium-driver",
        path.display()
    );
    path
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    /// Where screenshots go: the test's temporary directory.
    shots: PathBuf,
    /// The viewport's width, as emulated.
    width: Cell<u32>,
}

/// A ChromeDriver on a free port, ready; `None` if it did not get ready
/// (another process took the port first, say).
fn driver(
    path: &Path,
    client: &reqwest::Client,
    rt: &tokio::runtime::Runtime,
) -> Option<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let mut child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        let ready = rt.block_on(async {
            let r = client.get(format!("{base}/status")).send().await.ok()?;
            r.json::<Value>().await.ok()
        });
        if ready.is_some_and(|v| v["value"]["ready"] == true) {
            return Some((child, base));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

impl Browser {
    /// A fresh headless Chromium with its own profile under `dir`, where
    /// its screenshots are written too.
    pub fn start(dir: &Path) -> Browser {
        let chromium = tool("LLMROUTE_TEST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("LLMROUTE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let (driver, base) = (0..5)
            .find_map(|_| driver(&chromedriver, &client, &rt))
            .expect("chromedriver gets ready on a free port");
        let mut b = Browser {
            driver,
            base,
            session: String::new(),
            client,
            rt,
            shots: dir.to_path_buf(),
            width: Cell::new(1280),
        };
        let profile = dir.join("chromium-profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                    "--window-size=1280,900",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let v = b.call(reqwest::Method::POST, "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        b
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    /// One WebDriver command; its `value`, or its error.
    fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let v: Value = self.rt.block_on(async {
            let mut req = self.client.request(method, &url);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.map_err(|e| e.to_string())?;
            r.json().await.map_err(|e| e.to_string())
        })?;
        if v["value"]["error"].is_string() {
            return Err(v["value"].to_string());
        }
        Ok(v["value"].clone())
    }

    pub fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `return` gives its value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.eval("return document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// A viewport `width` px wide and `height` high, a phone's below 600.
    fn viewport(&self, width: u32, height: u64) {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600
                }}),
            ),
        );
    }

    /// The viewport `width` px wide (and 900 px high), checked.
    pub fn width(&self, width: u32) {
        self.width.set(width);
        self.viewport(width, 900);
        let inner = self.eval("return window.innerWidth");
        assert_eq!(inner, width, "the viewport's width");
    }

    /// Follows the system's dark setting (true) or light one.
    pub fn dark(&self, on: bool) {
        let value = if on { "dark" } else { "light" };
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.setEmulatedMedia", "params": {
                "features": [{"name": "prefers-color-scheme", "value": value}]
            }})),
        );
    }

    /// Whether the page scrolls sideways at the current width.
    pub fn scrolls_sideways(&self) -> bool {
        self.eval(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth",
        ) == true
    }

    /// Writes a screenshot of the whole page to the test's directory.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let height = self.eval("return document.documentElement.scrollHeight");
        self.viewport(self.width.get(), height.as_u64().unwrap_or(900).min(8000));
        let png = self.call(reqwest::Method::GET, "/screenshot", None);
        self.viewport(self.width.get(), 900);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a screenshot"))
            .expect("base64");
        assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &bytes).unwrap();
        if let Some(keep) = std::env::var_os("LLMROUTE_TEST_SCREENSHOTS") {
            let keep = PathBuf::from(keep);
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::copy(&path, keep.join(format!("{name}.png")));
        }
        path
    }

    /// The console's messages since the last call, as `LEVEL message`.
    pub fn console(&self) -> Vec<String> {
        let v = self.call(
            reqwest::Method::POST,
            "/se/log",
            Some(json!({"type": "browser"})),
        );
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{} {}", e["level"].as_str().unwrap_or("?"), e["message"]))
            .collect()
    }

    /// The console's errors and warnings since the last call.
    pub fn console_errors(&self) -> Vec<String> {
        self.console()
            .into_iter()
            .filter(|l| l.starts_with("SEVERE") || l.starts_with("WARNING"))
            .collect()
    }

    /// Every URL the page loaded besides itself.
    pub fn resources(&self) -> Vec<String> {
        let v = self.eval("return performance.getEntriesByType('resource').map(e => e.name)");
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    }

    /// Polls `script` until it returns true, for at most `secs` seconds.
    pub fn wait_until(&self, script: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            // An error is "not yet": a page being replaced has no context.
            let v = self.try_call(
                reqwest::Method::POST,
                "/execute/sync",
                Some(json!({"script": script, "args": []})),
            );
            if v.is_ok_and(|v| v == true) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let _ = self
                .rt
                .block_on(async { self.client.delete(url).send().await });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// How much each chart on show is scaled from its drawing (1.0: its
    /// labels at the size they were drawn at).
    pub fn chart_scales(&self) -> Vec<f64> {
        let v = self.eval(
            "return [...document.querySelectorAll('svg.chart')]
                .map(s => [s.getBoundingClientRect().width, s.viewBox.baseVal.width])
                .filter(([shown]) => shown > 0)
                .map(([shown, drawn]) => shown / drawn)",
        );
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect()
    }

    /// What every page of llmroute's must be, checked on the page loaded:
    /// light and dark themes that follow the system, no sideways scrolling
    /// at 375 and 1920 px, charts drawn for a phone's width there (their
    /// labels keep most of their size), no console errors or warnings, and
    /// nothing loaded but from `own` (a URL prefix; `None`: nothing at
    /// all). Screenshots `NAME-light-1280.png` and `NAME-dark-375.png`; the
    /// number of charts on show at 375 px is returned.
    pub fn check_page(&self, name: &str, own: Option<&str>) -> usize {
        let light = self.eval("return getComputedStyle(document.body).backgroundColor");
        self.screenshot(&format!("{name}-light-1280"));
        for width in [375, 1920] {
            self.width(width);
            assert!(
                !self.scrolls_sideways(),
                "{name} scrolls sideways at {width} px"
            );
        }
        self.dark(true);
        let dark = self.eval("return getComputedStyle(document.body).backgroundColor");
        assert_ne!(light, dark, "{name}: the dark theme follows the system");
        self.width(375);
        assert!(!self.scrolls_sideways());
        let scales = self.chart_scales();
        assert!(scales.iter().all(|s| *s >= 0.85), "{name}: {scales:?}");
        let shot = self.screenshot(&format!("{name}-dark-375"));
        assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
        assert_eq!(
            self.console_errors(),
            Vec::<String>::new(),
            "{name}: console"
        );
        let loaded = self.resources();
        match own {
            None => assert_eq!(loaded, Vec::<String>::new(), "{name} loads nothing"),
            Some(own) => {
                assert!(!loaded.is_empty(), "{name} loads its own script and data");
                let elsewhere: Vec<&String> =
                    loaded.iter().filter(|u| !u.starts_with(own)).collect();
                assert!(
                    elsewhere.is_empty(),
                    "{name} loads from elsewhere: {elsewhere:?}"
                );
            }
        }
        scales.len()
    }

    /// The value of a page's card (`data-k="requests"`), as shown.
    pub fn card(&self, key: &str) -> String {
        self.eval(&format!(
            "return document.querySelector('[data-k=\"{key}\"] .v').textContent"
        ))
        .as_str()
        .unwrap_or_default()
        .to_string()
    }
}
