"""Scenario 11: the cost of Redis on the hot path, on a redis-server of the bench's own."""

import shutil
import socket
import subprocess
import time

from .common import MODELS, RUNS, SIZES, URL_FAST, check, fresh, log
from .runs import run_llmroute
from .servers import free_port


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
