#!/usr/bin/env python3
"""Runs llmroute's benchmark scenarios and writes the raw results as JSON.

`bench/run` builds everything, starts the fake upstreams and calls this with
the environment below; `bench/report.py` then turns the JSON into
BENCHMARKS.md and the chart. Standard library only. The scenarios and what
they share are in the package `suite` beside this file.

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
  BENCH_NGINX       nginx, the bare reverse proxy (scenario 9; else the one on PATH)
  BENCH_LITELLM_CLI the `litellm` command of BENCH_VENV_PY's environment (scenario 9)
  BENCH_SOAK_SECS   how long scenario 10 runs (default 600; 20 when quick)
  (scenario 11 starts a redis-server of its own: Debian's redis-server)
  BENCH_OUTCOMES    scenario 12's data (default ../shared/data/routing-outcomes/
                    routellm-mmlu-gsm8k.jsonl.gz beside the repository)
  (scenario 13 starts three fake upstreams of its own and writes their config file)
"""

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time

from suite.batch import fill_cache, scenario1, scenario2, scenario3, scenario4
from suite.commands import scenario5, scenario6, scenario7, scenario8
from suite.quality import scenario12
from suite.common import (BASELINE, BASELINE_REV, LLMROUTE, NODE, OHA, ONLY, OUT, QUICK, ROOT,
                          RUNS, SIZES, VENV_PY, head, log, path, repeat, tool_version)
from suite.serve import scenario9, scenario10
from suite.servers import nginx_version, portkey_version, stop_all, stunnel_version
from suite.shared import scenario11
from suite.upstreams import scenario13


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
    info["nginx"] = nginx_version()
    info["node"] = tool_version([NODE, "--version"]) if NODE else ""
    info["portkey"] = portkey_version()
    return info


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

    results = {"quick": QUICK, "runs": RUNS, "only": sorted(ONLY), "sizes": SIZES,
               "machine": machine(),
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
    if want(12):
        sc["12"] = scenario12(problems)
    if want(13):
        sc["13"] = scenario13(inputs, problems)
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
