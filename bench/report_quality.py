"""Scenario 12 in BENCHMARKS.md: quality learned from outcomes (bench/suite/quality.py).

report.py calls `merge` (the scenario from results-quality.json, where `bench/run` puts it
when it runs alone), `goals` (its rows of the summary) and `section`.
"""

import json
import os
import statistics

QUALITY_FILE = "results-quality.json"
CHECKPOINTS_SHOWN = ("300", "600", "1000", "5000")


def merge(R, res_path):
    """Scenario 12 from results-quality.json beside the results, where `bench/run`
    puts it when it runs alone (or from results-serve.json, when it ran with 9 or
    10 alone), unless the results hold a newer run of it."""
    for name in (QUALITY_FILE, "results-serve.json"):
        p = os.path.join(os.path.dirname(os.path.abspath(res_path)), name)
        if os.path.abspath(p) == os.path.abspath(res_path) or not os.path.exists(p):
            continue
        with open(p) as f:
            q = json.load(f)
        mine, theirs = R["scenarios"].get("12"), q["scenarios"].get("12")
        started = (mine or {}).get("run", {}).get("started", R["started"])
        if theirs and (not mine or q["started"] >= started):
            theirs["run"] = {"started": q["started"], "machine": q["machine"],
                             "quick": q.get("quick"), "file": f"bench/{name}"}
            R["scenarios"]["12"] = theirs
            R.setdefault("problems", []).extend(
                p for p in q.get("problems", []) if p.startswith("12 ") or p.startswith("12:"))


def _num(x, digits=None):
    if x is None:
        return "n/a"
    if digits is None:
        a = abs(x)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return f"{x:,.{digits}f}"


def _spread(xs, digits=3, scale=1.0):
    xs = [x * scale for x in xs if x is not None]
    if not xs:
        return "n/a"
    m = statistics.median(xs)
    if len(xs) == 1:
        return _num(m, digits)
    return f"{_num(m, digits)} ({_num(min(xs), digits)}–{_num(max(xs), digits)})"


def _med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _apgrs(s12, cp):
    return [r["checkpoints"][cp]["apgr"] for r in s12["seeds"] if cp in r["checkpoints"]]


def _decision(s12):
    rs = (s12.get("decision") or {}).get("results") or {}
    return rs.get("learned/plan/8_candidates"), rs.get("learned/route/8_candidates")


def _predictor(s12):
    """Medians over the orderings of the offline predictor's measures, with `gain`:
    the best of the predictor and the blend over the per-task posterior, ranked the
    same way."""
    ps = [r["baselines"]["predictor"] for r in s12["seeds"]
          if "predictor" in r.get("baselines", {})]
    if not ps:
        return None
    med = {k: _med([p.get(k) for p in ps]) for k in ps[0]}
    med["gain"] = _med([max(p["predictor_both"], p["blend_both"]) - p["per_task_lines"]
                        for p in ps])
    med["spread"] = {k: [p.get(k) for p in ps] for k in ps[0]}
    return med


def goals(S):
    s12 = S.get("12")
    if not s12 or not s12.get("seeds"):
        return []
    out = []
    n = len(s12["seeds"])
    for cp, goal in (("600", 0.60), ("5000", 0.65)):
        xs = _apgrs(s12, cp)
        if xs:
            v = _med(xs)
            out.append(("12", f"APGR after {int(cp):,} feedback events, median of {n} orderings",
                        f"{v:.3f} ({min(xs):.3f}–{max(xs):.3f})", f"≥ {goal:.2f}", v >= goal))
    pr = _predictor(s12)
    if pr:
        gain, transfer = pr["gain"], pr["transfer"]
        kept = gain >= 0.02 and transfer > 0.5
        out.append(("12", "per-prompt predictor: APGR it adds to the per-task posterior "
                    "(offline, both outcomes seen; alone or blended half and half), and "
                    "trained on MMLU, tested on GSM8K",
                    f"{gain:+.3f}, so {'kept' if kept else 'left out'}; {transfer:.3f} on GSM8K",
                    "kept only at ≥ +0.02 and > 0.5", None))
    runs = (s12.get("intake") or {}).get("runs") or []
    if runs:
        v = _med([r["events_per_s"] for r in runs])
        out.append(("12", f"`llmroute feedback` intake, {_num(runs[0]['lines'], 0)} lines on a "
                    f"store of {_num(s12['intake']['requests'], 0)} requests",
                    f"{_num(v, 0)} events/s", "≥ 50,000 events/s", v >= 50_000))
    plan, route = _decision(s12)
    if plan:
        v = plan["median_ns"] / 1000
        out.append(("12", "decision with learned quality (plan and exploration), 8 candidates",
                    f"{v:.2f} µs", "≤ 5 µs", v <= 5))
    return out


def limits(s12):
    """What holds the learned router back, from the baselines of the same run."""
    seeds = s12["seeds"]
    last = str(max(s12["settings"]["checkpoints"]))
    learned = _med([r["checkpoints"][last]["apgr"] for r in seeds if last in r["checkpoints"]])
    told = _med([r["baselines"]["told"]["apgr"] for r in seeds])
    offline = _med([r["baselines"]["offline_both"]["apgr"] for r in seeds])
    one = _med([r["baselines"]["offline_one"]["apgr"] for r in seeds
                if "offline_one" in r["baselines"]])
    oracle = _med([r["baselines"]["per_task_oracle"]["apgr"] for r in seeds])
    if None in (learned, told, offline, oracle):
        return []
    return [
        "**What holds it back.** Not the scorer: told every task's true accuracy, the router "
        f"reaches {told:.3f}, against {oracle:.3f} for the per-task oracle that ranks the same "
        "tasks by the same gaps (the sweep has a cost weight for every lead a hundredth apart, "
        "so every distinct learned gap gets its point of the curve). What the feedback can "
        "teach: learned from the same streamed lines with both models' outcomes on each, "
        f"offline, per-task routing reaches {offline:.3f}; from one model's outcome a line, "
        f"drawn at random, {_num(one, 3)}; the router, which hears mostly of the model it "
        f"chose, {learned:.3f}. Even both outcomes of 5,000 lines, about 86 a task, leave each "
        "task's gap uncertain by about as much as the gaps differ between tasks (their spread, "
        "0.09, is that of a difference of two shares over 43 answers each): a goal of 0.65 "
        "asks nearly all of that information from one model's outcome a line. With two "
        "candidates one request in 20 (`--explore 0.05`) goes to the model not chosen, and "
        "these fall on the tasks as their traffic does. Pooling (README, \"Where a task starts\") is what brings the "
        "router from its static prior towards what each line could teach: a task with few "
        "answers of a model starts from that model's record on the other tasks, moved by how "
        "the other model does on this one, instead of from 0.5, where one wrong answer put the "
        "strong model at 0.4 and the weak one could keep the task for good.",
        ""]


def section(S):
    s12 = S.get("12")
    if not s12:
        return []
    md = ["## 12. Quality learned from outcomes", ""]
    st, data = s12["settings"], s12["data"]
    seeds = s12["seeds"]
    n = len(seeds)
    run = s12.get("run")
    if run:
        m = run["machine"]
        md += ["Scenario 12 was run apart from scenarios 1 to 8 and 11 (as by "
               f"`BENCH_ONLY=12 bench/run`) on {run['started']}, at "
               f"llmroute commit `{m.get('commit')}`"
               + (" (with uncommitted changes to the sources)" if m.get("dirty") else "")
               + (", in quick mode: not comparable with a full run" if run.get("quick") else "")
               + f"; its raw results are in `{run['file']}`.", ""]
    if not seeds:
        md += ["No ordering ran (see the problems above).", ""]
        return md
    h0 = seeds[0]["heldout"]
    md.append(
        f"The data is RouteLLM's evaluation of MMLU and GSM8K (`{data['file']}`, read in place): "
        f"{_num(data['lines'], 0)} questions in {data['tasks']} tasks (57 MMLU subjects and "
        f"GSM8K), each with whether `{data['weak']}` (the weak model, "
        f"{data['weak_quality'] * 100:.1f}% correct) and `{data['strong']}` (the strong one, "
        f"{data['strong_quality'] * 100:.1f}%) answered it correctly. The fake upstream lists "
        f"both as `routellm/…` with the published prices (weak $"
        f"{st['prices_per_m'][data['weak']][0]:g}/M tokens in and out; strong $"
        f"{st['prices_per_m'][data['strong']][0]:g}/M in, "
        f"${st['prices_per_m'][data['strong']][1]:g}/M out), and answers every request after "
        f"{st['upstream_latency_ms']} ms; the harness grades each answer from the table by "
        "(question, model that answered).")
    md.append("")
    md.append(
        f"**Replay.** Each of {n} orderings (seeds) of the questions streams its first "
        f"{_num(max(st['checkpoints']), 0)} lines through the router as a live one sees them: "
        f"chunks of {st['chunk']} lines, each line with its task (`\"llmroute\": {{\"task\"}}`), "
        f"one `llmroute` batch run a chunk on one store (`--models` the two, `--weights "
        f"{st['replay_weights']}`, the `quality` preset without its latency weight as both "
        f"models are one fake; `--explore {st['explore']}`, `-j {st['concurrency']}`, "
        "`--no-cache`), then every answer graded (1 if that model was right) and sent as "
        "feedback with `llmroute feedback`. Every "
        f"{st['serve_every']}th chunk goes instead to an `llmroute serve` on the same store, "
        "with the same flags, one request a line with `x-llmroute-task` "
        f"({st['serve_connections']} connections), and its feedback is posted to "
        "`POST /v1/feedback` by `x-request-id`.")
    md.append("")
    md.append(
        f"**Measure.** After {', '.join(_num(int(c), 0) for c in st['checkpoints'])} feedback "
        f"events, the lines the ordering never streamed ({_num(h0['lines'], 0)}) are routed with "
        f"`--dry-run` (nothing called, nothing learned, no exploration) under each of "
        f"{len(st['sweep'])} weights `latency=0,cost=c,quality=1−c`, c from 0 to 1 (for each "
        "quality gap from 0.02 to 0.40, a hundredth apart, the c just below the one at which "
        "that lead stops winning the strong model a line, by the scorer's steps; and 0, 0.45, "
        "0.5, 0.6 and 1), so that every lead the router learned has its point; a setting's "
        "quality is the share of lines whose chosen model was right, its strong share the share "
        "sent to the strong model. The curve joins those points, always-weak (0, its quality) "
        "and always-strong (1, its quality) with straight lines (mixing two settings reaches "
        "the line between them). **APGR** is the area under (quality − weak) / (strong − weak) "
        "over the strong share, from 0 to 1: random routing is 0.5. The per-line oracle, which "
        "sends the strong model exactly the questions only it gets right, recovers more than "
        "the whole gap and so scores well above 1 (below). The share of strong calls at which "
        "the curve first recovers 50%, 80% and 95% of the gap is read along the same curve.")
    md.append("")
    md.append(
        f"**Cost.** A line's cost is estimated from its prompt, a token per 4 bytes plus 4 (as "
        f"llmroute estimates it), and an answer of {st['answer_tokens']} tokens for every "
        f"line, at the prices above: always-weak costs ${_num(h0['weak_cost_per_1k'], 3)} and "
        f"always-strong ${_num(h0['strong_cost_per_1k'], 2)} per 1,000 of the held-out lines "
        "(ordering 1).")
    md.append("")

    # APGR over learning.
    md.append(f"APGR of the learned router, median over {n} orderings (min–max), and mean; "
              "beside it, what the same streamed lines could teach offline, each task ranked by "
              "its learned gap with no scorer in between (the posterior mean from 0.5 worth 4, "
              "without llmroute's pooling), from both models' outcomes on every line, or from one model's a "
              "line drawn at random, half and half (as feedback on answers gives one):")
    md.append("")
    md.append("| feedback events | APGR | mean | 50% of the gap at strong share | 80% | 95% | "
              "offline, both outcomes | offline, one at random |")
    md.append("|---|---|---|---|---|---|---|---|")
    for cp in st["checkpoints"]:
        cp = str(cp)
        ms = [r["checkpoints"][cp] for r in seeds if cp in r["checkpoints"]]
        if not ms:
            continue
        xs = [m["apgr"] for m in ms]
        row = f"| {_num(int(cp), 0)} | {_spread(xs)} | {statistics.mean(xs):.3f} |"
        for p in ("0.5", "0.8", "0.95"):
            row += f" {_spread([m['share_at'][p] * 100 for m in ms], 1)}% |"
        for k in ("offline_both", "offline_one"):
            row += f" {_num(_med([m.get(k) for m in ms]), 3)} |"
        md.append(row)
    md.append("")

    # Baselines.
    names = [
        ("random", "random routing (each line to the strong model with probability x, "
                   "x = 0, 0.1, …, 1)"),
        ("prior", "the router with no feedback (its static prior, the same sweep)"),
        ("offline_both", "per-task quality learned offline from the streamed lines, both "
                         "models' outcomes seen on each (tasks by gap)"),
        ("offline_one", "the same from one model's outcome a line, drawn at random"),
        ("told", "the router told every task's true accuracy (`llmroute feedback --outcomes`, "
                 "weight 1,000 a model and task), the same sweep: its scorer's ceiling"),
        ("per_task_oracle", "per-task oracle: tasks sent whole to the strong model, the widest "
                            "true gap first"),
        ("per_line_oracle", "per-line oracle"),
    ]
    md.append("Baselines on the same held-out lines, median over the orderings (min–max):")
    md.append("")
    md.append("| router | APGR | 50% of the gap at strong share | 80% | 95% |")
    md.append("|---|---|---|---|---|")
    for key, label in names:
        ms = [r["baselines"][key] for r in seeds if key in r.get("baselines", {})]
        if not ms:
            continue
        row = f"| {label} | {_spread([m['apgr'] for m in ms])} |"
        for p in ("0.5", "0.8", "0.95"):
            row += f" {_spread([m['share_at'][p] * 100 for m in ms], 1)}% |"
        md.append(row)
    md.append("")

    pr = _predictor(s12)
    if pr:
        sp = pr["spread"]
        md.append(
            "**A per-prompt predictor, offline** (`bench/suite/predictor.py`): per model, a "
            "logistic model over hashed words and word pairs of the prompt (2^18 buckets) and "
            "the task's name, trained from the streamed lines' outcomes (3 passes), each "
            "held-out line ranked by its predicted gap; median over the orderings (min–max):")
        md.append("")
        md.append("| ranked by | APGR |")
        md.append("|---|---|")
        for k, label in (
                ("per_task_lines", "the per-task posterior from both outcomes a line (as "
                                   "above, lines in the same order)"),
                ("predictor_both", "the predictor, from both outcomes a line"),
                ("blend_both", "the mean of the two gaps"),
                ("predictor_one", "the predictor, from one outcome a line drawn at random"),
                ("transfer", "the predictor trained on 5,000 MMLU lines, tested on GSM8K "
                             "(random: 0.5)")):
            md.append(f"| {label} | {_spread(sp[k])} |")
        md.append("")
        verdict = ("earns" if pr["gain"] >= 0.02 and pr["transfer"] > 0.5
                   else "does not earn")
        md.append(
            f"Even told both models' outcomes on every line, the predictor adds "
            f"{pr['gain']:+.3f} to the per-task posterior (the better of alone and blended), "
            f"against the +0.02 asked: it {verdict} its place, and llmroute does not "
            f"include it. Trained on MMLU it ranks GSM8K's lines at {pr['transfer']:.3f}, "
            "above random: the words carry some signal, most of which the task already "
            "carries.")
        md.append("")

    # The sweep at the last checkpoint: share, quality, cost.
    last = str(max(st["checkpoints"]))
    pts = [r["checkpoints"][last]["points"] for r in seeds if last in r["checkpoints"]]
    if pts:
        md.append(f"The sweep after {_num(int(last), 0)} events, median over the orderings; cost "
                  "per 1,000 lines as estimated above (a weight is shown where the strong share "
                  "moves on from the weight shown before it):")
        md.append("")
        md.append("| cost weight c | strong share | quality | cost per 1,000 lines |")
        md.append("|---|---|---|---|")
        shown = None
        for i, c in enumerate(st["sweep"]):
            col = [p[i] for p in pts if i < len(p)]
            share = round(_med([x[0] for x in col]) * 100, 1)
            if share == shown and i + 1 < len(st["sweep"]):
                continue
            shown = share
            md.append(f"| {c:g} | {_med([x[0] for x in col]) * 100:.1f}% | "
                      f"{_med([x[1] for x in col]) * 100:.1f}% | "
                      f"${_med([x[2] for x in col]):.3f} |")
        md.append(f"| always-strong | 100% | "
                  f"{_med([r['heldout']['strong_quality'] for r in seeds]) * 100:.1f}% | "
                  f"${_med([r['heldout']['strong_cost_per_1k'] for r in seeds]):.3f} |")
        md.append("")

    rp = [r["replay"] for r in seeds]
    md.append(
        "During the replays (per ordering, median): "
        f"{_num(_med([r['events']['batch'] for r in rp]), 0)} feedback events through "
        "`llmroute feedback` in "
        f"{_num(_med([r['chunks']['batch'] for r in rp]), 0)} batch runs and "
        f"{_num(_med([r['events']['serve'] for r in rp]), 0)} through `POST /v1/feedback` in "
        f"{_num(_med([r['chunks']['serve'] for r in rp]), 0)} chunks served; "
        f"{_med([r['strong_share'] for r in rp]) * 100:.1f}% of the streamed lines went to the "
        f"strong model, {_med([r['quality'] for r in rp]) * 100:.1f}% were answered correctly, "
        f"at ${_med([r['cost_per_1k'] for r in rp]):.3f} per 1,000 lines; "
        f"{_med([r['seconds'] for r in rp]):.0f} s an ordering. The scenario took "
        f"{s12['seconds'] / 60:.1f} min.")
    md.append("")

    locks = [r["lock_out"] for r in seeds if r.get("lock_out")]
    if locks:
        last_n = _num(int(last), 0)
        few_strong = _med([x["few_events"][data["strong"]] for x in locks])
        md.append(
            f"What the store had learned at the end (`--dry-run` of one line a task, its "
            f"`quality_events`; median over the orderings): the strong model had at most 2 "
            f"feedback events on {_num(few_strong, 0)} of "
            f"{locks[0]['tasks']} tasks after {last_n} events, the weak one on "
            f"{_num(_med([x['few_events'][data['weak']] for x in locks]), 0)}; of the "
            f"{locks[0]['judged']} tasks whose true gap is 0.05 or more either way, "
            f"{_num(_med([x['wrong_way'] for x in locks]), 0)} had the two models learned the "
            "wrong way round.")
        md.append("")
        md += limits(s12)

    it = s12.get("intake")
    if it and it.get("runs"):
        runs = it["runs"]
        md.append(
            f"**Feedback intake.** A store filled by a batch run of "
            f"{_num(it['requests'], 0)} requests (the fast fake, three models, tasks from the "
            f"data), then `llmroute feedback FILE` with one line for each of them, in random "
            f"order, its output (a line each) to a file; a fresh copy of the store each run: "
            f"{_spread([r['events_per_s'] for r in runs], 0)} events/s "
            f"({_spread([r['seconds'] for r in runs], 2)} s, peak RSS "
            f"{_spread([r['rss_kb'] for r in runs], 1, 1 / 1024)} MB), over {len(runs)} runs.")
        md.append("")
    dec = s12.get("decision")
    if dec and dec.get("results"):
        md.append(
            "**Decision time with learned quality** (criterion group `learned` of "
            "`benches/scorer.rs`; the 8 built-in candidates, a request with a task, each "
            "candidate's quality a posterior looked up among 58 tasks and decayed to now; "
            f"warm-up {dec['warm_up_s']} s, measurement {dec['measurement_s']} s). `plan` is the "
            "whole choice at a request where exploration weighs a quality probe:")
        md.append("")
        md.append("| benchmark | median | 95% interval of the median |")
        md.append("|---|---|---|")
        for k, v in sorted(dec["results"].items()):
            md.append(f"| `{k}` | {v['median_ns'] / 1000:.3f} µs | "
                      f"{v['low_ns'] / 1000:.3f}–{v['high_ns'] / 1000:.3f} µs |")
        md.append("")
    return md
