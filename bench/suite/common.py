"""What every part of the harness shares: the environment bench/run sets (listed in
harness.py), the sizes of every scenario, the log, and files in the scratch directory."""

import os
import shutil
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

LLMROUTE = os.environ.get("BENCH_LLMROUTE") or os.path.join(ROOT, "target", "release", "llmroute")
# llmroute at another revision (bench/run's BENCH_BASELINE), run beside this one.
BASELINE = os.environ.get("BENCH_BASELINE_LLMROUTE") or None
BASELINE_REV = os.environ.get("BENCH_BASELINE_REV") or "baseline"
FAKE = os.environ.get("BENCH_FAKE") or os.path.join(ROOT, "target", "release", "fake-openrouter")
OHA = os.environ.get("BENCH_OHA") or shutil.which("oha") or "oha"
STUNNEL = os.environ.get("BENCH_STUNNEL") or shutil.which("stunnel4") or shutil.which("stunnel")
NODE = os.environ.get("BENCH_NODE") or shutil.which("node")
NGINX = os.environ.get("BENCH_NGINX") or shutil.which("nginx") or (
    "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
PORTKEY = os.environ.get("BENCH_PORTKEY") or os.path.join(
    ROOT, "bench", ".npm", "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
LITELLM_CLI = os.environ.get("BENCH_LITELLM_CLI") or os.path.join(os.path.dirname(VENV_PY),
                                                                   "litellm")
FLOOR = os.path.join(ROOT, "target", "release", "examples", "client_floor")
SERVE_FLOOR = os.path.join(ROOT, "target", "release", "examples", "serve_floor")
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
    # Rounds of the maximum: the servers compared there take turns, one wrk
    # run each a round, so that the machine's drift hits them alike.
    "s9_max_rounds": 3,
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
        s9_max_rounds=1,
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


def tool_version(cmd) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        return (p.stdout.strip() or p.stderr.strip()).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return ""
