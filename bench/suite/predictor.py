"""Scenario 12, offline: whether a per-prompt predictor would earn its place.

A predictor of the kind llmroute could keep without downloaded weights: per model, a
logistic model over hashed words and word pairs of the prompt (2^18 buckets) and the
task's name, trained by stochastic gradient descent from feedback alone. It is trained
here on the streamed lines (3 passes), in the most favourable case (both models' outcomes
on every line) and as feedback gives it (one model's outcome a line, drawn at random);
each held-out line is then ranked by its predicted gap, and the curve of quality against
the share of strong calls is read as for the router (APGR). Beside it, the same lines'
per-task posterior (as `quality.learned_offline`), and the two blended half and half.
The transfer test trains on MMLU lines only and ranks GSM8K's.
"""

import math
import random
import re
import zlib

BUCKETS = 1 << 18
WORD = re.compile(r"[a-z0-9]+")
PASSES = 3
RATE = 0.1
L2 = 1e-4


def features(row, task=True):
    words = WORD.findall(row["prompt"].lower())
    f = {zlib.crc32(w.encode()) % BUCKETS for w in words}
    f |= {zlib.crc32(f"{a} {b}".encode()) % BUCKETS for a, b in zip(words, words[1:])}
    if task:
        f.add(zlib.crc32(("task:" + row["task"]).encode()) % BUCKETS)
    f.add(0)  # the bias
    return list(f)


class Logistic:
    def __init__(self):
        self.w = {}

    def p(self, f):
        z = sum(self.w.get(i, 0.0) for i in f) / math.sqrt(len(f))
        return 1 / (1 + math.exp(-max(-30.0, min(30.0, z))))

    def learn(self, f, y):
        g = self.p(f) - y
        s = 1 / math.sqrt(len(f))
        for i in f:
            w = self.w.get(i, 0.0)
            self.w[i] = w - RATE * (g * s + L2 * w)


def train(observations, feats, models):
    """observations: [(row, model)]; a Logistic per model."""
    lr = {m: Logistic() for m in models}
    obs = list(observations)
    for k in range(PASSES):
        random.Random(f"pass-{k}").shuffle(obs)
        for r, m in obs:
            lr[m].learn(feats[r["id"]], float(r["correct"][m]))
    return lr


def per_line(heldout, gap, weak, strong):
    """Lines sent to the strong model in order of `gap` (line id -> predicted
    strong minus weak), the widest first: (strong share, quality) points."""
    n = len(heldout)
    good = sum(r["correct"][weak] for r in heldout)
    pts = [(0.0, good / n)]
    for k, r in enumerate(sorted(heldout, key=lambda r: -gap[r["id"]]), 1):
        good += r["correct"][strong] - r["correct"][weak]
        if k % 20 == 0 or k == n:
            pts.append((k / n, good / n))
    return pts


def measure(stream, heldout, per_task, weak, strong, seed, apgr):
    """{name: APGR} for the predictor trained on `stream`, both outcomes and one at
    random, the per-task gaps `per_task` (task -> {model: quality}), and the blend."""
    qw = sum(r["correct"][weak] for r in heldout) / len(heldout)
    qs = sum(r["correct"][strong] for r in heldout) / len(heldout)
    feats = {r["id"]: features(r) for r in stream + heldout}
    pick = random.Random(f"predictor-one-{seed}")
    out = {}
    for name, obs in (
            ("both", [(r, m) for r in stream for m in (weak, strong)]),
            ("one", [(r, pick.choice((weak, strong))) for r in stream])):
        lr = train(obs, feats, (weak, strong))
        gap = {r["id"]: lr[strong].p(feats[r["id"]]) - lr[weak].p(feats[r["id"]])
               for r in heldout}
        out[f"predictor_{name}"] = apgr(per_line(heldout, gap, weak, strong), qw, qs)
        if name == "both":
            task_gap = {r["id"]: per_task[r["task"]][strong] - per_task[r["task"]][weak]
                        for r in heldout}
            out["per_task_lines"] = apgr(per_line(heldout, task_gap, weak, strong), qw, qs)
            blend = {i: (gap[i] + task_gap[i]) / 2 for i in gap}
            out["blend_both"] = apgr(per_line(heldout, blend, weak, strong), qw, qs)
    return out


def transfer(rows, weak, strong, seed, apgr, n=5000):
    """Trained on `n` MMLU lines (both outcomes, no task feature), tested on GSM8K."""
    mmlu = [r for r in rows if r["task"].startswith("mmlu")]
    gsm = [r for r in rows if not r["task"].startswith("mmlu")]
    random.Random(f"transfer-{seed}").shuffle(mmlu)
    train_rows = mmlu[:n]
    feats = {r["id"]: features(r, task=False) for r in train_rows + gsm}
    lr = train([(r, m) for r in train_rows for m in (weak, strong)], feats, (weak, strong))
    gap = {r["id"]: lr[strong].p(feats[r["id"]]) - lr[weak].p(feats[r["id"]]) for r in gsm}
    qw = sum(r["correct"][weak] for r in gsm) / len(gsm)
    qs = sum(r["correct"][strong] for r in gsm) / len(gsm)
    return apgr(per_line(gsm, gap, weak, strong), qw, qs)
