"""Scenarios 9 and 10, `llmroute serve`: added latency against the upstream straight,
nginx as a bare reverse proxy and its peers, its maximum, an upstream over TLS; and a
soak."""

import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import time

from .common import (FAKE, LITELLM_CLI, LLMROUTE, NGINX, NODE, OHA, PORTKEY, ROOT, SIZES,
                     SOAK_SECS, STUNNEL, check, fresh, log, path, tool_version)
from .load import load_contender, measure, with_model, wrk_max
from .meter import cpu_seconds, http, status_kb
from .servers import (LITELLM_KEY, NGINX_WORKERS, make_tls, nginx_conf, nginx_version,
                      serve_env, serve_help, start_fake, start_litellm, start_llmroute,
                      start_llmroute_keyed, start_nginx, start_portkey, start_serve_floor,
                      start_stunnel, stop_all,
                      stunnel_version, key_after)


# The header by which a client takes a cached answer to a sampled request
# (the bench's body sets a temperature and no seed).
CACHED_SAMPLE = "x-llmroute-cache-sampled: true"


def answered_from_cache(s, base, body_file, problems):
    """Whether the server answers the bench's request from its cache, as
    its row says: one more request, its `x-llmroute-cached` header."""
    import urllib.request
    name, value = CACHED_SAMPLE.split(": ")
    with open(body_file, "rb") as f:
        req = urllib.request.Request(base + "/chat/completions", data=f.read(), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {s.token}",
            name: value})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            cached = r.headers.get("x-llmroute-cached") == "true"
    except OSError as e:
        cached = False
        check(False, f"9 maximum, answered from the cache: {e}", problems)
    check(cached, "9 maximum: the server meant to answer from its cache did not", problems)
    return cached


def bearer(s):
    """The bearer token a server takes: its client key's, or any."""
    return [f"Authorization: Bearer {getattr(s, 'token', None) or 'bench'}"]


def max_rounds(servers, secs, body, problems):
    """wrk's closed-loop maximum on each server in turn, a round at a time
    (each round starting one server further on), so that whatever else runs
    on the machine meanwhile weighs on them alike. Per server: the median of
    each figure over the rounds, the rounds themselves, and the peak RSS
    after them all. `servers`: (key, label, server, base URL)."""
    n = SIZES["s9_max_rounds"]
    rounds = {key: [] for key, *_ in servers}
    for k in range(n):
        for i in range(len(servers)):
            key, label, s, base = servers[(i + k) % len(servers)]
            log(f"9 maximum, round {k + 1}/{n}: wrk -c {SIZES['s9_connections']} {label}, "
                f"{secs} s")
            r = wrk_max(s, base, secs, body, token=getattr(s, "token", None),
                        problems=problems, header=getattr(s, "header", None))
            r["round"] = k
            rounds[key].append(r)
    out = {}
    for key, label, s, _ in servers:
        rs = rounds[key]

        def mid(field):
            vals = [r[field] for r in rs if r.get(field) is not None]
            return statistics.median(vals) if vals else None

        out[key] = {"label": label, "requests_per_s": mid("requests_per_s"),
                    "cpu_us_per_req": mid("cpu_us_per_req"), "p50_us": mid("p50_us"),
                    "p99_us": mid("p99_us"), "errors": sum(r.get("errors") or 0 for r in rs),
                    "requests": sum(r.get("requests") or 0 for r in rs),
                    "hwm_kb": rs[-1]["hwm_kb"], "connections": SIZES["s9_connections"],
                    "cmd": getattr(s, "cmd", ""), "rounds": rs}
    return out


def scenario9(inputs, problems):
    """Added latency of `llmroute serve` against the upstream straight, LiteLLM's
    proxy and Portkey's gateway, at fixed rates; its maximum; TLS upstream."""
    rates = SIZES["s9_rates"]
    body = inputs["body"]  # "model": "fast/a"
    body_auto = with_model(body, "auto", path("body-auto.json"))
    bench = ["Authorization: Bearer bench"]
    out = {"rates": rates, "seconds": SIZES["s9_seconds"], "warm_up_s": SIZES["s9_warm_up_s"],
           "connections": SIZES["s9_connections"], "max_seconds": SIZES["s9_max_seconds"],
           "generator": tool_version([OHA, "--version"]),
           "serve": bool(serve_help()), "contenders": {}, "order": []}
    C = out["contenders"]

    def straight(rate):
        log(f"9 added latency: straight to the upstream, {rate} requests/s (the baseline)")
        m = measure(up, up, up.url + "/chat/completions", rate, SIZES["s9_seconds"], bench, body)
        if "failed" not in m:
            log(f"  p50 {m['p50_ms']:.3f} ms, p99 {m['p99_ms']:.3f} ms, max {m['max_ms']:.1f} ms")
        return m

    def run(key, label, start, url_of, headers, body_file, server_is_upstream=False,
            rates=rates):
        """headers: a list, or a function of the started server to one."""
        try:
            s = start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            check(False, f"9 {label}: {e}", problems)
            C[key] = {"label": label, "failed": str(e)[:300]}
            return
        try:
            C[key] = load_contender(label, s, up if not server_is_upstream else s, url_of(s),
                                    headers(s) if callable(headers) else headers, body_file,
                                    rates, problems,
                                    baseline=None if server_is_upstream else straight)
            out["order"].append(key)
        finally:
            if not server_is_upstream:
                s.stop()
                if getattr(s, "key_store", None) and key in C:
                    C[key]["key_after"] = key_after(s)

    up = start_fake("s9-upstream")
    try:
        up.cmd = f"{os.path.basename(FAKE)} --workers 2"
        run("straight", "straight to the upstream", lambda: up,
            lambda s: s.url + "/chat/completions", bench, body, server_is_upstream=True)
        if NGINX:
            out["nginx"] = {"version": nginx_version(), "workers": NGINX_WORKERS,
                            "conf": nginx_conf()}
            run("nginx", "nginx, reverse proxy", lambda: start_nginx("s9-nginx", up.url),
                lambda s: s.url + "/chat/completions", bench, body)
        else:
            check(False, "9: no nginx, so no row of a bare reverse proxy", problems)
        if serve_help():
            run("llmroute", "llmroute serve, pinned", lambda: start_llmroute(
                "s9-llmroute", up.url, serve_env()), lambda s: s.base + "/v1/chat/completions",
                bench, body)
            run("llmroute_keys", "llmroute serve, keys and policy on",
                lambda: start_llmroute_keyed("s9-llmroute-keys", up.url, serve_env()),
                lambda s: s.base + "/v1/chat/completions", bearer, body)
            run("llmroute_auto", "llmroute serve, model auto", lambda: start_llmroute(
                "s9-llmroute-auto", up.url, serve_env()),
                lambda s: s.base + "/v1/chat/completions", bench, body_auto)
        else:
            log("9 added latency: this llmroute has no `serve`; measuring the peers only")
            check(False, "9: this llmroute has no `serve` subcommand; its rows are missing",
                  problems)
        if os.path.exists(LITELLM_CLI):
            run("litellm", "LiteLLM proxy", lambda: start_litellm("s9-litellm", up.url),
                lambda s: s.base + "/v1/chat/completions",
                [f"Authorization: Bearer {LITELLM_KEY}"], body)
        else:
            check(False, f"9: no LiteLLM proxy at {LITELLM_CLI}", problems)
        if NODE and os.path.exists(PORTKEY):
            run("portkey", "Portkey gateway", lambda: start_portkey("s9-portkey"),
                lambda s: s.base + "/v1/chat/completions",
                bench + ["x-portkey-provider: openai", f"x-portkey-custom-host: {up.url}"], body)
        else:
            check(False, f"9: no Portkey gateway at {PORTKEY} (or no node)", problems)

        def cached_server():
            """The keyed server with its cache on, every request of it taking
            a cached sample: after the first, the cache answers them all."""
            s = start_llmroute_keyed("s9-llmroute-keys-cached-max", up.url, serve_env(),
                                     cache=True)
            s.header = CACHED_SAMPLE
            s.cmd += f"`, each request with `{CACHED_SAMPLE}"
            return s

        # The closed-loop maximum at 64 connections: fresh servers, taking
        # turns round by round.
        secs = SIZES["s9_max_seconds"]
        out["max_rounds"] = SIZES["s9_max_rounds"]
        targets = [("straight", "straight to the upstream", up, up.url)]
        started = []
        try:
            for key, label, start, base in (
                    ("nginx", "through nginx", lambda: start_nginx("s9-nginx-max", up.url) if
                     NGINX else None, lambda s: s.url),
                    ("serve_floor", "through the server floor (examples/serve_floor.rs)",
                     lambda: start_serve_floor("s9-serve-floor-max", up.url),
                     lambda s: s.base + "/v1"),
                    ("llmroute", "through llmroute serve, pinned",
                     lambda: start_llmroute("s9-llmroute-max", up.url, serve_env()) if
                     serve_help() else None, lambda s: s.base + "/v1"),
                    ("llmroute_keys", "through llmroute serve, keys and policy on",
                     lambda: start_llmroute_keyed("s9-llmroute-keys-max", up.url, serve_env())
                     if serve_help() else None, lambda s: s.base + "/v1"),
                    ("llmroute_keys_cached", "through llmroute serve, keys and policy on, "
                     "answered from the cache", lambda: cached_server() if serve_help() else None,
                     lambda s: s.base + "/v1")):
                try:
                    s = start()
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    check(False, f"9 maximum, {label}: {e}", problems)
                    continue
                if s is not None:
                    started.append(s)
                    targets.append((key, label, s, base(s)))
            out["max"] = max_rounds(targets, secs, body, problems)
            for key, _, s, base in targets:
                if key == "llmroute_keys_cached":
                    out["max"][key]["cached_answer"] = answered_from_cache(s, base, body,
                                                                           problems)
        finally:
            for s in started:
                s.stop()
        for key, _, s, _ in targets:
            if getattr(s, "key_store", None) and key in out.get("max", {}):
                out["max"][key]["key_after"] = key_after(s)

        # The upstream over TLS: stunnel in front of the same fake.
        if STUNNEL:
            tls = {}
            out["tls"] = tls
            ca, cert, key = make_tls(fresh("tls"))
            tun = start_stunnel("s9-stunnel", up.url, cert, key)
            try:
                tls["terminator"] = stunnel_version()
                # The baseline: oha itself over TLS to the terminator.
                C["straight_tls"] = load_contender(
                    "straight to the upstream over TLS", up, up, tun.url + "/chat/completions",
                    bench, body, SIZES["s9_tls_rates"], problems, cafile=ca, baseline=straight)
                out["order"].append("straight_tls")
                if serve_help():
                    run("llmroute_tls", "llmroute serve, pinned, upstream over TLS",
                        lambda: start_llmroute("s9-llmroute-tls", tun.url,
                                               serve_env({"SSL_CERT_FILE": ca})),
                        lambda s: s.base + "/v1/chat/completions", bench, body,
                        rates=SIZES["s9_tls_rates"])
                    s = start_llmroute("s9-llmroute-tls-max", tun.url,
                                       serve_env({"SSL_CERT_FILE": ca}))
                    try:
                        log(f"9 maximum: wrk through llmroute serve, upstream over TLS, {secs} s")
                        out["max"]["llmroute_tls"] = wrk_max(s, s.base + "/v1", secs, body)
                    finally:
                        s.stop()
            except RuntimeError as e:
                check(False, f"9 TLS: {e}", problems)
            finally:
                tun.stop()
        else:
            check(False, "9: no stunnel, so no run with the upstream over TLS", problems)
    finally:
        stop_all()
    return out


def store_bytes(db: str) -> int:
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.path.getsize(db + suffix)
        except OSError:
            pass
    return total


def store_tables(db: str) -> dict:
    """Bytes and rows of each table of a store, its indexes counted with it."""
    tables = {}
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            owner = dict(con.execute("SELECT name, tbl_name FROM sqlite_master"))
            for name, size in con.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
                t = owner.get(name, name)
                tables.setdefault(t, {"bytes": 0})["bytes"] += size
            for t in list(tables):
                if t in owner and owner[t] == t and not t.startswith("sqlite_"):
                    tables[t]["rows"] = con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error as e:
        return {"error": str(e)}
    return tables


def store_path(env) -> str:
    """Where llmroute puts its store with this environment (`config show`)."""
    p = subprocess.run([LLMROUTE, "config", "show"], capture_output=True, text=True, env=env)
    m = re.search(r'^db = "(.*)"$', p.stdout, re.M)
    return m.group(1) if m else os.path.join(env["XDG_DATA_HOME"], "llmroute", "llmroute.db")


def scenario10(problems):
    """Soak: `llmroute serve` with its cache on, under a steady rate of requests
    cycling over many distinct bodies; RSS and store size over time."""
    secs, rate = SOAK_SECS, SIZES["s10_rate"]
    # Few enough distinct bodies that oha, which picks a line at random for
    # each request, has sent nearly all of them (95%) in the first quarter
    # of the run, so that from there on the cache should stop growing.
    distinct = max(100, min(SIZES["s10_distinct"], rate * secs // 12))
    every = SIZES["s10_sample_s"]
    out = {"seconds": secs, "rate": rate, "distinct": distinct, "sample_s": every,
           "connections": SIZES["s9_connections"], "generator": tool_version([OHA, "--version"])}
    if not serve_help():
        log("10 soak: this llmroute has no `serve`; skipped")
        check(False, "10: this llmroute has no `serve` subcommand; the soak did not run",
              problems)
        out["skipped"] = "no serve"
        return out
    raw = path("soak-raw.jsonl")
    subprocess.run([sys.executable, os.path.join(ROOT, "bench", "gen_requests.py"),
                    str(distinct), raw], check=True)
    bodies = path("soak-bodies.jsonl")
    with open(raw) as fi, open(bodies, "w") as fo:
        for line in fi:
            b = json.loads(line)
            del b["id"]
            b["model"] = "auto"
            fo.write(json.dumps(b, separators=(",", ":")) + "\n")
    up = start_fake("s10-upstream")
    try:
        env = serve_env()
        db = store_path(env)
        # The soak stands for a day scaled down to minutes, so metrics are
        # kept for --retention's shortest, a minute: past it, pruning keeps
        # up with the load, and the store should stop growing.
        retention = "1m" if "--retention" in serve_help() else None
        out["retention"] = retention or "default"
        out["store"] = os.path.relpath(db, env["XDG_DATA_HOME"])
        # The store's upkeep (expiry, pruning) runs a few times in the soak.
        s = start_llmroute("s10-llmroute", up.url, env, cache=True, retention=retention,
                           upkeep=f"{max(10, secs // 10)}s")
        out["cmd"] = s.cmd
        url = s.base + "/v1/chat/completions"
        log(f"10 soak: {rate} requests/s for {secs} s over {distinct} distinct bodies")
        res = path("soak-oha.json")
        cmd = [OHA, "--no-tui", "--output-format", "json", "--output", res,
               "-z", f"{secs}s", "-c", str(SIZES["s9_connections"]), "-q", str(rate),
               "--latency-correction", "--wait-ongoing-requests-after-deadline",
               "-m", "POST", "-t", "10s", "-T", "application/json",
               "-H", "Authorization: Bearer bench", "-Z", bodies, url]
        samples = []
        t0 = time.monotonic()
        c0 = cpu_seconds(s.pids())

        def sample():
            pids = s.pids()
            samples.append({"t": round(time.monotonic() - t0, 2),
                            "rss_kb": status_kb(pids, "VmRSS"),
                            "store_bytes": store_bytes(db),
                            "cpu_s": round(cpu_seconds(pids) - c0, 2)})

        sample()
        gen = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        next_at = t0 + every
        while gen.poll() is None:
            time.sleep(max(0.0, min(next_at - time.monotonic(), 0.5)))
            if time.monotonic() >= next_at:
                sample()
                next_at += every
        sample()
        err = gen.stderr.read().decode()
        out["hwm_kb"] = status_kb(s.pids(), "VmHWM")
        status, metrics = http("GET", s.base + "/metrics")
        out["metrics"] = [line for line in metrics.decode("utf-8", "replace").splitlines()
                          if line and not line.startswith("#")][:80] if status == 200 else []
        check(status == 200, f"10 soak: GET /metrics answered {status}", problems)
        s.stop()
        out["tables"] = store_tables(db)
        try:
            with open(res) as f:
                r = json.load(f)
            codes = r["statusCodeDistribution"]
            total = sum(codes.values()) + sum(r["errorDistribution"].values())
            out["load"] = {"requests": total, "ok": codes.get("200", 0),
                           "errors": total - codes.get("200", 0),
                           "requests_per_s": total / r["summary"]["total"],
                           "p50_ms": r["latencyPercentiles"]["p50"] * 1000,
                           "p99_ms": r["latencyPercentiles"]["p99"] * 1000,
                           "max_ms": r["summary"]["slowest"] * 1000}
        except (OSError, ValueError, KeyError) as e:
            out["load"] = {"failed": f"{e}: {err[-300:]}"}
            check(False, f"10 soak: oha: {e}: {err[-300:]}", problems)
        load = out["load"]
        check(load.get("errors") == 0, f"10 soak: {load.get('errors')} errors", problems)
        out["samples"] = samples
        q = samples[0]
        for s_ in samples:  # the sample at half the run, once warmed up
            if s_["t"] <= secs / 2:
                q = s_
        for key in ("rss_kb", "store_bytes"):
            vals = [x[key] for x in samples]
            out[key] = {"first": samples[1][key] if len(samples) > 1 else vals[0],
                        "half": q[key], "last": vals[-1], "max": max(vals),
                        "flat": vals[-1] <= 1.1 * q[key]}
        log(f"  RSS {out['rss_kb']['half'] / 1024:.1f} MB at half the run, "
            f"{out['rss_kb']['last'] / 1024:.1f} MB at the end, max "
            f"{out['rss_kb']['max'] / 1024:.1f} MB; store {out['store_bytes']['half'] / 1e6:.1f}"
            f" → {out['store_bytes']['last'] / 1e6:.1f} MB; "
            f"{load.get('requests_per_s', 0):.0f} requests/s, {load.get('errors')} errors")
    finally:
        stop_all()
    return out
