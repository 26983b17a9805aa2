#!/usr/bin/env python3
"""The peer of the benchmark: LiteLLM's Router doing llmroute's job.

Reads the same JSONL requests (stdin or a file), keeps up to --concurrency
requests in flight (an asyncio.Semaphore), lets a LiteLLM Router pick one of
three deployments (`openai/fast/a`, `openai/fast/b`, `openai/fast/c` on the
fake upstream, routing strategy "simple-shuffle"), and writes one JSON line per
input line to stdout, in input order, as llmroute does.

When it is done it prints one JSON object on stderr:
{"lines", "errors", "seconds", "lines_per_s", "import_s"}. `seconds` runs from
the first line read to the last line written: interpreter start-up, the import
of litellm and the construction of the Router are left out (they take seconds,
and would swamp a short run).

usage: litellm_peer.py --base-url URL [--concurrency N] [FILE]
"""

import argparse
import os
import sys
import time

# No network here: use the cost map bundled with the package, and send nothing.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")
os.environ.setdefault("LITELLM_TELEMETRY", "False")
os.environ.setdefault("DISABLE_SCHEMA_UPDATE", "True")

T_IMPORT = time.perf_counter()
import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402

import litellm  # noqa: E402
from litellm import Router  # noqa: E402

IMPORT_S = time.perf_counter() - T_IMPORT

litellm.telemetry = False
litellm.suppress_debug_info = True
litellm.set_verbose = False
litellm.turn_off_message_logging = True
litellm.drop_params = True
litellm.success_callback = []
litellm.failure_callback = []
litellm.callbacks = []
for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "openai"):
    logging.getLogger(name).setLevel(logging.ERROR)

MODELS = ["fast/a", "fast/b", "fast/c"]
ROUTED = "fast"


def to_call(obj: dict) -> dict:
    """The three input forms of llmroute, turned into acompletion keywords."""
    if "body" in obj and isinstance(obj["body"], dict):
        obj = obj["body"]
    params = {k: v for k, v in obj.items() if k not in ("id", "custom_id", "llmroute", "model")}
    if "messages" not in params:
        messages = []
        if "system" in params:
            messages.append({"role": "system", "content": params.pop("system")})
        messages.append({"role": "user", "content": params.pop("prompt", "")})
        params["messages"] = messages
    return params


async def one(router: Router, line_no: int, raw: bytes) -> bytes:
    t0 = time.perf_counter()
    rid = None
    try:
        obj = json.loads(raw)
        rid = obj.get("id", obj.get("custom_id"))
        resp = await router.acompletion(model=ROUTED, **to_call(obj))
        body = resp.model_dump()
        out = {
            "id": rid,
            "line": line_no,
            "model": body.get("model"),
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            "error": None,
            "content": body["choices"][0]["message"]["content"],
            "response": body,
        }
    except Exception as e:  # every line gets an output line, as with llmroute
        out = {
            "id": rid,
            "line": line_no,
            "model": None,
            "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
            "error": {"type": type(e).__name__, "message": str(e)[:500]},
        }
    return (json.dumps(out, separators=(",", ":")) + "\n").encode()


async def run(args) -> dict:
    router = Router(
        model_list=[
            {
                "model_name": ROUTED,
                "litellm_params": {
                    "model": f"openai/{m}",
                    "api_base": args.base_url,
                    "api_key": "bench",
                },
            }
            for m in MODELS
        ],
        routing_strategy="simple-shuffle",
    )
    src = open(args.file, "rb") if args.file and args.file != "-" else sys.stdin.buffer
    out = sys.stdout.buffer
    sem = asyncio.Semaphore(args.concurrency)
    pending: asyncio.Queue = asyncio.Queue()
    stats = {"lines": 0, "errors": 0}

    async def guarded(line_no: int, raw: bytes) -> bytes:
        try:
            return await one(router, line_no, raw)
        finally:
            sem.release()

    async def writer():
        # Writes lines in input order, as they complete.
        while True:
            task = await pending.get()
            if task is None:
                return
            data = await task
            stats["lines"] += 1
            if b'"error":null' not in data:
                stats["errors"] += 1
            out.write(data)

    t0 = time.perf_counter()
    w = asyncio.create_task(writer())
    for line_no, raw in enumerate(src, 1):
        if not raw.strip():
            continue
        await sem.acquire()
        await pending.put(asyncio.create_task(guarded(line_no, raw)))
    await pending.put(None)
    await w
    out.flush()
    seconds = time.perf_counter() - t0
    return {
        "lines": stats["lines"],
        "errors": stats["errors"],
        "seconds": seconds,
        "lines_per_s": stats["lines"] / seconds if seconds > 0 else 0.0,
        "import_s": IMPORT_S,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True)
    p.add_argument("--concurrency", "-j", type=int, default=8)
    p.add_argument("file", nargs="?")
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result), file=sys.stderr)
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
