"""One run to its end: llmroute over an input, LiteLLM's Router (the peer), llmroute's
upstream client alone (the floor), wrk's raw-HTTP limit, and the baseline build."""

import json
import os
import shutil
import subprocess

from .common import (BASELINE, BASELINE_REV, FLOOR, LLMROUTE, LUA, MODELS, PEER, VENV_PY, check,
                     fresh, llmroute_env, log)
from .meter import count_lines, timed


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


def run_limit(url, concurrency, seconds, body_file, problems, token=None, header=None):
    threads = min(concurrency, 2)
    env = dict(os.environ, BENCH_BODY_FILE=body_file)
    if token:
        env["BENCH_TOKEN"] = token  # post.lua's bearer token
    if header:
        env["BENCH_HEADER"] = header  # one more header, "Name: value"
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


def run_baseline(args, input_file, lines, problems, what, **kw):
    """The baseline build (BENCH_BASELINE) on the same input with the same flags."""
    log(f"  baseline {BASELINE_REV[:10]} {what}")
    r = run_llmroute(args, input_file, lines, problems, label=f"baseline {what}",
                     binary=BASELINE, **kw)
    log(f"  {r['lines_per_s']:.0f} lines/s (baseline)")
    return r
