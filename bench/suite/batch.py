"""Scenarios 1 to 4, the batch filter: routing overhead, latency-bound, a cached re-run,
peak memory."""

import os
import shutil

from .common import (BASELINE, BASELINE_REV, MODELS, RUNS, SIZES, SLOW_MS, URL_FAST, URL_SLOW,
                     copy_store, fresh, log)
from .runs import run_baseline, run_floor, run_limit, run_llmroute, run_peer


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
