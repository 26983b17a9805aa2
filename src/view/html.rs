//! A [`Picture`] as one self-contained HTML page: its style sheet inline,
//! its charts inline SVG, no fonts, images or scripts from anywhere (a
//! server's page names one script of its own). It reads the same without
//! JavaScript, follows the system's light or dark setting, and fits a
//! phone's 375 px as well as a wide screen: only tables scroll sideways,
//! inside their own box.

use std::fmt::Write;

use super::chart::{self, Size};
use super::data::{ms_label, Bins, Series, Summary};
use super::text::usd;
use super::text::{count, esc};
use super::{Candidate, Live, ModelRow, Picture, RecentRequest};

/// How many models get a latency histogram; the table lists them all.
pub const HISTOGRAMS: usize = 40;

/// What goes around a picture's body.
#[derive(Debug, Clone, Default)]
pub struct Page<'a> {
    /// The Content-Security-Policy, as a `<meta>` (a file has no headers).
    pub csp_meta: Option<&'a str>,
    /// The path of a script of the page's own, deferred.
    pub script: Option<&'a str>,
    /// Without JavaScript, reload every this many seconds.
    pub noscript_refresh: Option<u32>,
    /// A button that signs out (a dashboard signed in with a cookie).
    pub sign_out: Option<&'a str>,
    /// A place where the page's script says whether it is updating.
    pub live_status: bool,
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// A cost as the text report shows it: `?` when every one summed is
/// unknown, `≥ $x` when some are.
fn cost(known: f64, unknown: u64) -> String {
    match (unknown, known > 0.0) {
        (0, _) => usd(known),
        (_, false) => "?".to_string(),
        (_, true) => format!("≥ {}", usd(known)),
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x < 10.0 => format!("{x:.1} ms"),
        Some(x) if x < 10_000.0 => format!("{x:.0} ms"),
        Some(x) => format!("{:.1} s", x / 1000.0),
    }
}

/// The start of every page, up to its `<head>`'s own lines.
fn head_start(out: &mut String) {
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"color-scheme\" content=\"light dark\">\n");
}

/// A page of a few lines of HTML (`main`, written by the caller) with the
/// same style sheet: a form, a message.
pub fn plain_page(title: &str, main: &str) -> String {
    let mut out = String::with_capacity(STYLE.len() + main.len() + 512);
    head_start(&mut out);
    let _ = writeln!(out, "<title>{}</title>", esc(title));
    let _ = writeln!(out, "<style>{STYLE}</style>");
    out.push_str("</head>\n<body>\n<main>\n");
    out.push_str(main);
    out.push_str("\n</main>\n</body>\n</html>\n");
    out
}

/// A whole page.
pub fn document(p: &Picture, page: &Page<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    head_start(&mut out);
    if let Some(csp) = page.csp_meta {
        let _ = writeln!(
            out,
            "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
            esc(csp)
        );
    }
    if let Some(s) = page.noscript_refresh {
        let _ = writeln!(
            out,
            "<noscript><meta http-equiv=\"refresh\" content=\"{s}\"></noscript>"
        );
    }
    let _ = writeln!(
        out,
        "<title>{} — {}</title>",
        esc(&p.title),
        esc(&p.subtitle)
    );
    let _ = writeln!(out, "<style>{STYLE}</style>");
    if let Some(src) = page.script {
        let _ = writeln!(out, "<script src=\"{}\" defer></script>", esc(src));
    }
    out.push_str("</head>\n<body>\n<header>\n");
    let _ = write!(out, "<h1>{}</h1>", esc(&p.title));
    if page.live_status {
        out.push_str("<span id=\"live-status\" class=\"sub\" role=\"status\"></span>");
    }
    if let Some(action) = page.sign_out {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"{}\"><button type=\"submit\">Sign out</button></form>",
            esc(action)
        );
    }
    out.push_str("\n</header>\n<main id=\"main\">\n");
    out.push_str(&body(p));
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// The page's body, which a dashboard replaces as it refreshes.
pub fn body(p: &Picture) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let _ = writeln!(
        out,
        "<p class=\"sub\"><span id=\"subtitle\">{}</span> · made {}</p>",
        esc(&p.subtitle),
        esc(&stamp(p.generated_ms))
    );
    cards(&mut out, p);
    if let Some(live) = &p.live {
        rankings(&mut out, live);
    }
    over_time(&mut out, p);
    models(&mut out, &p.models);
    histograms(&mut out, &p.models);
    tasks(&mut out, &p.tasks);
    for b in &p.breakdowns {
        breakdown(&mut out, b);
    }
    if let Some(live) = &p.live {
        keys(&mut out, &live.keys);
        recent(&mut out, &live.recent);
    }
    out
}

/// A unix time in ms as `2026-11-29 11:40:56 UTC`.
pub fn stamp(ms: i64) -> String {
    let s = super::text::rfc3339(ms);
    format!("{} {} UTC", &s[..10], &s[11..19])
}

fn card(out: &mut String, key: &str, value: &str, label: &str, note: &str) {
    let _ = write!(
        out,
        "<div class=\"card\" data-k=\"{key}\"><span class=\"v\">{}</span><span class=\"k\">{}</span>",
        esc(value),
        esc(label)
    );
    if !note.is_empty() {
        let _ = write!(out, "<span class=\"n\">{}</span>", esc(note));
    }
    out.push_str("</div>");
}

fn cards(out: &mut String, p: &Picture) {
    let t = &p.totals;
    out.push_str("<section aria-labelledby=\"totals-h\"><h2 id=\"totals-h\">Totals</h2>\n<div class=\"cards\" id=\"totals\">");
    if let Some(l) = &p.live {
        card(
            out,
            "rps",
            &format!("{:.1}", l.requests_per_second),
            "requests/s",
            "last 10–20 s",
        );
        card(
            out,
            "in_flight",
            &l.in_flight.to_string(),
            "in flight",
            &format!("{} queued", l.queued),
        );
    }
    card(out, "requests", &count(t.requests), "requests", "");
    card(
        out,
        "answered",
        &count(t.answered),
        "answered",
        "by a model",
    );
    card(
        out,
        "errors",
        &count(t.errors),
        "errors",
        &percent(t.errors, t.requests),
    );
    card(
        out,
        "cache_hits",
        &count(t.cache_hits),
        "cache hits",
        &percent(t.cache_hits, t.requests),
    );
    let unknown = if t.cost_unknown > 0 {
        format!("+{} unpriced", count(t.cost_unknown))
    } else {
        String::new()
    };
    card(out, "cost", &usd(t.cost_usd), "cost", &unknown);
    card(out, "attempts", &count(t.attempts), "upstream attempts", "");
    card(
        out,
        "tokens",
        &count(t.prompt_tokens + t.completion_tokens),
        "tokens",
        &format!(
            "{} in, {} out",
            count(t.prompt_tokens),
            count(t.completion_tokens)
        ),
    );
    out.push_str("</div>\n");
    latency_cards(out, &p.latency);
    out.push_str("</section>\n");
}

fn latency_cards(out: &mut String, l: &Summary) {
    out.push_str(
        "<h3>End-to-end latency of answered requests</h3>\n<div class=\"cards\" id=\"latency\">",
    );
    card(out, "p50", &ms(l.p50), "p50", "");
    card(out, "p95", &ms(l.p95), "p95", "");
    card(out, "p99", &ms(l.p99), "p99", "");
    card(out, "max", &ms(l.max), "max", "");
    card(
        out,
        "avg",
        &ms(l.avg),
        "average",
        &format!("of {}", count(l.count)),
    );
    out.push_str("</div>\n");
}

fn rankings(out: &mut String, live: &Live) {
    out.push_str("<section aria-labelledby=\"rank-h\"><h2 id=\"rank-h\">Ranking now, by priority</h2>\n<div class=\"grid2\" id=\"rankings\">");
    for r in &live.rankings {
        let _ = write!(
            out,
            "<div class=\"wrap\" data-priority=\"{0}\"><table><caption>{0}{1}</caption>\
             <thead><tr><th scope=\"col\">#</th><th scope=\"col\">model</th><th scope=\"col\">score</th>\
             <th scope=\"col\">latency</th><th scope=\"col\">$/M in</th><th scope=\"col\">$/M out</th>\
             <th scope=\"col\">quality</th><th scope=\"col\">state</th></tr></thead><tbody>",
            esc(&r.priority),
            if r.default { " (the server's default)" } else { "" },
        );
        for (i, c) in r.candidates.iter().enumerate() {
            candidate(out, i + 1, c);
        }
        if r.candidates.is_empty() {
            out.push_str("<tr><td colspan=\"8\">no eligible candidate</td></tr>");
        }
        out.push_str("</tbody></table></div>");
    }
    out.push_str("</div></section>\n");
}

fn candidate(out: &mut String, rank: usize, c: &Candidate) {
    // One the budget excludes is not ranked.
    let rank = match c.score {
        Some(_) => rank.to_string(),
        None => "–".to_string(),
    };
    let latency = match (c.latency_ms, c.latency_measured) {
        (Some(_), true) => ms(c.latency_ms),
        (Some(_), false) => format!("{} (prior)", ms(c.latency_ms)),
        (None, _) => "–".into(),
    };
    let price = |p: Option<f64>| p.map_or_else(|| "–".into(), |p| format!("{p:.2}"));
    let quality = match c.quality_events {
        0 => format!("{:.2} ({})", c.quality, c.quality_source),
        n => format!("{:.2} (learned, {n})", c.quality),
    };
    let _ = write!(
        out,
        "<tr data-model=\"{m}\"><td>{rank}</td><td class=\"name\">{m}</td><td>{}</td><td>{}</td>\
         <td>{}</td><td>{}</td><td>{}</td><td><span class=\"state {s}\" title=\"{w}\">{s}</span></td></tr>",
        c.score.map_or_else(|| "–".into(), |s| format!("{s:.3}")),
        esc(&latency),
        price(c.prompt_per_mtok),
        price(c.completion_per_mtok),
        esc(&quality),
        m = esc(&c.model),
        s = esc(&c.state),
        w = esc(&c.why),
    );
}

fn over_time(out: &mut String, p: &Picture) {
    let s = &p.series;
    out.push_str("<section aria-labelledby=\"time-h\"><h2 id=\"time-h\">Over time</h2>\n<div class=\"charts\">");
    type Draw = fn(&str, &Series, Size) -> String;
    let charts: [(&str, &str, Draw); 3] = [
        ("Requests (blue) and errors (red)", "c-req", chart::requests),
        ("Cost", "c-cost", chart::cost),
        ("Cache hit rate", "c-hit", chart::hit_rate),
    ];
    for (title, id, draw) in charts {
        // Two drawings; the style sheet shows the one that fits.
        let _ = write!(
            out,
            "<figure><div class=\"wide\">{}</div><div class=\"narrow\">{}</div><figcaption>{}</figcaption></figure>",
            draw(id, s, Size::Wide),
            draw(&format!("{id}-n"), s, Size::Narrow),
            esc(title)
        );
    }
    out.push_str("</div>\n");
    let (x0, x1) = s.span();
    let busy: Vec<_> = s.buckets().filter(|b| b.requests > 0).collect();
    let _ = write!(
        out,
        "<details><summary>The same in numbers ({} of {} of {} with requests)</summary>\
         <div class=\"wrap\"><table id=\"over-time\"><thead><tr><th scope=\"col\">from</th><th scope=\"col\">requests</th>\
         <th scope=\"col\">errors</th><th scope=\"col\">cache hits</th><th scope=\"col\">hit rate</th><th scope=\"col\">cost</th></tr></thead><tbody>",
        busy.len(),
        crate::core::numbers::counted(s.buckets().len() as u64, "bucket"),
        humantime::format_duration(std::time::Duration::from_millis(s.width_ms() as u64)),
    );
    for b in busy {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&chart::time_label(b.start_ms, x1 - x0, s.width_ms())),
            count(b.requests),
            count(b.errors),
            count(b.cache_hits),
            percent(b.cache_hits, b.requests),
            usd(b.cost_usd),
        );
    }
    out.push_str("</tbody></table></div></details></section>\n");
}

fn models(out: &mut String, rows: &[ModelRow]) {
    let attempts: u64 = rows.iter().map(|m| m.attempts).sum();
    out.push_str("<section aria-labelledby=\"models-h\"><h2 id=\"models-h\">Models</h2>\n\
        <div class=\"wrap\"><table id=\"models\"><thead><tr><th scope=\"col\">model</th><th scope=\"col\">attempts</th>\
        <th scope=\"col\">share</th><th scope=\"col\">errors</th><th scope=\"col\">error rate</th><th scope=\"col\">p50</th>\
        <th scope=\"col\">p95</th><th scope=\"col\">p99</th><th scope=\"col\">max</th><th scope=\"col\">cost</th></tr></thead><tbody>");
    for m in rows {
        let _ = write!(
            out,
            "<tr data-model=\"{}\"><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&m.model),
            esc(&m.model),
            count(m.attempts),
            percent(m.attempts, attempts),
            count(m.errors),
            percent(m.errors, m.attempts),
            ms(m.latency.p50),
            ms(m.latency.p95),
            ms(m.latency.p99),
            ms(m.latency.max),
            cost(m.cost_usd, m.cost_unknown),
        );
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"10\">no upstream attempts</td></tr>");
    }
    out.push_str("</tbody></table></div></section>\n");
}

fn histograms(out: &mut String, rows: &[ModelRow]) {
    let drawn: Vec<&ModelRow> = rows.iter().filter(|m| m.bins.total() > 0).collect();
    if drawn.is_empty() {
        return;
    }
    out.push_str("<section aria-labelledby=\"hist-h\"><h2 id=\"hist-h\">Latency by model</h2>\n<div class=\"charts small\">");
    for (i, m) in drawn.iter().take(HISTOGRAMS).enumerate() {
        let svg = chart::histogram(&format!("c-h{i}"), &m.model, &m.bins);
        let (lo, hi) = m.bins.occupied().unwrap_or((0, 0));
        let top = Bins::upper(hi).map_or_else(|| "more".into(), ms_label);
        let _ = write!(
            out,
            "<figure data-model=\"{}\">{svg}<figcaption><span class=\"name\">{}</span> · {} between {} and {}</figcaption></figure>",
            esc(&m.model),
            esc(&m.model),
            count(m.bins.total()),
            esc(&ms_label(Bins::lower(lo))),
            esc(&top),
        );
    }
    out.push_str("</div>");
    if drawn.len() > HISTOGRAMS {
        let _ = write!(
            out,
            "<p class=\"note\">The {} models with the most attempts are drawn; the table above has all {}.</p>",
            HISTOGRAMS,
            drawn.len()
        );
    }
    out.push_str("</section>\n");
}

/// Tasks by model: answers, feedback and what was learned.
fn tasks(out: &mut String, rows: &[super::TaskRow]) {
    if rows.is_empty() {
        return;
    }
    out.push_str("<section aria-labelledby=\"tasks-h\"><h2 id=\"tasks-h\">Tasks</h2>\n\
        <div class=\"wrap\"><table id=\"tasks\"><thead><tr><th scope=\"col\">task</th><th scope=\"col\">model</th>\
        <th scope=\"col\">answered</th><th scope=\"col\">feedback</th><th scope=\"col\">mean score</th>\
        <th scope=\"col\">learned</th></tr></thead><tbody>");
    for t in rows {
        let mean = t.mean_score.map_or("–".to_string(), |m| format!("{m:.2}"));
        // As the text table says it: the share of good outcomes, not the
        // quality routing uses (which starts from the prior).
        let learned = match t.learned_good_share {
            Some(q) if t.learned_events > 0 => format!(
                "{:.0}% good of {}",
                q * 100.0,
                crate::core::numbers::counted(t.learned_events, "event")
            ),
            _ => "prior".to_string(),
        };
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&t.task),
            esc(&t.model),
            count(t.answered),
            count(t.feedback),
            esc(&mean),
            esc(&learned),
        );
    }
    out.push_str("</tbody></table></div></section>\n");
}

/// A breakdown's table: its first column names, the others count.
fn breakdown(out: &mut String, b: &super::Breakdown) {
    if b.rows.is_empty() {
        return;
    }
    let id = esc(&b.id);
    let _ = write!(
        out,
        "<section aria-labelledby=\"{id}-h\"><h2 id=\"{id}-h\">{}</h2>\n\
         <div class=\"wrap\"><table id=\"{id}\"><thead><tr>",
        esc(&b.title)
    );
    for h in &b.header {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in &b.rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let class = if i == 0 { " class=\"name\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", esc(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div></section>\n");
}

/// The client keys: spend, budget left, and this minute against the rates.
fn keys(out: &mut String, rows: &[super::KeyRow]) {
    if rows.is_empty() {
        return;
    }
    out.push_str("<section aria-labelledby=\"keys-h\"><h2 id=\"keys-h\">Keys</h2>\n\
        <div class=\"wrap\"><table id=\"keys\"><thead><tr><th scope=\"col\">key</th><th scope=\"col\">requests</th>\
        <th scope=\"col\">rate-limited</th><th scope=\"col\">spent</th><th scope=\"col\">budget left</th>\
        <th scope=\"col\">requests this minute</th><th scope=\"col\">tokens this minute</th></tr></thead><tbody>");
    let of = |n: u64, cap: Option<u32>| match cap {
        Some(c) => format!("{n} of {c}"),
        None => n.to_string(),
    };
    for k in rows {
        let spent = k
            .spent_usd
            .map_or("–".to_string(), crate::core::numbers::usd);
        let left = match (k.left_usd, k.budget_usd, &k.period) {
            (Some(l), Some(b), Some(p)) => format!(
                "{} of {} ({p})",
                crate::core::numbers::usd(l),
                crate::core::numbers::usd(b)
            ),
            _ => "no budget".to_string(),
        };
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&k.name),
            k.requests,
            k.rate_limited,
            esc(&spent),
            esc(&left),
            esc(&of(k.requests_this_minute, k.rpm)),
            esc(&of(k.tokens_this_minute, k.tpm)),
        );
    }
    out.push_str("</tbody></table></div></section>\n");
}

fn recent(out: &mut String, rows: &[RecentRequest]) {
    out.push_str("<section aria-labelledby=\"recent-h\"><h2 id=\"recent-h\">Last requests</h2>\n\
        <div class=\"wrap\"><table id=\"recent\"><thead><tr><th scope=\"col\">at</th><th scope=\"col\">model</th>\
        <th scope=\"col\">status</th><th scope=\"col\">latency</th><th scope=\"col\">cached</th><th scope=\"col\">attempts</th></tr></thead><tbody>");
    for r in rows {
        let at = stamp(r.at_ms);
        let _ = write!(
            out,
            "<tr class=\"{}\"><td>{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.status >= 400 { "bad" } else { "ok" },
            esc(&at[11..19]),
            esc(r.model.as_deref().unwrap_or("–")),
            r.status,
            ms(Some(r.latency_ms)),
            if r.cached { "yes" } else { "no" },
            r.attempts,
        );
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"6\">none yet</td></tr>");
    }
    out.push_str("</tbody></table></div></section>\n");
}

/// The style sheet: light by default, dark when the system says so; the
/// charts' fixed colours are re-coloured through their attribute values.
const STYLE: &str = r##"
:root{--bg:#ffffff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--axis:#8c959f;--grid:#e4e8ec;--blue:#2563eb;--red:#dc2626;--green:#059669;--purple:#7c3aed;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--card:#161b22;--axis:#656c76;--grid:#262c34;--blue:#60a5fa;--red:#f87171;--green:#34d399;--purple:#a78bfa}}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;overflow-wrap:anywhere}
header{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:.5rem;max-width:1400px;margin:0 auto;padding:1rem 1rem 0}
header form{margin:0}
main{max-width:1400px;margin:0 auto;padding:0 1rem 2rem}
h1{font-size:1.5rem;margin:0}
h2{font-size:1.15rem;margin:1.6rem 0 .6rem;border-bottom:1px solid var(--line);padding-bottom:.3rem}
h3{font-size:.95rem;margin:1rem 0 .4rem;color:var(--muted);font-weight:600}
.sub,.note,figcaption{color:var(--muted);font-size:.9rem}
.sub{margin:.3rem 0 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,9.5rem),1fr));gap:.6rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.55rem .7rem;display:flex;flex-direction:column;min-width:0}
.card .v{font-size:1.35rem;font-weight:650;font-variant-numeric:tabular-nums}
.card .k{color:var(--muted);font-size:.85rem}
.card .n{color:var(--muted);font-size:.8rem}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,30rem),1fr));gap:1rem}
.charts.small{grid-template-columns:repeat(auto-fill,minmax(min(100%,20rem),1fr))}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,44rem),1fr));gap:1rem}
figure{margin:0;min-width:0}
.narrow{display:none}
@media (max-width:40rem){.wide{display:none}.narrow{display:block}}
svg.chart{display:block;width:100%;height:auto;max-width:100%}
svg.chart text{fill:var(--muted)}
svg.chart [stroke="#888888"]{stroke:var(--axis)}
svg.chart [stroke="#DDDDDD"]{stroke:var(--grid)}
svg.chart [fill="#2563EB"]{fill:var(--blue)}
svg.chart [fill="#DC2626"]{fill:var(--red)}
svg.chart [fill="#059669"]{fill:var(--green)}
svg.chart [stroke="#7C3AED"]{stroke:var(--purple)}
svg.chart [fill="#7C3AED"]{fill:var(--purple)}
.wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:.9rem}
caption{text-align:left;font-weight:600;padding:.2rem 0}
th,td{padding:.3rem .5rem;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.name,th:nth-child(2){text-align:left}
td.name{white-space:normal;min-width:7rem}
tr.bad td{color:var(--red)}
.state{padding:.05rem .4rem;border-radius:999px;border:1px solid var(--line);font-size:.8rem}
.state.cooling,.state.open{color:var(--red);border-color:var(--red)}
.state.probing,.state.prior,.state.excluded{color:var(--muted)}
.state.measured{color:var(--green);border-color:var(--green)}
details{margin-top:.6rem}
summary{cursor:pointer;color:var(--muted)}
button,input{font:inherit;padding:.35rem .7rem;border-radius:6px;border:1px solid var(--line);background:var(--card);color:var(--fg)}
"##;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::data::Series;
    use crate::view::Totals;

    #[test]
    fn times_are_stamped_in_utc() {
        assert_eq!(stamp(1_700_000_000_000), "2023-11-14 22:13:20 UTC");
    }

    fn picture() -> Picture {
        let mut series = Series::spanning(1_700_000_000_000, 1_700_003_600_000, 60);
        series.add(1_700_000_100_000, true, false, Some(0.002));
        Picture {
            title: "llmroute report".into(),
            subtitle: "last 1h".into(),
            generated_ms: 1_700_003_600_000,
            totals: Totals {
                requests: 1,
                answered: 1,
                ..Totals::default()
            },
            latency: Summary::of([120.0]),
            series,
            models: vec![ModelRow {
                model: "x/<script>".into(),
                attempts: 1,
                errors: 0,
                latency: Summary::of([120.0]),
                cost_usd: 0.002,
                cost_unknown: 0,
                bins: Bins::of([120.0]),
            }],
            tasks: vec![super::super::TaskRow {
                task: "t<b>".into(),
                model: "x/<script>".into(),
                answered: 2,
                feedback: 1,
                mean_score: Some(0.5),
                learned_good_share: Some(0.75),
                learned_events: 1,
            }],
            breakdowns: vec![super::super::Breakdown {
                id: "by-key".into(),
                title: "Keys".into(),
                header: vec!["key".into(), "requests".into()],
                rows: vec![vec!["team-<a>".into(), "3".into()]],
            }],
            live: None,
        }
    }

    #[test]
    fn a_cost_not_known_is_never_shown_as_0() {
        let mut p = picture();
        p.models[0].cost_usd = 0.0;
        p.models[0].cost_unknown = 1;
        let page = document(&p, &Page::default());
        let row = page.split("<tr data-model=").nth(1).unwrap();
        assert!(row.contains("<td>?</td>"), "{row}");
        p.models[0].cost_usd = 0.5;
        let page = document(&p, &Page::default());
        assert!(page.contains("≥ $0.50"), "some known, some not");
    }

    #[test]
    fn many_models_get_histograms_up_to_the_cap_and_the_page_stays_small() {
        let mut p = picture();
        let row = p.models[0].clone();
        p.models = (0..HISTOGRAMS + 5)
            .map(|i| ModelRow {
                model: format!("provider/model-{i}"),
                bins: Bins::of((0..50).map(|k| 10.0 + (k * (i + 1)) as f64 * 37.0)),
                ..row.clone()
            })
            .collect();
        let page = document(&p, &Page::default());
        assert_eq!(page.matches("<figure data-model=").count(), HISTOGRAMS);
        assert!(page.contains(&format!("the table above has all {}", HISTOGRAMS + 5)));
        assert!(page.len() < 300 * 1024, "{} bytes", page.len());
    }

    #[test]
    fn a_page_is_whole_and_names_nothing_outside() {
        let page = document(
            &picture(),
            &Page {
                csp_meta: Some("default-src 'none'"),
                ..Page::default()
            },
        );
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("Content-Security-Policy"));
        assert!(page.contains("<tr data-model=\"x/&lt;script&gt;\">"));
        assert!(
            page.contains("<td class=\"name\">t&lt;b&gt;</td>"),
            "the task, escaped"
        );
        assert!(page.contains("75% good of 1 event"));
        assert!(page.contains(
            "<table id=\"by-key\"><thead><tr><th scope=\"col\">key</th><th scope=\"col\">requests</th></tr></thead>\
             <tbody><tr><td class=\"name\">team-&lt;a&gt;</td><td>3</td></tr>"
        ));
        assert!(
            !page.contains("<script"),
            "no script, and the model name is escaped"
        );
        // Nothing is fetched: no src or href attributes at all (the SVG
        // namespace is an identifier, not a request).
        for bad in ["src=", "href=", "url(", "@import"] {
            assert!(!page.contains(bad), "{bad}");
        }
        assert_eq!(
            page.matches("<svg").count(),
            7,
            "three charts over time, wide and narrow, and one histogram"
        );
        assert_eq!(page.matches("<svg").count(), page.matches("</svg>").count());
    }
}
