"""What sealing the bus costs per message: AES-256-GCM seal and open of real ingest frames.

Builds the protocol-v1 ingest frame of each prompt of the development stream (the
gateway's JSON, as `appliance.cluster.client` sends it), then times, per message, the
gateway's seal, the node's open, and the sealed answer both ways. Also the size added.
Prints figures; asserts nothing.

    .venv/bin/python bench/seal.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.cluster.client import open_reply, sealed_request  # noqa: E402
from appliance.keys.bus import (  # noqa: E402
    create_key_file,
    ingest_aad,
    load_bus_keys,
    reply_aad,
)

DEV = next((p / "shared" / "bench" / "threads-dev.jsonl" for p in Path(__file__).resolve().parents
            if (p / "shared" / "bench").is_dir()),
           Path(__file__).resolve().parents[2] / "shared" / "bench" / "threads-dev.jsonl")
ANSWER = {"request_id": "r", "ok": True, "mode": "sync",
          "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "5f2c1a0e9b7d4c33",
          "conversation_id": "th_2c6f0e4b9a1d7e58",
          "parent_request_id": "req-8790", "position": "continuation",
          "intent": "information_seeking", "similarity": 0.41, "topic_id": "tp_12",
          "duplicate": False, "link_source": "history"}


def rows() -> list[dict[str, object]]:
    out = []
    for i, line in enumerate(DEV.read_text().splitlines()):
        r = json.loads(line)
        out.append({"v": 1, "op": "ingest", "tenant": r["tenant"], "request_id": f"b-{i}",
                    "user_id": r["user_id"], "text": r["text"], "ts": r["ts"],
                    "history": [{"role": "user", "sha256": "0" * 64}] * 4})
    return out


def per_message_us(fn: object, items: list[object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for item in items:
            fn(item)  # type: ignore[operator]
        best = min(best, (time.perf_counter() - t) / len(items))
    return best * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        create_key_file(Path(tmp) / "bus.key")
        keys = load_bus_keys(Path(tmp) / "bus.key")
    data = rows()
    plain = [sealed_request(r, None)[1] for r in data]
    sealed = [sealed_request(r, keys) for r in data]
    tenants = [str(r["tenant"]) for r in data]
    answer = json.dumps(ANSWER).encode()
    sealed_answers = [keys.seal(answer, reply_aad(t)) for t in tenants]
    print(f"{len(data)} ingest frames from {DEV.name}: median {statistics.median(map(len, plain))}"
          f" bytes plain, +{len(sealed[0][1]) - len(plain[0])} bytes sealed")
    pairs = list(zip(sealed, tenants, strict=True))
    opened = list(zip(sealed_answers, tenants, strict=True))
    timings = {
        "gateway: build the frame (no seal)": (lambda r: sealed_request(r, None), data),
        "gateway: build + seal a request": (lambda r: sealed_request(r, keys), data),
        "node: open a request": (lambda p: keys.open(p[0][1], ingest_aad(p[1])), pairs),
        "node: seal its answer": (lambda t: keys.seal(answer, reply_aad(t)), tenants),
        "gateway: open + parse the answer": (lambda p: open_reply(p[0], p[1], keys), opened),
    }
    for name, (fn, items) in timings.items():
        print(f"{name}: {per_message_us(fn, items, args.rounds):.1f} us per message")

if __name__ == "__main__":
    main()
