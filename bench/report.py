#!/usr/bin/env python3
"""Turns the harness's results JSON into BENCHMARKS.md and an SVG chart.

usage: report.py RESULTS.json BENCHMARKS.md CHART.svg [TOTAL_SECONDS]

Medians are over the runs, with min–max beside them. Ratios are computed run
by run (llmroute's run k against the peer's and the raw limit's run k), and
the median of those ratios is reported. Standard library only.
"""

import json
import math
import os
import statistics
import sys

import report_quality


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(x, digits=None):
    """A readable number: thousands separators, sensible precision."""
    if x is None:
        return "n/a"
    if digits is None:
        a = abs(x)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{x:,.{digits}f}"


def spread(xs, digits=None, scale=1.0):
    """'median (min–max)' of xs times scale."""
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return num(m, digits)
    return f"{num(m, digits)} ({num(min(xs), digits)}–{num(max(xs), digits)})"


def ratios(a, b):
    return [x / y for x, y in zip(a, b) if x is not None and y]


def verdict(ok):
    if ok is None:
        return "—"
    return "met" if ok else "**missed**"


def baseline_runs(s1):
    """Scenario 1's runs at -j 64 that ran the baseline build beside llmroute."""
    return [r["64"] for r in (s1 or {}).get("runs", []) if "baseline" in r.get("64", {})]


def baseline_rows(s1, s3):
    """Goal rows for llmroute against the baseline build (bench/run's
    BENCH_BASELINE) run beside it: same machine, same minutes."""
    rows = []
    runs = baseline_runs(s1)
    if runs:
        rev = s1["baseline_rev"][:10]
        lr = [r["llmroute"]["lines_per_s"] for r in runs]
        base = [r["baseline"]["lines_per_s"] for r in runs]
        fl = [r["floor"]["requests_per_s"] for r in runs]
        bf = med(ratios(base, fl))
        rows.append(("1", f"the build at `{rev}` / its client floor, -j 64, same run",
                     "n/a" if bf is None else f"{bf * 100:.0f}%", "for reference", None))
        rel = med(ratios(lr, base))
        rows.append(("1", f"llmroute / the build at `{rev}`, -j 64, same run",
                     "n/a" if rel is None else f"{rel * 100:.0f}%", "≥ 95%",
                     rel is not None and rel >= 0.95))
    b3 = (s3 or {}).get("baseline")
    if b3:
        rev = b3["rev"][:10]
        lr = [r["lines_per_s"] for r in s3["runs"]]
        base = [r["lines_per_s"] for r in b3["runs"]]
        rel = med(ratios(lr, base))
        rows.append(("3", f"cached re-run / the build at `{rev}`, same run",
                     "n/a" if rel is None else
                     f"{rel * 100:.0f}% ({num(med(lr), 0)} against {num(med(base), 0)} lines/s)",
                     "≥ 95%", rel is not None and rel >= 0.95))
    return rows


# ---------------------------------------------------------------------------
# The chart
# ---------------------------------------------------------------------------


def svg_chart(s1, out_path):
    conc = [str(c) for c in s1["concurrency"]]
    series = [
        ("llmroute", "#1f77b4", "", [[r[c]["llmroute"]["lines_per_s"] for r in s1["runs"]]
                                      for c in conc]),
        ("LiteLLM Router (peer)", "#ff7f0e", "",
         [[r[c]["peer"]["lines_per_s"] for r in s1["runs"]] for c in conc]),
        ("raw HTTP limit (wrk)", "#555555", "6,4",
         [[r[c]["limit"]["requests_per_s"] for r in s1["runs"]] for c in conc]),
    ]
    if all("floor" in r[c] for r in s1["runs"] for c in conc):
        series.insert(1, ("its HTTP client alone", "#2ca02c", "2,3",
                          [[r[c]["floor"]["requests_per_s"] for r in s1["runs"]] for c in conc]))
    W, H = 720, 440
    left, right, top, bottom = 80, 200, 50, 60
    pw, ph = W - left - right, H - top - bottom
    vals = [v for _, _, _, cols in series for col in cols for v in col if v]
    lo = 10 ** math.floor(math.log10(min(vals)))
    hi = 10 ** math.ceil(math.log10(max(vals)))

    def y(v):
        return top + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

    def x(i):
        return left + pw * (i + 0.5) / len(conc)

    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{W}" height="{H}" fill="white"/>')
    e.append(f'<text x="{left + pw / 2}" y="24" text-anchor="middle" font-size="15" '
             f'font-weight="bold">Throughput against concurrency (upstream answers at once)</text>')
    # Grid: one line per decade, light lines at 2x and 5x.
    d = lo
    while d <= hi * 1.0001:
        for m, strong in ((1, True), (2, False), (5, False)):
            v = d * m
            if v > hi * 1.0001:
                continue
            yy = y(v)
            e.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" '
                     f'stroke="{"#cccccc" if strong else "#eeeeee"}"/>')
            if strong:
                e.append(f'<text x="{left - 8}" y="{yy + 4:.1f}" text-anchor="end">'
                         f'{num(v, 0)}</text>')
        d *= 10
    e.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    for i, c in enumerate(conc):
        e.append(f'<text x="{x(i):.1f}" y="{top + ph + 20}" text-anchor="middle">{c}</text>')
    e.append(f'<text x="{left + pw / 2}" y="{H - 18}" text-anchor="middle">'
             f'requests in flight (-j, wrk -c)</text>')
    e.append(f'<text transform="translate(22,{top + ph / 2}) rotate(-90)" text-anchor="middle">'
             f'lines/s (requests/s for wrk), log scale</text>')
    placed = {}  # label baselines already used at each concurrency
    for name, colour, dash, cols in series:
        meds = [med(col) for col in cols]
        pts = " ".join(f"{x(i):.1f},{y(m):.1f}" for i, m in enumerate(meds) if m)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        e.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2.5"'
                 f'{dash_attr}/>')
        for i, col in enumerate(cols):
            col = [v for v in col if v]
            if not col:
                continue
            xx = x(i)
            e.append(f'<line x1="{xx:.1f}" y1="{y(min(col)):.1f}" x2="{xx:.1f}" '
                     f'y2="{y(max(col)):.1f}" stroke="{colour}" stroke-width="1.5"/>')
            e.append(f'<circle cx="{xx:.1f}" cy="{y(med(col)):.1f}" r="4" fill="{colour}"/>')
            # Right of the dot, above or below it, else left of it: clear of
            # the labels already placed on that side and of every series' dot.
            dots = [y(med([v for v in c[i] if v])) for _, _, _, c in series if any(c[i])]
            me = y(med(col))
            tries = [(side, ly) for side in (1, -1) for ly in (me - 7, me + 18, me - 21, me + 32)]
            for side, ly in tries:
                taken = placed.get((i, side), [])
                clear_labels = all(abs(ly - other) >= 14 for other in taken)
                clear_dots = all(d == me or not (ly - 12 <= d <= ly + 3) for d in dots)
                if clear_labels and clear_dots:
                    break
            else:
                side, ly = tries[0]
            placed.setdefault((i, side), []).append(ly)
            anchor = "start" if side > 0 else "end"
            e.append(f'<text x="{xx + 8 * side:.1f}" y="{ly:.1f}" fill="{colour}" '
                     f'text-anchor="{anchor}" stroke="white" stroke-width="3" '
                     f'paint-order="stroke">{num(med(col), 0)}</text>')
    for j, (name, colour, dash, _) in enumerate(series):
        ly = top + 20 + j * 22
        lx = left + pw + 16
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        e.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 26}" y2="{ly}" stroke="{colour}" '
                 f'stroke-width="2.5"{dash_attr}/>')
        e.append(f'<text x="{lx + 32}" y="{ly + 4}">{name}</text>')
    notes = top + 20 + len(series) * 22 + 12
    e.append(f'<text x="{left + pw + 16}" y="{notes}" fill="#555">dot: median of the runs</text>')
    e.append(f'<text x="{left + pw + 16}" y="{notes + 16}" fill="#555">bar: min–max</text>')
    e.append("</svg>")
    with open(out_path, "w") as f:
        f.write("\n".join(e) + "\n")


# ---------------------------------------------------------------------------
# Scenarios 9 and 10: `llmroute serve`
# ---------------------------------------------------------------------------

SERVE_FILE = "results-serve.json"
S9_ROWS = [("straight", "straight to the upstream"), ("nginx", "nginx, reverse proxy"),
           ("llmroute", "llmroute serve, pinned"),
           ("llmroute_keys", "llmroute serve, keys and policy on"),
           ("llmroute_auto", "llmroute serve, `model: auto`"), ("litellm", "LiteLLM proxy"),
           ("portkey", "Portkey gateway"), ("straight_after", "straight, again after all")]
S9_BASE = ("straight", "straight_after")
PEERS = ("litellm", "portkey")
S9_MAX_ROWS = (("straight", "straight to the upstream"), ("nginx", "nginx, reverse proxy"),
               ("serve_floor", "the server floor: llmroute's stack and upstream client alone"),
               ("llmroute", "llmroute serve, pinned"),
               ("llmroute_keys", "llmroute serve, keys and policy on"),
               ("llmroute_keys_cached", "llmroute serve, keys and policy on, answered from the "
                "cache"),
               ("llmroute_tls", "llmroute serve, upstream over TLS"))
# llmroute with keys and policy on against nginx at the maximum: at most this
# many µs of CPU a request more, and at least this share of its rate.
KEYS_CPU_OVER_NGINX_US = 40
KEYS_SHARE_OF_NGINX = 0.60
# The same server answering from its cache: at most 40 µs of CPU a request
# where nginx spends 16.4 µs, taken as a multiple of nginx's CPU in the same
# round (this machine's speed varies by a third from hour to hour), and the
# same share of nginx's rate.
CACHED_CPU_US, NGINX_CPU_US = 40, 16.4


def merge_apart(R, res_path, keys, names):
    """Scenarios `keys` from the results files `names` beside the results, where
    `bench/run` puts them when they run apart from scenarios 1 to 8 and 11,
    unless the results (or a file merged before) hold a newer run of them."""
    for name in names:
        p = os.path.join(os.path.dirname(os.path.abspath(res_path)), name)
        if os.path.abspath(p) == os.path.abspath(res_path) or not os.path.exists(p):
            continue
        with open(p) as f:
            apart = json.load(f)
        for k in keys:
            mine = R["scenarios"].get(k)
            theirs = apart["scenarios"].get(k)
            started = (mine or {}).get("run", {}).get("started", R["started"])
            if theirs and (not mine or apart["started"] >= started):
                theirs["run"] = {"started": apart["started"], "machine": apart["machine"],
                                 "only": apart.get("only"),
                                 "quick": apart.get("quick"), "file": f"bench/{name}"}
                R["scenarios"][k] = theirs
                R.setdefault("problems", []).extend(
                    p for p in apart.get("problems", []) if p.startswith(f"{k} ") or
                    p.startswith(f"{k}:"))


def s9_rate(s9, key, rate):
    c = s9["contenders"].get(key) or {}
    r = c.get("rates", {}).get(str(rate))
    return r if r and "failed" not in r else None


def s9_added(s9, key, rate, pct, base="straight"):
    """Through `key` minus straight, at one rate and percentile, in ms: the
    straight run just before it where there is one."""
    a = s9_rate(s9, key, rate)
    b = (a or {}).get("baseline") or s9_rate(s9, base, rate)
    if not a or not b or a.get(pct) is None or b.get(pct) is None:
        return None
    return a[pct] - b[pct]


def pct_spread(xs):
    """Shares as 'median% (min–max%)'; "" when there are none."""
    if not xs:
        return ""
    m = f"{statistics.median(xs) * 100:.0f}%"
    return m if len(xs) == 1 else f"{m} ({min(xs) * 100:.0f}–{max(xs) * 100:.0f}%)"


def signed_spread(xs):
    """Differences as '+median (min to max)'; "" when there are none."""
    if not xs:
        return ""
    m = f"{statistics.median(xs):+,.0f}"
    return m if len(xs) == 1 else f"{m} ({min(xs):+,.0f} to {max(xs):+,.0f})"


def max_against(mx, key, base="nginx"):
    """At the maximum, round by round (the servers took turns): key's rate as a
    share of base's, and key's CPU µs a request minus base's. None when either
    is missing."""
    a, b = mx.get(key), mx.get(base)
    if not a or not b:
        return None
    ra = {r.get("round"): r for r in a.get("rounds", [])}
    rb = {r.get("round"): r for r in b.get("rounds", [])}
    pairs = [(ra[k], rb[k]) for k in sorted(ra, key=str) if k in rb] or [(a, b)]
    share = [x["requests_per_s"] / y["requests_per_s"] for x, y in pairs
             if x.get("requests_per_s") and y.get("requests_per_s")]
    more = [x["cpu_us_per_req"] - y["cpu_us_per_req"] for x, y in pairs
            if x.get("cpu_us_per_req") is not None and y.get("cpu_us_per_req") is not None]
    times = [x["cpu_us_per_req"] / y["cpu_us_per_req"] for x, y in pairs
             if x.get("cpu_us_per_req") is not None and y.get("cpu_us_per_req")]
    return {"share": share, "cpu_more": more, "cpu_times": times, "rounds": len(pairs)}


def serve_goals(S):
    goals = []
    s9 = S.get("9")
    if s9:
        rate = 1000 if 1000 in s9["rates"] else s9["rates"][-1]
        lr = s9_added(s9, "llmroute", rate, "p99_ms")
        goals.append(("9", f"`serve`: p99 added at {num(rate, 0)} requests/s",
                      "n/a" if lr is None else f"{lr:+.2f} ms", "≤ 1 ms",
                      lr is not None and lr <= 1))
        # Against the peers at that rate, and at the highest rate a peer kept up with.
        kept = [r for r in s9["rates"] if r != rate and any(
            s9_rate(s9, k, r) and not s9_rate(s9, k, r)["saturated"] for k in PEERS)]
        for r in [rate] + kept[-1:]:
            mine = s9_added(s9, "llmroute", r, "p99_ms")
            peers = [(s9_added(s9, k, r, "p99_ms"), k) for k in PEERS]
            peers = [(v, k) for v, k in peers if v is not None]
            if not peers:
                continue
            best, who = min(peers)
            ok = mine is not None and best >= 10 * max(mine, 0)
            times = None if mine is None or mine <= 0 else best / mine
            ratio = ("n/a" if mine is None else "∞" if times is None else
                     f"{times:,.1f}×" if times < 100 else f"{times:,.0f}×")
            mine_s = "n/a" if mine is None else f"{mine:+.2f}"
            goals.append(("9", f"`serve`: added p99 against the best peer ({dict(S9_ROWS)[who]}) "
                          f"at {num(r, 0)}/s", f"{ratio} ({mine_s} against {best:+,.2f} ms)",
                          "≥ 10× less", ok))
        lk = s9_added(s9, "llmroute_keys", rate, "p99_ms")
        if s9["contenders"].get("llmroute_keys"):
            goals.append(("9", f"`serve`, keys and policy on: p99 added at {num(rate, 0)} "
                          "requests/s", "n/a" if lk is None else f"{lk:+.2f} ms", "≤ 1 ms",
                          lk is not None and lk <= 1))
        mx = s9.get("max") or {}
        vs = max_against(mx, "llmroute_keys")
        if mx.get("llmroute_keys"):
            k, n = mx["llmroute_keys"], mx.get("nginx") or {}
            more, share = (med(vs["cpu_more"]), med(vs["share"])) if vs else (None, None)
            goals.append((
                "9", f"`serve`, keys and policy on: CPU a request at {s9['connections']} "
                "connections, over nginx's", "n/a" if more is None else
                f"{more:+.0f} µs ({num(k.get('cpu_us_per_req'), 0)} against "
                f"{num(n.get('cpu_us_per_req'), 0)})", f"≤ +{KEYS_CPU_OVER_NGINX_US} µs",
                more is not None and more <= KEYS_CPU_OVER_NGINX_US))
            goals.append((
                "9", f"`serve`, keys and policy on: requests/s at {s9['connections']} "
                "connections, as a share of nginx's", "n/a" if share is None else
                f"{share * 100:.0f}% ({num(k.get('requests_per_s'), 0)} against "
                f"{num(n.get('requests_per_s'), 0)}, {k.get('errors')} errors)",
                f"≥ {KEYS_SHARE_OF_NGINX * 100:.0f}%",
                share is not None and share >= KEYS_SHARE_OF_NGINX and k.get("errors") == 0))
        c = mx.get("llmroute_keys_cached")
        if c:
            vs = max_against(mx, "llmroute_keys_cached")
            share = med(vs["share"]) if vs else None
            times = med(vs["cpu_times"]) if vs and vs["cpu_times"] else None
            most = CACHED_CPU_US / NGINX_CPU_US
            goals.append((
                "9", "`serve`, keys and policy on, answered from the cache: CPU a request at "
                f"{s9['connections']} connections, as a multiple of nginx's",
                "n/a" if times is None else f"{times:.2f}× ({num(c.get('cpu_us_per_req'), 0)} "
                f"µs against {num((mx.get('nginx') or {}).get('cpu_us_per_req'), 0)})",
                f"≤ {most:.2f}× ({CACHED_CPU_US} µs where nginx spends {NGINX_CPU_US})",
                times is not None and times <= most))
            goals.append((
                "9", "`serve`, keys and policy on, answered from the cache: requests/s at "
                f"{s9['connections']} connections, as a share of nginx's",
                "n/a" if share is None else f"{share * 100:.0f}% "
                f"({num(c.get('requests_per_s'), 0)} against "
                f"{num((mx.get('nginx') or {}).get('requests_per_s'), 0)}, {c.get('errors')} "
                "errors)", f"≥ {KEYS_SHARE_OF_NGINX * 100:.0f}%",
                share is not None and share >= KEYS_SHARE_OF_NGINX and c.get("errors") == 0
                and c.get("cached_answer") is True))
        m = s9.get("max", {}).get("llmroute")
        goals.append(("9", f"`serve`: requests/s at {s9['connections']} connections, no errors",
                      "n/a" if not m else f"{num(m['requests_per_s'], 0)} ({m['errors']} errors)",
                      "≥ 20,000", bool(m) and m["requests_per_s"] >= 20_000 and m["errors"] == 0))
        goals.append(("9", "`serve`: peak RSS under that load",
                      "n/a" if not m else f"{m['hwm_kb'] / 1024:.1f} MB", "≤ 64 MB",
                      bool(m) and m["hwm_kb"] <= 64 * 1024))
    s10 = S.get("10")
    if s10:
        for key, what in (("rss_kb", "RSS"), ("store_bytes", "store size")):
            v = steady(s10, key)
            if not v:
                goals.append(("10", f"soak: {what} flat", "n/a (did not run)",
                              "last ≤ 1.1× at ½", False))
                continue
            grow = v["last"] / v["half"] if v["half"] else None
            goals.append(("10", f"soak: {what} flat over {s10['seconds']} s",
                          f"×{grow:.2f} from ½ to the end" if grow else "n/a",
                          "last ≤ 1.1× at ½", v["flat"]))
    return goals


def steady(s10, key):
    """A soak's samples of `key` once warmed up: at half the run (the cache
    has filled, and the first metrics have passed --retention and been
    pruned), at the end, and whether the end is within 10% of the half."""
    samples = s10.get("samples") or []
    if len(samples) < 3:
        return None
    half = max((x for x in samples if x["t"] <= s10["seconds"] / 2), key=lambda x: x["t"])
    vals = [x[key] for x in samples]
    return {"first": samples[1][key], "half": half[key], "half_t": half["t"],
            "last": vals[-1], "max": max(vals), "flat": vals[-1] <= 1.1 * half[key]}


def metric_sum(lines, name):
    """The sum of a Prometheus metric's samples over its labels, or None."""
    vals = [float(line.rsplit(" ", 1)[1]) for line in lines
            if line == name or line.startswith(name + " ") or line.startswith(name + "{")]
    return sum(vals) if vals else None


def ms(x, digits=2):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def run_note(s, M):
    """Where a scenario's numbers come from, when not from the main run."""
    run = s.get("run")
    if not run:
        return []
    m = run["machine"]
    quick = " in quick mode" if run.get("quick") else ""
    if m.get("prebuilt"):
        what = (f"with an llmroute built outside this checkout ({m.get('llmroute')}, built "
                f"{m.get('llmroute_built')}), the bench at commit `{m.get('commit')}`")
    else:
        what = f"at llmroute commit `{m.get('commit')}` ({m.get('llmroute') or 'no llmroute'})"
    only = ",".join(str(n) for n in run.get("only") or [9, 10])
    return [f"Run on {run['started']}{quick} by `BENCH_ONLY={only} bench/run`, {what}; results in "
            f"`{run['file']}`.", ""]


def straight_runs(s9, rate, pct):
    """Every straight run at a rate: the first, and each server's baseline."""
    out = []
    for key, c in s9["contenders"].items():
        r = c.get("rates", {}).get(str(rate)) or {}
        v = (r if key == "straight" else r.get("baseline") or {}).get(pct)
        if v is not None and "failed" not in r:
            out.append(v)
    return out


def s9_table(s9, rates, rows):
    md = ["| requests/s | | answered/s | p50 ms | p99 ms | max ms | straight just before, "
          "p50 / p99 ms | added p50 ms | added p99 ms | errors | CPU µs a request | "
          "peak RSS MB | load |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for rate in rates:
        for key, label in rows:
            c = s9["contenders"].get(key)
            if not c:
                continue
            r = s9_rate(s9, key, rate)
            if not r:
                why = (f"fell behind at {num(c['saturated_at'], 0)}/s: not offered more"
                       if c.get("saturated_at") else c.get("failed", "not measured"))
                md.append(f"| {num(rate, 0)} | {label} | {why} | | | | | | | | | | |")
                continue
            base = key in S9_BASE
            b = r.get("baseline")
            pair = f"{ms(b['p50_ms'], 3)} / {ms(b['p99_ms'])}" if b else ""
            add50 = "" if base else ms(s9_added(s9, key, rate, "p50_ms"), 3)
            add99 = "" if base else ms(s9_added(s9, key, rate, "p99_ms"), 2)
            md.append(f"| {num(rate, 0)} | {label} | {num(r['requests_per_s'], 0)} | "
                      f"{ms(r['p50_ms'], 3)} | {ms(r['p99_ms'])} | {ms(r['max_ms'], 1)} | {pair} | "
                      f"{add50} | {add99} | {r['errors']} | {num(r['cpu_us_per_req'], 0)} | "
                      f"{r['hwm_kb'] / 1024:.1f} | {r.get('load', '')} |")
    md.append("")
    return md


def section9(s9, M):
    md = ["## 9. Added latency of `llmroute serve`", ""]
    md += run_note(s9, M)
    m = (s9.get("run") or {}).get("machine") or M
    md.append(f"An HTTP server between a client and the upstream adds the time it takes to pass a "
              f"request on and the answer back. The load generator, {s9.get('generator')}, offers "
              f"requests at a fixed rate (open loop, `-q`) on up to {s9['connections']} "
              f"connections for {s9['seconds']} s at each rate, after a {s9['warm_up_s']} s "
              "warm-up, with `--latency-correction`: a request's latency runs from when it was "
              "due, so a server that falls behind shows it instead of being offered less. Every "
              "request is the same chat body (`bench/gen_requests.py --body`) to the fake "
              "upstream, which answers at once. **Added** latency is through a server minus "
              "straight to the upstream, at the same rate and percentile, from a straight run "
              "made just before that server's run (shown beside it; others share this machine, "
              "so runs minutes apart differ more than the servers do). CPU is the "
              "server's user and system time over the run (`/proc/PID/stat`, all its processes) "
              "divided by the requests answered (for the straight rows, the fake upstream's); "
              "peak RSS is its `VmHWM` so far. A contender that falls behind at a rate (fewer "
              "than 95% of the requests answered, or any error) is not offered the next one.")
    md.append("")
    cmds = []
    for key, label in S9_ROWS:
        c = s9["contenders"].get(key)
        if key not in S9_BASE and c and c.get("cmd"):
            ready = f", ready in {c['startup_s']:.1f} s" if c.get("startup_s") else ""
            cmds.append(f"- {label}: `{c['cmd']}`{ready}")
    if not s9.get("serve"):
        cmds.insert(0, "- **llmroute serve: not measured**: the llmroute built had no `serve` "
                       "subcommand yet.")
    md.append("The servers, on the same machine, all sending to the same fake upstream "
              "(`--workers 2`):")
    md.append("")
    md += cmds
    md.append(f"- versions: LiteLLM {m.get('litellm')} (its proxy, one worker, the default, "
              f"master key set, telemetry off); Portkey gateway {m.get('portkey')} on node "
              f"{m.get('node')}, reaching the fake through `x-portkey-provider: openai` and "
              "`x-portkey-custom-host`.")
    md.append("")
    ngx = s9.get("nginx")
    if ngx:
        md.append(f"nginx ({ngx.get('version') or 'nginx'}, Debian's package) is the floor of "
                  "a reverse proxy: `proxy_pass` to the fake and nothing else, in a scratch "
                  "directory of its own (its `nginx.conf`, pid file, error log and temporary "
                  "files), in the foreground (`daemon off`), with no access log (llmroute runs "
                  f"with `-q`). `worker_processes {ngx.get('workers')}`: one a core on these "
                  f"{m.get('cores')} cores, what `auto` gives here, as llmroute's runtime has one "
                  "worker thread a core; a worker per core is also nginx's own advice. Upstream "
                  "connections are HTTP/1.1 and kept alive (`keepalive "
                  f"{s9['connections']}` idle a worker), and neither side closes a keep-alive "
                  "connection after a number of requests (nginx's default closes it after "
                  "1,000; llmroute never does). Its CPU and RSS are summed over the master and "
                  "the workers.")
        md.append("")
        if ngx.get("conf"):
            md.append("<details><summary>nginx.conf</summary>")
            md.append("")
            md.append("```nginx")
            md += ngx["conf"].rstrip("\n").splitlines()
            md.append("```")
            md.append("")
            md.append("</details>")
            md.append("")
    if s9["contenders"].get("llmroute_keys"):
        md.append("**Keys and policy on.** Before that server starts, `llmroute keys create` "
                  "makes a client key in its store (`--db`, the same for both commands) with "
                  "every limit there is, each far above what the bench asks: a budget of $1,000 "
                  "a day, 10,000,000 requests and 2,000,000,000 tokens a minute, every model "
                  "(`'*'`) and at most 4,096 `max_tokens`. A store with a key makes the server "
                  "take tokens, so every request carries the key's token (`Authorization: "
                  "Bearer …`, oha's `-H`, and `BENCH_TOKEN` for `bench/post.lua`) and goes "
                  "through the key's checks; none is refused. The pinned row is the same server "
                  "without a key. The goals for it: added p99 at 1,000 requests/s within 1 ms, "
                  f"and at the maximum (64 connections) at most {KEYS_CPU_OVER_NGINX_US} µs of "
                  "CPU a request more than nginx and at least "
                  f"{KEYS_SHARE_OF_NGINX * 100:.0f}% of nginx's rate, in the same round.")
        spent = []
        for what, after in (("the fixed rates", s9["contenders"]["llmroute_keys"].get(
                "key_after")), ("the maximum", (s9.get("max") or {}).get(
                "llmroute_keys", {}).get("key_after"))):
            if after and after.get("spent_usd") is not None:
                spent.append(f"${after['spent_usd']:,.4f} after {what}")
        if spent:
            md[-1] += (" What the key had spent, by `llmroute keys show` once the server had "
                       "stopped (the fake's catalogue prices): " + "; ".join(spent) + ".")
        md.append("")
    md += s9_table(s9, s9["rates"], S9_ROWS)
    floor = []
    for rate in s9["rates"]:
        p99 = straight_runs(s9, rate, "p99_ms")
        if len(p99) > 1:
            floor.append(f"{num(rate, 0)}/s, {len(p99)} runs: {min(p99):.2f}–{max(p99):.2f} ms")
    if floor:
        md.append("**How far to trust a p99.** The same straight run, repeated at each rate (once "
                  "on its own, then before each server), gave these p99s: " + "; ".join(floor) +
                  ". An added p99 smaller than that spread is within this machine's noise; the "
                  "p50s move far less. `load` is the machine's 1-minute load average at the end "
                  "of the run (the load generator, the fake upstream and the server count for "
                  "about 1–2 of it).")
        md.append("")
    mx = s9.get("max") or {}
    if mx:
        n = s9.get("max_rounds") or 1
        how = (f" In {n} rounds the servers, each started once, take turns, one run each a "
               "round (each round starting one further on), so that whatever else runs on this "
               "machine weighs on them alike: figures are medians over the rounds with min–max "
               "in brackets, peak RSS is after every round, and the share of nginx's rate and "
               "the CPU a request over nginx's are taken round by round." if n > 1 else "")
        md.append(f"**Maximum.** wrk (`bench/post.lua`, the same body) on {s9['connections']} "
                  f"keep-alive connections, closed loop, for {s9['max_seconds']} s after a 1 s "
                  "warm-up, against fresh servers: the rate each sustains, and its memory under "
                  f"that load.{how}")
        md.append("")
        c = mx.get("llmroute_keys_cached")
        if c:
            md.append("**Answered from the cache.** The keyed server again, with its cache on "
                      "(no `--no-cache`), and every request carrying `x-llmroute-cache-sampled: "
                      "true`, by which a client takes a cached answer to a sampled request (the "
                      "body sets a temperature and no seed). After the first call the cache "
                      "answers every request, so this row is the gateway alone: the token, the "
                      "key's checks, the body read, the cache lookup in the store and the "
                      "record of the request, with no upstream call. After the rounds one more "
                      "request came back " + ("with `x-llmroute-cached: true`." if
                                               c.get("cached_answer") else
                                               "**without** `x-llmroute-cached: true`: the row "
                                               "does not measure what it says."))
            md.append("")
        vs_nginx = "nginx" in mx
        md.append("| | requests/s | errors | p50 ms | p99 ms | CPU µs a request | peak RSS MB |" +
                  (" rate, share of nginx's | CPU µs a request over nginx's |" if vs_nginx
                   else ""))
        md.append("|---|---|---|---|---|---|---|" + ("---|---|" if vs_nginx else ""))

        def field(r, key, scale=1.0, digits=None):
            vals = [x.get(key) for x in r.get("rounds", [])]
            vals = [v for v in vals if v is not None]
            if len(vals) > 1:
                return spread(vals, digits, scale)
            v = r.get(key)
            return "n/a" if v is None else num(v * scale, digits)

        for key, label in S9_MAX_ROWS:
            r = mx.get(key)
            if not r:
                continue
            # Only the servers that took turns with nginx are set against it.
            vs = (max_against(mx, key) if key not in ("straight", "nginx") and r.get("rounds")
                  else None)
            share = pct_spread(vs["share"]) if vs else ""
            more = signed_spread(vs["cpu_more"]) if vs else ""
            md.append(f"| {label} | {field(r, 'requests_per_s', digits=0)} | {r['errors']} | "
                      f"{field(r, 'p50_us', 0.001, 2)} | {field(r, 'p99_us', 0.001, 2)} | "
                      f"{field(r, 'cpu_us_per_req', digits=0)} | {r['hwm_kb'] / 1024:.1f} |" +
                      (f" {share} | {more} |" if vs_nginx else ""))
        md.append("")
        sentences = []
        for key in ("serve_floor", "llmroute", "llmroute_keys", "llmroute_keys_cached"):
            vs = max_against(mx, key)
            if vs and vs["share"] and vs["cpu_more"]:
                what = dict(S9_MAX_ROWS)[key]
                sentences.append(
                    f"{what} answered {med(vs['share']) * 100:.0f}% of nginx's requests a "
                    f"second and spent {num(mx[key].get('cpu_us_per_req'), 0)} µs of CPU a "
                    f"request to nginx's {num(mx['nginx'].get('cpu_us_per_req'), 0)} "
                    f"({med(vs['cpu_more']):+.0f} µs)")
        if sentences:
            md.append("In the same run, " + "; ".join(sentences) + ". The upstream's own CPU "
                      "is not counted in any row but the straight one.")
            md.append("")
        floor, keyed = mx.get("serve_floor"), mx.get("llmroute_keys")
        if floor and keyed and floor.get("cpu_us_per_req") and keyed.get("cpu_us_per_req"):
            md.append(
                "The server floor (`examples/serve_floor.rs`) is an axum server on llmroute's "
                "runtime, allocator and upstream client that passes each body on unread and "
                "answers with the upstream's: no keys, policy, routing, cache, store or log. What "
                "it spends is the stack's share of a request passed on; the keyed server's own "
                f"work is the rest: {num(floor['cpu_us_per_req'], 0)} and "
                f"{num(keyed['cpu_us_per_req'] - floor['cpu_us_per_req'], 0)} µs of CPU a "
                "request.")
            md.append("")
    tls = s9.get("tls")
    if tls is not None:
        md.append(f"**Upstream over TLS.** {tls.get('terminator') or 'stunnel'} terminates TLS in "
                  "front of the same fake upstream with a certificate from a throw-away CA made "
                  "with `openssl`; llmroute trusts that CA through `SSL_CERT_FILE`, and oha, for "
                  "the row straight over TLS, through `--cacert`. Added latency is against a "
                  "plain straight run at the same rate, so for llmroute it includes the TLS hop "
                  "and the terminator.")
        md.append("")
        tls_rates = [r for r in s9["rates"] if s9_rate(s9, "straight_tls", r) or
                     s9_rate(s9, "llmroute_tls", r)]
        md += s9_table(s9, tls_rates, (("straight", "straight to the upstream"),
                                       ("straight_tls", "straight over TLS"),
                                       ("llmroute", "llmroute serve, plain upstream"),
                                       ("llmroute_tls", "llmroute serve, TLS upstream")))
    return md


def section10(s10, M):
    md = ["## 10. Soak", ""]
    md += run_note(s10, M)
    if s10.get("skipped"):
        md.append("Not run: the llmroute built had no `serve` subcommand yet.")
        md.append("")
        return md
    load = s10.get("load", {})
    md.append(f"`{s10.get('cmd', 'llmroute serve')}`, cache on, retention "
              f"{s10.get('retention')}, under {num(s10['rate'], 0)} requests/s (oha, open loop, "
              f"{s10['connections']} connections) for {s10['seconds']} s. Each request is one of "
              f"{num(s10['distinct'], 0)} distinct bodies with `model: auto`, picked at random, "
              "so the cache fills during the first quarter of the run and then answers nearly "
              f"everything. Every {s10['sample_s']} s the server's RSS (`VmRSS`) and the store's "
              f"size (`{s10.get('store', 'llmroute.db')}` and its `-wal` under `XDG_DATA_HOME`) "
              "are sampled. The soak stands for a day scaled down to minutes, its rate scaled "
              "up. Flat means the last sample is at most 1.1 times the one at half the run, once "
              "warmed up: the cache filled, and the first metrics past `--retention` pruned.")
    md.append("")
    if "failed" not in load:
        md.append(f"Load: {num(load.get('requests'), 0)} requests, "
                  f"{num(load.get('requests_per_s'), 0)}/s answered, {load.get('errors')} errors, "
                  f"p50 {ms(load.get('p50_ms'), 3)} ms, p99 {ms(load.get('p99_ms'))} ms, max "
                  f"{ms(load.get('max_ms'), 1)} ms; peak RSS {s10['hwm_kb'] / 1024:.1f} MB.")
        md.append("")
    hits = metric_sum(s10.get("metrics", []), "llmroute_cache_hits_total")
    answered = metric_sum(s10.get("metrics", []), "llmroute_requests_total")
    if hits is not None and answered:
        md.append(f"The cache answered {hits / answered * 100:.1f}% of the "
                  f"{num(answered, 0)} requests (`/metrics`).")
        md.append("")
    tables = s10.get("tables") or {}
    if tables and "error" not in tables:
        big = sorted(((v["bytes"], k, v.get("rows")) for k, v in tables.items()), reverse=True)
        parts = [f"`{k}` {b / 1e6:.1f} MB" + (f" ({num(r, 0)} rows)" if r is not None else "")
                 for b, k, r in big[:4]]
        md.append(f"The store at the end, by table with its indexes: {', '.join(parts)}.")
        md.append("")
    md.append("| | first sample | at half the run | last | max | flat |")
    md.append("|---|---|---|---|---|---|")
    for key, label, scale in (("rss_kb", "RSS MB", 1 / 1024), ("store_bytes", "store MB", 1e-6)):
        v = steady(s10, key)
        if v:
            md.append(f"| {label} | {v['first'] * scale:.1f} | {v['half'] * scale:.1f} | "
                      f"{v['last'] * scale:.1f} | {v['max'] * scale:.1f} | "
                      f"{'yes' if v['flat'] else '**no**'} |")
    md.append("")
    samples = s10.get("samples", [])
    st = s10.get("store_bytes")
    rate = load.get("requests_per_s")
    if st and rate and len(samples) > 2:
        q = max((x for x in samples if x["t"] <= s10["seconds"] / 2), key=lambda x: x["t"])
        span = samples[-1]["t"] - q["t"]
        if span > 0:
            md.append(f"From half the run to its end the store grew by "
                      f"{(samples[-1]['store_bytes'] - q['store_bytes']) / (span * rate):,.1f} "
                      "bytes a request. Every request's metrics (its `requests` and `attempts` "
                      f"rows, which `report` reads) are kept for `--retention` ({s10.get('retention')} "
                      "here) and pruned by the upkeep as the server runs; the cache is bounded by "
                      "the distinct requests (and, in production, by `--cache-ttl` and "
                      "`--cache-max-size`).")
            md.append("")
    if len(samples) > 2:
        step = max(1, len(samples) // 10)
        picks = samples[::step]
        if round(picks[-1]["t"]) >= round(samples[-1]["t"]) - 1:
            picks.pop()
        picks.append(samples[-1])
        md.append("| seconds | " + " | ".join(f"{x['t']:.0f}" for x in picks) + " |")
        md.append("|---|" + "---|" * len(picks))
        md.append("| RSS MB | " + " | ".join(f"{x['rss_kb'] / 1024:.1f}" for x in picks) + " |")
        md.append("| store MB | " + " | ".join(f"{x['store_bytes'] / 1e6:.1f}" for x in picks)
                  + " |")
        md.append("")
    return md



# ---------------------------------------------------------------------------
# BENCHMARKS.md
# ---------------------------------------------------------------------------


def section11(s11, sizes):
    md = ["## 11. The cost of Redis", ""]
    runs = s11["runs"]
    md.append(f"The scenario-3 input ({num(s11['lines'], 0)} distinct lines) at `-j "
              f"{s11['concurrency']}` against the fake upstream that answers at once, cache on, a "
              f"fresh local store each run, and a `redis-server` {s11.get('redis') or ''} of the "
              "bench's own on the loopback interface (persistence off), emptied before each run "
              "with Redis. The re-run from Redis starts from an empty local store, so every line "
              "is a Redis hit (and is written into the local store on the way).")
    md.append("")
    md.append("| | lines/s | against local only |")
    md.append("|---|---|---|")
    local = [r["local"]["lines_per_s"] for r in runs]
    for key, label in (("local", "uncached, local store only"),
                       ("redis", "uncached, with `--redis`"),
                       ("from_redis", "cached re-run, answers from Redis into an empty store")):
        xs = [r[key]["lines_per_s"] for r in runs]
        rel = "" if key == "local" else f"{med([x / l for x, l in zip(xs, local)]):.2f}×"
        md.append(f"| {label} | {spread(xs, 0)} | {rel} |")
    md.append("")
    md.append("A line with Redis waits on it once: a local miss costs one script that looks the "
              "answer up and, when there is none, takes the flight lease; writes (the answer, "
              "averages, the lease's release) are queued and pipelined off the line's path.")
    md.append("")
    return md


UPSTREAMS_FILE = "results-upstreams.json"
S13_ROWS = (("one8", "one upstream, 8 candidates (`m/1` … `m/8`)"),
            ("baseline_one8", "the same, the build at `{rev}`"),
            ("one24", "one upstream, 24 candidates (`m/1` … `m/24`)"),
            ("baseline_one24", "the same, the build at `{rev}`"),
            ("three8", "three upstreams, 8 candidates on each (`m/1` … `m/8`, `two:m/1` … "
                       "`two:m/8`, `three:m/1` … `three:m/8`)"),
            ("one24_dry", "one upstream, 24 candidates, `--dry-run`"),
            ("three8_dry", "three upstreams, 8 candidates on each, `--dry-run`"))


def us_spread(xs):
    """µs differences as '+median (min to max)', two decimals."""
    if not xs:
        return "n/a"
    m = f"{statistics.median(xs):+,.2f}"
    return m if len(xs) == 1 else f"{m} ({min(xs):+,.2f} to {max(xs):+,.2f})"


def section13(s13, M):
    md = ["## 13. Several upstreams", ""]
    md += run_note(s13, M)
    cs = s13["contenders"]
    rev = (s13.get("baseline_rev") or "")[:10]
    listed = s13["listed"]
    md.append(f"The scenario-1 input ({num(s13['lines'], 0)} distinct lines) at `-j "
              f"{s13['concurrency']}`, `--no-cache`, a fresh store each run, against three fake "
              "upstreams of the scenario's own that answer at once: the default one "
              f"(`--base-url`) lists {listed['default']} models, `m/1` … "
              f"`m/{listed['default']}`, and the two a config file names (`[upstreams.two]` and "
              f"`[upstreams.three]`, through `LLMROUTE_CONFIG`) list {listed['two']} each. The "
              "contenders on one upstream run without a config file, as llmroute runs without "
              "named upstreams. In each run every contender routes the input once, every other "
              "run in the reverse order, so that the machine's drift hits them alike. A line's "
              "µs is the wall time of the whole run (start-up and catalogue fetches included) "
              "over its lines.")
    md.append("")
    md.append("| | upstreams | candidates | lines/s | µs a line | llmroute's CPU µs a line |")
    md.append("|---|---|---|---|---|---|")
    for key, label in S13_ROWS:
        c = cs.get(key)
        if not c:
            continue
        xs = [r["lines_per_s"] for r in c["runs"]]
        md.append(f"| {label.format(rev=rev)} | {c['upstreams']} | {c['candidates']} | "
                  f"{spread(xs, 0)} | {spread([1e6 / x for x in xs if x], 1)} | "
                  f"{spread([r.get('cpu_us_per_line') for r in c['runs']], 1)} |")
    md.append("")
    over = s13["overhead_us_per_line"]
    live, dry = over["live"], over["dry_run"]
    md.append("Three upstreams against one with the same 24 candidates, run by run (1 / the "
              "rate with three − 1 / the rate with one):")
    md.append("")
    md.append(f"- routing and calling: {us_spread(live['runs'])} µs a line "
              f"({live['of_medians']:+.2f} from the medians); llmroute's CPU time, "
              f"{us_spread(live['cpu_runs'])} µs a line;")
    md.append(f"- the decision alone (`--dry-run`): {us_spread(dry['runs'])} µs a line "
              f"({dry['of_medians']:+.2f} from the medians); llmroute's CPU time, "
              f"{us_spread(dry['cpu_runs'])} µs a line.")
    md.append("")
    by = [r["by_upstream"] for r in cs.get("three8", {}).get("runs", []) if r.get("by_upstream")]
    if by:
        md.append("With three upstreams, the lines each answered (median of the runs): "
                  + ", ".join(f"{u} {num(med([b.get(u) for b in by]), 0)}" for u in listed)
                  + ".")
        md.append("")
    ratio = s13.get("baseline_ratio")
    if ratio:
        md.append(f"llmroute against the build at `{rev}` on one upstream, run by run: "
                  f"{pct_spread(ratio['one8']['runs'])} of its rate with 8 candidates, "
                  f"{pct_spread(ratio['one24']['runs'])} with 24.")
        md.append("")
    one24 = [1e6 / r["lines_per_s"] for r in cs["one24"]["runs"] if r["lines_per_s"]]
    if live["runs"] and dry["runs"] and one24:
        def how(xs):
            if min(xs) > 0:
                return "more in every run"
            if max(xs) < 0:
                return "less in every run"
            return "more in some runs and less in others"

        md.append(f"So with the same 24 candidates, three upstreams cost {live['median']:+.2f} µs "
                  f"a line ({live['median'] / med(one24) * 100:+.1f}% of a line's time on one; "
                  f"{how(live['runs'])}), and the decision alone {dry['median']:+.2f} µs "
                  f"({how(dry['runs'])})"
                  + (f"; on one upstream llmroute runs at "
                     f"{ratio['one8']['median'] * 100:.0f}% of the build at `{rev}` with 8 "
                     f"candidates ({ratio['one24']['median'] * 100:.0f}% with 24)" if ratio else "")
                  + ".")
        md.append("")
    return md


def every_tail(s8):
    """Scenario 8's every-tail trials: a table of both modes, and how they were run."""
    e = s8["every_tail"]
    tail = e["tail_ms"]
    trials = len(e["auto"]["trials"])
    lines = e["auto"]["trials"][0]["lines"]
    md = [f"Every model with a tail: three 20 ms models (prices 1, 2 and 4 apart), each of whose "
          f"answers takes {num(tail, 0)} ms one time in 25; 60 lines to warm up the store, then "
          f"{lines} lines at `-j 8`, `-p cost`, `--no-cache`; {trials} trials, each with its own "
          "draws. A hedge can only go to a model that tails too. Figures are the median over the "
          "trials (min–max); a p99 in the tail is one over half of it; slow lines are those over "
          "90% of the tail, in all trials together; "
          "extra attempts are those sent beyond one a line (some, cancelled at once, never reach "
          "the upstream).", ""]
    run = s8.get("run")
    if run:
        md += [f"Scenario 8 was run alone by `{run['how']}` on {run['started']}, at llmroute "
               f"commit `{run['commit']}` ({run['profile']} build)"
               + (f", and the every-tail trials with `--hedge auto` again with llmroute at "
                  f"`{run['baseline']['commit']}`, before hedging learned to cut such tails"
                  if run.get("baseline") else "") + ".", ""]
    md.append("| `--hedge` | p50 ms | p95 ms | p99 ms | trials with the p99 in the tail | max ms | "
              "slow lines | extra attempts a line |")
    md.append("|---|---|---|---|---|---|---|---|")
    rows = [(k, e[k]["trials"]) for k in ("off", "auto")]
    before = (run or {}).get("baseline")
    if before:
        rows.append((f"auto, at `{before['commit']}` (before)",
                     before["every_tail"]["auto"]["trials"]))
    for k, rs in rows:
        col = lambda f: [r[f] for r in rs]
        extra = [100 * r["extra_attempts"] / r["lines"] for r in rs]
        in_tail = sum(r["p99_ms"] >= tail / 2 for r in rs)
        md.append(f"| {k} | {spread(col('p50_ms'), 1)} | {spread(col('p95_ms'), 1)} | "
                  f"{spread(col('p99_ms'), 1)} | {in_tail} of {len(rs)} | "
                  f"{spread(col('max_ms'), 0)} | "
                  f"{num(sum(col('slow_lines')), 0)} of {num(sum(col('lines')), 0)} | "
                  f"{spread(extra, 1)}% |")
    md.append("")
    return md


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    res_path, md_path, svg_path = sys.argv[1:4]
    total_s = float(sys.argv[4]) if len(sys.argv) > 4 else None
    with open(res_path) as f:
        R = json.load(f)
    merge_apart(R, res_path, ("9", "10"), (SERVE_FILE,))
    report_quality.merge(R, res_path)
    # Scenario 13 apart: alone, or beside 9 and 10, or beside 12.
    merge_apart(R, res_path, ("13",), (UPSTREAMS_FILE, SERVE_FILE, report_quality.QUALITY_FILE))
    S = R["scenarios"]
    M = R["machine"]
    sizes = R["sizes"]
    md = []
    goals = []  # (scenario, what, result, goal, ok)

    md.append("# Benchmarks")
    md.append("")
    md.append("Produced by [`bench/run`](bench/README.md), which builds llmroute, starts the fake "
              "OpenRouter-compatible upstream (`crates/fake-openrouter`) on the loopback interface, "
              "runs every scenario below and writes this file. Figures are medians over "
              f"{R['runs']} runs, with the min–max range in brackets"
              f"{' (scenarios 9 and 10: one run each)' if '9' in R['scenarios'] or '10' in R['scenarios'] else ''}"
              ". Nothing here is asserted by a test: the numbers only report.")
    md.append("")
    if R.get("quick"):
        md.append("> **Quick mode** (`BENCH_QUICK=1`): every size is shrunk to check the harness. "
                  "These numbers are not comparable with a full run.")
        md.append("")
    dirty = " (with uncommitted changes to the sources)" if M.get("dirty") else ""
    md.append("| | |")
    md.append("|---|---|")
    md.append(f"| date | {R['started']} |")
    md.append(f"| llmroute commit | `{M.get('commit')}`{dirty} |")
    md.append(f"| machine | {M.get('cores')} cores, {M.get('cpu')}, {M.get('ram_gib')} GiB RAM, "
              f"Linux {M.get('kernel')} |")
    md.append(f"| toolchain | {M.get('rustc')}, release profile |")
    md.append(f"| peer | LiteLLM {M.get('litellm')} (`Router`), {M.get('python')} |")
    md.append(f"| tools | {M.get('wrk')}; {M.get('hyperfine') or 'no hyperfine (Python timer)'} |")
    took = f"{total_s / 60:.1f} min in all (build included)" if total_s else ""
    md.append(f"| duration | scenarios {R['harness_seconds'] / 60:.1f} min; {took} |")
    md.append("")
    md.append("All processes share the same 2 cores: llmroute (or the peer, or wrk) and the fake "
              "upstream (2 worker threads) compete for them, so the \"raw limit\" is the limit "
              "of this machine with this upstream, not of the network.")
    md.append("")

    # ---------------- Scenario 1
    s1 = S.get("1")
    s1_rows = []
    if s1:
        conc = [str(c) for c in s1["concurrency"]]
        for c in conc:
            runs = s1["runs"]
            lr = [r[c]["llmroute"]["lines_per_s"] for r in runs]
            pr = [r[c]["peer"]["lines_per_s"] for r in runs]
            lim = [r[c]["limit"]["requests_per_s"] for r in runs]
            fl = [r[c]["floor"]["requests_per_s"] for r in runs if "floor" in r[c]]
            s1_rows.append((c, lr, pr, lim, ratios(lr, pr), ratios(lr, lim),
                            [r[c]["llmroute"]["rss_kb"] for r in runs],
                            [r[c]["peer"]["rss_kb"] for r in runs],
                            fl, ratios(fl, lim) if fl else [], ratios(lr, fl) if fl else []))
            rp, rl = med(ratios(lr, pr)), med(ratios(lr, lim))
            goals.append(("1", f"llmroute / LiteLLM, -j {c}", f"{num(rp, 0)}×", "≥ 100×",
                          rp is not None and rp >= 100))
            if c == "64":
                goals.append(("1", "llmroute / raw limit, -j 64", f"{rl * 100:.0f}%", "≥ 50%",
                              rl >= 0.5))
                if fl:
                    rf = med(ratios(lr, fl))
                    goals.append(("1", "llmroute / its client floor, -j 64",
                                  f"{rf * 100:.0f}%", "≥ 76%", rf >= 0.76))
                goals.extend(baseline_rows(s1, None))

    s2 = S.get("2")
    if s2:
        lr = [r["llmroute"]["lines_per_s"] for r in s2["runs"]]
        eff = med(lr) / s2["ideal_lines_per_s"]
        goals.append(("2", f"latency-bound, -j {s2['concurrency']}, {s2['latency_ms']} ms",
                      f"{num(med(lr), 0)} lines/s = {eff * 100:.1f}% of "
                      f"{num(s2['ideal_lines_per_s'], 0)}", "≥ 95%", eff >= 0.95))
    s3 = S.get("3")
    if s3:
        v = med([r["lines_per_s"] for r in s3["runs"]])
        goals.append(("3", f"cached re-run, {num(s3['lines'], 0)} lines", f"{num(v, 0)} lines/s",
                      "≥ 50,000 lines/s", v >= 50_000))
        goals.extend(baseline_rows(None, s3))
    s4 = S.get("4")
    if s4:
        for mode, label in (("dry_run", "--dry-run"), ("cached", "cached re-run")):
            small = med([r["rss_kb"] for r in s4[mode]["small"]]) / 1024
            large = med([r["rss_kb"] for r in s4[mode]["large"]]) / 1024
            goals.append(("4", f"peak RSS, {label}, {num(s4['large'], 0)} lines",
                          f"{large:.1f} MB", "≤ 64 MB", large <= 64))
            goals.append(("4", f"peak RSS growth, {label}, {num(s4['small'], 0)} → "
                          f"{num(s4['large'], 0)} lines", f"{(large / small - 1) * 100:+.0f}%",
                          "≤ +20%", large <= small * 1.2))
    s5 = S.get("5")
    if s5:
        rs = s5["results"]
        for key, label, limit in (("decision/route/8_candidates", "one decision, 8 candidates", 5),
                                  ("decision/plan/8_candidates",
                                   "plan and exploration, 8 candidates", 5),
                                  ("decision/route/catalogue", "one decision, whole catalogue",
                                   100)):
            if key in rs:
                v = rs[key]["median_ns"] / 1000
                goals.append(("5", label, f"{v:.2f} µs", f"≤ {limit} µs", v <= limit))
    s6 = S.get("6")
    if s6:
        v = s6["version"]["median_s"] * 1000
        goals.append(("6", "`llmroute --version`", f"{v:.2f} ms", "≤ 5 ms", v <= 5))
        v = s6["cached_line"]["median_s"] * 1000
        goals.append(("6", "one cached line end to end", f"{v:.2f} ms", "≤ 20 ms", v <= 20))
    s7 = S.get("7")
    if s7:
        v = med([r["seconds"] for r in s7["runs"]])
        goals.append(("7", f"`report --json`, {num(s7['attempts'], 0)} attempt rows",
                      f"{v * 1000:.0f} ms", "≤ 1 s", v <= 1))
        day = s7.get("day")
        if day:
            v = med([r["seconds"] for r in day["runs"]])
            kb = med([r["bytes"] for r in day["runs"]]) / 1024
            what = f"`report --format html`, a day of {num(day['requests'], 0)} requests"
            goals.append(("7", f"{what}: time", f"{v * 1000:.0f} ms", "< 1 s", v < 1))
            goals.append(("7", f"{what}: size", f"{kb:.0f} KB", "< 300 KB", kb < 300))

    s8 = S.get("8")
    if s8:
        t = s8["heavy_tail"]
        goals.append(("8", "`--hedge auto`: p99 cut on a heavy tail", f"{t['p99_cut']}×", "≥ 3×",
                      t["p99_cut"] >= 3))
        goals.append(("8", "`--hedge auto`: extra upstream requests",
                      f"{t['auto']['extra_requests']}%", "≤ 15%",
                      t["auto"]["extra_requests"] <= 15))
        e = s8.get("every_tail")
        if e:
            tail, auto, off = e["tail_ms"], e["auto"]["trials"], e["off"]["trials"]
            p99, p99_off = med([r["p99_ms"] for r in auto]), med([r["p99_ms"] for r in off])
            goals.append(("8", f"`--hedge auto`, every model with a tail: p99, median of "
                          f"{len(auto)} trials", f"{num(p99, 1)} ms (off: {num(p99_off, 0)} ms)",
                          f"≤ {num(tail / 10, 0)} ms (a tenth of the tail)", p99 <= tail / 10))
            under = sum(r["p99_ms"] < tail / 2 for r in auto)
            goals.append(("8", "`--hedge auto`, every model with a tail: trials whose p99 is "
                          "under half the tail", f"{under} of {len(auto)}", "more than half",
                          under * 2 > len(auto)))
            extra = max(100 * r["extra_attempts"] / r["lines"] for r in auto)
            goals.append(("8", "`--hedge auto`, every model with a tail: extra attempts, "
                          "most in a trial", f"{num(extra, 1)}%", "≤ 10.5% (the share)",
                          extra <= 10.5))

    goals += serve_goals(S)
    goals += report_quality.goals(S)

    md.append("## Summary")
    md.append("")
    md.append("| # | measure | result (median) | goal | |")
    md.append("|---|---|---|---|---|")
    for sc, what, result, goal, ok in goals:
        md.append(f"| {sc} | {what} | {result} | {goal} | {verdict(ok)} |")
    md.append("")
    missed = [g for g in goals if g[4] is False]
    goals_n = len([g for g in goals if g[4] is not None])
    if missed:
        md.append(f"Missed: {len(missed)} of {goals_n} goals.")
    else:
        md.append(f"All {goals_n} goals met.")
    if R.get("problems"):
        md.append("")
        md.append("The harness noticed these problems (a run that errs is still timed):")
        md.append("")
        for p in R["problems"]:
            md.append(f"- {p}")
    md.append("")

    if s1:
        md.append("## 1. Routing overhead")
        md.append("")
        md.append(f"The upstream answers at once. llmroute routes {num(s1['lines'], 0)} lines with "
                  "`--no-cache -q --models fast/a,fast/b,fast/c -j N` and writes its output to a "
                  f"file. The peer, LiteLLM's `Router` (`bench/litellm_peer.py`), gets "
                  f"{num(s1['peer_lines'], 0)} lines of the same input: it is about a hundred "
                  "times slower, so the comparison is of throughput, not of wall time. The raw "
                  f"limit is wrk posting one representative body (`bench/post.lua`) straight to "
                  f"the upstream's `/chat/completions` for {s1['limit_seconds']} s on N "
                  "keep-alive connections.")
        md.append("")
        md.append("llmroute's time is the whole process (start-up, store, catalogue fetch, output); "
                  "the peer's leaves out the interpreter's start-up, the import of litellm and the "
                  "building of the Router (several seconds), which flatters the peer.")
        md.append("")
        md.append("| -j | llmroute lines/s | LiteLLM lines/s | raw limit requests/s | "
                  "llmroute / LiteLLM | llmroute / limit | llmroute peak RSS MB | "
                  "LiteLLM peak RSS MB |")
        md.append("|---|---|---|---|---|---|---|---|")
        for c, lr, pr, lim, rp, rl, lrss, prss, *_ in s1_rows:
            md.append(f"| {c} | {spread(lr, 0)} | {spread(pr, 0)} | {spread(lim, 0)} | "
                      f"{spread(rp, 0)}× | {spread([x * 100 for x in rl], 1)}% | "
                      f"{spread(lrss, 1, 1 / 1024)} | {spread(prss, 0, 1 / 1024)} |")
        md.append("")
        md.append("Ratios are taken run by run (llmroute's run k against the peer's and wrk's run "
                  "k), then the median of the ratios is shown.")
        md.append("")
        if any(row[8] for row in s1_rows):
            md.append("**Where the gap to the raw limit goes.** The client floor "
                      "(`examples/client_floor.rs`) posts the same lines, with the same "
                      "concurrency, through llmroute's own upstream client: the same reqwest "
                      "set-up, runtime, allocator and response parsing, and nothing else (no "
                      "routing, store or output). Its bodies are built before its clock starts. "
                      "What it loses against wrk is the HTTP client's cost; what llmroute loses "
                      "against it is llmroute's own work. At `-j 1` every run waits on one round "
                      "trip at a time, so its rate measures latency, not CPU, and the floor bounds "
                      "nothing there.")
            md.append("")
            md.append("| -j | client floor requests/s | floor / raw limit | llmroute / floor |")
            md.append("|---|---|---|---|")
            for c, lr, pr, lim, rp, rl, lrss, prss, fl, fll, lrf in s1_rows:
                if fl:
                    md.append(f"| {c} | {spread(fl, 0)} | {spread([x * 100 for x in fll], 1)}% | "
                              f"{spread([x * 100 for x in lrf], 1)}% |")
            md.append("")
            base = baseline_runs(s1)
            if base:
                rev = s1["baseline_rev"][:10]
                b = [r["baseline"]["lines_per_s"] for r in base]
                md.append(f"The build at `{rev}` ran at -j 64 right after llmroute (before it in "
                          f"every other run), with the same flags: {spread(b, 0)} lines/s, "
                          f"{spread([x * 100 for x in ratios(b, [r['floor']['requests_per_s'] for r in base])], 1)}% "
                          "of the same run's client floor. The floor's own rate moves by a fifth or "
                          "more from run to run on this shared machine, so a ratio to a build run "
                          "beside llmroute is the steadier comparison.")
                md.append("")
        rel = os.path.relpath(svg_path, os.path.dirname(os.path.abspath(md_path)))
        md.append(f"![Throughput against concurrency]({rel})")
        md.append("")

    if s2:
        lr = [r["llmroute"]["lines_per_s"] for r in s2["runs"]]
        pr = [r["peer"]["lines_per_s"] for r in s2["runs"]]
        ideal = s2["ideal_lines_per_s"]
        md.append("## 2. Latency-bound")
        md.append("")
        md.append(f"The upstream answers every request after {s2['latency_ms']} ms; "
                  f"`-j {s2['concurrency']}`, so at most {num(ideal, 0)} lines/s. llmroute routes "
                  f"{num(s2['lines'], 0)} lines, the peer {num(s2['peer_lines'], 0)} (same "
                  "concurrency). llmroute's time includes its start-up and the catalogue fetch.")
        md.append("")
        md.append("| | lines/s | share of the ideal |")
        md.append("|---|---|---|")
        md.append(f"| llmroute | {spread(lr, 1)} | {spread([v / ideal * 100 for v in lr], 1)}% |")
        md.append(f"| LiteLLM Router | {spread(pr, 1)} | "
                  f"{spread([v / ideal * 100 for v in pr], 1)}% |")
        md.append("")

    if s3:
        v = [r["lines_per_s"] for r in s3["runs"]]
        f = s3["fill"]
        md.append("## 3. Cached re-run")
        md.append("")
        md.append(f"{num(s3['lines'], 0)} lines are routed once to fill the cache "
                  f"(`--models fast/a,fast/b,fast/c -j 64`; that fill took {f['seconds']:.1f} s, "
                  f"{num(f['lines_per_s'], 0)} lines/s, timed once). Each run then re-runs the same "
                  "lines with the same flags on its own copy of the filled store, so every line is "
                  "a cache hit (checked).")
        md.append("")
        md.append("| | lines/s | seconds | peak RSS MB |")
        md.append("|---|---|---|---|")
        md.append(f"| cached re-run | {spread(v, 0)} | "
                  f"{spread([r['seconds'] for r in s3['runs']], 2)} | "
                  f"{spread([r['rss_kb'] for r in s3['runs']], 1, 1 / 1024)} |")
        b3 = s3.get("baseline")
        if b3:
            md.append(f"| the build at `{b3['rev'][:10]}`, same run | "
                      f"{spread([r['lines_per_s'] for r in b3['runs']], 0)} | "
                      f"{spread([r['seconds'] for r in b3['runs']], 2)} | "
                      f"{spread([r['rss_kb'] for r in b3['runs']], 1, 1 / 1024)} |")
        md.append("")
        if b3:
            md.append(f"The build at `{b3['rev'][:10]}` fills a store of its own (its schema may be "
                      "older) and re-runs it right after llmroute's run (before it in every other "
                      "run), so that both meet the same moments of a shared machine.")
            md.append("")

    if s4:
        md.append("## 4. Memory")
        md.append("")
        md.append("Peak RSS (`/usr/bin/time -f %M`), output to `/dev/null`. `--dry-run` uses the "
                  "built-in candidates (8 models) and the embedded catalogue. The cached re-run uses "
                  f"a copy of the store filled in scenario 3 ({num(sizes['s3_lines'], 0)} cached "
                  f"answers); its {num(s4['large'], 0)}-line input is the scenario-3 input repeated "
                  f"{s4['large'] // sizes['s3_lines']} times, so every line is a cache hit without "
                  f"a {num(s4['large'], 0)}-line fill. The {num(s4['small'], 0)}-line input is the "
                  "first lines of the same file.")
        md.append("")
        md.append("| | lines | peak RSS MB | lines/s |")
        md.append("|---|---|---|---|")
        for mode, label in (("dry_run", "`--dry-run`"), ("cached", "cached re-run")):
            for name in ("small", "large"):
                rs = s4[mode][name]
                md.append(f"| {label} | {num(s4[name], 0)} | "
                          f"{spread([r['rss_kb'] for r in rs], 1, 1 / 1024)} | "
                          f"{spread([r['lines_per_s'] for r in rs], 0)} |")
        md.append("")

    if s5:
        md.append("## 5. Decision time")
        md.append("")
        md.append(f"`cargo bench --bench scorer` (criterion, `benches/scorer.rs`; warm-up "
                  f"{s5['warm_up_s']} s, measurement {s5['measurement_s']} s). `route` is "
                  "`routing::rank`, the whole decision for one parsed request: eligibility against "
                  "the catalogue, cost estimate, quality prior, scoring, the ranked list. `score` is "
                  "`scoring::rank_into` alone over ready-made candidates. The catalogue is "
                  "`tests/fixtures/openrouter-models.json`; every model has a measured latency.")
        md.append("")
        md.append("| benchmark | median | 95% interval of the median |")
        md.append("|---|---|---|")
        for k, v in sorted(S["5"]["results"].items()):
            md.append(f"| `{k}` | {v['median_ns'] / 1000:.3f} µs | "
                      f"{v['low_ns'] / 1000:.3f}–{v['high_ns'] / 1000:.3f} µs |")
        md.append("")

    if s6:
        md.append("## 6. Start-up")
        md.append("")
        v, c = s6["version"], s6["cached_line"]
        md.append(f"Timed with {v['tool']} over {v['runs']} runs after 5 warm-up runs. The cached "
                  "line is `echo '{\"prompt\":\"x\"}' | llmroute -q --models ...` against a store "
                  "where that line's answer is cached (so: open and migrate-check the store, read the "
                  "catalogue from it, hash, hit, write the line).")
        md.append("")
        md.append("| command | median ms | min–max ms | mean ms |")
        md.append("|---|---|---|---|")
        for name, r in (("`llmroute --version`", v), ("one cached line end to end", c)):
            md.append(f"| {name} | {r['median_s'] * 1000:.2f} | {r['min_s'] * 1000:.2f}–"
                      f"{r['max_s'] * 1000:.2f} | {r['mean_s'] * 1000:.2f} |")
        md.append("")

    if s7:
        md.append("## 7. Report")
        md.append("")
        md.append(f"`llmroute report --json --since all` over a store with "
                  f"{num(s7['attempts'], 0)} attempt rows and {num(s7['requests'], 0)} request "
                  "rows, spread over the last 24 hours: 8 models with log-normal latencies, about "
                  "12% cache hits, 8% failed attempts (retried on another model), a few failed "
                  f"lines (`bench/make_store.py`, built in {s7['build_s']:.0f} s with sqlite3).")
        md.append("")
        md.append("| | seconds | peak RSS MB |")
        md.append("|---|---|---|")
        md.append(f"| `report --json` | {spread([r['seconds'] for r in s7['runs']], 3)} | "
                  f"{spread([r['rss_kb'] for r in s7['runs']], 1, 1 / 1024)} |")
        html = s7.get("html_runs")
        md.append("")
        day = s7.get("day")
        if day:
            md.append(f"`llmroute report --format html --since 24h` over a day of "
                      f"{num(day['requests'], 0)} requests ({num(day['attempts'], 0)} attempts, "
                      "the same mix), as a cron job would mail it: the page is one file with its "
                      "charts inline, and its size does not grow with the requests (it grows with "
                      "the models, up to the 40 histograms drawn, about 4 KB each).")
            md.append("")
            md.append("| | seconds | peak RSS MB | page KB |")
            md.append("|---|---|---|---|")
            md.append(f"| `report --format html`, a day | "
                      f"{spread([r['seconds'] for r in day['runs']], 3)} | "
                      f"{spread([r['rss_kb'] for r in day['runs']], 1, 1 / 1024)} | "
                      f"{spread([r['bytes'] for r in day['runs']], 0, 1 / 1024)} |")
            if html:
                md.append(f"| `report --format html`, {num(s7['attempts'], 0)} attempts | "
                          f"{spread([r['seconds'] for r in html], 3)} | "
                          f"{spread([r['rss_kb'] for r in html], 1, 1 / 1024)} | "
                          f"{spread([r['bytes'] for r in html], 0, 1 / 1024)} |")
            md.append("")

    s8 = S.get("8")
    if s8:
        c, f, d, t = s8["cold_start"], s8["failing"], s8["drift"], s8["heavy_tail"]
        md.append("## 8. Routing quality")
        md.append("")
        md.append("Scripted scenarios through the real binary against the fake upstream "
                  "(`examples/routing_quality.rs`), each against an oracle that knows the true "
                  "latencies and sends every line to the best model. Extra latency is the mean "
                  "line latency over the oracle's; exploration at its default (`--explore 0.05`).")
        md.append("")
        md.append("| scenario | what the oracle does | regret |")
        md.append("|---|---|---|")
        md.append(f"| cold start: unknown 300, 120 and 15 ms models, listed slowest first, "
                  f"`-p speed`, {c['lines']} lines at `-j 8` | every line on the 15 ms model | "
                  f"{c['off_best']} lines elsewhere; +{c['extra_latency_ms']} ms a line |")
        md.append(f"| failing: the best model by its priors answers 500, two runs of "
                  f"{f['lines'] // 2} lines | no line tries it | {f['failed_first_attempts']} "
                  f"failed first attempts; {f['unanswered']} lines unanswered; "
                  f"+{f['extra_latency_ms']} ms a line |")
        md.append(f"| drift: a 10 ms model slows to 100 ms (the other takes 60 ms), one line at "
                  f"a time | moves at once | {d['slowdown']['lines_to_adapt']} lines to adapt; "
                  f"+{d['slowdown']['extra_latency_ms']} ms a line over {d['slowdown']['lines']} |")
        md.append(f"| recovery: it is back to 10 ms | moves back at once | "
                  f"{d['recovery']['lines_to_adapt']} lines to adapt; "
                  f"+{d['recovery']['extra_latency_ms']} ms a line over {d['recovery']['lines']} |")
        md.append("")
        md.append("Heavy tail: 4% of the best model's answers take 100 times its 10 ms median; "
                  f"{t['off']['lines']} lines at `-j 8`, `-p quality`.")
        md.append("")
        md.append("| `--hedge` | p50 ms | p99 ms | upstream requests a line |")
        md.append("|---|---|---|---|")
        for k in ("off", "auto"):
            r = t[k]
            md.append(f"| {k} | {r['p50_ms']} | {r['p99_ms']} | "
                      f"{1 + r['extra_requests'] / 100:.3f} |")
        md.append("")
        md.append(f"`--hedge auto` cuts the p99 {t['p99_cut']}× (goal: at least 3×) with "
                  f"{t['auto']['extra_requests']}% more upstream requests (goal: at most 15%).")
        md.append("")
        if s8.get("every_tail"):
            md += every_tail(s8)

    if S.get("9"):
        md += section9(S["9"], M)
    if S.get("10"):
        md += section10(S["10"], M)
    if S.get("11"):
        md += section11(S["11"], sizes)
    md += report_quality.section(S)
    if S.get("13"):
        md += section13(S["13"], M)

    md.append("## Method")
    md.append("")
    md.append("- Every llmroute run gets `OPENROUTER_API_KEY=bench`, `--base-url` of the fake "
              "upstream, a fresh `--db` in a temporary directory, an empty `XDG_CONFIG_HOME` and "
              "`-q`. Input comes on standard input from a file.")
    md.append("- Input: `bench/gen_requests.py` writes distinct chat-completions bodies (a system "
              "and a user message, `max_tokens`, `temperature`; about 420 bytes a line).")
    md.append("- Throughput is lines divided by the wall time of the llmroute process. Output "
              "is checked: one line per input line, no errors, all cache hits where expected.")
    md.append("- The peer keeps the same number of requests in flight with an "
              "`asyncio.Semaphore`, routes among the same three models with "
              "`routing_strategy=\"simple-shuffle\"`, writes JSONL in input order, and runs with "
              "`LITELLM_LOCAL_MODEL_COST_MAP=True` and telemetry, callbacks and logging off.")
    md.append("- Runs of the three contenders are interleaved (llmroute, peer, wrk at each "
              "concurrency, then the next run), so slow drift of the machine hits all three.")
    md.append("")
    md.append("## What we found and changed")
    md.append("")
    findings = os.path.join(os.path.dirname(os.path.abspath(__file__)), "findings.md")
    try:
        with open(findings) as f:
            md.append(f.read().rstrip("\n"))
    except OSError:
        md.append(f"(`{findings}` is missing.)")
    md.append("")

    with open(md_path, "w") as f:
        f.write("\n".join(md))
    if s1:
        svg_chart(s1, svg_path)
    print(f"wrote {md_path}" + (f" and {svg_path}" if s1 else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
