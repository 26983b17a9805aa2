//! The engine wired to this machine, the same way for every front end: the
//! HTTP client to the upstream, the SQLite store as cache and recorder,
//! live health shared through the store, and the rate limits and budget.
//! A front end brings its own observer and says what it needs.

use std::sync::Arc;

use anyhow::anyhow;

use crate::core::catalogue::Catalogue;
use crate::engine::admission::{Budget, Limits, RateLimits};
use crate::engine::health::LocalHealth;
use crate::engine::ports::{Admission, Cache, Health, Observer, Recorder};
use crate::engine::{self, Parts, Router};
use crate::options::{Options, RedisOptions};
use crate::setup;
use crate::shared::cache::SharedCache;
use crate::shared::health::SharedHealth;
use crate::shared::limits::SharedLimits;
use crate::shared::Link;
use crate::store::ports::{HealthReader, LeasedCache};
use crate::store::writer::{Writer, WriterHandle};
use crate::store::{self, Store};
use crate::upstream::Client;

/// What a front end asks of the wiring.
pub struct Wants {
    /// Choose but call nothing (no API key needed).
    pub dry_run: bool,
    /// Keep each request's ranking.
    pub explain: bool,
    /// Read and write the response cache.
    pub use_cache: bool,
    /// No warnings on stderr.
    pub quiet: bool,
    /// What the run's rows name as its priority, and its id.
    pub run_id: String,
    /// HTTP connections kept to the upstream.
    pub pool: usize,
    /// See [`engine::Config::retry_refused`].
    pub retry_refused: Option<std::time::Duration>,
    /// How long the store's writer lets records gather before it commits
    /// them (see [`Writer::spawn_lingering`]); zero for a front end that
    /// waits for each record.
    pub linger: std::time::Duration,
    /// See [`engine::Config::track_cache_use`].
    pub track_cache_use: bool,
}

/// The engine and what must outlive it.
pub struct Wired {
    pub router: Arc<Router>,
    /// The store's writer: finish it after the last request to flush.
    pub writer: Writer,
    /// Reads other processes' health from the store until dropped.
    pub health_reader: HealthReader,
    /// Reads what other processes' feedback taught the store, until
    /// dropped; none with Redis, whose posteriors every machine shares.
    pub quality_reader: Option<HealthReader>,
    /// The store's path, for the front end's own reads.
    pub store_path: std::path::PathBuf,
    /// Redis, when state is shared through it.
    pub redis: Option<Arc<Link>>,
    /// Warnings about the candidates, for the front end to say when it has
    /// a request to route.
    pub notes: Vec<String>,
}

/// Whether the API refused the key as it answered the catalogue's fetch
/// made since `since` (unix ms): no request need try it to learn so.
fn refused_at_fetch(store: &store::Store, base: &str, since: i64) -> Option<String> {
    setup::last_fetch_failure(store, base)
        .filter(|(at, problem)| *at >= since && problem.starts_with(setup::REFUSED_KEY))
        .map(|(_, problem)| format!("the API refused the key (fetching its catalogue: {problem})"))
}

/// Opens the store, loads the catalogue and builds the engine, with
/// `observer` watching. `rt` runs the catalogue fetch.
pub fn wire(
    options: &Options,
    wants: Wants,
    observer: Arc<dyn Observer>,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Wired> {
    let settings = options.settings()?;
    no_key_among_candidates(options, &settings)?;
    check_sharing(options, wants.quiet)?;
    let base = options.base_url.clone();
    let mut client = client(&base, &wants)?;
    setup::warn_plain_http(&base, wants.quiet);
    let path = options.store_path()?;
    let mut store = open_store(&path, &wants)?;
    let upstream = crate::upstream::identity(&base);
    store.set_upstream(&upstream);
    let fetched_from = store::now_ms();
    let catalogue = setup::load_catalogue(&store, client.as_ref(), &base, rt, wants.quiet, false);
    let refused = refused_at_fetch(&store, &base, fetched_from);
    let (named, catalogue) =
        named_upstreams(options, &store, rt, &wants, catalogue, client.as_mut())?;
    no_misspelt_upstream(options, &settings, &catalogue)?;
    let notes = notes(&settings, &catalogue, wants.quiet || refused.is_some());
    let health = Arc::new(LocalHealth::default());
    store::ports::read_health(&store, &health).map_err(setup::store_fatal(&path))?;
    if options.hedge == engine::Hedge::Auto {
        store::ports::read_latest_latencies(&store, &health).map_err(setup::store_fatal(&path))?;
    }
    let health_reader =
        store::ports::share_health(&store, health.clone(), store::ports::HEALTH_REFRESH);
    let book = store_book(&store)?;
    // With Redis, what every machine learned decides: the store holds
    // only what this one took in, and read into the book it would stand
    // in for the rest until the next read of Redis.
    let quality_reader = match (&options.redis, wants.dry_run) {
        (Some(_), false) => None,
        _ => Some(store::ports::share_learned(
            &store,
            book.clone(),
            store::ports::QUALITY_REFRESH,
        )),
    };
    store.set_run(&wants.run_id, &settings.priority);
    let writer = Writer::spawn_lingering(store, wants.linger);
    let local = Arc::new(writer.handle());
    let candidates: Vec<String> = settings
        .models
        .iter()
        .chain(settings.fallback.iter())
        .cloned()
        .collect();
    let config = engine_config(options, &wants, settings, upstream.clone());
    let (cache, recorder, health, admission, link): Local = match &options.redis {
        Some(r) if !wants.dry_run => shared_state(options, r, rt, local, health, candidates)?,
        // Identical requests in flight in the processes on this store
        // make one call: a lease in the store says who makes it.
        _ => (
            Arc::new(LeasedCache::new(
                writer.handle(),
                options.timeout + LEASE_SLACK,
            )),
            local,
            health,
            Arc::new(limits(options)),
            None,
        ),
    };
    let parts = Parts {
        upstream: client.map(|c| match named.is_empty() {
            true => Arc::new(c) as _,
            false => Arc::new(crate::upstreams::Upstreams { default: c, named }) as _,
        }),
        cache,
        recorder,
        health,
        admission,
        observer,
    };
    if let (true, Some(r)) = (wants.dry_run, &options.redis) {
        // A dry run shares nothing, but decides on what every machine
        // learned, as a real run would.
        read_shared_quality(r, &upstream, &book, rt);
    }
    if let Some(l) = &link {
        follow_shared_quality(l, &upstream, &book, rt);
    }
    let router = Arc::new(Router::new(config, catalogue, parts).sharing_learned(book));
    if let Some(message) = &refused {
        router.refused_at_start(message);
    }
    Ok(Wired {
        router,
        writer,
        health_reader,
        quality_reader,
        store_path: path,
        redis: link,
        notes,
    })
}

/// The store at `path`; for a dry run that cannot have it (it needs no key
/// and works offline, and records nothing of note), one in memory.
fn open_store(path: &std::path::Path, wants: &Wants) -> anyhow::Result<Store> {
    match Store::open(path) {
        Ok(s) => Ok(s),
        Err(e) if wants.dry_run => {
            if !wants.quiet {
                setup::note(format_args!(
                    "{e}; the dry run goes on with a store in memory"
                ));
            }
            Ok(Store::in_memory()?)
        }
        Err(e) => Err(e.into()),
    }
}

/// Warnings about the candidates, said by the front end once it has
/// something to route (a batch's first line): an empty input hears
/// nothing of its candidates.
fn notes(
    settings: &crate::core::ranking::Settings,
    catalogue: &crate::core::catalogue::Catalogue,
    quiet: bool,
) -> Vec<String> {
    if quiet {
        return Vec::new();
    }
    [
        setup::unknown_candidates(settings, catalogue),
        setup::no_prices(settings, catalogue),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The engine's configuration from the options and what the front end wants.
fn engine_config(
    options: &Options,
    wants: &Wants,
    settings: crate::core::ranking::Settings,
    upstream: String,
) -> engine::Config {
    engine::Config {
        settings,
        presets: options.routing.presets.clone(),
        dry_run: wants.dry_run,
        explain: wants.explain || wants.dry_run,
        timeout: options.timeout,
        cache_ttl: options.cache_ttl,
        use_cache: wants.use_cache && !wants.dry_run,
        max_attempts: options.max_attempts,
        explore: options.explore,
        hedge: options.hedge,
        upstream,
        retry_refused: wants.retry_refused,
        track_cache_use: wants.track_cache_use,
    }
}

/// `--shared-limits` needs Redis, and something to share.
fn check_sharing(options: &Options, quiet: bool) -> anyhow::Result<()> {
    check_redis(options)?;
    if options.shared_limits && options.redis.is_none() {
        return Err(anyhow!(
            "--shared-limits shares the limits through Redis: give --redis URL too"
        ));
    }
    let nothing = options.rpm.is_none() && options.tpm.is_none() && options.max_cost.is_none();
    if options.redis.as_ref().is_some_and(|r| r.shared_limits) && nothing && !quiet {
        setup::warn(format_args!(
            "--shared-limits shares nothing without --rpm, --tpm or --max-cost"
        ));
    }
    Ok(())
}

/// Every upstream's key and credentials this process can see, for what
/// calls none.
pub fn secrets(options: &Options) -> crate::upstream::Secrets {
    let key = setup::api_key().map(|(_, k)| k);
    crate::upstreams::all_secrets((&options.base_url, key.as_deref()), &options.upstreams)
}

/// The HTTP client to the upstream, with the API key; none for a dry run.
fn client(base: &str, wants: &Wants) -> anyhow::Result<Option<Client>> {
    let tip = || crate::cli::environment::tip("base-url");
    if wants.dry_run {
        // Nothing is called, but a base URL a run would refuse is refused.
        crate::core::urls::check_base(base).map_err(|e| anyhow!("{e}{}", tip()))?;
        return Ok(None);
    }
    let api_key = setup::api_key().map(|(_, key)| key);
    if api_key.is_none() {
        return Err(anyhow!(setup::no_api_key()));
    }
    Client::new(base, api_key.as_deref(), wants.pool)
        .map(Some)
        .map_err(|e| anyhow!("{e}{}", tip()))
}

/// The named upstreams (`[upstreams.NAME]`): their clients (none for a
/// dry run, which calls nothing), and `catalogue` with their candidates,
/// `NAME:model`, each from its own catalogue kept in the store (and the
/// prices its table sets). Every client, `default`'s too, blanks out every
/// upstream's key from what comes back.
pub fn named_upstreams(
    options: &Options,
    store: &Store,
    rt: &tokio::runtime::Runtime,
    wants: &Wants,
    catalogue: Catalogue,
    default: Option<&mut Client>,
) -> anyhow::Result<(Vec<(String, crate::upstreams::Named)>, Catalogue)> {
    // A run calls them: one whose key is missing stops it before it sends
    // anything, as the default API's does.
    if !wants.dry_run {
        for (name, u) in &options.upstreams {
            u.key(name).map_err(|e| anyhow!(e))?;
        }
    }
    let (mut clients, merged) = with_named_candidates(
        options,
        store,
        rt,
        wants.pool,
        match wants.dry_run {
            true => Fetch::Never,
            false => Fetch::WhenStale,
        },
        wants.quiet || wants.dry_run,
        catalogue,
    )?;
    let all = clients
        .iter()
        .map(|(_, c)| c.secrets())
        .chain(default.as_deref().map(Client::secrets))
        .fold(crate::upstream::Secrets::default(), |all, s| all.with(s));
    for (_, c) in &mut clients {
        c.hide_too(&all);
    }
    if let Some(c) = default {
        c.hide_too(&all);
    }
    let named = match wants.dry_run {
        true => Vec::new(),
        false => clients
            .into_iter()
            .map(|(name, client)| {
                let named = crate::upstreams::Named::new(&name, client, &options.upstreams[&name]);
                (name, named)
            })
            .collect(),
    };
    Ok((named, merged))
}

/// `catalogue` with the named upstreams' candidates added, each from its
/// own catalogue (fetched when `fetch` and none is fresh in the store),
/// and a client for each upstream.
pub fn with_named_candidates(
    options: &Options,
    store: &Store,
    rt: &tokio::runtime::Runtime,
    pool: usize,
    fetch: Fetch,
    quiet: bool,
    catalogue: Catalogue,
) -> anyhow::Result<(Vec<(String, Client)>, Catalogue)> {
    if options.upstreams.is_empty() {
        return Ok((Vec::new(), catalogue));
    }
    let mut models = catalogue.models().to_vec();
    let mut clients = Vec::new();
    for (name, u) in &options.upstreams {
        // Without its key, its catalogue is not fetched (the stored copy
        // serves), unless a refresh asks for it.
        let (key, fetch, unkeyed) = match u.key(name) {
            Ok(key) => (key, fetch, None),
            Err(e) if fetch == Fetch::Again => return Err(anyhow!(e)),
            Err(e) => (None, Fetch::Never, Some(e)),
        };
        let base = u.base_url.trim().trim_end_matches('/').to_string();
        let client = Client::with_headers(&base, key.as_deref(), pool, &u.headers)
            .map_err(|e| anyhow!("upstream {name}: {e}"))?;
        let listed = match fetch {
            // `models --refresh`: fetched now, or the command fails saying
            // why, as for the default API; a stored copy is no refresh.
            Fetch::Again => setup::refresh_catalogue(store, &client, &base, rt)
                .map_err(|e| anyhow!("upstream {name}: {e}"))?,
            _ => {
                let client_to_fetch = (fetch != Fetch::Never).then_some(&client);
                setup::load_catalogue(store, client_to_fetch, &base, rt, true, false)
            }
        };
        // A server of its own has no snapshot to fall back on: OpenRouter's is not its.
        let listed = match listed.origin {
            crate::core::catalogue::Origin::Embedded => {
                if let (Some(e), false) = (&unkeyed, quiet) {
                    setup::warn(format_args!(
                        "{e}, so its catalogue is not fetched; its models are those its [upstreams.{name}.models] table names"
                    ));
                } else if !quiet {
                    let why = match setup::last_fetch_failure(store, &base) {
                        None => String::new(),
                        Some((at, problem)) => {
                            let ago = crate::engine::now_ms().saturating_sub(at).max(0) as u64;
                            match ago < 1000 {
                                true => format!(" ({problem})"),
                                false => format!(
                                    " (not fetched: the last fetch, {} ago, failed: {problem})",
                                    crate::core::duration::human(std::time::Duration::from_millis(
                                        ago
                                    ))
                                ),
                            }
                        }
                    };
                    let base = crate::core::urls::without_password(&base);
                    setup::warn(format_args!(
                        "upstream {name}: cannot fetch {base}/models{why}; its models are those its [upstreams.{name}.models] table names"
                    ));
                }
                Vec::new()
            }
            _ => listed.models().to_vec(),
        };
        models.extend(crate::upstreams::candidates(name, &listed, u));
        clients.push((name.clone(), client));
    }
    let merged = Catalogue::from_models(models, catalogue.skipped, catalogue.origin.clone());
    Ok((clients, merged))
}

/// This process's rate limits and budget.
fn limits(options: &Options) -> Limits {
    Limits {
        rates: RateLimits::new(options.rpm, options.tpm),
        budget: options.max_cost.map(Budget::new),
    }
}

/// Whether a named upstream's catalogue is fetched: never (a dry run),
/// when the store's copy is stale and no fetch failed a moment ago, or
/// again whatever the store holds (`models --refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    Never,
    WhenStale,
    Again,
}

/// The local store, health and limits with Redis beside them.
/// Candidates are sent, shown and kept: a key given for one is refused
/// before anything is made, and not repeated.
fn no_key_among_candidates(
    options: &Options,
    settings: &crate::core::ranking::Settings,
) -> anyhow::Result<()> {
    let keys = secrets(options);
    let mut candidates = settings.models.iter().chain(settings.fallback.iter());
    match candidates.any(|m| keys.holds_key(m)) {
        true => Err(anyhow!(
            "a candidate (--models or --fallback) holds an upstream's API key"
        )),
        false => Ok(()),
    }
}

/// A candidate or fallback that names an upstream no config has is a
/// usage error, not a request to the default API with its key.
fn no_misspelt_upstream(
    options: &Options,
    settings: &crate::core::ranking::Settings,
    catalogue: &Catalogue,
) -> anyhow::Result<()> {
    let names: Vec<String> = options.upstreams.keys().cloned().collect();
    for m in settings.models.iter().chain(settings.fallback.iter()) {
        if let Some(why) = crate::upstreams::misspelt_in(m, &names, catalogue) {
            anyhow::bail!("a candidate names an unknown upstream: {why}");
        }
    }
    Ok(())
}

/// What the store learned of quality, as a book routing reads.
fn store_book(store: &Store) -> anyhow::Result<Arc<engine::learned::QualityBook>> {
    let book = Arc::new(engine::learned::QualityBook::new(
        crate::core::learned::HALF_LIFE_MS,
    ));
    for (task, model, p) in store.quality().map_err(setup::store_fatal(store.path()))? {
        book.set(&task, &model, p);
    }
    Ok(book)
}

/// Reads into `book` what every machine learned, before the first request
/// (never less than the store knows: what Redis lost, the watcher puts
/// back), and keeps reading it.
fn follow_shared_quality(
    link: &Arc<Link>,
    upstream: &str,
    book: &Arc<engine::learned::QualityBook>,
    rt: &tokio::runtime::Runtime,
) {
    for (task, model, p) in rt
        .block_on(crate::shared::quality::all(link, upstream))
        .unwrap_or_default()
    {
        book.set_shared(&task, &model, p);
    }
    rt.spawn(crate::shared::quality::watch(
        link.clone(),
        upstream.to_string(),
        book.clone(),
    ));
}

/// Learned quality as routing sees it, for a look without routing
/// (`models --task`): the store's, and with `--redis` what every machine
/// learned.
pub fn learned_book(
    options: &Options,
    store: &Store,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Arc<engine::learned::QualityBook>> {
    let book = store_book(store)?;
    if let Some(r) = &options.redis {
        read_shared_quality(r, store.upstream(), &book, rt);
    }
    Ok(book)
}

/// A Redis URL a run would refuse is refused before anything is done, by
/// `config show` too.
pub fn check_redis(options: &Options) -> anyhow::Result<()> {
    match &options.redis {
        Some(r) => crate::shared::check_url(&r.url)
            .map_err(|e| anyhow!("{e}{}", crate::cli::environment::tip("redis"))),
        None => Ok(()),
    }
}

/// Reads into `book` the quality Redis shares, once; Redis out of reach
/// is a warning: what the store learned stands.
fn read_shared_quality(
    r: &RedisOptions,
    upstream: &str,
    book: &engine::learned::QualityBook,
    rt: &tokio::runtime::Runtime,
) {
    // A Redis out of reach was warned of as the link opened.
    let rows = rt.block_on(async {
        match Link::open(&r.url, &r.prefix, r.timeout).await {
            Ok(link) => crate::shared::quality::all(&link, upstream).await,
            Err(e) => {
                setup::warn(format_args!("{e}; learned quality is the store's"));
                None
            }
        }
    });
    for (t, m, p) in rows.unwrap_or_default() {
        book.set(&t, &m, p);
    }
}

fn shared_state(
    options: &Options,
    r: &RedisOptions,
    rt: &tokio::runtime::Runtime,
    local: Arc<WriterHandle>,
    health: Arc<LocalHealth>,
    candidates: Vec<String>,
) -> anyhow::Result<Local> {
    let _in_runtime = rt.enter();
    let link = rt
        .block_on(Link::open(&r.url, &r.prefix, r.timeout))
        .map_err(|e| anyhow!("{e}{}", crate::cli::environment::tip("redis")))?;
    let upstream = crate::upstream::identity(&options.base_url);
    let cache = Arc::new(SharedCache::new(
        local,
        link.clone(),
        options.cache_ttl,
        MAX_SHARED_ANSWER,
        options.timeout + LEASE_SLACK,
        &upstream,
    ));
    rt.block_on(cache.watch_cleared());
    let health = Arc::new(rt.block_on(SharedHealth::start(
        health,
        link.clone(),
        &upstream,
        candidates,
    )));
    let admission: Arc<dyn Admission> = match r.shared_limits {
        true => Arc::new(SharedLimits::new(
            limits(options),
            link.clone(),
            options.rpm,
            options.tpm,
            options.max_cost,
            &r.budget_id,
        )),
        false => Arc::new(limits(options)),
    };
    Ok((cache.clone(), cache, health, admission, Some(link)))
}

/// The engine's cache, recorder, health and admission, and the Redis link
/// when there is one.
type Local = (
    Arc<dyn Cache>,
    Arc<dyn Recorder>,
    Arc<dyn Health>,
    Arc<dyn Admission>,
    Option<Arc<Link>>,
);

/// Answers larger than this are not shared through Redis (kept locally).
pub const MAX_SHARED_ANSWER: usize = 1024 * 1024;

/// A lease on answering a request outlasts one attempt by this much.
const LEASE_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

/// An id for a run (or a server's life): the time and the process.
pub fn run_id() -> String {
    // Time, process and a random part: unique across runs and machines.
    let mut r = [0u8; 4];
    let _ = getrandom::fill(&mut r);
    format!(
        "{:x}-{:x}-{}",
        store::now_ms(),
        std::process::id(),
        hex::encode(r)
    )
}
