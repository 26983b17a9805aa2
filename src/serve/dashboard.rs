//! The dashboard: `GET /dashboard` (and `/`, which leads there) is a page of
//! this process's traffic drawn by [`crate::view`], the ranking each
//! priority makes now, and the last requests; `GET /dashboard/data` is the
//! same as JSON with the page's new body, which the page's own script
//! (`/dashboard/app.js`, embedded in the binary) fetches every 2 s.
//!
//! With client tokens set, it takes the same tokens as the API, or an
//! admin token: as `Authorization: Bearer`, or given once in the page's
//! form, which opens a session kept in a cookie. A session is a random id
//! the server knows for 12 hours, until "Sign out" or a restart; it opens
//! the dashboard and nothing of the API. The form and "Sign out" take
//! posts from the dashboard's own pages only.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use serde_json::json;

use super::errors::ApiError;
use super::manage::probe;
use super::policy::priority_names;
use super::state::App;
use crate::core::numbers::round_ms;
use crate::view::html::{self, Page};
use crate::view::text::esc;
use crate::view::{Candidate, Live, Picture, Ranking};

/// The page's script.
pub const SCRIPT: &str = include_str!("dashboard.js");

/// The page loads its own script and data, nothing else.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
    style-src 'unsafe-inline'; img-src data:; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The session cookie's name.
pub const COOKIE: &str = "llmroute_dashboard";

/// How the dashboard's viewer got in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// No client tokens are set: the server is on loopback.
    Open,
    /// A client or admin token in `Authorization`.
    Token,
    /// The session cookie.
    Cookie,
}

impl App {
    /// Who may see the dashboard: `None` for nobody.
    /// Whether the request carries a live key made with `keys create`: it
    /// may not see the dashboard, which is about every key (403, not the
    /// 401 of no token at all).
    fn a_client_key(&self, token: Option<&str>) -> bool {
        token.is_some()
            && matches!(self.keys.find(token, crate::engine::now_ms()), super::keys::Found::Key(c) if !c.trusted)
    }

    pub fn viewer(&self, headers: &HeaderMap) -> Option<Viewer> {
        if !self.keys.required() {
            return Some(Viewer::Open);
        }
        if self.operator_allowed(headers) {
            return Some(Viewer::Token);
        }
        let cookie = cookie(headers, COOKIE)?;
        self.sessions
            .holds(cookie, std::time::Instant::now())
            .then_some(Viewer::Cookie)
    }
}

/// The value of cookie `name`, from any `Cookie` header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Headers every dashboard response carries.
fn guarded(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn html_response(status: StatusCode, body: String) -> Response {
    guarded(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            body,
        )
            .into_response(),
    )
}

/// `GET /`: to the dashboard.
pub async fn root() -> Response {
    Redirect::to("/dashboard").into_response()
}

/// Why a client key's token does not open the dashboard.
const NOT_FOR_KEYS: &str = "A client key may not see the dashboard, which shows every key's spend: sign in with a trusted or admin token.";

/// `GET /dashboard`.
pub async fn page(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(viewer) = app.viewer(&headers) else {
        if app.a_client_key(super::state::token(&headers)) {
            return html_response(StatusCode::FORBIDDEN, sign_in(Some(NOT_FOR_KEYS)));
        }
        return html_response(StatusCode::UNAUTHORIZED, sign_in(None));
    };
    let html = drawn(app, move |p| {
        let page = Page {
            script: Some("/dashboard/app.js"),
            noscript_refresh: Some(5),
            sign_out: (viewer == Viewer::Cookie).then_some("/dashboard/logout"),
            live_status: true,
            ..Page::default()
        };
        html::document(p, &page)
    })
    .await;
    match html {
        Ok(html) => html_response(StatusCode::OK, html),
        Err(e) => e.into_response(),
    }
}

/// The picture of this process drawn by `draw`, off the runtime's worker
/// threads: sorting the latencies and drawing the charts takes a few
/// milliseconds that requests in flight should not wait behind.
async fn drawn<T: Send + 'static>(
    app: Arc<App>,
    draw: impl FnOnce(&Picture) -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || draw(&picture(&app)))
        .await
        .map_err(|_| ApiError::internal())
}

/// `GET /dashboard/data`: the dashboard's numbers, and its new body.
pub async fn data(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if app.viewer(&headers).is_none() {
        if app.a_client_key(super::state::token(&headers)) {
            return ApiError::forbidden(
                "a client key may not see the dashboard, which shows every key's spend",
            )
            .into_response();
        }
        return ApiError::unauthorized().into_response();
    }
    let data = drawn(app, |p| {
        let series: Vec<_> = p.series.buckets().copied().collect();
        json!({
            "generated_ms": p.generated_ms,
            "totals": p.totals,
            "latency_ms": p.latency,
            "series": {"width_ms": p.series.width_ms(), "buckets": series},
            "models": p.models,
            "live": p.live,
            "html": html::body(p),
        })
    })
    .await;
    match data {
        Ok(v) => guarded(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

/// `GET /dashboard/app.js`.
pub async fn script() -> Response {
    guarded(
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            SCRIPT,
        )
            .into_response(),
    )
}

/// The most a sign-in form's body may hold: a token, a few KiB at most,
/// whatever `--max-body`.
pub const LOGIN_BODY: u64 = 4096;

/// `POST /dashboard/login`: a token from the form; a good one sets the
/// session cookie.
pub async fn login(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    if !app.keys.required() {
        return Redirect::to("/dashboard").into_response();
    }
    if !app.sign_ins.allow() {
        let mut resp = html_response(
            StatusCode::TOO_MANY_REQUESTS,
            sign_in(Some("Too many sign-ins: try again in a minute.")),
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
        return resp;
    }
    // Capped at LOGIN_BODY by its route.
    let bytes = match app.read_body(body, LOGIN_BODY).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let known = !token.trim().is_empty() && app.trusted_token(Some(&token));
    let session = known
        .then(|| app.sessions.open(std::time::Instant::now()))
        .transpose();
    match session {
        Err(e) => {
            tracing::error!("cannot open a dashboard session: {e}");
            ApiError::internal().into_response()
        }
        Ok(Some(s)) => {
            let mut resp = Redirect::to("/dashboard").into_response();
            // Behind a TLS-terminating proxy, the cookie is for HTTPS only.
            let secure = headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
            let c = format!(
                "{COOKIE}={s}; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age={}{}",
                super::auth::SESSION_TTL.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            if let Ok(v) = HeaderValue::from_str(&c) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            guarded(resp)
        }
        Ok(None) if app.a_client_key(Some(&token)) => {
            html_response(StatusCode::FORBIDDEN, sign_in(Some(NOT_FOR_KEYS)))
        }
        Ok(None) => html_response(
            StatusCode::UNAUTHORIZED,
            sign_in(Some("That token is not one of this server's.")),
        ),
    }
}

/// `POST /dashboard/logout`: ends the session and forgets its cookie.
pub async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if !same_origin(&headers) {
        return cross_site();
    }
    if let Some(id) = cookie(&headers, COOKIE) {
        app.sessions.close(id);
    }
    let mut resp = Redirect::to("/dashboard").into_response();
    let c = format!("{COOKIE}=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&c) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    guarded(resp)
}

/// Whether a post comes from a page of this server, as far as the browser
/// says: `Sec-Fetch-Site` same-origin (or none: typed, bookmarked), or,
/// from a browser that does not send it, an `Origin` naming this host.
/// Clients that send neither (curl) are not browsers another site can
/// drive.
/// A header whose bytes are not text counts as another site's.
fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).map(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return site.is_some_and(|s| s == "same-origin" || s == "none");
    }
    match text("origin") {
        None => true,
        Some(origin) => origin.is_some_and(|o| super::site::same_origin(o, text("host").flatten())),
    }
}

fn cross_site() -> Response {
    ApiError::forbidden("the dashboard takes sign-in and sign-out from its own pages only")
        .into_response()
}

/// The form that asks for a token.
fn sign_in(error: Option<&str>) -> String {
    let error = error.map_or_else(String::new, |e| {
        format!(
            "<p class=\"note\" role=\"alert\" id=\"sign-in-error\">{}</p>",
            esc(e)
        )
    });
    let main = format!(
        "<h1>llmroute</h1><p>This server's dashboard needs one of its trusted or admin tokens (a client key's does not open it).</p>{error}\
         <form method=\"post\" action=\"/dashboard/login\" id=\"sign-in\">\
         <label for=\"token\">Token</label> <input type=\"password\" name=\"token\" id=\"token\" \
         autocomplete=\"current-password\" required> <button type=\"submit\">Sign in</button></form>"
    );
    html::plain_page("llmroute — sign in", &main)
}

/// The picture of this process now.
fn picture(app: &App) -> Picture {
    let now = crate::engine::now_ms();
    let snap = app.live.snapshot(now);
    let uptime = app.started.elapsed().as_secs();
    let live = Live {
        requests_per_second: snap.requests_per_second,
        in_flight: app.metrics.in_flight.get(),
        queued: app.metrics.queued.get(),
        uptime_s: uptime,
        rankings: rankings(app),
        recent: snap.recent,
        keys: app
            .keys
            .clients()
            .iter()
            .map(|c| c.row(now, &app.keys.make_budget))
            .collect(),
    };
    Picture {
        title: "llmroute dashboard".into(),
        subtitle: format!(
            "this server, up {}; over time: its last hour at most, in 10 s buckets",
            crate::core::duration::human(std::time::Duration::from_secs(uptime))
        ),
        generated_ms: now,
        totals: snap.totals,
        latency: snap.latency,
        series: snap.series,
        models: snap.models,
        // The learned quality is in the rankings' candidates.
        tasks: Vec::new(),
        breakdowns: Vec::new(),
        live: Some(live),
    }
}

/// The ranking each priority (and preset) would make now for a short
/// request, with each candidate's state.
fn rankings(app: &App) -> Vec<Ranking> {
    let router = &app.router;
    let default = router.config().settings.priority.clone();
    let mut names = priority_names(router);
    if !names.contains(&default) {
        names.insert(0, default.clone());
    }
    names
        .into_iter()
        .filter_map(|name| {
            let probe = probe(Some(&name))?;
            let decision = router.decide(&probe).ok()?;
            // A candidate the budget leaves out keeps its figures after
            // those ranked, and says why, as /v1/models does.
            let left_out: Vec<(crate::core::ranking::Ranked, String)> =
                match decision.excluded.is_empty() {
                    true => Vec::new(),
                    false => router
                        .decide_unbudgeted(&probe)
                        .map(|d| d.ranking)
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|r| {
                            let why = decision.why_left_out(&r.model)?.to_string();
                            Some((r, why))
                        })
                        .collect(),
                };
            let ranked = decision.ranking.iter().map(|r| (r, None));
            let excluded = left_out.iter().map(|(r, why)| (r, Some(why.as_str())));
            let candidates = ranked
                .chain(excluded)
                .map(|(r, excluded)| {
                    let info = router.catalogue().get(&r.model);
                    let per_mtok = |p: Option<f64>| p.map(|p| p * 1e6);
                    Candidate {
                        model: r.model.clone(),
                        score: excluded
                            .is_none()
                            .then(|| crate::core::numbers::round_score(r.score)),
                        latency_ms: r.latency_ms.map(round_ms),
                        latency_measured: r.latency_measured,
                        prompt_per_mtok: per_mtok(info.and_then(|i| i.prompt_price)),
                        completion_per_mtok: per_mtok(info.and_then(|i| i.completion_price)),
                        quality: crate::core::numbers::round_score(r.quality),
                        quality_events: r.quality_events,
                        quality_source: r.quality_source.name(),
                        state: match excluded {
                            Some(_) => "excluded".to_string(),
                            None => r.state.as_ref().map_or("", |s| s.0.name()).to_string(),
                        },
                        why: match excluded {
                            Some(why) => why.to_string(),
                            None => r.state.as_ref().map_or_else(String::new, |s| s.1.clone()),
                        },
                    }
                })
                .collect();
            Some(Ranking {
                default: name == default,
                priority: name,
                candidates,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("127.0.0.1:8080"));
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_bytes(v).unwrap());
        }
        h
    }

    #[test]
    fn sign_in_from_elsewhere_or_with_unreadable_headers_is_refused() {
        assert!(same_origin(&headers(&[])), "curl sends neither");
        assert!(same_origin(&headers(&[("sec-fetch-site", b"same-origin")])));
        assert!(same_origin(&headers(&[(
            "origin",
            b"http://127.0.0.1:8080"
        )])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", b"cross-site")])));
        assert!(!same_origin(&headers(&[(
            "origin",
            b"https://evil.example"
        )])));
        // Bytes that are not text are not read as absent.
        assert!(!same_origin(&headers(&[("sec-fetch-site", b"none\xff")])));
        assert!(!same_origin(&headers(&[(
            "origin",
            b"http://\xe9vil.example"
        )])));
    }
}
