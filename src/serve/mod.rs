//! The server front end: `llmroute serve` puts the engine behind an
//! OpenAI-compatible HTTP API, so any OpenAI client gets routing,
//! fallback, the cache and metrics by pointing its base URL at it.
//!
//! | module     | concern                                                      |
//! |------------|--------------------------------------------------------------|
//! | this one   | set-up from the options, the listener, the stop              |
//! | [`http`]   | routes, the loopback and site checks, the access log         |
//! | [`layers`] | tower and tower-http, set up: request ids, the body cap, shedding |
//! | [`state`]  | what every handler shares: state, tokens, reading a body     |
//! | [`call`]   | a chat body and its headers read into a call                 |
//! | [`chat`]   | `POST /v1/chat/completions`, whole or streamed               |
//! | [`manage`] | `/v1/models`, `/route`, `/health`, `/ready`, `/cache`, `/metrics` |
//! | [`errors`] | errors in OpenAI's shape                                     |
//! | [`feedback`] | `POST /v1/feedback`: feedback on answers, by request id    |
//! | [`gate`]   | upstream slots (`-j`) and the bounded queue                  |
//! | [`auth`]   | client and admin tokens                                      |
//! | [`keys`]   | client keys: lookup, reload, budgets and rates               |
//! | [`policy`] | a key's models, priorities and `max_tokens`                  |
//! | [`quota`]  | a key's rates and budget at the door                         |
//! | [`metrics`]| Prometheus counters and histograms; the engine's observer    |
//! | [`log`]    | the start line, warnings and access lines                    |
//! | [`listen`] | HTTP/1.1 and h2c, timeouts, graceful stop                    |
//! | [`stall`]  | a connection whose client takes nothing is cut off           |
//! | [`unread`] | a stream whose client stops taking it lets go of its slot    |
//! | [`upkeep`] | the store kept bounded while the server runs                 |

pub mod auth;
pub mod call;
pub mod chat;
pub mod dashboard;
pub mod errors;
pub mod feedback;
pub mod gate;
pub mod http;
pub mod keys;
pub mod layers;
pub mod listen;
pub mod live;
pub mod log;
pub mod manage;
pub mod metrics;
pub mod policy;
pub mod quota;
pub mod redact;
pub mod site;
pub mod stall;
pub mod state;
pub mod unread;
pub mod unshared;
pub mod upkeep;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};

use crate::options::{Options, ServeOptions};
use crate::setup::exit;
use crate::wiring::{self, Wants};
use auth::{Tokens, ADMIN_VAR, CLIENT_VAR};

/// How long the store's writer lets records gather: a server's answers do
/// not wait for their records, so fewer, larger transactions cost less.
pub const LINGER: Duration = Duration::from_millis(10);

/// How long a refused upstream key stays refused before a request tries it again.
pub const RETRY_REFUSED: Duration = Duration::from_secs(30);

/// Runs the server until SIGTERM or Ctrl-C; returns the exit status.
pub fn main(options: &Options) -> anyhow::Result<i32> {
    let s = &options.serve;
    let (addr, clients, admins) = access(s)?;
    // Refused before the catalogue is fetched when no key can be
    // anywhere; with Redis, keys made on another machine are read first.
    if clients.is_empty() && options.redis.is_none() && !has_keys(options)? {
        refuse_open(addr, false)?;
    }
    log::init(s.log_format, s.quiet);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("llmroute-serve")
        .build()
        .context("cannot start the async runtime")?;
    let metrics = Arc::new(metrics::Metrics::default());
    let wants = wants(options);
    let observer = Arc::new(metrics::ServeObserver {
        metrics: metrics.clone(),
    });
    let cors_origins = s
        .cors_origins
        .iter()
        .map(|o| site::parse_origin(o))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let wired = wiring::wire(options, wants, observer, &rt)?;
    // The configured candidates keep their labels, whatever names
    // clients pin first.
    let settings = &wired.router.config().settings;
    metrics.keep_labels(settings.models.iter().chain(settings.fallback.iter()));
    let (ring, seen) = key_ring(&wired, &clients, &admins, &rt)?;
    refuse_open(addr, ring.required())?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr().unwrap_or(addr);
    let gate = gate::Gate::new(
        options.concurrency as usize,
        s.queue as usize,
        metrics.clone(),
    );
    let mut app = state::App::new(
        wired.router.clone(),
        gate,
        metrics,
        ring.clone(),
        admins,
        s,
        RETRY_REFUSED,
        wired.store_path.clone(),
        wired.writer.handle(),
        wired.redis.clone(),
    );
    app.cors_origins = cors_origins;
    app.upstreams = options.upstreams.keys().cloned().collect();
    let app = Arc::new(app);
    let beside = spawn_beside(&rt, options, &wired, (&app, &ring, seen));
    let short_tokens = clients.short() + app.admins.short();
    announce(&wired, (ring.required(), short_tokens), local);
    let routes = http::routes(app.clone());
    rt.spawn(stop_at_the_cut(app.router.clone(), app.cut.clone()));
    let finished = rt.block_on(listen::serve(
        listener,
        routes,
        (
            s.header_timeout,
            options.timeout,
            s.max_connections as usize,
        ),
        listen::stop_signal(),
        (s.grace, app.cut.clone()),
    ));
    if !finished {
        tracing::warn!(
            "requests still in flight after the grace period of {} are cut off (streams with an error event)",
            crate::core::duration::format(s.grace)
        );
    }
    beside.iter().for_each(tokio::task::JoinHandle::abort);
    app.unshared.say_left();
    drop(app);
    stop(rt, wired);
    tracing::info!("llmroute stopped");
    Ok(exit::OK)
}

/// What runs beside the server until it stops: the store's upkeep, the
/// feedback kept for Redis while it was away, and the watch on the keys.
fn spawn_beside(
    rt: &tokio::runtime::Runtime,
    options: &Options,
    wired: &wiring::Wired,
    (app, ring, seen): (
        &Arc<state::App>,
        &Arc<keys::KeyRing>,
        Arc<keys::SeenInRedis>,
    ),
) -> [tokio::task::JoinHandle<()>; 3] {
    let keep = upkeep::Keep {
        path: wired.store_path.clone(),
        cache_ttl: options.cache_ttl,
        retention: options.retention,
        cache_max_size: options.serve.cache_max_size,
    };
    [
        rt.spawn(upkeep::run(keep, options.serve.upkeep_every)),
        rt.spawn(feedback::share_kept(app.clone())),
        rt.spawn(keys::watch(
            ring.clone(),
            wired.store_path.clone(),
            wired.redis.clone(),
            seen,
        )),
    ]
}

/// The client keys: the tokens given by flag or variable, and the keys
/// in the store (or Redis), read once before the server listens.
fn key_ring(
    wired: &wiring::Wired,
    clients: &Tokens,
    admins: &Tokens,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<(Arc<keys::KeyRing>, Arc<keys::SeenInRedis>)> {
    let ring = Arc::new(keys::KeyRing::new(
        clients.digests(),
        admins.digests(),
        keys::budgets(wired.store_path.clone(), wired.redis.clone()),
    ));
    let seen = Arc::new(keys::SeenInRedis::default());
    match rt.block_on(keys::read(&wired.store_path, wired.redis.as_deref(), &seen)) {
        Some(records) => {
            ring.load(records, crate::engine::now_ms());
        }
        None => anyhow::bail!(
            "cannot read the client keys in the store at {}",
            wired.store_path.display()
        ),
    }
    Ok((ring, seen))
}

/// The warnings of the set-up, and the line that says where the server
/// listens.
fn announce(
    wired: &wiring::Wired,
    (tokens_required, short_tokens): (bool, usize),
    local: std::net::SocketAddr,
) {
    for note in &wired.notes {
        tracing::warn!("{}", note.trim_start_matches("llmroute: warning: "));
    }
    if short_tokens > 0 {
        tracing::warn!(
            "{short_tokens} of the tokens given (LLMROUTE_AUTH_TOKENS, LLMROUTE_ADMIN_TOKENS or a \
             token file) {} shorter than {} characters, easy to guess: `llmroute keys create` \
             makes strong ones",
            if short_tokens == 1 { "is" } else { "are" },
            auth::STRONG_LEN
        );
    }
    tracing::info!(
        "llmroute {} listening on http://{local} (base URL http://{local}/v1; {}; store {})",
        env!("CARGO_PKG_VERSION"),
        if tokens_required {
            "client tokens required"
        } else {
            "no client tokens, loopback only"
        },
        wired.store_path.display()
    );
}

/// Stops the engine when the grace period of a stop ends: a request still
/// waiting for its answer is answered (503) at once, as a stream gets its
/// error event.
async fn stop_at_the_cut(
    router: Arc<crate::engine::Router>,
    cut: tokio_util::sync::CancellationToken,
) {
    cut.cancelled().await;
    router.abort();
}

/// The address to listen on, and the client and admin tokens.
/// Refuses to listen beyond loopback for anyone without a token.
fn refuse_open(addr: SocketAddr, tokens_required: bool) -> anyhow::Result<()> {
    if tokens_required || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(anyhow!(
        "refusing to listen on {addr} without client tokens or keys: anyone who can reach it could spend your API key. \
         Make a key with `llmroute keys create NAME`, set {CLIENT_VAR}=token1,token2 or --auth-token-file FILE, or listen on 127.0.0.1"
    ))
}

/// Whether the store holds any client key (a store not made yet holds none).
fn has_keys(options: &Options) -> anyhow::Result<bool> {
    let path = options.store_path()?;
    if !path.exists() {
        return Ok(false);
    }
    Ok(
        match crate::store::Store::open_reader(&path).and_then(|s| s.keys()) {
            Ok((keys, _)) => !keys.is_empty(),
            // A store without the keys table yet has no keys.
            Err(crate::store::StoreError::Sql(e)) if e.to_string().contains("no such table") => {
                false
            }
            // Unreadable here (busy, damaged): the wiring says why, with
            // its own words.
            Err(_) => true,
        },
    )
}

fn access(s: &ServeOptions) -> anyhow::Result<(SocketAddr, Tokens, Tokens)> {
    let addr: SocketAddr = s.listen.trim().parse().map_err(|_| {
        anyhow!(
            "--listen {}: not an address to listen on; give IP:PORT, e.g. 127.0.0.1:8080",
            s.listen
        )
    })?;
    let clients = Tokens::load(CLIENT_VAR, s.auth_token_file.as_deref())?;
    let admins = Tokens::load(ADMIN_VAR, s.admin_token_file.as_deref())?;
    Ok((addr, clients, admins))
}

/// What a server asks of the engine's wiring.
fn wants(options: &Options) -> Wants {
    let s = &options.serve;
    Wants {
        dry_run: false,
        explain: false,
        use_cache: !s.no_cache,
        quiet: s.quiet,
        run_id: format!("serve-{}", wiring::run_id()),
        pool: options.concurrency as usize,
        retry_refused: Some(RETRY_REFUSED),
        linger: LINGER,
        track_cache_use: s.cache_max_size.is_some(),
    }
}

/// After the last request: the last writes to Redis, then requests still
/// running end, and the store is flushed.
fn stop(rt: tokio::runtime::Runtime, wired: wiring::Wired) {
    if let Some(link) = &wired.redis {
        rt.block_on(link.flush(Duration::from_secs(2)));
    }
    wired.router.abort();
    drop(wired.router);
    drop(wired.health_reader);
    rt.shutdown_timeout(Duration::from_millis(500));
    drop(wired.writer.finish());
}
