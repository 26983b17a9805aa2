//! Several upstreams in one candidate list: OpenRouter (or any `--base-url`)
//! as the default, and named ones from the config file's
//! `[upstreams.NAME]` tables (a local vLLM or Ollama server, a provider's
//! own API), each with its own URL, key, headers and time limit.
//!
//! A candidate on a named upstream is `NAME:model`; a plain model id is on
//! the default upstream. Everything the router keeps per model (health,
//! latency, circuits, exploration, learned quality, the cache key) is kept
//! per candidate id, so the same model on two upstreams is two candidates.
//! A request goes to its candidate's upstream with that upstream's key
//! only, as `model` the id that upstream knows it by.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::core::catalogue::{Catalogue, ModelInfo, Origin};
use crate::core::failure::{Failure, FailureKind, Success};
use crate::engine::ports::{BoxFuture, Opened, Upstream};
use crate::upstream::Client;

mod limits;
pub use limits::TokensAMinute;
use limits::{counted, kept_here, tokens_of, Kept};

/// What reports and output lines call the default upstream (`--base-url`),
/// which no named one may be called.
pub const DEFAULT_NAME: &str = "default";

/// An `[upstreams.NAME]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Its OpenAI-compatible API, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// The name of the environment variable holding its key; none for a
    /// server that takes none.
    pub api_key_env: Option<String>,
    /// Headers sent with every request to it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Time limit of one attempt on it, instead of `--timeout`.
    pub timeout: Option<String>,
    /// Requests it takes in any 60 s; past them, requests go to other
    /// candidates.
    pub rpm: Option<u32>,
    /// Tokens (prompt and completion, as it counts them) a calendar minute
    /// it takes; once they are used, requests go to other candidates until
    /// the minute ends.
    pub tpm: Option<u64>,
    /// Requests it takes at once; past it, requests go to other candidates.
    pub concurrency: Option<u32>,
    /// Prices and context windows of its models, for a server whose
    /// `/models` lists none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, ModelConfig>,
}

/// An `[upstreams.NAME.models."MODEL"]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// USD per prompt token, as OpenRouter's catalogue gives it.
    pub prompt_price: Option<f64>,
    /// USD per completion token.
    pub completion_price: Option<f64>,
    pub context_length: Option<u64>,
}

impl UpstreamConfig {
    /// Its key, from `api_key_env` (none without one), or why there is none
    /// when the variable is unset or blank: a call to it would be refused.
    pub fn key(&self, name: &str) -> Result<Option<String>, String> {
        let Some(var) = &self.api_key_env else {
            return Ok(None);
        };
        match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v)),
            _ => Err(format!(
                "upstream {name}: the variable {var} that holds its key is not set"
            )),
        }
    }

    /// Checks the table of upstream `name`: Err is the key's path below
    /// `upstreams.NAME` and why.
    pub fn check(&self, name: &str) -> Result<(), (Vec<String>, String)> {
        let at = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok_name = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_name {
            return Err((
                at(&[]),
                format!("upstream {name:?}: a name is 1 to 64 ASCII letters, digits, '-' or '_'"),
            ));
        }
        if name == DEFAULT_NAME {
            return Err((
                at(&[]),
                format!(
                    "upstream {name:?}: the name is taken by the default upstream (--base-url); \
                     choose another"
                ),
            ));
        }
        let url = url::Url::parse(self.base_url.trim()).map_err(|e| {
            (
                at(&["base_url"]),
                format!(
                    "upstream {name}: {:?} is not a URL: {e}",
                    crate::core::urls::without_password(&self.base_url)
                ),
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((
                at(&["base_url"]),
                format!("upstream {name}: the base URL must be http or https"),
            ));
        }
        for (header, value) in &self.headers {
            check_header(header, value).map_err(|e| {
                (
                    at(&["headers", header]),
                    format!("upstream {name}: header {header:?}: {e}"),
                )
            })?;
        }
        for (key, v) in [
            ("rpm", self.rpm.map(u64::from)),
            ("tpm", self.tpm),
            ("concurrency", self.concurrency.map(u64::from)),
        ] {
            if v == Some(0) {
                return Err((at(&[key]), format!("upstream {name}: at least 1")));
            }
        }
        if let Some(t) = &self.timeout {
            let d = crate::core::duration::parse(t)
                .map_err(|e| (at(&["timeout"]), format!("upstream {name}: {e}")))?;
            if d < Duration::from_millis(100) {
                return Err((at(&["timeout"]), format!("upstream {name}: at least 100ms")));
            }
        }
        for (model, m) in &self.models {
            if model.trim().is_empty() {
                return Err((
                    at(&["models", model]),
                    format!("upstream {name}: a model's name is empty"),
                ));
            }
            for (key, p) in [
                ("prompt_price", m.prompt_price),
                ("completion_price", m.completion_price),
            ] {
                if p.is_some_and(|p| !p.is_finite() || p < 0.0) {
                    return Err((
                        at(&["models", model, key]),
                        format!("upstream {name}: a price is a number of USD of 0 or more"),
                    ));
                }
            }
            if m.context_length == Some(0) {
                return Err((
                    at(&["models", model, "context_length"]),
                    format!("upstream {name}: a context window is at least 1 token"),
                ));
            }
        }
        Ok(())
    }

    /// Its time limit, when it has its own.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
            .as_deref()
            .and_then(|t| crate::core::duration::parse(t).ok())
    }
}

/// Headers llmroute sets itself on each request: the message's framing and
/// its connection's, the host of `base_url`, and the key of `api_key_env`.
const OWN_HEADERS: [&str; 12] = [
    "authorization",
    "connection",
    "content-length",
    "content-type",
    "host",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Checks a header of `[upstreams.NAME] headers`: a valid name and value,
/// and none of those llmroute sets itself ([`OWN_HEADERS`]), which would
/// break every request to it or send a key past `api_key_env`.
fn check_header(name: &str, value: &str) -> Result<(), String> {
    // As written: a name is not made one by dropping what is wrong with it.
    let header = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| "not a header name".to_string())?;
    reqwest::header::HeaderValue::from_str(value.trim())
        .map_err(|_| "its value holds characters a header may not".to_string())?;
    if OWN_HEADERS.contains(&header.as_str()) {
        return Err(match header.as_str() {
            "authorization" => "llmroute sends the key of api_key_env; set that instead".into(),
            _ => "llmroute sets it itself for each request".into(),
        });
    }
    Ok(())
}

/// `NAME:model` when NAME is an upstream (`is_upstream`): the name and the
/// model id on it. A model id whose part before `:` holds a `/`
/// (`meta/llama:free`) is a plain id.
pub fn split(candidate: &str, is_upstream: impl Fn(&str) -> bool) -> Option<(&str, &str)> {
    let (name, model) = candidate.split_once(':')?;
    (!name.contains('/') && !model.is_empty() && is_upstream(name)).then_some((name, model))
}

/// Why `candidate` looks like a misspelt upstream's: `NAME:model` where
/// NAME (no `/` in it) is no configured upstream while some are (`names`),
/// and the default API's catalogue does not list it (`listed`). Sent as it
/// is, it would go to the default API, with its key: a prompt meant for a
/// local server would reach another. None for anything else, an Ollama
/// tag such as `llama3:8b` on a default API that lists it included.
pub fn misspelt(
    candidate: &str,
    names: &[String],
    listed: impl Fn(&str) -> bool,
) -> Option<String> {
    let (name, model) = candidate.split_once(':')?;
    let looks_named = !name.is_empty() && !name.contains('/') && !model.is_empty();
    if names.is_empty() || !looks_named || names.iter().any(|n| n == name) || listed(candidate) {
        return None;
    }
    Some(format!(
        "{candidate}: no upstream is named {name:?} (the config names {}), and the default API does not list it",
        names.join(", ")
    ))
}

/// [`misspelt`], against the default API's `catalogue`, when it is the
/// API's own (fetched, or kept in the store): with the built-in snapshot
/// only (a dry run on a fresh store), what it does not list may still be
/// the API's, so nothing is called misspelt.
pub fn misspelt_in(candidate: &str, names: &[String], catalogue: &Catalogue) -> Option<String> {
    // `NAME:` names no model, on any upstream.
    if let Some(name) = candidate
        .strip_suffix(':')
        .filter(|n| !names.is_empty() && !n.contains('/'))
    {
        return Some(format!(
            "{candidate} names no model after its ':' (a model of upstream {name} is {name}:MODEL)"
        ));
    }
    if catalogue.origin == Origin::Embedded {
        return None;
    }
    misspelt(candidate, names, |c| catalogue.get(c).is_some())
}

/// The upstream a candidate is on, by name: `NAME`, or `default`.
pub fn label(candidate: &str, names: &[String]) -> String {
    split(candidate, |n| names.iter().any(|u| u == n))
        .map_or(DEFAULT_NAME, |(n, _)| n)
        .to_string()
}

/// A named upstream's models as candidates: its catalogue's (ids given
/// its name as a prefix), with the prices and windows its table sets.
pub fn candidates(name: &str, listed: &[ModelInfo], config: &UpstreamConfig) -> Vec<ModelInfo> {
    let mut out: Vec<ModelInfo> = listed
        .iter()
        .map(|m| ModelInfo {
            id: format!("{name}:{}", m.id),
            ..m.clone()
        })
        .collect();
    for (model, set) in &config.models {
        let id = format!("{name}:{model}");
        let i = match out.iter().position(|m| m.id == id) {
            Some(i) => i,
            None => {
                out.push(ModelInfo {
                    id,
                    ..ModelInfo::default()
                });
                out.len() - 1
            }
        };
        let m = &mut out[i];
        m.prompt_price = set.prompt_price.or(m.prompt_price);
        m.completion_price = set.completion_price.or(m.completion_price);
        m.context_length = set.context_length.or(m.context_length);
    }
    out
}

/// The default upstream and the named ones, as one engine upstream: a
/// request goes where its candidate is.
pub struct Upstreams {
    pub default: Client,
    /// By name: its client and its own time limit.
    pub named: Vec<(String, Named)>,
}

/// A named upstream's client, with its own time limit and limits.
pub struct Named {
    /// Its name in the config, as its candidates' ids carry it.
    pub name: String,
    pub client: Client,
    pub timeout: Option<Duration>,
    /// Its requests a minute (GCRA), when limited.
    rpm: Option<std::sync::Mutex<crate::core::minute::LastMinute>>,
    /// Its requests at once, when limited.
    at_once: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    /// Slots taken in turn by requests that waited for one ([`Upstream::turn`]),
    /// for their next attempt, by the task that waited.
    kept: std::sync::Mutex<Vec<Kept>>,
    /// Its tokens this minute, when limited.
    tokens: Option<std::sync::Arc<std::sync::Mutex<TokensAMinute>>>,
    /// Unix ms until which its requests a minute are used up, as its last
    /// refusal found.
    rpm_until_ms: std::sync::atomic::AtomicI64,
}

/// How long a candidate whose upstream is at its limit is left alone. A
/// request with nothing else to try asks again after it: a slot freed
/// meanwhile is idle until then, so it is short (a request held back is
/// never sent, and asking again costs no more than a look at the limits).
const AT_LIMIT: Duration = Duration::from_millis(50);

/// How long a candidate whose upstream has no slot free is left alone: a
/// request with nothing else to try waits its turn for one, which comes
/// sooner.
const SLOT_WAIT: Duration = Duration::from_secs(5);

impl Named {
    pub fn new(name: &str, client: Client, config: &UpstreamConfig) -> Named {
        let per_minute = config
            .rpm
            .map(|n| std::sync::Mutex::new(crate::core::minute::LastMinute::new(n)));
        Named {
            name: name.to_string(),
            client,
            timeout: config.timeout(),
            rpm: per_minute,
            rpm_until_ms: std::sync::atomic::AtomicI64::new(0),
            at_once: config
                .concurrency
                .map(|n| std::sync::Arc::new(tokio::sync::Semaphore::new(n as usize))),
            kept: std::sync::Mutex::new(Vec::new()),
            tokens: config
                .tpm
                .map(|n| std::sync::Arc::new(std::sync::Mutex::new(TokensAMinute::new(n)))),
        }
    }

    /// A slot on it now, or the failure that sends the request elsewhere:
    /// it is at its limit: not sent, the request tries elsewhere or waits.
    fn admit(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Failure> {
        let limited = |what: &str| Failure {
            kind: FailureKind::AtLimit,
            status: None,
            message: format!("the upstream is at its {what}"),
            retry_after: Some(AT_LIMIT),
        };
        // The slot first: a request held back by it spends none of the
        // minute's requests. One kept for a request that waited its turn
        // goes first.
        let slot = match &self.at_once {
            None => None,
            Some(s) => {
                let mut kept = self.kept();
                match kept_here(&mut kept) {
                    Some(i) => Some(kept.swap_remove(i).slot),
                    None => Some(
                        s.clone()
                            .try_acquire_owned()
                            .map_err(|_| limited("requests at once"))?,
                    ),
                }
            }
        };
        if let Some(wait) = self.out_of_tokens() {
            return Err(Failure {
                retry_after: Some(wait),
                ..limited("tokens a minute")
            });
        }
        let now = crate::engine::now_ms();
        if let Some(wait_ms) = self
            .rpm
            .as_ref()
            .and_then(|l| l.lock().unwrap_or_else(|p| p.into_inner()).take(now).err())
        {
            let wait = Duration::from_millis(wait_ms);
            let until = now + wait_ms as i64;
            self.rpm_until_ms
                .fetch_max(until, std::sync::atomic::Ordering::Relaxed);
            return Err(Failure {
                retry_after: Some(wait),
                ..limited("requests a minute")
            });
        }
        Ok(slot)
    }

    /// A failure as this upstream's: its 401 refuses its own key, which
    /// stops nothing else (the default API's stops the run).
    fn refused(&self, f: Failure) -> Failure {
        match f.kind {
            FailureKind::Auth => Failure {
                kind: FailureKind::UpstreamAuth,
                message: format!("upstream {} refused its key: {}", self.name, f.message),
                ..f
            },
            _ => f,
        }
    }

    /// Until when its requests a minute are used up, as far as its last
    /// refusal found.
    fn out_of_requests(&self) -> Option<Duration> {
        let until = self.rpm_until_ms.load(std::sync::atomic::Ordering::Relaxed);
        let left = until - crate::engine::now_ms();
        (left > 0).then(|| Duration::from_millis(left as u64))
    }

    /// The slots kept for requests whose turn came.
    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long its tokens or requests a minute hold a request back.
    fn held_by_rates(&self) -> Option<Duration> {
        self.out_of_tokens().or_else(|| self.out_of_requests())
    }

    /// Until the minute ends, when its tokens a minute are used up.
    fn out_of_tokens(&self) -> Option<Duration> {
        let t = self.tokens.as_ref()?;
        let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
        let now = crate::engine::now_ms();
        (!t.open(now)).then(|| Duration::from_millis(60_000 - now.rem_euclid(60_000) as u64))
    }
}

impl Upstream for Named {
    fn complete(
        &self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Success, Failure>> {
        Box::pin(async move {
            let _slot = self.admit()?;
            let answer = self
                .client
                .complete(body, self.timeout.unwrap_or(timeout))
                .await
                .map_err(|f| self.refused(f));
            if let (Some(t), Ok(s)) = (&self.tokens, &answer) {
                let mut t = t.lock().unwrap_or_else(|p| p.into_inner());
                t.add(crate::engine::now_ms(), tokens_of(&s.usage));
            }
            answer
        })
    }

    fn open(&self, body: Vec<u8>, timeout: Duration) -> BoxFuture<'_, Result<Opened, Failure>> {
        Box::pin(async move {
            let slot = self.admit()?;
            let mut opened = self
                .client
                .open(body, self.timeout.unwrap_or(timeout))
                .await
                .map_err(|f| self.refused(f))?;
            // The tokens a stream used are counted at its end.
            if let Some(t) = self.tokens.clone() {
                let events =
                    std::mem::replace(&mut opened.events, Box::pin(futures_util::stream::empty()));
                opened.events = Box::pin(counted(events, t));
            }
            // The slot is held until the stream ends.
            if let Some(slot) = slot {
                let events =
                    std::mem::replace(&mut opened.events, Box::pin(futures_util::stream::empty()));
                opened.events = Box::pin(futures_util::StreamExt::map(events, move |e| {
                    let _ = &slot;
                    e
                }));
            }
            Ok(opened)
        })
    }

    fn held_back(&self, _candidate: &str) -> Option<Duration> {
        // No slot free, and none kept for this request: those who wait for
        // one take it in turn (`turn`), which wakes them before this. (The
        // slots kept, and those let go after being kept too long, are
        // looked at only when none seems free.)
        if let Some(slots) = self.at_once.as_ref().filter(|s| s.available_permits() == 0) {
            let mine = kept_here(&mut self.kept()).is_some();
            if !mine && slots.available_permits() == 0 {
                return Some(SLOT_WAIT);
            }
        }
        self.held_by_rates()
    }

    fn turn(&self, _candidate: &str) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let (Some(slots), None) = (&self.at_once, self.held_by_rates()) else {
                return std::future::pending().await;
            };
            if kept_here(&mut self.kept()).is_some() {
                return;
            }
            // Fair: a slot let go goes to the longest waiting.
            match slots.clone().acquire_owned().await {
                Ok(slot) => self.kept().push(Kept {
                    task: tokio::task::try_id(),
                    at: std::time::Instant::now(),
                    slot,
                }),
                Err(_) => std::future::pending().await,
            }
        })
    }
}

impl Upstreams {
    /// The named upstream `candidate` is on, and its model id there; none
    /// for a candidate of the default upstream.
    fn on_named<'s, 'c>(&'s self, candidate: &'c str) -> Option<(&'s Named, &'c str)> {
        let (name, model) = split(candidate, |n| self.named.iter().any(|(k, _)| k == n))?;
        let (_, named) = self.named.iter().find(|(k, _)| k == name)?;
        Some((named, model))
    }
}

impl Upstream for Upstreams {
    fn complete(
        &self,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Success, Failure>> {
        Box::pin(self.default.complete(body, timeout))
    }

    fn open(&self, body: Vec<u8>, timeout: Duration) -> BoxFuture<'_, Result<Opened, Failure>> {
        Box::pin(self.default.open(body, timeout))
    }

    fn route_to<'a>(&'a self, candidate: &'a str) -> Option<(&'a dyn Upstream, &'a str)> {
        let (named, model) = self.on_named(candidate)?;
        Some((named as &dyn Upstream, model))
    }

    fn held_back(&self, candidate: &str) -> Option<Duration> {
        let (named, model) = self.route_to(candidate)?;
        named.held_back(model)
    }

    fn turn(&self, candidate: &str) -> BoxFuture<'_, ()> {
        match self.on_named(candidate) {
            Some((named, _)) => named.turn(""),
            None => Box::pin(std::future::pending()),
        }
    }

    /// Every upstream's key taken out: an answer of one may repeat any.
    fn scrub(&self, text: &str) -> Option<String> {
        let clients =
            std::iter::once(&self.default).chain(self.named.iter().map(|(_, n)| &n.client));
        clients.fold(None, |out: Option<String>, c| {
            c.scrub(out.as_deref().unwrap_or(text)).or(out)
        })
    }
}

/// Every key and base URL credential this process can see: the default
/// API's (`key`, at `base_url`) and each named upstream's whose variable
/// is set. What calls no upstream keeps keys out of what it keeps and
/// shows with it.
pub fn all_secrets(
    (base_url, key): (&str, Option<&str>),
    named: &BTreeMap<String, UpstreamConfig>,
) -> crate::upstream::Secrets {
    let one = |url: &str, key: Option<&str>| {
        url::Url::parse(url)
            .map(|u| crate::upstream::Secrets::new(key, &u))
            .unwrap_or_default()
    };
    named.iter().fold(one(base_url, key), |all, (name, u)| {
        all.with(&one(&u.base_url, u.key(name).ok().flatten().as_deref()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_window_of_0_is_refused() {
        let table = UpstreamConfig {
            base_url: "http://127.0.0.1:8000/v1".into(),
            models: [(
                "llama3".to_string(),
                ModelConfig {
                    context_length: Some(0),
                    ..ModelConfig::default()
                },
            )]
            .into(),
            ..UpstreamConfig::default()
        };
        let (at, why) = table.check("local").unwrap_err();
        assert_eq!(at, ["models", "llama3", "context_length"]);
        assert!(why.contains("at least 1 token"), "{why}");
    }

    #[test]
    fn headers_llmroute_sets_itself_are_refused() {
        let with = |name: &str, value: &str| UpstreamConfig {
            base_url: "http://127.0.0.1:8000/v1".into(),
            headers: [(name.to_string(), value.to_string())].into(),
            ..UpstreamConfig::default()
        };
        assert!(with("X-Team", "search").check("local").is_ok());
        for (name, value, why) in [
            ("Content-Length", "3", "sets it itself"),
            ("Host", "evil.example", "sets it itself"),
            ("authorization", "Bearer x", "api_key_env"),
            ("bad header", "x", "not a header name"),
            // Not made a header by dropping what is wrong with it.
            ("X-Bad\n", "x", "not a header name"),
            (" X-Team", "x", "not a header name"),
            ("X-Team", "a\nb", "may not"),
        ] {
            let (path, e) = with(name, value).check("local").unwrap_err();
            assert_eq!(path, ["headers", name], "{e}");
            assert!(e.contains(why), "{name}: {e}");
        }
    }

    #[test]
    fn tokens_a_minute_close_once_used_and_open_with_the_next_minute() {
        let mut t = TokensAMinute::new(100);
        let t0 = 120_000;
        assert!(t.open(t0));
        t.add(t0 + 10, 60);
        assert!(t.open(t0 + 20), "40 left");
        t.add(t0 + 30, 60);
        assert!(!t.open(t0 + 59_999), "120 used of 100");
        assert!(t.open(t0 + 60_000), "a new minute");
        t.add(t0 + 60_001, 100);
        assert!(!t.open(t0 + 60_002));
    }

    #[test]
    fn a_misspelt_upstream_is_told_from_a_model_id_with_a_colon() {
        let names = vec!["local".to_string()];
        let listed = |m: &str| m == "llama3:8b";
        assert!(misspelt("lcoal:llama3", &names, listed)
            .unwrap()
            .contains("\"lcoal\""));
        assert_eq!(misspelt("local:llama3", &names, listed), None);
        assert_eq!(misspelt("llama3:8b", &names, listed), None, "listed");
        assert_eq!(misspelt("meta/llama:free", &names, listed), None);
        assert_eq!(misspelt("openai/gpt-5.4", &names, listed), None);
        assert_eq!(misspelt("lcoal:llama3", &[], listed), None, "none named");
        assert_eq!(
            misspelt_in("lcoal:llama3", &names, &Catalogue::embedded()),
            None,
            "the API's own catalogue unknown"
        );
    }

    #[test]
    fn candidates_name_their_upstream_and_plain_ids_stay_plain() {
        let known = |n: &str| n == "local";
        assert_eq!(split("local:llama3", known), Some(("local", "llama3")));
        assert_eq!(
            split("local:org/m:free", known),
            Some(("local", "org/m:free"))
        );
        assert_eq!(split("meta/llama:free", known), None);
        assert_eq!(split("other:x", known), None);
        assert_eq!(split("local:", known), None);
        assert_eq!(split("openai/gpt-5.4", known), None);
    }

    #[test]
    fn a_table_prices_what_the_server_lists_and_adds_what_it_does_not() {
        let listed = vec![ModelInfo {
            id: "llama3".into(),
            ..ModelInfo::default()
        }];
        let mut config = UpstreamConfig {
            base_url: "http://127.0.0.1:8000/v1".into(),
            ..UpstreamConfig::default()
        };
        config.models.insert(
            "llama3".into(),
            ModelConfig {
                prompt_price: Some(0.0),
                completion_price: Some(0.0),
                context_length: Some(8192),
            },
        );
        config.models.insert("qwen".into(), ModelConfig::default());
        let c = candidates("local", &listed, &config);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].id, "local:llama3");
        assert_eq!(
            (c[0].prompt_price, c[0].context_length),
            (Some(0.0), Some(8192))
        );
        assert_eq!(c[1].id, "local:qwen");
    }

    #[test]
    fn a_bad_table_says_which_key() {
        let bad_url = UpstreamConfig {
            base_url: "not a url".into(),
            ..UpstreamConfig::default()
        };
        assert_eq!(bad_url.check("local").unwrap_err().0, ["base_url"]);
        let no_key = UpstreamConfig {
            base_url: "http://x/v1".into(),
            api_key_env: Some("LLMROUTE_TEST_SURELY_UNSET_1234".into()),
            ..UpstreamConfig::default()
        };
        // Only what calls it needs its key.
        assert!(no_key.check("p").is_ok());
        let e = no_key.key("p").unwrap_err();
        assert!(e.contains("LLMROUTE_TEST_SURELY_UNSET_1234"), "{e}");
        assert_eq!(UpstreamConfig::default().key("p"), Ok(None));
        assert!(UpstreamConfig::default().check("a b").is_err());
    }

    #[test]
    fn the_default_upstreams_name_is_taken() {
        let table = UpstreamConfig {
            base_url: "http://x/v1".into(),
            ..UpstreamConfig::default()
        };
        assert!(table.check("local").is_ok());
        let (at, why) = table.check("default").unwrap_err();
        assert!(at.is_empty());
        assert!(why.contains("--base-url"), "{why}");
    }

    #[test]
    fn a_request_held_back_at_the_door_spends_none_of_the_minute_s_requests() {
        let config = UpstreamConfig {
            base_url: "http://127.0.0.1:9/v1".into(),
            rpm: Some(2),
            concurrency: Some(1),
            ..UpstreamConfig::default()
        };
        let client = Client::new(&config.base_url, None, 1).unwrap();
        let named = Named::new("local", client, &config);
        assert_eq!(named.held_back("m"), None);
        let slot = named.admit().unwrap();
        assert_eq!(
            named.held_back("m"),
            Some(SLOT_WAIT),
            "its one slot is taken"
        );
        for _ in 0..5 {
            let f = named.admit().unwrap_err();
            assert_eq!(f.kind, FailureKind::AtLimit);
            assert!(f.message.contains("at once"), "{}", f.message);
        }
        drop(slot);
        assert_eq!(named.held_back("m"), None);
        // The minute's second request is still there.
        assert!(named.admit().is_ok());
        let f = named.admit().unwrap_err();
        assert!(f.message.contains("a minute"), "{}", f.message);
        // Until the first is 60 s old (no 60 s hold more than 2), a request
        // is held back before it takes anything else.
        let wait = f.retry_after.unwrap();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        let held = named.held_back("m").unwrap();
        assert!(held > Duration::from_secs(50) && held <= wait, "{held:?}");
    }
}
