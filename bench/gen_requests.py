#!/usr/bin/env python3
"""Writes N distinct, representative chat requests as JSONL.

Every line is an OpenAI chat-completions body (a system and a user message,
`max_tokens`, `temperature`) with an `id`. Lines differ in their user message,
so each one has its own cache key. The mix of prompt lengths is fixed by a
seeded PRNG, so the same N always gives the same file.

usage: gen_requests.py N OUT.jsonl [--body OUT_BODY.json]

--body also writes one representative request as the JSON body that the raw
HTTP load generator posts (the same shape, with "model" set).
"""

import json
import random
import sys

SYSTEMS = [
    "You are a concise assistant. Answer in one sentence.",
    "You are a helpful assistant that answers questions about Unix tools.",
    "Reply with JSON only.",
]
TOPICS = [
    "the capital of Australia",
    "how a pipe connects two processes",
    "what SQLite's WAL mode changes",
    "the difference between latency and throughput",
    "why caches need an expiry",
    "how exponential moving averages react to a slow sample",
    "what a 429 status code asks a client to do",
    "how to count lines with awk",
]
FILLER = (
    "Please keep the answer short and concrete, and mention one example. "
    "Context: this question is part of a nightly batch of support requests. "
)


def request(i: int, rng: random.Random) -> dict:
    topic = TOPICS[rng.randrange(len(TOPICS))]
    extra = FILLER * rng.choice((0, 0, 1, 1, 2, 4))
    return {
        "id": f"r{i}",
        "messages": [
            {"role": "system", "content": SYSTEMS[rng.randrange(len(SYSTEMS))]},
            {"role": "user", "content": f"Question {i}: explain {topic}. {extra}".rstrip()},
        ],
        "max_tokens": rng.choice((64, 128, 256)),
        "temperature": 0.2,
    }


def main() -> int:
    args = sys.argv[1:]
    body_out = None
    if "--body" in args:
        k = args.index("--body")
        body_out = args[k + 1]
        del args[k : k + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    n, out = int(args[0]), args[1]
    rng = random.Random(20260616)
    with open(out, "w", encoding="utf-8") as f:
        for i in range(1, n + 1):
            f.write(json.dumps(request(i, rng), separators=(",", ":")))
            f.write("\n")
    if body_out:
        body = request(0, random.Random(1))
        del body["id"]
        body["model"] = "fast/a"
        with open(body_out, "w", encoding="utf-8") as f:
            json.dump(body, f, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
