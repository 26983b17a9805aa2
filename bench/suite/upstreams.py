"""Scenario 13, several upstreams: the routing overhead of candidates spread over three
upstreams against as many on one, and of one upstream against the baseline build."""

import os
import resource
import shutil
import statistics

from .common import BASELINE, BASELINE_REV, LLMROUTE, RUNS, SIZES, check, fresh, llmroute_env, log
from .meter import count_lines, timed
from .servers import start_fake

CONCURRENCY = 64
# Models each fake upstream lists: the default one (--base-url) and the two the
# config file names.
LISTED = {"default": 24, "two": 8, "three": 8}


def ids(n, upstream=None):
    """m/1 .. m/n, as candidates on the default upstream or on a named one."""
    return [f"{upstream}:m/{i}" if upstream else f"m/{i}" for i in range(1, n + 1)]


def write_config(urls) -> str:
    """The config file naming the two other upstreams (no key: the fakes take any)."""
    p = os.path.join(fresh("upstreams-config"), "config.toml")
    with open(p, "w") as f:
        for name in ("two", "three"):
            f.write(f'[upstreams.{name}]\nbase_url = "{urls[name]}"\n\n')
    return p


def contenders(url):
    """name -> its candidates, upstreams, flags and binary. A contender on one
    upstream runs without a config file, as llmroute runs without named ones."""
    three = ids(8) + ids(8, "two") + ids(8, "three")

    def contender(models, upstreams, dry_run=False, binary=None):
        return {"models": models, "upstreams": upstreams, "dry_run": dry_run, "binary": binary,
                "config": upstreams > 1,
                "args": ["--no-cache", "-j", str(CONCURRENCY), "--base-url", url, "--models",
                         ",".join(models)] + (["--dry-run"] if dry_run else [])}

    out = {"one8": contender(ids(8), 1)}
    if BASELINE:
        # Each next to its counterpart; the baseline knows no named upstreams.
        out["baseline_one8"] = contender(ids(8), 1, binary=BASELINE)
    out["one24"] = contender(ids(24), 1)
    if BASELINE:
        out["baseline_one24"] = contender(ids(24), 1, binary=BASELINE)
    out["three8"] = contender(three, 3)
    out["one24_dry"] = contender(ids(24), 1, dry_run=True)
    out["three8_dry"] = contender(three, 3, dry_run=True)
    return out


def run_one(name, c, input_file, lines, config, problems):
    """One contender's run on a fresh store; with the config file when it names
    upstreams. Checks the status, the lines, and that none has an error."""
    d = fresh("upstreams")
    out = os.path.join(d, "out.jsonl")
    env = llmroute_env()
    if c["config"]:
        env["LLMROUTE_CONFIG"] = config
    cmd = [c["binary"] or LLMROUTE, "-q", "--db", os.path.join(d, "llmroute.db")] + c["args"]
    # llmroute's own CPU time: the children reaped meanwhile are /usr/bin/time
    # and llmroute (the fakes are reaped only when they stop).
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = timed(cmd, stdin=input_file, stdout=out, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    check(r["rc"] == 0, f"13 {name}: exit status {r['rc']}: {r['stderr'].strip()[:300]}",
          problems)
    n, ok = count_lines(out, b'"error":null')
    check(n == lines, f"13 {name}: {n} output lines, expected {lines}", problems)
    check(ok == lines, f"13 {name}: {lines - ok} lines with an error", problems)
    res = {"lines": lines, "seconds": r["seconds"], "lines_per_s": lines / r["seconds"],
           "cpu_s": cpu, "cpu_us_per_line": cpu / lines * 1e6, "rss_kb": r["rss_kb"],
           "rc": r["rc"]}
    if c["upstreams"] > 1 and not c["dry_run"]:
        # Where the answers came from: spreading the lines is the point.
        res["by_upstream"] = {u: count_lines(out, f'"upstream":"{u}"'.encode())[1]
                              for u in LISTED}
        for u, k in res["by_upstream"].items():
            check(k > 0, f"13 {name}: no line answered by the upstream {u}", problems)
    shutil.rmtree(d, ignore_errors=True)
    return res


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def overhead_us(slow, fast):
    """µs a line more for the contender `slow` than for `fast`, run by run."""
    return [(1 / s - 1 / f) * 1e6 for s, f in zip(slow, fast) if s and f]


def scenario13(inputs, problems):
    """Routing overhead with three upstreams of 8 models each against one of 24,
    and with one upstream against the baseline build."""
    lines = SIZES["s1_lines"]
    fakes = {name: start_fake(f"upstream-{name}",
                              [a for m in ids(n) for a in ("--model", m)])
             for name, n in LISTED.items()}
    try:
        config = write_config({name: s.url for name, s in fakes.items()})
        cs = contenders(fakes["default"].url)
        runs = {name: [] for name in cs}
        for k in range(RUNS):
            # Every other run in the reverse order, so that drift hits all alike.
            order = list(cs) if k % 2 == 0 else list(reversed(cs))
            log(f"13 several upstreams: run {k + 1}/{RUNS} ({lines} lines, -j {CONCURRENCY})")
            for name in order:
                r = run_one(name, cs[name], inputs["s1"], lines, config, problems)
                log(f"  {name}: {r['lines_per_s']:.0f} lines/s, "
                    f"{r['cpu_us_per_line']:.1f} µs of CPU a line")
                runs[name].append(r)
    finally:
        for s in fakes.values():
            s.stop()
    rate = {name: [r["lines_per_s"] for r in rs] for name, rs in runs.items()}

    def three_over_one(sfx):
        """Three upstreams against one with the same 24 candidates: µs a line
        more, run by run and from the medians, and more of llmroute's CPU time
        a line, which the fakes' share of the cores does not move."""
        three, one = rate[f"three8{sfx}"], rate[f"one24{sfx}"]
        each = overhead_us(three, one)
        return {"runs": each, "median": med(each),
                "of_medians": (1 / med(three) - 1 / med(one)) * 1e6,
                "cpu_runs": [a["cpu_us_per_line"] - b["cpu_us_per_line"]
                             for a, b in zip(runs[f"three8{sfx}"], runs[f"one24{sfx}"])]}

    out = {
        "lines": lines,
        "concurrency": CONCURRENCY,
        "listed": LISTED,
        "contenders": {name: {"candidates": len(c["models"]), "upstreams": c["upstreams"],
                              "dry_run": c["dry_run"], "baseline": bool(c["binary"]),
                              "config": c["config"], "runs": runs[name],
                              "median_lines_per_s": med(rate[name])}
                       for name, c in cs.items()},
        "overhead_us_per_line": {"live": three_over_one(""), "dry_run": three_over_one("_dry")},
    }
    if BASELINE:
        out["baseline_rev"] = BASELINE_REV
        out["baseline_ratio"] = {}
        for name in ("one8", "one24"):
            each = [a / b for a, b in zip(rate[name], rate[f"baseline_{name}"])]
            out["baseline_ratio"][name] = {"runs": each, "median": med(each)}
    for name in cs:
        log(f"13 {name}: median {out['contenders'][name]['median_lines_per_s']:.0f} lines/s")
    for mode, o in out["overhead_us_per_line"].items():
        log(f"13 three upstreams over one, {mode}: {o['median']:+.2f} µs a line")
    return out
