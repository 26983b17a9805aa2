#!/usr/bin/env python3
"""Runs llmroute's benchmark scenarios and writes the raw results as JSON.

`bench/run` builds everything, starts the fake upstreams and calls this with
the environment below; `bench/report.py` then turns the JSON into
BENCHMARKS.md and the chart. Standard library only.

Environment:
  BENCH_ROOT        the repository
  BENCH_WORK        a scratch directory (removed by bench/run)
  BENCH_OUT         where to write the results JSON
  BENCH_URL_FAST    base URL of a fake upstream that answers at once
  BENCH_URL_SLOW    base URL of a fake upstream that answers after 100 ms
  BENCH_SLOW_MS     that latency (100)
  BENCH_VENV_PY     the Python that has litellm (the peer)
  BENCH_QUICK=1     tiny sizes, for checking the harness itself
  BENCH_RUNS=N      runs per measurement (default 5; 2 when quick)
  BENCH_ONLY=1,3    run only these scenarios
  BENCH_SCORER_EXE  the criterion benchmark's executable (else `cargo bench`)
  BENCH_LLMROUTE    the llmroute binary (default target/release/llmroute)
  BENCH_FAKE        the fake upstream's binary (default target/release/fake-openrouter)
  BENCH_OHA         the constant-rate load generator, oha (scenarios 9 and 10)
  BENCH_STUNNEL     stunnel, the TLS terminator in front of the fake (scenario 9)
  BENCH_NODE        node, and BENCH_PORTKEY Portkey's gateway script (scenario 9)
  BENCH_LITELLM_CLI the `litellm` command of BENCH_VENV_PY's environment (scenario 9)
  BENCH_SOAK_SECS   how long scenario 10 runs (default 600; 20 when quick)
  (scenario 11 starts a redis-server of its own: Debian's redis-server)
"""

import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.environ["BENCH_ROOT"]
WORK = os.environ["BENCH_WORK"]
OUT = os.environ["BENCH_OUT"]
URL_FAST = os.environ["BENCH_URL_FAST"]
URL_SLOW = os.environ["BENCH_URL_SLOW"]
SLOW_MS = int(os.environ.get("BENCH_SLOW_MS", "100"))
VENV_PY = os.environ["BENCH_VENV_PY"]
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RUNS = int(os.environ.get("BENCH_RUNS") or (2 if QUICK else 5))
ONLY = {int(x) for x in os.environ.get("BENCH_ONLY", "").split(",") if x.strip()}

LLMROUTE = os.environ.get("BENCH_LLMROUTE") or os.path.join(ROOT, "target", "release", "llmroute")
# llmroute at another revision (bench/run's BENCH_BASELINE), run beside this one.
BASELINE = os.environ.get("BENCH_BASELINE_LLMROUTE") or None
BASELINE_REV = os.environ.get("BENCH_BASELINE_REV") or "baseline"
FAKE = os.environ.get("BENCH_FAKE") or os.path.join(ROOT, "target", "release", "fake-openrouter")
OHA = os.environ.get("BENCH_OHA") or shutil.which("oha") or "oha"
STUNNEL = os.environ.get("BENCH_STUNNEL") or shutil.which("stunnel4") or shutil.which("stunnel")
NODE = os.environ.get("BENCH_NODE") or shutil.which("node")
PORTKEY = os.environ.get("BENCH_PORTKEY") or os.path.join(
    ROOT, "bench", ".npm", "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
LITELLM_CLI = os.environ.get("BENCH_LITELLM_CLI") or os.path.join(os.path.dirname(VENV_PY),
                                                                   "litellm")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "client_floor")
PEER = os.path.join(ROOT, "bench", "litellm_peer.py")
LUA = os.path.join(ROOT, "bench", "post.lua")
MODELS = "fast/a,fast/b,fast/c"
T0 = time.monotonic()

# Sizes of every scenario. The peer gets fewer lines: it routes ~150 lines/s,
# so the comparison is of throughput, not of wall time.
SIZES = {
    "s1_lines": 20_000,
    "s1_peer_lines": 1_000,
    "s1_concurrency": [1, 8, 64],
    "limit_seconds": 5,
    "s2_lines": 2_000,
    "s2_peer_lines": 640,
    "s2_concurrency": 32,
    "s3_lines": 100_000,
    "s3_concurrency": 64,
    "s4_small": 10_000,
    "s4_large": 1_000_000,
    "s6_runs": 50,
    "s7_attempts": 1_000_000,
    "s7_runs": 5,
    # About 100,000 request rows in the last 24 hours, for the HTML report.
    "s7_day_attempts": 107_700,
    "criterion_warm_up_s": 1,
    "criterion_measurement_s": 3,
    # Scenario 9: requests/s offered (open loop), seconds per rate, warm-up
    # seconds, connections (the most requests in flight), seconds of wrk's
    # closed-loop maximum.
    "s9_rates": [20, 100, 1_000, 5_000],
    "s9_seconds": 15,
    "s9_warm_up_s": 3,
    "s9_connections": 64,
    "s9_max_seconds": 10,
    "s9_tls_rates": [1_000],
    # Scenario 10: requests/s, at most this many distinct bodies, sampling
    # every so many seconds (the duration is BENCH_SOAK_SECS).
    "s10_rate": 1_000,
    "s10_distinct": 50_000,
    "s10_sample_s": 5,
}
SOAK_SECS = int(os.environ.get("BENCH_SOAK_SECS") or (20 if QUICK else 600))
if QUICK:
    SIZES.update(
        s9_rates=[20, 1_000],
        s9_seconds=3,
        s9_warm_up_s=1,
        s9_max_seconds=2,
        s10_sample_s=1,
        s1_lines=2_000,
        s1_peer_lines=100,
        limit_seconds=1,
        s2_lines=320,
        s2_peer_lines=64,
        s3_lines=5_000,
        s4_small=1_000,
        s4_large=20_000,
        s6_runs=10,
        s7_attempts=20_000,
        s7_runs=2,
        s7_day_attempts=5_000,
        criterion_warm_up_s=0.5,
        criterion_measurement_s=1,
    )


def log(msg: str) -> None:
    print(f"[bench +{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def path(name: str) -> str:
    return os.path.join(WORK, name)


_seq = 0


def fresh(prefix: str) -> str:
    """A new, empty directory in the scratch space."""
    global _seq
    _seq += 1
    d = path(f"{prefix}-{_seq}")
    os.makedirs(d)
    return d


def llmroute_env() -> dict:
    """No user config, no user store, any API key (the fake accepts any)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMROUTE_")}
    home = fresh("home")
    os.makedirs(os.path.join(home, "config"))
    env.update(
        OPENROUTER_API_KEY="bench",
        XDG_CONFIG_HOME=os.path.join(home, "config"),
        XDG_DATA_HOME=os.path.join(home, "data"),
        NO_COLOR="1",
    )
    return env


def timed(cmd, stdin=None, stdout=None, env=None) -> dict:
    """Runs cmd under /usr/bin/time: wall seconds, peak RSS, status, stderr."""
    rss_file = path("rss.txt")
    full = ["/usr/bin/time", "-f", "%M", "-o", rss_file] + list(cmd)
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
    try:
        t = time.perf_counter()
        p = subprocess.run(full, stdin=fin, stdout=fout, stderr=subprocess.PIPE, env=env)
        seconds = time.perf_counter() - t
    finally:
        if stdin:
            fin.close()
        if stdout:
            fout.close()
    rss = None
    try:
        with open(rss_file) as f:
            nums = re.findall(r"^\d+$", f.read(), re.M)
            rss = int(nums[-1]) if nums else None
    except OSError:
        pass
    return {
        "seconds": seconds,
        "rss_kb": rss,
        "rc": p.returncode,
        "stderr": p.stderr.decode("utf-8", "replace"),
    }


def count_lines(file: str, needle: bytes = None):
    """Lines in file, and how many contain needle."""
    n = hits = 0
    with open(file, "rb") as f:
        for line in f:
            n += 1
            if needle is not None and needle in line:
                hits += 1
    return n, hits


def check(ok: bool, what: str, problems: list) -> None:
    if not ok:
        log(f"WARNING: {what}")
        problems.append(what)


def head(src: str, n: int, dst: str) -> str:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        for i, line in enumerate(fi):
            if i >= n:
                break
            fo.write(line)
    return dst


def repeat(src: str, times: int, dst: str) -> str:
    with open(dst, "wb") as fo:
        for _ in range(times):
            with open(src, "rb") as fi:
                shutil.copyfileobj(fi, fo, 1 << 20)
    return dst


def copy_store(src: str, dst_dir: str) -> str:
    """A private copy of a store (with its WAL, if any)."""
    dst = os.path.join(dst_dir, "llmroute.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(src + suffix):
            shutil.copyfile(src + suffix, dst + suffix)
    return dst


# ---------------------------------------------------------------------------
# One llmroute run, one peer run, one raw-HTTP run
# ---------------------------------------------------------------------------


def run_llmroute(args, input_file, lines, problems, db=None, save_output=True,
                 expect_cached=False, label="llmroute", binary=None):
    d = fresh("run")
    db = db or os.path.join(d, "llmroute.db")
    out = os.path.join(d, "out.jsonl") if save_output else None
    cmd = [binary or LLMROUTE, "-q", "--db", db] + list(args)
    r = timed(cmd, stdin=input_file, stdout=out, env=llmroute_env())
    check(r["rc"] == 0, f"{label}: exit status {r['rc']}: {r['stderr'].strip()[:300]}", problems)
    if out:
        n, hits = count_lines(out, b'"cached":true' if expect_cached else b'"error":null')
        check(n == lines, f"{label}: {n} output lines, expected {lines}", problems)
        if expect_cached:
            check(hits == lines, f"{label}: {hits} of {lines} lines were cache hits", problems)
        else:
            check(hits == lines, f"{label}: {lines - hits} lines with an error", problems)
    shutil.rmtree(d, ignore_errors=True)
    return {
        "lines": lines,
        "seconds": r["seconds"],
        "lines_per_s": lines / r["seconds"],
        "rss_kb": r["rss_kb"],
        "rc": r["rc"],
    }


def run_peer(url, concurrency, input_file, lines, problems):
    d = fresh("peer")
    out = os.path.join(d, "out.jsonl")
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR")
    r = timed([VENV_PY, PEER, "--base-url", url, "--concurrency", str(concurrency), input_file],
              stdout=out, env=env)
    stats = {}
    for line in reversed(r["stderr"].strip().splitlines()):
        if line.startswith("{"):
            stats = json.loads(line)
            break
    check(r["rc"] == 0 and stats.get("errors") == 0,
          f"peer -j {concurrency}: exit {r['rc']}, {stats.get('errors')} errors: "
          f"{r['stderr'].strip()[-300:]}", problems)
    n, _ = count_lines(out)
    check(n == lines, f"peer -j {concurrency}: {n} output lines, expected {lines}", problems)
    shutil.rmtree(d, ignore_errors=True)
    return {
        "lines": lines,
        "seconds": stats.get("seconds"),
        "lines_per_s": stats.get("lines_per_s"),
        "process_seconds": r["seconds"],
        "import_seconds": stats.get("import_s"),
        "rss_kb": r["rss_kb"],
        "rc": r["rc"],
    }


def run_floor(url, concurrency, input_file, lines, problems):
    """llmroute's upstream client alone (examples/client_floor.rs)."""
    d = fresh("floor")
    out = os.path.join(d, "out.json")
    r = timed([FLOOR, url, str(concurrency), MODELS, input_file], stdout=out)
    stats = {}
    with open(out) as f:
        for line in reversed(f.read().strip().splitlines()):
            if line.startswith("{"):
                stats = json.loads(line)
                break
    shutil.rmtree(d, ignore_errors=True)
    check(r["rc"] == 0 and stats.get("errors") == 0 and stats.get("requests") == lines,
          f"client floor -j {concurrency}: exit {r['rc']}, {stats}: {r['stderr'].strip()[-300:]}",
          problems)
    return {
        "requests": stats.get("requests"),
        "seconds": stats.get("seconds"),
        "requests_per_s": stats.get("requests_per_s"),
        "errors": stats.get("errors"),
        "rss_kb": r["rss_kb"],
    }


def run_limit(url, concurrency, seconds, body_file, problems):
    threads = min(concurrency, 2)
    env = dict(os.environ, BENCH_BODY_FILE=body_file)
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "-s", LUA,
           url.rstrip("/") + "/chat/completions"]
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    summary = {}
    for line in reversed(p.stdout.decode().strip().splitlines()):
        if line.startswith("{"):
            summary = json.loads(line)
            break
    check(p.returncode == 0 and summary.get("requests", 0) > 0 and summary.get("errors") == 0,
          f"wrk -c {concurrency}: exit {p.returncode}, {summary}: {p.stderr.decode()[-300:]}",
          problems)
    return {
        "requests": summary.get("requests"),
        "seconds": summary.get("seconds"),
        "requests_per_s": summary.get("requests_per_s"),
        "errors": summary.get("errors"),
        "p50_us": summary.get("p50_us"),
        "p99_us": summary.get("p99_us"),
    }


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


def scenario1(inputs, problems):
    """Routing overhead: upstream answers at once; llmroute vs peer vs limit."""
    lines, peer_lines = SIZES["s1_lines"], SIZES["s1_peer_lines"]
    conc = SIZES["s1_concurrency"]
    runs = []
    for k in range(RUNS):
        run = {}
        for c in conc:
            args = ["--no-cache", "--models", MODELS, "-j", str(c), "--base-url", URL_FAST]
            # The baseline runs next to llmroute, before it in every other run.
            beside = BASELINE and c == 64
            if beside and k % 2:
                base = run_baseline(args, inputs["s1"], lines, problems, f"-j {c}")
            log(f"1 routing overhead: run {k + 1}/{RUNS}, -j {c}: llmroute ({lines} lines)")
            lr = run_llmroute(args, inputs["s1"], lines, problems, label=f"llmroute -j {c}")
            if beside and not k % 2:
                log(f"  {lr['lines_per_s']:.0f} lines/s")
                base = run_baseline(args, inputs["s1"], lines, problems, f"-j {c}")
            log(f"  {lr['lines_per_s']:.0f} lines/s; peer ({peer_lines} lines)")
            pr = run_peer(URL_FAST, c, inputs["s1_peer"], peer_lines, problems)
            log(f"  {pr['lines_per_s'] or 0:.0f} lines/s; raw limit ({SIZES['limit_seconds']} s)")
            lim = run_limit(URL_FAST, c, SIZES["limit_seconds"], inputs["body"], problems)
            log(f"  {lim['requests_per_s'] or 0:.0f} requests/s; client floor ({lines} requests)")
            fl = run_floor(URL_FAST, c, inputs["s1"], lines, problems)
            log(f"  {fl['requests_per_s'] or 0:.0f} requests/s")
            run[str(c)] = {"llmroute": lr, "peer": pr, "limit": lim, "floor": fl}
            if beside:
                run[str(c)]["baseline"] = base
        runs.append(run)
    out = {"lines": lines, "peer_lines": peer_lines, "concurrency": conc,
           "limit_seconds": SIZES["limit_seconds"], "runs": runs}
    if BASELINE:
        out["baseline_rev"] = BASELINE_REV
    return out


def run_baseline(args, input_file, lines, problems, what, **kw):
    """The baseline build (BENCH_BASELINE) on the same input with the same flags."""
    log(f"  baseline {BASELINE_REV[:10]} {what}")
    r = run_llmroute(args, input_file, lines, problems, label=f"baseline {what}",
                     binary=BASELINE, **kw)
    log(f"  {r['lines_per_s']:.0f} lines/s (baseline)")
    return r


def scenario2(inputs, problems):
    """Latency-bound: upstream answers after 100 ms; -j 32."""
    lines, peer_lines, c = SIZES["s2_lines"], SIZES["s2_peer_lines"], SIZES["s2_concurrency"]
    runs = []
    for k in range(RUNS):
        log(f"2 latency-bound: run {k + 1}/{RUNS}: llmroute ({lines} lines, -j {c})")
        lr = run_llmroute(["--no-cache", "--models", MODELS, "-j", str(c),
                           "--base-url", URL_SLOW], inputs["s2"], lines, problems,
                          label="llmroute latency-bound")
        log(f"  {lr['lines_per_s']:.0f} lines/s; peer ({peer_lines} lines)")
        pr = run_peer(URL_SLOW, c, inputs["s2_peer"], peer_lines, problems)
        log(f"  {pr['lines_per_s'] or 0:.0f} lines/s")
        runs.append({"llmroute": lr, "peer": pr})
    return {"lines": lines, "peer_lines": peer_lines, "concurrency": c, "latency_ms": SLOW_MS,
            "ideal_lines_per_s": c * 1000 / SLOW_MS, "runs": runs}


def fill_cache(inputs, problems, binary=None):
    """Routes the scenario-3 input once so that a re-run is all cache hits."""
    d = fresh("filled")
    db = os.path.join(d, "llmroute.db")
    lines = SIZES["s3_lines"]
    log(f"3 cached re-run: filling the cache ({lines} lines, -j {SIZES['s3_concurrency']})"
        + (" with the baseline" if binary else ""))
    r = run_llmroute(["--models", MODELS, "-j", str(SIZES["s3_concurrency"]),
                      "--base-url", URL_FAST], inputs["s3"], lines, problems, db=db,
                      label="cache fill", binary=binary)
    log(f"  {r['lines_per_s']:.0f} lines/s")
    return db, r


def cached_args():
    return ["--models", MODELS, "-j", str(SIZES["s3_concurrency"]), "--base-url", URL_FAST]


def scenario3(inputs, filled_db, fill, problems):
    lines = SIZES["s3_lines"]
    # The baseline fills a store of its own: its schema may be older.
    base_db, base_fill = fill_cache(inputs, problems, BASELINE) if BASELINE else (None, None)
    runs, base_runs = [], []

    def baseline_run():
        d = fresh("cached")
        base_runs.append(run_baseline(cached_args(), inputs["s3"], lines, problems,
                                      "cached re-run", db=copy_store(base_db, d),
                                      expect_cached=True))
        shutil.rmtree(d, ignore_errors=True)

    for k in range(RUNS):
        if BASELINE and k % 2:
            baseline_run()
        d = fresh("cached")
        db = copy_store(filled_db, d)
        log(f"3 cached re-run: run {k + 1}/{RUNS} ({lines} lines, all cache hits)")
        r = run_llmroute(cached_args(), inputs["s3"], lines, problems, db=db,
                         expect_cached=True, label="cached re-run")
        log(f"  {r['lines_per_s']:.0f} lines/s")
        runs.append(r)
        shutil.rmtree(d, ignore_errors=True)
        if BASELINE and not k % 2:
            baseline_run()
    out = {"lines": lines, "fill": fill, "runs": runs}
    if BASELINE:
        out["baseline"] = {"rev": BASELINE_REV, "fill": base_fill, "runs": base_runs}
        shutil.rmtree(os.path.dirname(base_db), ignore_errors=True)
    return out


def scenario4(inputs, filled_db, problems):
    """Peak RSS: 10k vs 1M lines, dry-run and cached re-run."""
    small, large = SIZES["s4_small"], SIZES["s4_large"]
    out = {"small": small, "large": large, "dry_run": {}, "cached": {}}
    for size, name in ((small, "small"), (large, "large")):
        out["dry_run"][name] = []
        out["cached"][name] = []
        for k in range(RUNS):
            log(f"4 memory: run {k + 1}/{RUNS}: --dry-run, {size} lines")
            r = run_llmroute(["--dry-run"], inputs[f"s4_{name}"], size, problems,
                             save_output=False, label=f"dry-run {size}")
            log(f"  {r['rss_kb'] / 1024:.1f} MB, {r['lines_per_s']:.0f} lines/s")
            out["dry_run"][name].append(r)
            d = fresh("cached")
            db = copy_store(filled_db, d)
            log(f"4 memory: run {k + 1}/{RUNS}: cached re-run, {size} lines")
            r = run_llmroute(cached_args(), inputs[f"s4_{name}"], size, problems, db=db,
                             save_output=False, label=f"cached {size}")
            log(f"  {r['rss_kb'] / 1024:.1f} MB, {r['lines_per_s']:.0f} lines/s")
            out["cached"][name].append(r)
            shutil.rmtree(d, ignore_errors=True)
    return out


def scenario5(problems):
    """Decision time: criterion, `cargo bench --bench scorer`."""
    home = os.path.join(ROOT, "target", "criterion")
    crit = os.path.join(home, "decision")
    shutil.rmtree(crit, ignore_errors=True)
    args = ["--bench", "--noplot",
            "--warm-up-time", str(SIZES["criterion_warm_up_s"]),
            "--measurement-time", str(SIZES["criterion_measurement_s"])]
    exe = os.environ.get("BENCH_SCORER_EXE")
    if exe:
        # The executable `cargo bench --no-run` built: the same as
        # `cargo bench --bench scorer -- ARGS`, without a rebuild in between.
        cmd = [exe] + args
    else:
        cmd = ["cargo", "bench", "--quiet", "--bench", "scorer", "--"] + args[1:]
    log(f"5 decision time: {'benches/scorer.rs' if exe else 'cargo bench --bench scorer'}")
    p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, CRITERION_HOME=home),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(p.returncode == 0, f"criterion: exit {p.returncode}: {p.stderr.decode()[-500:]}",
          problems)
    results = {}
    for dirpath, _, files in os.walk(crit):
        if os.path.basename(dirpath) == "new" and "estimates.json" in files:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                full_id = json.load(f)["full_id"]
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            m = est["median"]
            results[full_id] = {
                "median_ns": m["point_estimate"],
                "low_ns": m["confidence_interval"]["lower_bound"],
                "high_ns": m["confidence_interval"]["upper_bound"],
                "mean_ns": est["mean"]["point_estimate"],
            }
    for k, v in sorted(results.items()):
        log(f"  {k}: {v['median_ns'] / 1000:.2f} µs")
    check(len(results) == 6, f"criterion: {len(results)} results, expected 6", problems)
    return {"warm_up_s": SIZES["criterion_warm_up_s"],
            "measurement_s": SIZES["criterion_measurement_s"], "results": results}


def time_command(shell_cmd, runs, env, name):
    """Median, min and max wall time of a shell command, in seconds."""
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        export = path(f"hyperfine-{name}.json")
        cmd = [hyperfine, "--style", "none", "--warmup", "5", "--runs", str(runs),
               "--export-json", export, shell_cmd]
        p = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if p.returncode == 0:
            with open(export) as f:
                r = json.load(f)["results"][0]
            return {"tool": "hyperfine", "runs": runs, "median_s": r["median"],
                    "min_s": r["min"], "max_s": r["max"], "mean_s": r["mean"]}
        log(f"hyperfine failed ({p.stderr.decode()[-200:]}); timing with Python")
    times = []
    for i in range(runs + 5):
        t = time.perf_counter()
        subprocess.run(shell_cmd, shell=True, env=env, stdout=subprocess.DEVNULL)
        if i >= 5:
            times.append(time.perf_counter() - t)
    return {"tool": "python", "runs": runs, "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times), "mean_s": statistics.mean(times)}


def q(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def scenario6(problems):
    """Start-up: --version, and one cached line end to end."""
    runs = SIZES["s6_runs"]
    env = llmroute_env()
    log(f"6 start-up: llmroute --version ({runs} runs)")
    version = time_command(f"{q(LLMROUTE)} --version", runs, env, "version")
    log(f"  {version['median_s'] * 1000:.2f} ms")
    d = fresh("startup")
    db = os.path.join(d, "llmroute.db")
    one = os.path.join(d, "one.jsonl")
    with open(one, "w") as f:
        f.write('{"prompt":"x"}\n')
    cmd = (f"{q(LLMROUTE)} -q --models {MODELS} --base-url {q(URL_FAST)} --db {q(db)}"
           f" < {q(one)} > /dev/null")
    p = subprocess.run(cmd, shell=True, env=env)  # the fill: one upstream call
    check(p.returncode == 0, f"start-up fill: exit {p.returncode}", problems)
    out = subprocess.run(cmd.replace(" > /dev/null", ""), shell=True, env=env,
                         stdout=subprocess.PIPE).stdout
    check(b'"cached":true' in out, "start-up: the line was not a cache hit", problems)
    log(f"6 start-up: one cached line end to end ({runs} runs)")
    line = time_command(cmd, runs, env, "cached-line")
    log(f"  {line['median_s'] * 1000:.2f} ms")
    shutil.rmtree(d, ignore_errors=True)
    return {"version": version, "cached_line": line}


def scenario7(problems):
    """`llmroute report --json` over a store with N attempt rows."""
    n = SIZES["s7_attempts"]
    d = fresh("report")
    db = os.path.join(d, "llmroute.db")
    env = llmroute_env()
    log(f"7 report: building a store with {n} attempt rows")
    t = time.perf_counter()
    made = made_store(db, n, env, problems)
    build_s = time.perf_counter() - t
    log(f"  {made['requests']} requests, {made['attempts']} attempts in {build_s:.1f} s")
    runs = []
    for k in range(SIZES["s7_runs"]):
        out = os.path.join(d, "report.json")
        r = timed([LLMROUTE, "report", "--json", "--since", "all", "--db", db],
                  stdout=out, env=env)
        check(r["rc"] == 0, f"report: exit {r['rc']}: {r['stderr'][:300]}", problems)
        try:
            with open(out) as f:
                rep = json.load(f)
            check(rep.get("requests") == made["requests"],
                  f"report: requests {rep.get('requests')}, expected {made['requests']}", problems)
        except ValueError as e:
            check(False, f"report: not JSON: {e}", problems)
        log(f"  run {k + 1}: {r['seconds'] * 1000:.0f} ms, {r['rss_kb'] / 1024:.1f} MB")
        runs.append({"seconds": r["seconds"], "rss_kb": r["rss_kb"]})
    html_runs = html_report(db, "all", env, problems)
    shutil.rmtree(d, ignore_errors=True)

    # A day of about 100,000 requests, as a cron job would mail it.
    d = fresh("report-day")
    db = os.path.join(d, "llmroute.db")
    day = made_store(db, SIZES["s7_day_attempts"], env, problems)
    log(f"7 report: --format html over a day of {day['requests']} requests")
    day["runs"] = html_report(db, "24h", env, problems)
    shutil.rmtree(d, ignore_errors=True)
    return {"attempts": made["attempts"], "requests": made["requests"], "build_s": build_s,
            "runs": runs, "html_runs": html_runs, "day": day}


def made_store(db, attempts, env, problems):
    """A store at `db` with llmroute's schema, filled by make_store.py with
    about `attempts` attempt rows; what make_store.py says it made."""
    p = subprocess.run([LLMROUTE, "-q", "--dry-run", "--db", db], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, env=env)
    check(p.returncode == 0, f"report: creating the store: exit {p.returncode}", problems)
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_store.py"), db,
                        str(attempts)], stdout=subprocess.PIPE, check=True)
    return json.loads(p.stdout)


def html_report(db, since, env, problems):
    """`llmroute report --format html` over `db`: time, memory, bytes."""
    runs = []
    for k in range(SIZES["s7_runs"]):
        out = os.path.join(os.path.dirname(db), "report.html")
        r = timed([LLMROUTE, "report", "--format", "html", "--since", since, "--db", db,
                   "--output", out], env=env)
        check(r["rc"] == 0, f"report html: exit {r['rc']}: {r['stderr'][:300]}", problems)
        size = os.path.getsize(out) if os.path.exists(out) else 0
        with open(out, "rb") as f:
            check(f.read(15) == b"<!DOCTYPE html>", "report html: not a page", problems)
        log(f"  html run {k + 1}: {r['seconds'] * 1000:.0f} ms, {size / 1024:.0f} KB")
        runs.append({"seconds": r["seconds"], "rss_kb": r["rss_kb"], "bytes": size})
    return runs


# ---------------------------------------------------------------------------
# Scenarios 9 and 10: `llmroute serve`, its peers, and a soak
# ---------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
LIVE = []  # servers to stop if the harness stops early
MODELS_ENV = {"LLMROUTE_MODELS": MODELS}  # what `model: auto` routes among
LITELLM_KEY = "sk-bench"  # the LiteLLM proxy's master key (any `sk-` string)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_pids(sid: int) -> list:
    """The processes of a session: a server and everything it started."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:
            pids.append(int(name))
    return pids


def cpu_seconds(pids) -> float:
    """User plus system CPU time of these processes (/proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def status_kb(pids, key: str) -> int:
    """The sum of one /proc/PID/status field (VmRSS, VmHWM) over processes."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def http(method, url, body=None, headers=None, timeout=5.0, cafile=None):
    """(status, body bytes), or (None, the error) when nothing answered."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    ctx = ssl.create_default_context(cafile=cafile) if cafile else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (OSError, urllib.error.URLError) as e:
        return None, str(e).encode()


class Server:
    """A server process started by scenario 9 or 10, in a session of its own so
    that its CPU time and memory can be summed over whatever it starts, and so
    that stop() ends exactly that."""

    def __init__(self, name, cmd, env=None, stdout_path=None):
        self.name = name
        self.log_path = path(f"{name}.log")
        self._log = open(self.log_path, "wb")
        self._out = open(stdout_path, "wb") if stdout_path else self._log
        t = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._log, start_new_session=True)
        self.started = t
        self.ready_s = None
        LIVE.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list:
        return session_pids(self.proc.pid) if self.alive() else []

    def log_tail(self, n=400) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").strip()[-n:]
        except OSError:
            return ""

    def wait_http(self, url, timeout_s, headers=None) -> bool:
        """Polls GET url until it answers 200; False if the process exits or
        time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            status, _ = http("GET", url, headers=headers, timeout=2)
            if status == 200:
                self.ready_s = time.perf_counter() - self.started
                return True
            time.sleep(0.1)
        return False

    def wait_port(self, port, timeout_s) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                self.ready_s = time.perf_counter() - self.started
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def stop(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        self.proc.wait()
        for f in {self._log, self._out}:
            f.close()
        if self in LIVE:
            LIVE.remove(self)


def stop_all():
    for s in list(LIVE):
        s.stop()


def start_fake(name, extra=()):
    """A fake upstream of the scenario's own, so that its CPU time is known."""
    url_file = path(f"{name}.url")
    s = Server(name, [FAKE, "--workers", "2"] + list(extra), stdout_path=url_file)
    for _ in range(200):
        if os.path.getsize(url_file) > 0:
            with open(url_file) as f:
                s.url = f.readline().strip()
            s.ready_s = time.perf_counter() - s.started
            return s
        if not s.alive():
            break
        time.sleep(0.05)
    s.stop()
    raise RuntimeError(f"fake-openrouter ({name}) did not start: {s.log_tail()}")


_serve_help = None


def serve_help() -> str:
    """`llmroute serve --help`, or "" when this llmroute has no `serve`."""
    global _serve_help
    if _serve_help is None:
        try:
            p = subprocess.run([LLMROUTE, "serve", "--help"], capture_output=True, text=True,
                               timeout=30)
            # A build without the subcommand takes `serve` for an input file
            # and prints the main help, with status 0: look for its flag.
            _serve_help = p.stdout if p.returncode == 0 and "--listen" in p.stdout else ""
        except (OSError, subprocess.TimeoutExpired):
            _serve_help = ""
    return _serve_help


def shown(cmd, port, upstream=None) -> str:
    """A command as the report shows it: no scratch paths, no port numbers."""
    text = " ".join([os.path.basename(cmd[0])] + list(cmd[1:]))
    text = re.sub(rf"\b{port}\b", "PORT", text)
    if upstream:
        hostport = upstream.split("//", 1)[1].split("/", 1)[0]
        text = text.replace(hostport, "127.0.0.1:UPSTREAM")
    return re.sub(r"\S*/(config\.yaml)", r"\1", text.replace(ROOT + "/", ""))


def start_llmroute(name, base_url, env, cache=False, retention=None, upkeep=None):
    port = free_port()
    cmd = [LLMROUTE, "serve", "--listen", f"127.0.0.1:{port}", "--base-url", base_url,
           "-j", str(SIZES["s9_connections"])]
    if "--quiet" in serve_help():
        cmd.append("-q")  # no access log: the peers write none either
    if not cache:
        cmd.append("--no-cache")
    if retention and "--retention" in serve_help():
        cmd += ["--retention", retention]
    if upkeep and "--upkeep-every" in serve_help():
        cmd += ["--upkeep-every", upkeep]
    s = Server(name, cmd, env=env)
    s.cmd = shown(cmd, port, base_url)
    s.base = f"http://127.0.0.1:{port}"
    if not s.wait_http(s.base + "/health", 60):
        tail = s.log_tail()
        s.stop()
        raise RuntimeError(f"llmroute serve did not come up: {tail}")
    return s


def serve_env(extra=None) -> dict:
    env = llmroute_env()
    env.update(MODELS_ENV)
    env.update(extra or {})
    return env


def start_litellm(name, upstream_url):
    """LiteLLM's proxy (its `litellm` CLI, one uvicorn worker, its default)
    with one deployment, `openai/fast/a` on the fake upstream."""
    d = fresh("litellm-proxy")
    cfg = os.path.join(d, "config.yaml")
    with open(cfg, "w") as f:
        f.write("model_list:\n"
                "  - model_name: fast/a\n"
                "    litellm_params:\n"
                "      model: openai/fast/a\n"
                f"      api_base: {upstream_url}\n"
                "      api_key: bench\n"
                "general_settings:\n"
                f"  master_key: {LITELLM_KEY}\n"
                "litellm_settings:\n"
                "  telemetry: false\n"
                "  set_verbose: false\n")
    port = free_port()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR",
               LITELLM_TELEMETRY="False", DISABLE_SCHEMA_UPDATE="True")
    cmd = [LITELLM_CLI, "--config", cfg, "--host", "127.0.0.1", "--port", str(port)]
    s = Server(name, cmd, env=env)
    s.cmd = shown(cmd, port)
    s.base = f"http://127.0.0.1:{port}"
    if not s.wait_http(s.base + "/health/liveliness", 180):
        tail = s.log_tail()
        s.stop()
        raise RuntimeError(f"the LiteLLM proxy did not come up: {tail}")
    return s


def start_portkey(name):
    """Portkey's gateway: what `npx @portkey-ai/gateway --port=N --headless`
    runs, started with node directly so that no npx process sits in between."""
    port = free_port()
    cmd = [NODE, PORTKEY, f"--port={port}", "--headless"]
    s = Server(name, cmd)
    s.cmd = shown(cmd, port)
    s.base = f"http://127.0.0.1:{port}"
    if not s.wait_http(s.base + "/", 60):
        tail = s.log_tail()
        s.stop()
        raise RuntimeError(f"Portkey's gateway did not come up: {tail}")
    return s


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


def make_tls(d):
    """A throw-away CA and a certificate it signed for 127.0.0.1, as
    tests/integration/tls.rs describes."""
    def ssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=llmroute bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


def start_stunnel(name, backend_url, cert, key):
    """stunnel terminating TLS in front of the fake upstream."""
    port = free_port()
    backend = backend_url.split("//", 1)[1].split("/", 1)[0]
    conf = path(f"{name}.conf")
    with open(conf, "w") as f:
        f.write(f"foreground = yes\npid =\ndebug = err\n\n[upstream]\n"
                f"accept = 127.0.0.1:{port}\nconnect = {backend}\n"
                f"cert = {cert}\nkey = {key}\n")
    s = Server(name, [STUNNEL, conf])
    if not s.wait_port(port, 20):
        tail = s.log_tail()
        s.stop()
        raise RuntimeError(f"stunnel did not come up: {tail}")
    s.url = backend_url.replace(f"http://{backend}", f"https://127.0.0.1:{port}")
    return s


def wrk_max(server, url_base, seconds, body_file):
    """wrk's closed-loop maximum at 64 connections, with the server's CPU time
    and peak memory."""
    conns = SIZES["s9_connections"]
    run_limit(url_base, conns, 1, body_file, [])  # warm-up
    pids = server.pids()
    c0 = cpu_seconds(pids)
    r = run_limit(url_base, conns, seconds, body_file, [])
    pids = server.pids()
    r["cpu_us_per_req"] = ((cpu_seconds(pids) - c0) / r["requests"] * 1e6
                           if r.get("requests") else None)
    r["hwm_kb"] = status_kb(pids, "VmHWM")
    r["connections"] = conns
    log(f"  {r['requests_per_s'] or 0:.0f} requests/s, {r['errors']} errors, "
        f"p99 {(r['p99_us'] or 0) / 1000:.2f} ms, {r['hwm_kb'] / 1024:.1f} MB peak")
    return r


def tool_version(cmd) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout.strip() or p.stderr.strip()).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return ""


def stunnel_version() -> str:
    if not STUNNEL:
        return ""
    p = subprocess.run([STUNNEL, "-version"], capture_output=True, text=True)
    m = re.search(r"^(stunnel \S+)", p.stdout + p.stderr, re.M)
    return m.group(1) if m else ""


def portkey_version() -> str:
    pkg = os.path.join(os.path.dirname(os.path.dirname(PORTKEY)), "package.json")
    try:
        with open(pkg) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return ""


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
        try:
            s = start()
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            check(False, f"9 {label}: {e}", problems)
            C[key] = {"label": label, "failed": str(e)[:300]}
            return
        try:
            C[key] = load_contender(label, s, up if not server_is_upstream else s, url_of(s),
                                    headers, body_file, rates, problems,
                                    baseline=None if server_is_upstream else straight)
            out["order"].append(key)
        finally:
            if not server_is_upstream:
                s.stop()

    up = start_fake("s9-upstream")
    try:
        up.cmd = f"{os.path.basename(FAKE)} --workers 2"
        run("straight", "straight to the upstream", lambda: up,
            lambda s: s.url + "/chat/completions", bench, body, server_is_upstream=True)
        if serve_help():
            run("llmroute", "llmroute serve, pinned", lambda: start_llmroute(
                "s9-llmroute", up.url, serve_env()), lambda s: s.base + "/v1/chat/completions",
                bench, body)
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

        # The closed-loop maximum at 64 connections.
        secs = SIZES["s9_max_seconds"]
        out["max"] = {}
        log(f"9 maximum: wrk -c {SIZES['s9_connections']} straight to the upstream, {secs} s")
        out["max"]["straight"] = wrk_max(up, up.url, secs, body)
        if serve_help():
            try:
                s = start_llmroute("s9-llmroute-max", up.url, serve_env())
                try:
                    log(f"9 maximum: wrk -c {SIZES['s9_connections']} through llmroute serve, "
                        f"{secs} s")
                    out["max"]["llmroute"] = wrk_max(s, s.base + "/v1", secs, body)
                finally:
                    s.stop()
            except RuntimeError as e:
                check(False, f"9 maximum: {e}", problems)

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


# ---------------------------------------------------------------------------


def start_redis():
    """A redis-server of the bench's own: a free port, persistence off."""
    exe = shutil.which("redis-server")
    if not exe:
        return None, None
    port = free_port()
    d = fresh("redis")
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", d],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cli = shutil.which("redis-cli")
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            time.sleep(0.025)
    return p, f"redis://127.0.0.1:{port}"


def redis_flush(url):
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"FLUSHALL\r\n")
        s.recv(16)


def redis_version():
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        return out.split()[2].replace("v=", "") if out else None
    except OSError:
        return None


def scenario11(inputs, problems):
    """The cost of Redis on the hot path: lines/s with and without it, and a
    cached re-run served from Redis into an empty local store."""
    proc, url = start_redis()
    if proc is None:
        check(False, "11: redis-server is not installed", problems)
        return None
    lines = SIZES["s3_lines"]
    c = SIZES["s3_concurrency"]
    args = ["--models", MODELS, "-j", str(c), "--base-url", URL_FAST]
    out = {"lines": lines, "concurrency": c, "redis": redis_version(), "runs": []}
    try:
        for k in range(RUNS):
            run = {}
            log(f"11 redis: run {k + 1}/{RUNS}: uncached, local store only ({lines} lines)")
            run["local"] = run_llmroute(args, inputs["s3"], lines, problems, label="local")
            log(f"  {run['local']['lines_per_s']:.0f} lines/s; uncached, with Redis")
            redis_flush(url)
            run["redis"] = run_llmroute(args + ["--redis", url], inputs["s3"], lines, problems,
                                        label="with redis")
            log(f"  {run['redis']['lines_per_s']:.0f} lines/s; cached re-run from Redis into "
                "an empty local store")
            run["from_redis"] = run_llmroute(args + ["--redis", url], inputs["s3"], lines,
                                             problems, expect_cached=True,
                                             label="cached from redis")
            log(f"  {run['from_redis']['lines_per_s']:.0f} lines/s")
            out["runs"].append(run)
    finally:
        proc.kill()
        proc.wait()
    return out


def machine():
    info = {"cores": os.cpu_count(), "cpu": platform.processor() or "unknown", "ram_gib": None}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    info["kernel"] = platform.release()

    def out(cmd):
        try:
            return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True).stdout.strip()
        except OSError:
            return ""

    info["commit"] = out(["git", "rev-parse", "--short", "HEAD"])
    info["dirty"] = bool(out(["git", "status", "--porcelain", "--", "src", "crates", "Cargo.toml",
                              "Cargo.lock", "assets"]))
    info["rustc"] = out(["rustc", "--version"])
    info["llmroute"] = out([LLMROUTE, "--version"])
    # BENCH_BIN_DIR: a binary built elsewhere, perhaps not from this commit.
    info["prebuilt"] = bool(os.environ.get("BENCH_BIN_DIR"))
    if BASELINE:
        info["baseline"] = BASELINE_REV
    try:
        info["llmroute_built"] = time.strftime("%Y-%m-%d %H:%M UTC",
                                               time.gmtime(os.path.getmtime(LLMROUTE)))
    except OSError:
        info["llmroute_built"] = None
    info["litellm"] = out([VENV_PY, "-c",
                           "import importlib.metadata as m; print(m.version('litellm'))"])
    info["python"] = out([VENV_PY, "--version"])
    info["wrk"] = (out(["sh", "-c", "wrk -v 2>&1 | head -n 1"]).split(" [")[0])
    info["hyperfine"] = out(["sh", "-c", "hyperfine --version 2>/dev/null"])
    info["oha"] = tool_version([OHA, "--version"])
    info["stunnel"] = stunnel_version()
    info["node"] = tool_version([NODE, "--version"]) if NODE else ""
    info["portkey"] = portkey_version()
    return info


def scenario8(problems):
    """Routing quality: examples/routing_quality.rs against an oracle."""
    log("8 routing quality (examples/routing_quality.rs)")
    exe = os.path.join(ROOT, "target", "release", "examples", "routing_quality")
    p = subprocess.run([exe, LLMROUTE], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        problems.append(f"routing_quality exited {p.returncode}: {p.stderr[-500:]}")
        return None
    return json.loads(p.stdout)


def main() -> int:
    problems: list = []
    started = time.time()
    log(f"sizes: {'quick' if QUICK else 'full'}, {RUNS} runs each")

    def want(n):
        return not ONLY or n in ONLY

    inputs = {}
    gen = os.path.join(ROOT, "bench", "gen_requests.py")
    big = max(SIZES["s1_lines"], SIZES["s3_lines"], SIZES["s2_lines"], SIZES["s4_small"])
    base = path("requests.jsonl")
    subprocess.run([sys.executable, gen, str(big), base, "--body", path("body.json")], check=True)
    inputs["body"] = path("body.json")
    inputs["s1"] = head(base, SIZES["s1_lines"], path("s1.jsonl"))
    inputs["s1_peer"] = head(base, SIZES["s1_peer_lines"], path("s1-peer.jsonl"))
    inputs["s2"] = head(base, SIZES["s2_lines"], path("s2.jsonl"))
    inputs["s2_peer"] = head(base, SIZES["s2_peer_lines"], path("s2-peer.jsonl"))
    inputs["s3"] = head(base, SIZES["s3_lines"], path("s3.jsonl"))
    inputs["s4_small"] = head(base, SIZES["s4_small"], path("s4-small.jsonl"))
    if want(4):
        # The large memory input is the scenario-3 input repeated, so that a
        # re-run after the scenario-3 fill is all cache hits.
        times = SIZES["s4_large"] // SIZES["s3_lines"]
        assert times * SIZES["s3_lines"] == SIZES["s4_large"]
        inputs["s4_large"] = repeat(inputs["s3"], times, path("s4-large.jsonl"))

    results = {"quick": QUICK, "runs": RUNS, "sizes": SIZES, "machine": machine(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
               "scenarios": {}}
    sc = results["scenarios"]
    if want(1):
        sc["1"] = scenario1(inputs, problems)
    if want(2):
        sc["2"] = scenario2(inputs, problems)
    if want(3) or want(4):
        filled, fill = fill_cache(inputs, problems)
        if want(3):
            sc["3"] = scenario3(inputs, filled, fill, problems)
        if want(4):
            sc["4"] = scenario4(inputs, filled, problems)
        shutil.rmtree(os.path.dirname(filled), ignore_errors=True)
    if want(5):
        sc["5"] = scenario5(problems)
    if want(6):
        sc["6"] = scenario6(problems)
    if want(7):
        sc["7"] = scenario7(problems)
    if want(8):
        sc["8"] = scenario8(problems)
    if want(9):
        sc["9"] = scenario9(inputs, problems)
    if want(10):
        sc["10"] = scenario10(problems)
    if want(11):
        sc["11"] = scenario11(inputs, problems)
    results["harness_seconds"] = time.time() - started
    results["problems"] = problems
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)
    log(f"results: {OUT} ({len(problems)} problems)")
    return 0


if __name__ == "__main__":
    # bench/run's TERM ends the servers scenarios 9 and 10 started too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    finally:
        stop_all()
