"""Scenario 12: quality learned from outcomes.

The data: ../shared/data/routing-outcomes/routellm-mmlu-gsm8k.jsonl.gz (RouteLLM's
evaluation of MMLU and GSM8K: for each of 15,361 questions, whether Mixtral 8x7B Instruct
and GPT-4 1106 answered it correctly). It is read from there, never copied.

A fake upstream lists the two models with their published prices and answers anything; the
harness grades each answer from the table by (question, model that answered). Each of ten
orderings of the questions is replayed as a live router sees it: chunks of 100 lines, each
with its task, through `llmroute` batch runs on one store (every fifth chunk through an
`llmroute serve` on the same store instead, with `x-llmroute-task`), each answer graded and
its feedback sent (`llmroute feedback`, or `POST /v1/feedback` to the server). After so many
feedback events, the questions the replay never sees are routed with `--dry-run` under a
sweep of cost weights, and each setting's choices give a point of quality against the share
of calls to the strong model: APGR is the area under that curve (see `apgr`).

Also: the intake rate of `llmroute feedback`, and the decision time with learned quality
(the criterion group `learned` of benches/scorer.rs).
"""

import gzip
import json
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
import http.client
from concurrent.futures import ThreadPoolExecutor

from .common import (LLMROUTE, MODELS, QUICK, ROOT, RUNS, SIZES, URL_FAST, check, copy_store,
                     fresh, llmroute_env, log)
from . import predictor
from .meter import timed
from .servers import Server, free_port, start_fake

DATA = os.environ.get("BENCH_OUTCOMES") or os.path.join(
    os.path.dirname(ROOT), "shared", "data", "routing-outcomes", "routellm-mmlu-gsm8k.jsonl.gz")

WEAK, STRONG = "mixtral-8x7b-instruct", "gpt-4-1106-preview"
PREFIX = "routellm/"
CANDIDATES = f"{PREFIX}{WEAK},{PREFIX}{STRONG}"
# USD per token, as the data's README gives them.
PRICES = {WEAK: (0.6e-6, 0.6e-6), STRONG: (10e-6, 30e-6)}
CONTEXT = {WEAK: 32_768, STRONG: 128_000}
# The cost of a line, for the report: prompt tokens as llmroute estimates them
# (a token per 4 bytes, plus 4 for the message) and a fixed answer length.
ANSWER_TOKENS = 256

# The replay's routing: the `quality` preset's cost and quality weights; no
# latency weight, as both models are the same fake. Exploration at its default.
REPLAY_WEIGHTS = "latency=0,cost=0.2,quality=0.7"
EXPLORE = 0.05
# The sweep: `latency=0,cost=c,quality=1-c`. With these two models the cost term
# puts the strong model (nearly) two steps behind on every line, so the strong model
# wins a line when its learned quality leads by a gap d whose steps behind (see
# `behind`, as src/core/scoring.rs counts them) pass 2c / (1 - c). So each quality gap
# from 0.01 to 0.40, a hundredth apart, has the cost weight at which it starts to tip
# the choice, c = b / (2 + b) with b its steps; c = 0 sends every line where the strong
# model leads at all, and c of 0.45 or more none.
GAP_STEP, GAP_MAX = 0.01, 0.40


def behind(d):
    """Steps behind for a quality gap d, as the scorer counts them: in proportion up
    to one step (0.01 to 0.1), then one more at most, towards the whole scale."""
    def step(x, lo, hi):
        return min(1.0, max(0.0, (x - lo) / (hi - lo)))
    return step(d, 0.01, 0.1) + step(d, 0.1, 1.0)


def cost_weight_for(d):
    """The cost weight just below the one at which a gap d stops winning."""
    b = behind(d)
    return round(b / (2 + b) - 1e-6, 6)


SWEEP = sorted({0.0, 0.45, 0.5, 0.6, 1.0} | {
    c for c in (cost_weight_for(round(GAP_STEP * k, 4))
                for k in range(1, int(round(GAP_MAX / GAP_STEP)) + 1)) if c > 0})
PGR_POINTS = (0.5, 0.8, 0.95)
RANDOM_SHARES = [i / 10 for i in range(11)]

SIZES12 = {
    "seeds": 10,
    "chunk": 100,
    "serve_every": 5,
    "checkpoints": [100, 300, 600, 1000, 2000, 5000],
    "serve_connections": 8,
    "concurrency": 8,
    "upstream_latency_ms": 20,
    "intake_requests": 100_000,
    "intake_runs": min(RUNS, 3),
    "heldout_max": None,
}
if QUICK:
    SIZES12.update(seeds=2, checkpoints=[300, 600, 1000], intake_requests=10_000,
                   intake_runs=1, heldout_max=2_000)


def load_rows():
    with gzip.open(DATA, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def line_cost(row, model):
    prompt = len(row["prompt"].encode()) / 4 + 4
    p, c = PRICES[model]
    return prompt * p + ANSWER_TOKENS * c


def catalogue_file(d):
    data = []
    for m in (WEAK, STRONG):
        p, c = PRICES[m]
        data.append({
            "id": PREFIX + m, "name": m, "created": 0, "context_length": CONTEXT[m],
            "pricing": {"prompt": f"{p:.10f}".rstrip("0"), "completion": f"{c:.10f}".rstrip("0")},
            "top_provider": {"context_length": CONTEXT[m], "max_completion_tokens": None,
                             "is_moderated": False},
            "supported_parameters": ["max_tokens", "temperature", "stop"],
        })
    path = os.path.join(d, "catalogue.json")
    with open(path, "w") as f:
        json.dump({"data": data}, f)
    return path


# ---- the curve and its measures ----------------------------------------------

def curve(points, qw, qs):
    """The quality-against-strong-share curve through `points`, from always-weak
    (0, qw) to always-strong (1, qs), sorted by share; between two settings a
    router reaches the straight line by mixing them."""
    pts = sorted(set([(0.0, qw), (1.0, qs)] + [(round(x, 9), y) for x, y in points]))
    # Several qualities at one share (ties): keep the best.
    best = {}
    for x, y in pts:
        best[x] = max(y, best.get(x, y))
    return sorted(best.items())


def apgr(points, qw, qs):
    """Average performance gap recovered: the area under the curve of
    (quality - qw) / (qs - qw) over the share of strong calls, 0 to 1. Random
    routing is 0.5; the per-line oracle comes to about 1.27 on the whole data, as
    it recovers more than the whole gap."""
    c = curve(points, qw, qs)
    area = 0.0
    for (x0, y0), (x1, y1) in zip(c, c[1:]):
        area += (x1 - x0) * ((y0 + y1) / 2 - qw)
    return area / (qs - qw)


def share_at(points, qw, qs, frac):
    """The share of strong calls at which the curve first recovers `frac` of the
    gap between always-weak and always-strong."""
    target = qw + frac * (qs - qw)
    c = curve(points, qw, qs)
    for (x0, y0), (x1, y1) in zip(c, c[1:]):
        if y1 >= target:
            if y0 >= target:
                return x0
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0)
    return 1.0


# A point of a curve in the results: [strong share, quality], and for a sweep
# also [..., cost per 1,000 lines, cost weight].
POINT_FIELDS = ["strong_share", "quality", "cost_per_1k", "cost_weight"]


def measures(points, qw, qs, keep_points=True):
    out = {"apgr": apgr(points, qw, qs),
           "share_at": {str(p): share_at(points, qw, qs, p) for p in PGR_POINTS}}
    if keep_points:
        out["points"] = [[x, y] for x, y in points]
    return out


def evaluate(choices, heldout, table):
    """(strong share, quality, cost per 1,000 lines) of one set of choices: line id
    -> model."""
    n = len(heldout)
    strong = sum(choices[r["id"]] == STRONG for r in heldout)
    good = sum(table[r["id"]][choices[r["id"]]] for r in heldout)
    cost = sum(line_cost(r, choices[r["id"]]) for r in heldout)
    return strong / n, good / n, cost / n * 1000


# ---- baselines computed from the table ---------------------------------------

def random_routing(heldout, seed):
    rnd = random.Random(f"random-{seed}")
    pts = []
    for share in RANDOM_SHARES:
        strong = good = 0
        for r in heldout:
            m = STRONG if rnd.random() < share else WEAK
            strong += m == STRONG
            good += r["correct"][m]
        pts.append((strong / len(heldout), good / len(heldout)))
    return pts


def per_task_routing(heldout, accuracy):
    """Tasks in order of the gap `accuracy` gives them, the widest first, each sent
    whole to the strong model in turn."""
    by_task = {}
    for r in heldout:
        by_task.setdefault(r["task"], []).append(r)
    order = sorted(by_task, key=lambda t: -(accuracy[t][STRONG] - accuracy[t][WEAK]))
    n = len(heldout)
    good = sum(r["correct"][WEAK] for r in heldout)
    strong = 0
    pts = [(0.0, good / n)]
    for t in order:
        rows = by_task[t]
        strong += len(rows)
        good += sum(r["correct"][STRONG] - r["correct"][WEAK] for r in rows)
        pts.append((strong / n, good / n))
    return pts


def per_line_oracle(heldout):
    n = len(heldout)
    qw = sum(r["correct"][WEAK] for r in heldout) / n
    qs = sum(r["correct"][STRONG] for r in heldout) / n
    a = sum((not r["correct"][WEAK]) and r["correct"][STRONG] for r in heldout) / n
    b = sum(r["correct"][WEAK] and not r["correct"][STRONG] for r in heldout) / n
    # The strong model where only it is right; then where both agree; last
    # where only the weak one is right.
    return [(a, qw + a), (1 - b, qw + a), (1.0, qs)]


def accuracy_of(rows):
    acc = {}
    for r in rows:
        a = acc.setdefault(r["task"], {WEAK: 0, STRONG: 0, "n": 0})
        a["n"] += 1
        a[WEAK] += r["correct"][WEAK]
        a[STRONG] += r["correct"][STRONG]
    return {t: {WEAK: a[WEAK] / a["n"], STRONG: a[STRONG] / a["n"], "n": a["n"]}
            for t, a in acc.items()}


def learned_offline(rows, tasks, one=None):
    """Per-task quality of each model as a posterior mean from 0.5, worth 4
    observations, would have it (llmroute's, without its pooling) after `rows`: both models' outcomes on
    every line, or, with `one` (a random.Random), the outcome of one model a
    line, drawn at random half and half."""
    seen = {t: {WEAK: [0, 0], STRONG: [0, 0]} for t in tasks}
    for r in rows:
        models = (WEAK, STRONG) if one is None else (one.choice((WEAK, STRONG)),)
        for m in models:
            seen[r["task"]][m][0] += r["correct"][m]
            seen[r["task"]][m][1] += 1
    return {t: {m: (2 + g) / (4 + n) for m, (g, n) in ms.items()} for t, ms in seen.items()}


# ---- llmroute ----------------------------------------------------------------

class Store:
    """One store, its upstream and the commands on it."""

    def __init__(self, d, url, env):
        self.d, self.url, self.env = d, url, env
        self.db = os.path.join(d, "llmroute.db")
        self.common = ["--db", self.db, "--base-url", url]

    def run(self, args, stdin=None, stdout=None):
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
        fout = open(stdout, "wb") if stdout else subprocess.DEVNULL
        try:
            p = subprocess.run([LLMROUTE] + list(args), stdin=fin, stdout=fout,
                               stderr=subprocess.PIPE, env=self.env)
        finally:
            if stdin:
                fin.close()
            if stdout:
                fout.close()
        return p.returncode, p.stderr.decode("utf-8", "replace")

    def sweep(self, heldout, problems, what):
        """Routes `heldout` under every cost weight of SWEEP with --dry-run, in one
        run (each line carries its weights); {c: {line id: model}}."""
        inp = os.path.join(self.d, "sweep.jsonl")
        out = os.path.join(self.d, "sweep.out.jsonl")
        with open(inp, "w") as f:
            for c in SWEEP:
                w = f"latency=0,cost={c:g},quality={1 - c:g}"
                for r in heldout:
                    f.write(json.dumps({"id": f"{c:g}|{r['id']}", "prompt": r["prompt"],
                                        "llmroute": {"task": r["task"], "weights": w}}) + "\n")
        rc, err = self.run(["--dry-run", "-q", "--models", CANDIDATES] + self.common,
                           stdin=inp, stdout=out)
        check(rc == 0, f"12 {what}: dry run exit {rc}: {err.strip()[-300:]}", problems)
        choices = {f"{c:g}": {} for c in SWEEP}
        with open(out) as f:
            for line in f:
                o = json.loads(line)
                c, rid = o["id"].split("|", 1)
                model = (o.get("model") or "").removeprefix(PREFIX)
                if model not in (WEAK, STRONG):
                    check(False, f"12 {what}: line {o['id']} routed to {o.get('model')!r}: "
                          f"{o.get('error')}", problems)
                    model = WEAK
                choices[c][rid] = model
        os.remove(inp)
        os.remove(out)
        return choices


def fresh_store(url, name, problems):
    """A new store that holds the fake's catalogue and has learned nothing."""
    s = Store(fresh(name), url, llmroute_env())
    rc, err = s.run(["--dry-run", "-q"] + s.common)  # creates the store
    check(rc == 0, f"12 {name}: creating the store: exit {rc}: {err.strip()[-300:]}", problems)
    rc, err = s.run(["models", "--refresh", "--models", CANDIDATES] + s.common)
    check(rc == 0, f"12 {name}: models --refresh exit {rc}: {err.strip()[-300:]}", problems)
    return s


def learned_state(store, tasks, problems):
    """What the store learned, as `--dry-run` shows it: for each task, [the weak
    model's quality, its feedback events there, the strong one's, its events]."""
    inp = os.path.join(store.d, "tasks.jsonl")
    out = os.path.join(store.d, "tasks.out.jsonl")
    with open(inp, "w") as f:
        for t in tasks:
            f.write(json.dumps({"id": t, "prompt": "x", "llmroute": {"task": t}}) + "\n")
    rc, err = store.run(["--dry-run", "-q", "--models", CANDIDATES] + store.common,
                        stdin=inp, stdout=out)
    check(rc == 0, f"12 learned state: exit {rc}: {err.strip()[-300:]}", problems)
    state = {}
    with open(out) as f:
        for line in f:
            o = json.loads(line)
            by = {c["model"].removeprefix(PREFIX): c for c in o.get("candidates") or []}
            state[o["id"]] = [x for m in (WEAK, STRONG)
                              for x in ((by.get(m) or {}).get("quality"),
                                        (by.get(m) or {}).get("quality_events") or 0)]
    os.remove(inp)
    os.remove(out)
    return state


def lock_out(state, accuracy):
    """How the learned state stands against the truth: tasks where a model had
    at most 2 events, and tasks (of those whose true gap is 0.05 or more either
    way) whose learned order of the two models is the wrong way round."""
    few = {WEAK: 0, STRONG: 0}
    wrong = judged = 0
    for t, (q_weak, ev_weak, q_strong, ev_strong) in state.items():
        few[WEAK] += ev_weak <= 2
        few[STRONG] += ev_strong <= 2
        gap = accuracy[t][STRONG] - accuracy[t][WEAK]
        if abs(gap) >= 0.05 and q_weak is not None and q_strong is not None:
            judged += 1
            wrong += (q_strong - q_weak > 0) != (gap > 0)
    return {"tasks": len(state), "few_events": few, "judged": judged, "wrong_way": wrong}


def swept(store, heldout, table, qw, qs, problems, what):
    choices = store.sweep(heldout, problems, what)
    pts, rows = [], []
    for c in SWEEP:
        share, q, cost = evaluate(choices[f"{c:g}"], heldout, table)
        pts.append((share, q))
        rows.append([share, q, cost, c])
    m = measures(pts, qw, qs, keep_points=False)
    m["points"] = rows
    return m


class Serve:
    """`llmroute serve` on the replay's store."""

    def __init__(self, store, name):
        port = free_port()
        cmd = [LLMROUTE, "serve", "--listen", f"127.0.0.1:{port}", "-q", "--no-cache",
               "--models", CANDIDATES, "--weights", REPLAY_WEIGHTS, "--explore", str(EXPLORE),
               "-j", str(SIZES12["concurrency"])] + store.common
        self.server = Server(name, cmd, env=store.env)
        self.port = port
        if not self.server.wait_http(f"http://127.0.0.1:{port}/health", 60):
            tail = self.server.log_tail()
            self.server.stop()
            raise RuntimeError(f"llmroute serve did not come up: {tail}")
        self._local = threading.local()

    def _conn(self):
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return c

    def post(self, path, body, headers=None):
        h = {"content-type": "application/json"}
        h.update(headers or {})
        data = json.dumps(body).encode()
        for attempt in (0, 1):
            c = self._conn()
            try:
                c.request("POST", path, body=data, headers=h)
                r = c.getresponse()
                return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
            except (OSError, http.client.HTTPException):
                c.close()
                self._local.conn = None
                if attempt:
                    raise

    def ask(self, row):
        status, headers, body = self.post(
            "/v1/chat/completions",
            {"model": "auto", "messages": [{"role": "user", "content": row["prompt"]}]},
            {"x-llmroute-task": row["task"]})
        if status != 200:
            return None, None, f"status {status}: {body[:200]!r}"
        return headers.get("x-request-id"), headers.get("x-llmroute-model"), None

    def stop(self):
        self.server.stop()


def batch_chunk(store, rows, k, problems):
    """One chunk through `llmroute`: [(row, request id, model)]."""
    inp = os.path.join(store.d, f"chunk-{k}.jsonl")
    out = os.path.join(store.d, f"chunk-{k}.out.jsonl")
    with open(inp, "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "prompt": r["prompt"],
                                "llmroute": {"task": r["task"]}}) + "\n")
    rc, err = store.run(["-q", "--no-cache", "--models", CANDIDATES, "--weights", REPLAY_WEIGHTS,
                         "--explore", str(EXPLORE), "-j", str(SIZES12["concurrency"])]
                        + store.common, stdin=inp, stdout=out)
    check(rc == 0, f"12 chunk {k}: exit {rc}: {err.strip()[-300:]}", problems)
    by_id = {r["id"]: r for r in rows}
    answered = []
    with open(out) as f:
        for line in f:
            o = json.loads(line)
            if o.get("error") or not o.get("model"):
                continue
            answered.append((by_id[o["id"]], o["request_id"], o["model"].removeprefix(PREFIX)))
    os.remove(inp)
    os.remove(out)
    return answered


def batch_feedback(store, items, k, problems):
    fb = os.path.join(store.d, f"feedback-{k}.jsonl")
    with open(fb, "w") as f:
        for rid, score in items:
            f.write(json.dumps({"request_id": rid, "score": score}) + "\n")
    out = os.path.join(store.d, f"feedback-{k}.out.jsonl")
    rc, err = store.run(["feedback", fb] + store.common, stdout=out)
    check(rc == 0, f"12 feedback {k}: exit {rc}: {err.strip()[-300:]}", problems)
    taken = 0
    with open(out) as f:
        for line in f:
            taken += "error" not in json.loads(line)
    os.remove(fb)
    os.remove(out)
    return taken


def serve_chunk(serve, rows, k, problems):
    with ThreadPoolExecutor(SIZES12["serve_connections"]) as pool:
        got = list(pool.map(serve.ask, rows))
    answered = []
    for r, (rid, model, err) in zip(rows, got):
        if err or not rid or not model:
            check(False, f"12 serve chunk {k}: {r['id']}: {err or 'no id or model'}", problems)
            continue
        answered.append((r, rid, model.removeprefix(PREFIX)))
    return answered


def serve_feedback(serve, items, k, problems):
    status, _, body = serve.post("/v1/feedback",
                                 [{"request_id": rid, "score": s} for rid, s in items])
    check(status == 200, f"12 serve feedback {k}: status {status}: {body[:200]!r}", problems)
    try:
        return json.loads(body).get("taken", 0)
    except ValueError:
        return 0


def replay(seed, rows, table, url, problems):
    """One ordering: the stream through the router with feedback, and the sweep
    over the held-out lines at each checkpoint."""
    checkpoints = SIZES12["checkpoints"]
    stream_n = max(checkpoints)
    order = list(rows)
    random.Random(seed).shuffle(order)
    stream, heldout = order[:stream_n], order[stream_n:]
    if SIZES12["heldout_max"]:
        heldout = heldout[:SIZES12["heldout_max"]]
    n = len(heldout)
    qw = sum(r["correct"][WEAK] for r in heldout) / n
    qs = sum(r["correct"][STRONG] for r in heldout) / n
    d = fresh("quality")
    store = Store(d, url, llmroute_env())
    serve = Serve(store, f"quality-serve-{seed}")
    res = {"seed": seed, "heldout": {"lines": n, "weak_quality": qw, "strong_quality": qs,
                                     "weak_cost_per_1k": sum(line_cost(r, WEAK) for r in heldout)
                                     / n * 1000,
                                     "strong_cost_per_1k": sum(line_cost(r, STRONG)
                                                               for r in heldout) / n * 1000},
           "checkpoints": {}}
    events = {"batch": 0, "serve": 0}
    chunks = {"batch": 0, "serve": 0}
    strong_calls = good = answered_n = 0
    spent = 0.0
    started = time.perf_counter()
    chunk = SIZES12["chunk"]
    tasks = sorted({r["task"] for r in rows})
    try:
        for k in range(0, stream_n, chunk):
            rows_k = stream[k:k + chunk]
            via_serve = (k // chunk) % SIZES12["serve_every"] == SIZES12["serve_every"] - 1
            path = "serve" if via_serve else "batch"
            if via_serve:
                answered = serve_chunk(serve, rows_k, k // chunk, problems)
            else:
                answered = batch_chunk(store, rows_k, k // chunk, problems)
            check(len(answered) == len(rows_k),
                  f"12 seed {seed} chunk {k // chunk}: {len(answered)} of {len(rows_k)} answered",
                  problems)
            items = []
            for r, rid, model in answered:
                ok = table[r["id"]].get(model)
                if ok is None:
                    check(False, f"12: {r['id']} answered by {model}", problems)
                    continue
                items.append((rid, ok))
                strong_calls += model == STRONG
                good += ok
                answered_n += 1
                spent += line_cost(r, model)
            taken = (serve_feedback(serve, items, k // chunk, problems) if via_serve
                     else batch_feedback(store, items, k // chunk, problems))
            check(taken == len(items), f"12 seed {seed} chunk {k // chunk}: {taken} of "
                  f"{len(items)} feedback lines taken ({path})", problems)
            events[path] += taken
            chunks[path] += 1
            total = events["batch"] + events["serve"]
            for cp in checkpoints:
                if str(cp) not in res["checkpoints"] and total >= cp:
                    m = swept(store, heldout, table, qw, qs, problems, f"seed {seed} at {cp}")
                    m["events"] = total
                    # Offline, from the same lines: what they could teach.
                    seen = stream[:k + chunk]
                    m["offline_both"] = apgr(per_task_routing(
                        heldout, learned_offline(seen, tasks)), qw, qs)
                    m["offline_one"] = apgr(per_task_routing(
                        heldout, learned_offline(seen, tasks, random.Random(f"one-{seed}"))),
                        qw, qs)
                    res["checkpoints"][str(cp)] = m
                    log(f"  seed {seed}: {total} events: APGR {m['apgr']:.3f}")
    finally:
        serve.stop()
    acc = accuracy_of(rows)
    res["learned"] = learned_state(store, sorted(acc), problems)
    res["lock_out"] = lock_out(res["learned"], acc)
    res["replay"] = {"seconds": time.perf_counter() - started, "events": events,
                     "chunks": chunks, "answered": answered_n,
                     "strong_share": strong_calls / max(answered_n, 1),
                     "quality": good / max(answered_n, 1),
                     "cost_per_1k": spent / max(answered_n, 1) * 1000}

    # Baselines on the same held-out lines.
    b = {}
    b["random"] = measures(random_routing(heldout, seed), qw, qs)
    prior = fresh_store(url, "quality-prior", problems)
    b["prior"] = swept(prior, heldout, table, qw, qs, problems, f"seed {seed} prior")
    shutil.rmtree(prior.d, ignore_errors=True)
    # These three follow from the table alone: no points kept.
    b["per_task_oracle"] = measures(per_task_routing(heldout, acc), qw, qs, keep_points=False)
    b["per_line_oracle"] = measures(per_line_oracle(heldout), qw, qs, keep_points=False)
    # What the streamed lines could teach, offline, ranking tasks by gap with
    # no scorer in between: both models' outcomes on each line, or one model's
    # drawn at random; and the router itself told every task's true accuracy
    # (llmroute feedback --outcomes), routing through its own scorer.
    b["offline_both"] = measures(per_task_routing(heldout, learned_offline(stream, tasks)),
                                 qw, qs, keep_points=False)
    b["offline_one"] = measures(per_task_routing(
        heldout, learned_offline(stream, tasks, random.Random(f"one-{seed}"))), qw, qs,
        keep_points=False)
    # A per-prompt predictor, offline: would it earn its place?
    b["predictor"] = predictor.measure(stream, heldout, learned_offline(stream, tasks), WEAK,
                                       STRONG, seed, apgr)
    b["predictor"]["transfer"] = predictor.transfer(rows, WEAK, STRONG, seed, apgr)
    b["told"] = told(rows, heldout, table, qw, qs, url, problems, seed)
    res["baselines"] = b
    shutil.rmtree(d, ignore_errors=True)
    return res


def told(rows, heldout, table, qw, qs, url, problems, seed):
    """A fresh store told each task's accuracy of each model with `llmroute feedback
    --outcomes` (weight 1,000 each, so the prior no longer counts), then swept."""
    s = fresh_store(url, "quality-told", problems)
    out = os.path.join(s.d, "outcomes.jsonl")
    with open(out, "w") as f:
        for t, a in sorted(accuracy_of(rows).items()):
            for m in (WEAK, STRONG):
                for _ in range(10):
                    f.write(json.dumps({"task": t, "model": PREFIX + m,
                                        "score": round(a[m], 6), "weight": 100}) + "\n")
    rc, err = s.run(["feedback", "-q", "--outcomes", out] + s.common)
    check(rc == 0, f"12 told: feedback --outcomes exit {rc}: {err.strip()[-300:]}", problems)
    m = swept(s, heldout, table, qw, qs, problems, f"seed {seed} told")
    shutil.rmtree(s.d, ignore_errors=True)
    return m


# ---- intake and decision time ------------------------------------------------

def intake(problems):
    """`llmroute feedback` on N feedback lines against a store of N requests."""
    n = SIZES12["intake_requests"]
    d = fresh("intake")
    env = llmroute_env()
    rows = load_rows()
    inp = os.path.join(d, "requests.jsonl")
    with open(inp, "w") as f:
        for i in range(n):
            r = rows[i % len(rows)]
            f.write(json.dumps({"id": i, "prompt": f"{i}: {r['prompt']}",
                                "llmroute": {"task": r["task"]}}) + "\n")
    db = os.path.join(d, "filled.db")
    out = os.path.join(d, "out.jsonl")
    log(f"12 intake: a store of {n:,} requests (fast fake, {MODELS})")
    r = timed([LLMROUTE, "-q", "--no-cache", "--models", MODELS, "-j", "64", "--db", db,
               "--base-url", URL_FAST], stdin=inp, stdout=out, env=env)
    check(r["rc"] == 0, f"12 intake fill: exit {r['rc']}: {r['stderr'][-300:]}", problems)
    fb = os.path.join(d, "feedback.jsonl")
    rnd = random.Random(7)
    ids = []
    with open(out) as f:
        for line in f:
            o = json.loads(line)
            if o.get("request_id") and not o.get("error"):
                ids.append(o["request_id"])
    rnd.shuffle(ids)
    with open(fb, "w") as f:
        for rid in ids:
            f.write(json.dumps({"request_id": rid, "score": rnd.random() < 0.7}) + "\n")
    check(len(ids) == n, f"12 intake: {len(ids)} of {n} requests answered", problems)
    os.remove(inp)
    os.remove(out)
    runs = []
    for k in range(SIZES12["intake_runs"]):
        rd = os.path.join(d, f"run-{k}")
        os.makedirs(rd)
        db_k = copy_store(db, rd)
        fb_out = os.path.join(rd, "out.jsonl")
        r = timed([LLMROUTE, "feedback", fb, "--db", db_k, "--base-url", URL_FAST],
                  stdout=fb_out, env=env)
        check(r["rc"] == 0, f"12 intake: exit {r['rc']}: {r['stderr'][-300:]}", problems)
        with open(fb_out) as f:
            taken = sum("error" not in json.loads(line) for line in f)
        check(taken == len(ids), f"12 intake: {taken} of {len(ids)} taken", problems)
        runs.append({"seconds": r["seconds"], "rss_kb": r["rss_kb"], "lines": len(ids),
                     "taken": taken, "events_per_s": taken / r["seconds"]})
        log(f"  run {k + 1}: {taken:,} feedback lines in {r['seconds']:.2f} s, "
            f"{taken / r['seconds']:,.0f}/s")
        shutil.rmtree(rd, ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)
    return {"requests": n, "runs": runs}


def decision_time(problems):
    """The criterion group `learned` of benches/scorer.rs."""
    exe = os.environ.get("BENCH_SCORER_EXE")
    home = os.path.join(ROOT, "target", "criterion")
    crit = os.path.join(home, "learned")
    shutil.rmtree(crit, ignore_errors=True)
    args = ["--bench", "--noplot", "--warm-up-time", str(SIZES["criterion_warm_up_s"]),
            "--measurement-time", str(SIZES["criterion_measurement_s"]), "learned/"]
    cmd = [exe] + args if exe else ["cargo", "bench", "--quiet", "--bench", "scorer", "--"] + args
    log("12 decision time with learned quality: benches/scorer.rs, group learned")
    p = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, CRITERION_HOME=home),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(p.returncode == 0, f"12 criterion: exit {p.returncode}: {p.stderr.decode()[-500:]}",
          problems)
    results = {}
    for dirpath, _, files in os.walk(crit):
        if os.path.basename(dirpath) == "new" and "estimates.json" in files:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                full_id = json.load(f)["full_id"]
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            m = est["median"]
            results[full_id] = {"median_ns": m["point_estimate"],
                                "low_ns": m["confidence_interval"]["lower_bound"],
                                "high_ns": m["confidence_interval"]["upper_bound"]}
            log(f"  {full_id}: {m['point_estimate'] / 1000:.2f} µs")
    check(len(results) == 2, f"12 criterion: {len(results)} results, expected 2", problems)
    return {"warm_up_s": SIZES["criterion_warm_up_s"],
            "measurement_s": SIZES["criterion_measurement_s"], "results": results}


def scenario12(problems):
    if not os.path.exists(DATA):
        check(False, f"12: no data at {DATA}", problems)
        return None
    started = time.perf_counter()
    rows = load_rows()
    table = {r["id"]: r["correct"] for r in rows}
    d = fresh("quality-fake")
    cat = catalogue_file(d)
    fake = start_fake("quality-fake", ["--catalogue", cat, "--latency-ms",
                                       str(SIZES12["upstream_latency_ms"]),
                                       "--model", PREFIX + WEAK, "--model", PREFIX + STRONG])
    acc = accuracy_of(rows)
    out = {"data": {"file": os.path.relpath(DATA, os.path.dirname(ROOT)), "lines": len(rows),
                    "tasks": len(acc),
                    "weak": WEAK, "strong": STRONG,
                    "weak_quality": sum(r["correct"][WEAK] for r in rows) / len(rows),
                    "strong_quality": sum(r["correct"][STRONG] for r in rows) / len(rows)},
           "settings": {**SIZES12, "replay_weights": REPLAY_WEIGHTS, "explore": EXPLORE,
                        "sweep": SWEEP, "point_fields": POINT_FIELDS,
                        "learned_fields": [f"{WEAK} quality", f"{WEAK} events",
                                           f"{STRONG} quality", f"{STRONG} events"],
                        "answer_tokens": ANSWER_TOKENS,
                        "prices_per_m": {m: [p * 1e6, c * 1e6] for m, (p, c) in PRICES.items()},
                        "candidates": CANDIDATES},
           "seeds": []}
    try:
        for seed in range(1, SIZES12["seeds"] + 1):
            log(f"12 quality learned: ordering {seed}/{SIZES12['seeds']}")
            out["seeds"].append(replay(seed, rows, table, fake.url, problems))
            r = out["seeds"][-1]
            log(f"  replay {r['replay']['seconds']:.0f} s; prior APGR "
                f"{r['baselines']['prior']['apgr']:.3f}, told {r['baselines']['told']['apgr']:.3f}")
    finally:
        fake.stop()
    out["replay_seconds"] = time.perf_counter() - started
    out["intake"] = intake(problems)
    out["decision"] = decision_time(problems)
    out["seconds"] = time.perf_counter() - started
    return rounded(out)


def rounded(o):
    """Floats to 6 significant digits, for a results file of a sensible size."""
    if isinstance(o, float):
        return float(f"{o:.6g}")
    if isinstance(o, list):
        return [rounded(x) for x in o]
    if isinstance(o, dict):
        return {k: rounded(v) for k, v in o.items()}
    return o
