//! What the batch run and the commands share, below the entry point: the
//! API key, the catalogue to route with, store errors, writing to stdout,
//! and exit statuses. It
//! never imports the entry point ([`crate::app`]) or a front end.

use std::time::Duration;

use anyhow::anyhow;

use crate::core::catalogue::{self, Catalogue, Origin};
use crate::store::{self, Store};
use crate::upstream::Client;

/// Exit statuses.
pub mod exit {
    pub const OK: i32 = 0;
    pub const LINE_ERRORS: i32 = 1;
    pub const FATAL: i32 = 2;
}

/// Most rows of each metrics table one run prunes.
pub const PRUNE_BATCH: usize = 50_000;

/// The environment variables that may hold the API key; the first one set
/// (and not blank) wins, so that another server's key need not be called
/// `OPENROUTER_API_KEY`.
pub const API_KEY_VARS: [&str; 2] = ["LLMROUTE_API_KEY", "OPENROUTER_API_KEY"];

/// The API key, trimmed, and the variable it came from.
pub fn api_key() -> Option<(&'static str, String)> {
    API_KEY_VARS.iter().find_map(|var| {
        let key = std::env::var(var).ok()?.trim().to_string();
        (!key.is_empty()).then_some((*var, key))
    })
}

/// What a run without a key is told.
pub fn no_api_key() -> String {
    format!(
        "no API key: set {} or {} (use --dry-run to route without calling)",
        API_KEY_VARS[0], API_KEY_VARS[1]
    )
}

/// `text` without the API key of either variable, in any case: for an
/// error that quotes what was typed (a flag's value, a setting).
pub fn hide_keys(text: String) -> String {
    let Ok(url) = url::Url::parse("http://localhost/") else {
        return text;
    };
    let keys = API_KEY_VARS
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .fold(crate::upstream::Secrets::default(), |all, k| {
            all.with(&crate::upstream::Secrets::new(Some(&k), &url))
        });
    keys.scrub_shown(&text).unwrap_or(text)
}

/// Replaces Rust's panic message with one that says it is a bug, and never
/// shows an API key (from either variable), whatever the message holds.
pub fn install_panic_hook() {
    let keys: Vec<String> = API_KEY_VARS
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    std::panic::set_hook(Box::new(move |info| {
        let mut text = info.to_string();
        for k in &keys {
            text = text.replace(k.as_str(), "[redacted]");
        }
        eprintln!(
            "llmroute: internal error: {text}\nllmroute: this is a bug; please report it at {}/issues",
            env!("CARGO_PKG_HOMEPAGE")
        );
    }));
}

/// In debug builds only: whether the environment variable `var` names line
/// `line_no`, where a test wants a bug injected (see the fail points of the
/// reader and the pipeline).
#[cfg(debug_assertions)]
pub(crate) fn fail_point_hit(var: &str, line_no: u64) -> bool {
    std::env::var(var).ok().and_then(|v| v.parse().ok()) == Some(line_no)
}

/// Opens the store of a command beside a run, which never creates one: a
/// missing store is a fatal error naming its path (a typo in `--db` must not
/// look like an empty store).
pub fn open_existing(path: &std::path::Path) -> anyhow::Result<Store> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(anyhow!(
            "no store at {} (a run creates it; check --db, LLMROUTE_DB or the config file's db)",
            path.display()
        )),
        _ => Ok(Store::open(path)?),
    }
}

/// [`open_existing`] for a command that only reads (`report`, `cache
/// stats`, `models`): a store it may not write (a read-only directory or
/// file, another user's) is opened read-only, when it needs no migration.
pub fn open_to_read(path: &std::path::Path) -> anyhow::Result<Store> {
    match open_existing(path) {
        Ok(s) => Ok(s),
        Err(e) => match Store::open_read_only(path) {
            Ok(s) => Ok(s),
            Err(store::StoreError::Open { .. }) | Err(store::StoreError::Sql(_)) => Err(e),
            Err(too_new_or_old) => Err(too_new_or_old.into()),
        },
    }
}

/// Turns a store failure into a fatal error that names the store.
pub fn store_fatal(path: &std::path::Path) -> impl Fn(store::StoreError) -> anyhow::Error + '_ {
    move |e| match e {
        store::StoreError::Sql(e) => anyhow!(
            "cannot use the store at {}: {}",
            path.display(),
            store::describe(&e)
        ),
        other => anyhow::Error::new(other),
    }
}

/// Writes a subcommand's output; a reader that stopped early (`| head`) is not an error.
pub fn write_stdout(bytes: &[u8]) -> anyhow::Result<i32> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(exit::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// A warning of the set-up: through the log when a server set one up (so
/// that `--log-format json` keeps every line JSON), else on stderr.
pub fn warn(message: std::fmt::Arguments<'_>) {
    match tracing::dispatcher::has_been_set() {
        true => tracing::warn!("{message}"),
        false => eprintln!("llmroute: warning: {message}"),
    }
}

/// A note of the set-up, as [`warn`] but not a warning.
pub fn note(message: std::fmt::Arguments<'_>) {
    match tracing::dispatcher::has_been_set() {
        true => tracing::info!("{message}"),
        false => eprintln!("llmroute: note: {message}"),
    }
}

/// Says, once, that the cost weight cannot act when the catalogue gives a
/// price for none of the candidates (an API whose `/models` lists ids only,
/// as LiteLLM's proxy does): every candidate then costs the same.
pub fn warn_no_prices(settings: &crate::core::ranking::Settings, catalogue: &Catalogue) {
    if let Some(w) = no_prices(settings, catalogue) {
        warn(format_args!(
            "{}",
            w.trim_start_matches("llmroute: warning: ")
        ));
    }
}

/// The warning of a cost weight that cannot act: no candidate has a price.
pub fn no_prices(
    settings: &crate::core::ranking::Settings,
    catalogue: &Catalogue,
) -> Option<String> {
    let priced = |m: &String| {
        catalogue
            .get(m)
            .is_some_and(|i| i.prompt_price.is_some() && i.completion_price.is_some())
    };
    (settings.weights.cost > 0.0 && !settings.models.iter().any(priced)).then(|| {
        format!(
            "llmroute: warning: the catalogue gives no price for any candidate, so the cost weight ({}) cannot act; costs are unknown unless answers carry usage.cost",
            settings.weights.cost
        )
    })
}

/// One warning for every candidate the catalogue does not list, or none.
pub fn unknown_candidates(
    settings: &crate::core::ranking::Settings,
    catalogue: &Catalogue,
) -> Option<String> {
    let mut unknown: Vec<&str> = Vec::new();
    for m in settings.models.iter().chain(settings.fallback.iter()) {
        if catalogue.get(m).is_none() && !unknown.contains(&m.as_str()) {
            unknown.push(m);
        }
    }
    let (n, shown) = match unknown.len() {
        0 => return None,
        n if n <= 4 => (n, unknown.join(", ")),
        n => (
            n,
            format!("{}, and {} more", unknown[..3].join(", "), n - 3),
        ),
    };
    let which = match n {
        1 => "1 candidate is".to_string(),
        n => format!("{n} candidates are"),
    };
    // Not fetched (a dry run on a new store, an API that could not be
    // reached): the candidates may well be the API's.
    if catalogue.origin == crate::core::catalogue::Origin::Embedded {
        return Some(format!(
            "llmroute: warning: {which} not in the built-in catalogue of {} ({shown}), \
             as the API's was not fetched (a dry run fetches nothing): prices and context \
             windows unknown; a run, or `llmroute models --refresh` on its store, fetches the API's",
            catalogue::EMBEDDED_DATE
        ));
    }
    Some(format!(
        "llmroute: warning: {which} not in the model catalogue ({shown}): prices and context windows unknown; \
         choose candidates the API serves with --models (llmroute models --all lists them)"
    ))
}

/// A plain-http base URL to another host would carry the key in clear.
pub fn warn_plain_http(base: &str, quiet: bool) {
    let Ok(url) = reqwest::Url::parse(base) else {
        return;
    };
    if url.scheme() != "http" || quiet {
        return;
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !loopback {
        warn(format_args!(
            "{} is plain http: the API key would travel unencrypted",
            crate::core::urls::without_password(base)
        ));
    }
}

/// How long a failed fetch of the catalogue is remembered: runs and
/// commands in that time use what they have without asking again (and
/// waiting again, offline).
pub const FAILED_FETCH_MEMORY: Duration = Duration::from_secs(5 * 60);

/// Where the store remembers a failed fetch of `base`'s catalogue: a row
/// of the catalogue table whose key no base URL can have, holding why.
fn failure_key(base: &str) -> String {
    format!("failed-fetch:{}", crate::upstream::identity(base))
}

/// How long a fetch of the catalogue may take.
const CATALOGUE_TIMEOUT: Duration = Duration::from_secs(20);

/// Fetches the catalogue now and keeps it in the store; a failure is
/// remembered for [`FAILED_FETCH_MEMORY`].
fn fetch_catalogue(
    store: &Store,
    client: &Client,
    base: &str,
    rt: &tokio::runtime::Runtime,
    quiet: bool,
) -> Result<Catalogue, String> {
    let now = store::now_ms();
    // A server says so before it listens: an API that does not answer
    // holds it up to the fetch's timeout.
    tracing::info!(
        "fetching the model catalogue from {}/models (for up to {}s)",
        crate::core::urls::without_password(base),
        CATALOGUE_TIMEOUT.as_secs()
    );
    let fetched = rt
        .block_on(client.fetch_models(CATALOGUE_TIMEOUT))
        .and_then(|bytes| Catalogue::parse(&bytes, Origin::Live).map_err(|e| e.to_string()))
        // Why, kept in the store and shown, never holds the URL's password.
        .map_err(|problem| crate::core::urls::scrubbed(&problem, base));
    // A success needs no clearing: the fresh copy is found before the
    // failure, which is forgotten long before the copy goes stale.
    let kept = match &fetched {
        Ok(c) => store.put_catalogue(&crate::upstream::identity(base), now, &c.to_json()),
        Err(problem) => store.put_catalogue(&failure_key(base), now, problem),
    };
    if let (Err(e), false) = (kept, quiet) {
        warn(format_args!("cannot keep the catalogue in the store: {e}"));
    }
    fetched
}

/// The catalogue fetched again now (`models --refresh`): an error, saying
/// why, when it cannot be.
pub fn refresh_catalogue(
    store: &Store,
    client: &Client,
    base: &str,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Catalogue> {
    fetch_catalogue(store, client, base, rt, false).map_err(|e| {
        let base = crate::core::urls::without_password(base);
        anyhow!("cannot refresh the catalogue from {base}/models: {e}")
    })
}

/// Why the last fetch of `base`'s catalogue failed, when it did within
/// [`FAILED_FETCH_MEMORY`]. A key the API refused is not remembered: it is
/// the key's failure, not the API's, the next run may bring another key,
/// and a run with the same one learns so again before it sends a line.
fn recent_failure(store: &Store, base: &str, now: i64) -> Option<String> {
    let (at, problem) = last_fetch_failure(store, base)?;
    if problem.starts_with(REFUSED_KEY) {
        return None;
    }
    let age = Duration::from_millis(u64::try_from(now.saturating_sub(at)).ok()?);
    (at > 0 && age < FAILED_FETCH_MEMORY).then(|| {
        let age = crate::core::duration::human(age);
        format!("not fetched: the last fetch, {age} ago, failed: {problem}")
    })
}

/// How a fetch whose key the API refused fails.
pub const REFUSED_KEY: &str = "HTTP 401";

/// Why the last fetch of `base`'s catalogue failed, and when (unix ms).
pub fn last_fetch_failure(store: &Store, base: &str) -> Option<(i64, String)> {
    store.catalogue(&failure_key(base)).ok().flatten()
}

/// The catalogue to route with: the store's copy while fresh; else a new
/// fetch (kept in the store), unless one failed in the last few minutes;
/// else the stale copy, else the embedded snapshot, with a warning.
/// Without a client (dry runs) nothing is fetched; with `refresh` the
/// stored copy is refetched however fresh.
pub fn load_catalogue(
    store: &Store,
    client: Option<&Client>,
    base: &str,
    rt: &tokio::runtime::Runtime,
    quiet: bool,
    refresh: bool,
) -> Catalogue {
    let now = store::now_ms();
    let stored = store
        .catalogue(&crate::upstream::identity(base))
        .ok()
        .flatten()
        .and_then(|(at, body)| {
            let age = Duration::from_millis(now.saturating_sub(at).max(0) as u64);
            Catalogue::parse(body.as_bytes(), Origin::Stored { age }).ok()
        });
    let fresh =
        |c: &Catalogue| matches!(c.origin, Origin::Stored { age } if age < catalogue::MAX_AGE);
    if let Some(c) = stored.as_ref().filter(|c| fresh(c) && !refresh) {
        return c.clone();
    }
    let Some(client) = client else {
        return stored.unwrap_or_else(Catalogue::embedded);
    };
    let remembered = (!refresh)
        .then(|| recent_failure(store, base, now))
        .flatten();
    let problem = match remembered {
        Some(problem) => problem,
        None => match fetch_catalogue(store, client, base, rt, quiet) {
            Ok(c) => return c,
            Err(problem) => problem,
        },
    };
    // Nor does the URL shown. A refused key is no catalogue problem: the
    // caller says the key is refused, and nothing is sent meanwhile.
    let base = &crate::core::urls::without_password(base);
    let quiet = quiet || problem.starts_with(REFUSED_KEY);
    match stored {
        Some(c) => {
            if !quiet {
                let age = match c.origin {
                    Origin::Stored { age } => crate::core::duration::human(age),
                    _ => String::new(),
                };
                warn(format_args!("cannot fetch {base}/models ({problem}); using the stored catalogue from {age} ago"));
            }
            c
        }
        None => {
            if !quiet {
                warn(format_args!(
                    "cannot fetch {base}/models ({problem}); using the built-in catalogue of {}",
                    catalogue::EMBEDDED_DATE
                ));
            }
            Catalogue::embedded()
        }
    }
}
