"""Measuring a command or a process: wall time and peak RSS under /usr/bin/time, lines of
output, CPU time and memory from /proc, one HTTP request."""

import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request

from .common import path

CLK_TCK = os.sysconf("SC_CLK_TCK")


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
