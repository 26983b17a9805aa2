//! A real browser for the tests: Debian's Chromium, headless, driven
//! through ChromeDriver's WebDriver API (plain JSON over HTTP). `scripts/test`
//! installs both; `LLMROUTE_TEST_CHROMIUM` and `LLMROUTE_TEST_CHROMEDRIVER`
//! point elsewhere.
//!
//! The browser's host resolver knows 127.0.0.1 only, so a page that asks
//! for anything from another host fails loudly (in the console and in the
//! page's resource timings) instead of reaching the network.

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
}

impl Browser {
    /// A fresh headless Chromium with its own profile under `dir`, where
    /// its screenshots are written too.
    pub fn start(dir: &Path) -> Browser {
        let chromium = tool("LLMROUTE_TEST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = tool("LLMROUTE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client,
            rt,
            shots: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = b.rt.block_on(async {
                let r = b
                    .client
                    .get(format!("{}/status", b.base))
                    .send()
                    .await
                    .ok()?;
                r.json::<Value>().await.ok()
            });
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not get ready");
            std::thread::sleep(Duration::from_millis(50));
        }
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
            req.send()
                .await
                .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
                .json()
                .await
                .unwrap()
        });
        if v["value"]["error"].is_string() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
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

    /// The viewport `width` px wide (and 900 px high).
    pub fn width(&self, width: u32) {
        // The window is the viewport in headless mode, near enough; the
        // page's own width is measured, not assumed.
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": 900})),
        );
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
        let size = self.eval(
            "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]",
        );
        let (w, h) = (
            size[0].as_u64().unwrap_or(1280),
            size[1].as_u64().unwrap_or(900),
        );
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(
                json!({"cmd": "Emulation.setDeviceMetricsOverride", "params": {
                    "width": w, "height": h.min(8000), "deviceScaleFactor": 1, "mobile": false
                }}),
            ),
        );
        let png = self.call(reqwest::Method::GET, "/screenshot", None);
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": "Emulation.clearDeviceMetricsOverride", "params": {}})),
        );
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
            if self.eval(script) == true {
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
