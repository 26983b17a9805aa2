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
"""

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

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

LLMROUTE = os.path.join(ROOT, "target", "release", "llmroute")
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
    "criterion_warm_up_s": 1,
    "criterion_measurement_s": 3,
}
if QUICK:
    SIZES.update(
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
                 expect_cached=False, label="llmroute"):
    d = fresh("run")
    db = db or os.path.join(d, "llmroute.db")
    out = os.path.join(d, "out.jsonl") if save_output else None
    cmd = [LLMROUTE, "-q", "--db", db] + list(args)
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
            log(f"1 routing overhead: run {k + 1}/{RUNS}, -j {c}: llmroute ({lines} lines)")
            lr = run_llmroute(["--no-cache", "--models", MODELS, "-j", str(c),
                               "--base-url", URL_FAST], inputs["s1"], lines, problems,
                              label=f"llmroute -j {c}")
            log(f"  {lr['lines_per_s']:.0f} lines/s; peer ({peer_lines} lines)")
            pr = run_peer(URL_FAST, c, inputs["s1_peer"], peer_lines, problems)
            log(f"  {pr['lines_per_s'] or 0:.0f} lines/s; raw limit ({SIZES['limit_seconds']} s)")
            lim = run_limit(URL_FAST, c, SIZES["limit_seconds"], inputs["body"], problems)
            log(f"  {lim['requests_per_s'] or 0:.0f} requests/s; client floor ({lines} requests)")
            fl = run_floor(URL_FAST, c, inputs["s1"], lines, problems)
            log(f"  {fl['requests_per_s'] or 0:.0f} requests/s")
            run[str(c)] = {"llmroute": lr, "peer": pr, "limit": lim, "floor": fl}
        runs.append(run)
    return {"lines": lines, "peer_lines": peer_lines, "concurrency": conc,
            "limit_seconds": SIZES["limit_seconds"], "runs": runs}


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


def fill_cache(inputs, problems):
    """Routes the scenario-3 input once so that a re-run is all cache hits."""
    d = fresh("filled")
    db = os.path.join(d, "llmroute.db")
    lines = SIZES["s3_lines"]
    log(f"3 cached re-run: filling the cache ({lines} lines, -j {SIZES['s3_concurrency']})")
    r = run_llmroute(["--models", MODELS, "-j", str(SIZES["s3_concurrency"]),
                      "--base-url", URL_FAST], inputs["s3"], lines, problems, db=db,
                      label="cache fill")
    log(f"  {r['lines_per_s']:.0f} lines/s")
    return db, r


def cached_args():
    return ["--models", MODELS, "-j", str(SIZES["s3_concurrency"]), "--base-url", URL_FAST]


def scenario3(inputs, filled_db, fill, problems):
    lines = SIZES["s3_lines"]
    runs = []
    for k in range(RUNS):
        d = fresh("cached")
        db = copy_store(filled_db, d)
        log(f"3 cached re-run: run {k + 1}/{RUNS} ({lines} lines, all cache hits)")
        r = run_llmroute(cached_args(), inputs["s3"], lines, problems, db=db,
                         expect_cached=True, label="cached re-run")
        log(f"  {r['lines_per_s']:.0f} lines/s")
        runs.append(r)
        shutil.rmtree(d, ignore_errors=True)
    return {"lines": lines, "fill": fill, "runs": runs}


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
    p = subprocess.run([LLMROUTE, "-q", "--dry-run", "--db", db], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, env=env)
    check(p.returncode == 0, f"report: creating the store: exit {p.returncode}", problems)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "make_store.py"), db, str(n)],
                       stdout=subprocess.PIPE, check=True)
    made = json.loads(p.stdout)
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
    shutil.rmtree(d, ignore_errors=True)
    return {"attempts": made["attempts"], "requests": made["requests"], "build_s": build_s,
            "runs": runs}


# ---------------------------------------------------------------------------


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
    info["litellm"] = out([VENV_PY, "-c",
                           "import importlib.metadata as m; print(m.version('litellm'))"])
    info["python"] = out([VENV_PY, "--version"])
    info["wrk"] = (out(["sh", "-c", "wrk -v 2>&1 | head -n 1"]).split(" [")[0])
    info["hyperfine"] = out(["sh", "-c", "hyperfine --version 2>/dev/null"])
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
    results["harness_seconds"] = time.time() - started
    results["problems"] = problems
    with open(OUT, "w") as f:
        json.dump(results, f, indent=1)
    log(f"results: {OUT} ({len(problems)} problems)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
