#!/usr/bin/env python3
"""Fills an llmroute store with N attempt rows, for timing `llmroute report`.

The store must exist already, with llmroute's schema: create it with
`llmroute --dry-run --db FILE < /dev/null`. Rows are inserted straight into
`requests` and `attempts` with sqlite3, much faster than routing N lines:

- 8 models with their own latency (log-normal, a long slow tail) and shares;
- `ts` spread over the last 24 hours, in order, as runs append them;
- runs of 10,000 lines each;
- about 12% of lines answered from the cache (one cached attempt row each);
- about 8% of upstream attempts failing (429, 500, 503, timeouts), each
  followed by a retry on another model; about 1 line in 200 failing outright.

usage: make_store.py DB ATTEMPTS
Prints {"requests": R, "attempts": A} on stdout.
"""

import json
import math
import random
import sqlite3
import sys
import time

MODELS = [
    # model, share, median latency ms, sigma, USD per 1k tokens (blended)
    ("deepseek/deepseek-v4-flash", 0.22, 900, 0.5, 0.0004),
    ("openai/gpt-5.4-nano", 0.18, 600, 0.4, 0.0003),
    ("qwen/qwen3.6-plus", 0.12, 1400, 0.6, 0.0010),
    ("openai/gpt-5.4-mini", 0.15, 800, 0.45, 0.0012),
    ("anthropic/claude-haiku-4.5", 0.10, 1100, 0.5, 0.0030),
    ("google/gemini-3.5-flash", 0.12, 700, 0.5, 0.0015),
    ("anthropic/claude-sonnet-4.6", 0.06, 2600, 0.6, 0.0090),
    ("openai/gpt-5.4", 0.05, 3200, 0.7, 0.0080),
]
FAILURES = [(429, "rate_limited"), (500, "server_error"), (503, "unavailable"), (None, "timeout")]
PRIORITIES = ["balanced", "balanced", "balanced", "speed", "cost", "quality"]
RUN_LINES = 10_000


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    db, target = sys.argv[1], int(sys.argv[2])
    rng = random.Random(7)
    names = [m[0] for m in MODELS]
    weights = [m[1] for m in MODELS]
    by_name = {m[0]: m for m in MODELS}

    now = int(time.time() * 1000)
    start = now - 86_400_000 + 60_000
    # Roughly 1.02 attempts per line: spread the lines over the day.
    est_lines = max(1, int(target / 1.02))
    step = (now - 60_000 - start) / est_lines

    requests, attempts = [], []
    n_attempts = 0
    line_no = 0
    run_id = ""
    i = 0
    while n_attempts < target:
        if line_no % RUN_LINES == 0:
            run_id = f"{start + int(i * step):x}-bench{i // RUN_LINES}"
            line_no = 0
        line_no += 1
        ts = start + int(i * step) + rng.randrange(50)
        i += 1
        priority = rng.choice(PRIORITIES)
        prompt = int(rng.lognormvariate(math.log(400), 0.8)) + 8
        completion = int(rng.lognormvariate(math.log(180), 0.7)) + 1
        first = rng.choices(names, weights)[0]
        score = round(rng.uniform(0.55, 0.95), 4)
        rid = f"q{i}"  # as llmroute stores a string id: the bare string

        if rng.random() < 0.12:  # cache hit
            model = first
            lat = round(rng.uniform(0.2, 1.5), 3)
            cost = 0.0
            attempts.append((ts, run_id, line_no, model, None, 1, 1, lat, prompt, completion,
                             cost, priority, score, None))
            requests.append((ts, run_id, line_no, rid, model, 1, 1, lat, cost, prompt, completion,
                             priority, score, 0, None))
            n_attempts += 1
            continue

        tried = []
        total_lat = 0.0
        model = first
        ok = False
        cost = None
        while n_attempts < target:
            _, _, med, sigma, price = by_name[model]
            tried.append(model)
            if rng.random() < 0.08:
                status, kind = rng.choice(FAILURES)
                lat = 60_000.0 if kind == "timeout" else round(rng.uniform(20, 400), 3)
                attempts.append((ts, run_id, line_no, model, status, 0, 0, lat, None, None,
                                 None, priority, score, kind))
                n_attempts += 1
                total_lat += lat
                if len(tried) >= 2 and rng.random() < 0.06:
                    break  # the line fails outright
                rest = [m for m in names if m not in tried]
                model = rng.choice(rest)
                continue
            lat = round(rng.lognormvariate(math.log(med), sigma), 3)
            cost = round((prompt + completion) / 1000 * price, 8)
            attempts.append((ts, run_id, line_no, model, 200, 1, 0, lat, prompt, completion,
                             cost, priority, score, None))
            n_attempts += 1
            total_lat += lat
            ok = True
            break
        if ok:
            requests.append((ts, run_id, line_no, rid, model, 1, 0, round(total_lat + 1.5, 3), cost,
                             prompt, completion, priority, score, len(tried), None))
        else:
            requests.append((ts, run_id, line_no, rid, None, 0, 0, round(total_lat + 1.5, 3), None,
                             None, None, priority, None, len(tried), "all_models_failed"))

    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous = OFF")
    with con:
        con.executemany(
            "INSERT INTO attempts (ts, run_id, line, model, status, ok, cached, latency_ms,"
            " prompt_tokens, completion_tokens, cost_usd, priority, score, error_type)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            attempts,
        )
        con.executemany(
            "INSERT INTO requests (ts, run_id, line, request_id, model, ok, cached, latency_ms,"
            " cost_usd, prompt_tokens, completion_tokens, priority, score, attempts, error_type)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            requests,
        )
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    print(json.dumps({"requests": len(requests), "attempts": len(attempts)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
