"""Load on a server: oha at a fixed rate (open loop) and wrk at the most (closed loop),
with the server's CPU time and memory around it."""

import json
import os
import subprocess
import time

from .common import OHA, SIZES, check, log, path
from .meter import cpu_seconds, http, status_kb
from .runs import run_limit


def oha(url, rate, seconds, headers, body=None, body_lines=None, extra=()):
    """One constant-rate run of oha (open loop, latency measured from when each
    request was due, so a stall is not hidden); JSON summary."""
    out = path(f"oha-{int(time.monotonic() * 1000)}.json")
    cmd = [OHA, "--no-tui", "--output-format", "json", "--output", out,
           "-z", f"{seconds}s", "-c", str(SIZES["s9_connections"]), "-q", str(rate),
           "--latency-correction", "--wait-ongoing-requests-after-deadline",
           "-m", "POST", "-t", "10s", "-T", "application/json"]
    for h in headers:
        cmd += ["-H", h]
    cmd += ["-D", body] if body else ["-Z", body_lines]
    cmd += list(extra) + [url]
    p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        with open(out) as f:
            r = json.load(f)
        os.remove(out)
    except (OSError, ValueError):
        return {"failed": f"oha exit {p.returncode}: {p.stderr.decode()[-300:]}"}
    codes = {k: v for k, v in r["statusCodeDistribution"].items()}
    errors = dict(r["errorDistribution"])
    total = sum(codes.values()) + sum(errors.values())
    ok = codes.get("200", 0)
    lat = r["latencyPercentiles"]

    def ms(key):
        v = lat.get(key)
        return v * 1000 if v is not None else None

    return {
        "requests": total,
        "ok": ok,
        "errors": total - ok,
        "status": {k: v for k, v in codes.items() if k != "200"},
        "error_kinds": errors,
        "seconds": r["summary"]["total"],
        "requests_per_s": total / r["summary"]["total"] if r["summary"]["total"] else 0,
        "p50_ms": ms("p50"),
        "p90_ms": ms("p90"),
        "p99_ms": ms("p99"),
        "p999_ms": ms("p99.9"),
        "max_ms": r["summary"]["slowest"] * 1000 if r["summary"]["slowest"] else None,
        "mean_ms": r["summary"]["average"] * 1000 if r["summary"]["average"] else None,
    }


def measure(server, upstream, url, rate, seconds, headers, body, extra=()):
    """oha at one rate, with the server's CPU time and memory around it."""
    pids, up_pids = server.pids(), upstream.pids()
    c0, u0 = cpu_seconds(pids), cpu_seconds(up_pids)
    r = oha(url, rate, seconds, headers, body=body, extra=extra)
    pids = server.pids()  # what it started meanwhile counts too
    c1, u1 = cpu_seconds(pids), cpu_seconds(up_pids)
    if "failed" in r:
        return r
    done = max(r["ok"], 1)
    r.update(
        rate=rate,
        cpu_s=c1 - c0,
        cpu_us_per_req=(c1 - c0) / done * 1e6,
        cores=(c1 - c0) / r["seconds"] if r["seconds"] else None,
        upstream_cpu_us_per_req=(u1 - u0) / done * 1e6,
        rss_kb=status_kb(pids, "VmRSS"),
        hwm_kb=status_kb(pids, "VmHWM"),
        processes=len(pids),
        # The machine's 1-minute load average at the end: others share it.
        load=round(os.getloadavg()[0], 2),
        # Fell behind: fewer than 95% of the offered requests, or any error.
        saturated=r["requests_per_s"] < 0.95 * rate or r["errors"] > 0,
    )
    return r


def load_contender(label, server, upstream, url, headers, body, rates, problems, cafile=None,
                   baseline=None):
    """A checked request, a warm-up, then each rate in turn. A contender that
    falls behind at one rate is not offered the higher ones. With a baseline,
    each rate is measured straight to the upstream just before, so that the
    added latency compares runs minutes apart on a machine that others share."""
    entry = {"label": label, "url": url, "rates": {}, "startup_s": server.ready_s,
             "cmd": getattr(server, "cmd", "")}
    extra = ["--cacert", cafile] if cafile else []
    with open(body, "rb") as f:
        data = f.read()
    status, data = http("POST", url, data,
                        dict(h.split(": ", 1) for h in headers + ["Content-Type: "
                                                                   "application/json"]),
                        timeout=30, cafile=cafile)
    if status != 200 or b'"choices"' not in data:
        check(False, f"9 {label}: a request answered {status}: {data[:300]!r}", problems)
        entry["failed"] = f"answered {status}"
        return entry
    warm = oha(url, rates[0], SIZES["s9_warm_up_s"], headers, body=body, extra=extra)
    entry["warm_up"] = {k: warm.get(k) for k in ("requests", "errors", "p99_ms")}
    for rate in rates:
        b = baseline(rate) if baseline else None
        log(f"9 added latency: {label}, {rate} requests/s for {SIZES['s9_seconds']} s")
        m = measure(server, upstream, url, rate, SIZES["s9_seconds"], headers, body, extra)
        entry["rates"][str(rate)] = m
        if "failed" in m:
            check(False, f"9 {label} at {rate}/s: {m['failed']}", problems)
            break
        added = ""
        if b and "failed" not in b:
            m["baseline"] = {k: b.get(k) for k in ("requests_per_s", "p50_ms", "p90_ms", "p99_ms",
                                                    "max_ms", "errors")}
            added = (f"; added p50 {m['p50_ms'] - b['p50_ms']:+.3f} ms, "
                     f"p99 {m['p99_ms'] - b['p99_ms']:+.3f} ms")
        log(f"  {m['requests_per_s']:.0f}/s, p50 {m['p50_ms']:.3f} ms, p99 {m['p99_ms']:.3f} "
            f"ms, max {m['max_ms']:.1f} ms, {m['errors']} errors, "
            f"{m['cpu_us_per_req']:.0f} µs CPU a request, {m['hwm_kb'] / 1024:.1f} MB peak"
            f"{added}")
        if m["saturated"]:
            entry["saturated_at"] = rate
            break
    entry["hwm_kb"] = status_kb(server.pids(), "VmHWM")
    return entry


def with_model(body_file, model, dst):
    with open(body_file) as f:
        body = json.load(f)
    body["model"] = model
    with open(dst, "w") as f:
        json.dump(body, f, separators=(",", ":"))
    return dst


def wrk_max(server, url_base, seconds, body_file, token=None, problems=None, header=None):
    """wrk's closed-loop maximum at 64 connections, with the server's CPU time
    and peak memory."""
    conns = SIZES["s9_connections"]
    run_limit(url_base, conns, 1, body_file, [], token=token, header=header)  # warm-up
    pids = server.pids()
    c0 = cpu_seconds(pids)
    r = run_limit(url_base, conns, seconds, body_file, [] if problems is None else problems,
                  token=token, header=header)
    pids = server.pids()
    r["cpu_us_per_req"] = ((cpu_seconds(pids) - c0) / r["requests"] * 1e6
                           if r.get("requests") else None)
    r["hwm_kb"] = status_kb(pids, "VmHWM")
    r["connections"] = conns
    log(f"  {r['requests_per_s'] or 0:.0f} requests/s, {r['errors']} errors, "
        f"p99 {(r['p99_us'] or 0) / 1000:.2f} ms, {r['cpu_us_per_req'] or 0:.0f} µs CPU a "
        f"request, {r['hwm_kb'] / 1024:.1f} MB peak")
    return r
