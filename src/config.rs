//! The configuration file: defaults for every routing flag.
//!
//! `$XDG_CONFIG_HOME/llmroute/config.toml` (`~/.config/llmroute/config.toml`),
//! or `--config PATH` / `LLMROUTE_CONFIG`. Precedence: flag > environment >
//! config file > built-in default. Flags and their environment variables
//! are resolved by clap; [`crate::options::Options::resolve`] then fills
//! whatever is still unset from the file, then from the defaults. An
//! unknown key or a bad value is an error naming the file, the line and the
//! key.
//!
//! ```toml
//! priority = "nightly"
//! models = ["openai/gpt-5.4-mini", "google/gemini-3.5-flash"]
//! fallback = ["openai/gpt-5.4"]
//! concurrency = 16
//! rpm = 600
//! timeout = "45s"
//!
//! [quality]
//! "openai/gpt-5.4-mini" = 0.8
//!
//! [presets.nightly]
//! latency = 0.1
//! cost = 0.8
//! quality = 0.1
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::core::ranking::Presets;
use crate::core::scoring::{Priority, Weights};
use crate::engine::Hedge;

/// The config file's contents. Every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub priority: Option<String>,
    pub weights: Option<WeightsTable>,
    pub models: Option<Vec<String>>,
    pub fallback: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quality: BTreeMap<String, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub presets: BTreeMap<String, WeightsTable>,
    pub concurrency: Option<u32>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub max_cost: Option<f64>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub timeout: Option<Duration>,
    pub max_attempts: Option<u32>,
    /// Share of requests that re-measure a candidate, in [0, 1].
    pub explore: Option<f64>,
    /// `auto`, `off` or a duration.
    #[serde(default, deserialize_with = "hedge", serialize_with = "ser_hedge")]
    pub hedge: Option<Hedge>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub max_latency: Option<Duration>,
    pub max_line_cost: Option<f64>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub cache_ttl: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub retention: Option<Duration>,
    pub base_url: Option<String>,
    pub db: Option<PathBuf>,
    pub redis: Option<String>,
    pub redis_prefix: Option<String>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub redis_timeout: Option<Duration>,
    pub shared_limits: Option<bool>,
    pub budget_id: Option<String>,
    /// As `--route-all`: a line's `model` is a hint, not a pin.
    pub route_all: Option<bool>,
    /// `llmroute serve`'s own settings.
    pub serve: Option<ServeConfig>,
    /// Named upstreams beside the default one (`[upstreams.NAME]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub upstreams: BTreeMap<String, crate::upstreams::UpstreamConfig>,
}

/// The `[serve]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    pub listen: Option<String>,
    /// As `--cors-origin`.
    pub cors_origins: Option<Vec<String>>,
    /// As `--shared-cache`.
    pub shared_cache: Option<bool>,
    /// As `--allow-any-model`.
    pub allow_any_model: Option<bool>,
    /// As `--cache-sampled`.
    pub cache_sampled: Option<bool>,
    pub auth_token_file: Option<PathBuf>,
    pub admin_token_file: Option<PathBuf>,
    pub queue: Option<u32>,
    pub max_connections: Option<u32>,
    #[serde(default, deserialize_with = "size", serialize_with = "ser_size")]
    pub max_body: Option<u64>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub deadline: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub grace: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub header_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "size", serialize_with = "ser_size")]
    pub cache_max_size: Option<u64>,
    #[serde(
        default,
        deserialize_with = "duration",
        serialize_with = "ser_duration"
    )]
    pub upkeep_every: Option<Duration>,
    pub log_format: Option<crate::cli::LogFormat>,
    /// `false`: no dashboard at `/` and `/dashboard`.
    pub dashboard: Option<bool>,
}

impl ServeConfig {
    /// Checks the address, the deadline and the body cap.
    fn check(&self) -> Result<(), CheckError> {
        let bad_listen = self
            .listen
            .as_ref()
            .filter(|l| l.trim().parse::<std::net::SocketAddr>().is_err());
        if let Some(l) = bad_listen {
            return Err(bad(
                &["serve", "listen"],
                format!("{l:?} is not an address to listen on; give IP:PORT, e.g. 127.0.0.1:8080"),
            ));
        }
        if let Some(d) = self.deadline {
            crate::cli::at_least(d, crate::cli::MIN_TIMEOUT)
                .map_err(|e| bad(&["serve", "deadline"], e))?;
        }
        if self.max_body.is_some_and(|n| n < crate::cli::MIN_MAX_BODY) {
            return Err(bad(&["serve", "max_body"], "must be at least 1KiB"));
        }
        Ok(())
    }
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Bytes(u64),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Bytes(n)) => Ok(Some(n)),
        Some(Raw::Text(t)) => crate::cli::parse_size(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn ser_size<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(n) => s.serialize_str(&size_text(*n)),
        None => s.serialize_none(),
    }
}

/// A size as `config show` writes it, exactly, so that it reads back as
/// itself: in the largest binary unit that divides it (`16MiB`), else in
/// bytes. (A rounded `16.0M` would read back as 16,000,000 bytes.)
pub fn size_text(n: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{name}", n / unit);
        }
    }
    n.to_string()
}

/// `latency`, `cost` and `quality` weights (normalised when used).
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsTable {
    #[serde(default)]
    pub latency: f64,
    #[serde(default)]
    pub cost: f64,
    #[serde(default)]
    pub quality: f64,
}

impl WeightsTable {
    pub fn weights(&self) -> Result<Weights, String> {
        Weights::new(self.latency, self.cost, self.quality).map_err(|e| e.to_string())
    }

    /// Checks the weights; an error's path is `at` and, when one weight
    /// is out of range, its key.
    fn check(&self, at: &[&str]) -> Result<(), CheckError> {
        self.weights().map(|_| ()).map_err(|e| {
            let key = [
                ("latency", self.latency),
                ("cost", self.cost),
                ("quality", self.quality),
            ]
            .into_iter()
            .find(|(_, w)| !w.is_finite() || *w < 0.0)
            .map(|(k, _)| k);
            let path: Vec<&str> = at.iter().copied().chain(key).collect();
            bad(&path, e)
        })
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Seconds(f64),
    }
    let raw = Option::<Raw>::deserialize(d)?;
    match raw {
        None => Ok(None),
        Some(Raw::Text(s)) => crate::core::duration::parse(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
        Some(Raw::Seconds(n)) => crate::core::duration::parse(&n.to_string())
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn ser_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&crate::core::duration::format(*d)),
        None => s.serialize_none(),
    }
}

fn hedge<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Hedge>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    raw.map(|s| match s.trim() {
        "auto" => Ok(Hedge::Auto),
        "off" => Ok(Hedge::Off),
        t => crate::core::duration::parse(t)
            .map(Hedge::After)
            .map_err(serde::de::Error::custom),
    })
    .transpose()
}

fn ser_hedge<S: serde::Serializer>(h: &Option<Hedge>, s: S) -> Result<S::Ok, S::Error> {
    match h {
        Some(Hedge::Off) => s.serialize_str("off"),
        Some(Hedge::Auto) => s.serialize_str("auto"),
        Some(Hedge::After(d)) => s.serialize_str(&crate::core::duration::format(*d)),
        None => s.serialize_none(),
    }
}

/// Where the config file is looked for by default.
pub fn default_path() -> Option<PathBuf> {
    use etcetera::BaseStrategy;
    etcetera::choose_base_strategy()
        .ok()
        .map(|d| d.config_dir().join("llmroute").join("config.toml"))
}

/// A loaded config and where it came from.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    pub config: Config,
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// Where the file is (or would be) looked for.
    pub location: Option<PathBuf>,
    /// Why the file there could not be read, when it was left unread.
    pub unread: Option<String>,
}

impl Loaded {
    /// [`Loaded::load`], or, when the file cannot be read, the built-in
    /// defaults with why: for telling where things are, which is what
    /// one asks after a config error.
    pub fn load_or_defaults(explicit: Option<&Path>) -> Loaded {
        Loaded::load(explicit).unwrap_or_else(|e| Loaded {
            location: explicit.map(Path::to_path_buf).or_else(default_path),
            unread: Some(e),
            ..Loaded::default()
        })
    }

    /// Reads the config: `explicit` (from `--config`/`LLMROUTE_CONFIG`) must
    /// exist; the default location may be absent.
    pub fn load(explicit: Option<&Path>) -> Result<Loaded, String> {
        let (location, must_exist) = match explicit {
            Some(p) => (Some(p.to_path_buf()), true),
            None => (default_path(), false),
        };
        let Some(path) = location.clone() else {
            return Ok(Loaded::default());
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => {
                return Ok(Loaded {
                    location,
                    ..Loaded::default()
                })
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let config = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Loaded {
            config,
            path: Some(path),
            location,
            unread: None,
        })
    }
}

/// Parses and checks a config file's text.
pub fn parse(text: &str) -> Result<Config, String> {
    let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    config.check().map_err(|e| {
        let key = e.path.join(".");
        let keys: Vec<&str> = e.path.iter().map(String::as_str).collect();
        match line_of(text, &keys) {
            Some(line) => format!("line {line}: {key}: {}", e.message),
            None => format!("{key}: {}", e.message),
        }
    })?;
    Ok(config)
}

/// A value serde accepted but llmroute does not: the key's path and why.
#[derive(Debug)]
struct CheckError {
    path: Vec<String>,
    message: String,
}

fn bad(path: &[&str], message: impl Into<String>) -> CheckError {
    CheckError {
        path: path.iter().map(|p| p.to_string()).collect(),
        message: message.into(),
    }
}

/// The 1-based line of the key at `path` (table names, then the key) in `text`.
fn line_of(text: &str, path: &[&str]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut start = None;
    for (i, part) in path.iter().enumerate() {
        let (key, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *part)?;
        start = Some(key.span().start);
        if i + 1 < path.len() {
            match value.get_ref() {
                toml::de::DeValue::Table(t) => table = t,
                _ => return None,
            }
        }
    }
    Some(text[..start?].matches('\n').count() + 1)
}

impl Config {
    /// Checks what serde cannot: value ranges and names.
    fn check(&self) -> Result<(), CheckError> {
        self.check_routing()?;
        let positive = [
            ("concurrency", self.concurrency),
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("max_attempts", self.max_attempts),
        ];
        for (key, v) in positive {
            if v == Some(0) {
                return Err(bad(&[key], "must be at least 1"));
            }
        }
        for (key, v) in [
            ("max_cost", self.max_cost),
            ("max_line_cost", self.max_line_cost),
        ] {
            if v.is_some_and(|c| !c.is_finite() || c < 0.0) {
                return Err(bad(&[key], "must be a non-negative number of USD"));
            }
        }
        for (key, v, min) in [
            ("timeout", self.timeout, crate::cli::MIN_TIMEOUT),
            ("retention", self.retention, crate::cli::MIN_RETENTION),
        ] {
            if let Some(d) = v {
                crate::cli::at_least(d, min).map_err(|e| bad(&[key], e))?;
            }
        }
        if let Some(serve) = &self.serve {
            serve.check()?;
        }
        if self.explore.is_some_and(|e| !(0.0..=1.0).contains(&e)) {
            return Err(bad(&["explore"], "must be a share between 0 and 1"));
        }
        self.check_places()?;
        for (name, u) in &self.upstreams {
            u.check(name).map_err(|(below, message)| {
                let mut path = vec!["upstreams", name.as_str()];
                path.extend(below.iter().map(String::as_str));
                bad(&path, message)
            })?;
        }
        Ok(())
    }

    /// Checks the presets, the weights, the quality priors and the priority.
    fn check_routing(&self) -> Result<(), CheckError> {
        for (name, w) in &self.presets {
            let named = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !named {
                return Err(bad(
                    &["presets", name],
                    format!(
                        "a preset's name is 1 to 64 ASCII letters, digits, '-', '_' or '.', \
                         as --priority takes it: {name:?}"
                    ),
                ));
            }
            if Priority::from_name(name).is_some() {
                return Err(bad(
                    &["presets", name],
                    format!("a preset cannot redefine the built-in priority '{name}'"),
                ));
            }
            w.check(&["presets", name])?;
        }
        if let Some(w) = &self.weights {
            w.check(&["weights"])?;
        }
        for (model, q) in &self.quality {
            if model.trim().is_empty() {
                return Err(bad(&["quality", model], "names no model"));
            }
            if !(0.0..=1.0).contains(q) {
                return Err(bad(&["quality", model], format!("{q} is outside [0, 1]")));
            }
        }
        if let Some(p) = &self.priority {
            if Priority::from_name(p).is_none() && !self.presets.contains_key(p) {
                return Err(bad(&["priority"], format!("unknown priority '{p}'")));
            }
        }
        Ok(())
    }

    /// Checks the candidates, the API, the store and Redis, which a run
    /// would otherwise refuse under the name of a flag never given.
    fn check_places(&self) -> Result<(), CheckError> {
        if self.models.as_ref().is_some_and(|m| m.is_empty()) {
            return Err(bad(&["models"], "lists no model"));
        }
        for key in ["models", "fallback"] {
            let list = if key == "models" {
                &self.models
            } else {
                &self.fallback
            };
            if list.iter().flatten().any(|m| m.trim().is_empty()) {
                return Err(bad(&[key], "a model id is empty"));
            }
            if let Some(m) = list.iter().flatten().find(|m| m.trim().ends_with(':')) {
                return Err(bad(
                    &[key],
                    format!(
                        "{m:?} names no model after its ':' (an upstream's model is NAME:model)"
                    ),
                ));
            }
        }
        if let Some(u) = &self.base_url {
            let scheme = url::Url::parse(u.trim()).map(|u| u.scheme().to_string());
            match scheme {
                Ok(s) if s == "http" || s == "https" => {}
                Ok(_) => return Err(bad(&["base_url"], "the scheme must be http or https")),
                Err(e) => return Err(bad(&["base_url"], format!("not a URL: {e}"))),
            }
        }
        // Parsed as a connection would be, without one; the URL may hold a
        // password, so it is not shown.
        if self
            .redis
            .as_ref()
            .is_some_and(|r| redis::Client::open(r.trim()).is_err())
        {
            return Err(bad(
                &["redis"],
                "not a Redis URL (redis://host:6379/0, rediss:// for TLS)",
            ));
        }
        if self.db.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(bad(&["db"], "the store's path is empty"));
        }
        Ok(())
    }

    /// The named weight presets.
    pub fn presets(&self) -> Presets {
        self.presets
            .iter()
            .filter_map(|(k, w)| Some((k.clone(), w.weights().ok()?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_shown_reads_back_as_itself() {
        for n in [
            0,
            1,
            1000,
            1024,
            1536,
            16 * 1024 * 1024,
            16_000_000,
            3 << 30,
            u64::MAX,
        ] {
            let text = size_text(n);
            assert_eq!(crate::cli::parse_size(&text), Ok(n), "{n} shown as {text}");
        }
        assert_eq!(size_text(16 * 1024 * 1024), "16MiB");
        assert_eq!(size_text(1024), "1KiB");
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"
            priority = "nightly"
            models = ["a/b", "c/d"]
            fallback = ["e/f"]
            concurrency = 16
            rpm = 600
            tpm = 100000
            max_cost = 2.5
            timeout = "45s"
            cache_ttl = 86400
            retention = "30d"
            max_attempts = 3
            base_url = "http://127.0.0.1:9/api/v1"
            db = "/tmp/x.db"
            [quality]
            "a/b" = 0.8
            [presets.nightly]
            latency = 0.1
            cost = 0.8
            quality = 0.1
            "#,
        )
        .unwrap();
        assert_eq!(c.timeout, Some(Duration::from_secs(45)));
        assert_eq!(c.cache_ttl, Some(Duration::from_secs(86400)));
        assert_eq!(c.retention, Some(Duration::from_secs(30 * 86400)));
        assert_eq!(c.presets()["nightly"].cost, 0.8);
        assert_eq!(c.quality["a/b"], 0.8);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = parse("priority = \"speed\"\n\nspeeed = 3\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("speeed"), "{e}");
        let e = parse("timeout = \"soon\"\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("soon"), "{e}");
        let e = parse("[presets.x]\nlatency = -1\n").unwrap_err();
        assert!(e.contains("presets.x") && e.contains("negative"), "{e}");
        let e = parse("[presets.x]\nspeed = 1\n").unwrap_err();
        assert!(e.contains("speed"), "{e}");
        for name in ["\"\"", "\"has space\""] {
            let e = parse(&format!("rpm = 1\n[presets.{name}]\ncost = 1\n")).unwrap_err();
            assert!(
                e.starts_with("line 2: presets.") && e.contains("a preset's name"),
                "{e}"
            );
        }
        // Values serde accepts but llmroute refuses name their line too.
        let e = parse("priority = \"fastest\"\n").unwrap_err();
        assert!(
            e.contains("line 1: priority:") && e.contains("fastest"),
            "{e}"
        );
        let e = parse("rpm = 1\nfallback = [\"u:\"]\n").unwrap_err();
        assert!(
            e.starts_with("line 2: fallback:") && e.contains("no model after"),
            "{e}"
        );
        let e = parse("rpm = 60\n\nconcurrency = 0\n").unwrap_err();
        assert_eq!(e, "line 3: concurrency: must be at least 1");
        let e = parse("[quality]\n\"\" = 0.5\n").unwrap_err();
        assert!(e.contains("names no model"), "{e}");
        let e = parse("[quality]\n\"x/y\" = 0.5\n\"a/b\" = 3\n").unwrap_err();
        assert!(e.starts_with("line 3: quality.a/b:"), "{e}");
        let e = parse("rpm = 1\n[presets.speed]\nlatency = 1\n").unwrap_err();
        assert!(
            e.starts_with("line 2: presets.speed:") && e.contains("built-in"),
            "{e}"
        );
        // A weight out of range names its own line and key.
        let e = parse("[presets.x]\nlatency = -1\n").unwrap_err();
        assert!(e.starts_with("line 2: presets.x.latency:"), "{e}");
        let e = parse("[weights]\nlatency = 0.3\ncost = -1\nquality = 0.5\n").unwrap_err();
        assert!(e.starts_with("line 3: weights.cost:"), "{e}");
        let e = parse("[weights]\nquality = inf\n").unwrap_err();
        assert!(e.starts_with("line 2: weights.quality:"), "{e}");
        let e = parse("presets.y = { latency = 0 }\n").unwrap_err();
        assert!(e.starts_with("line 1: presets.y:"), "{e}");
        let e = parse("\n\nmax_cost = -2\n").unwrap_err();
        assert!(e.starts_with("line 3: max_cost:"), "{e}");
        for (text, start) in [
            (
                "priority = \"cost\"\nmodels = []\n",
                "line 2: models: lists no model",
            ),
            (
                "fallback = [\"a/b\", \" \"]\n",
                "line 1: fallback: a model id is empty",
            ),
            ("base_url = \"nope\"\n", "line 1: base_url: not a URL"),
            ("base_url = \"ftp://x\"\n", "line 1: base_url: the scheme"),
            ("redis = \"http://x\"\n", "line 1: redis: not a Redis URL"),
            ("db = \"\"\n", "line 1: db: the store's path is empty"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.starts_with(start), "{text:?}: {e}");
        }
        parse("redis = \"rediss://h:6380/0\"\nbase_url = \"http://127.0.0.1:8/v1\"\n").unwrap();
    }
}
