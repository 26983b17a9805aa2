"""Scenarios 5 to 8: decision time (criterion), start-up, `llmroute report` over large
stores, routing quality."""

import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from .common import LLMROUTE, MODELS, ROOT, SIZES, URL_FAST, check, fresh, llmroute_env, log, path
from .meter import timed


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


def scenario8(problems):
    """Routing quality: examples/routing_quality.rs against an oracle."""
    log("8 routing quality (examples/routing_quality.rs)")
    exe = os.path.join(ROOT, "target", "release", "examples", "routing_quality")
    p = subprocess.run([exe, LLMROUTE], capture_output=True, text=True, cwd=ROOT)
    if p.returncode != 0:
        problems.append(f"routing_quality exited {p.returncode}: {p.stderr[-500:]}")
        return None
    return json.loads(p.stdout)
