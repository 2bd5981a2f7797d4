"""Linking benchmark: cost per prompt against a user's history, and whole-replay throughput.

usage: .venv/bin/python bench/link.py [--sizes 100,10000,100000] [--queries 300]
       [--repeat N] [--gold THREADS.jsonl] [--no-replay]

Linking cost: one user with N earlier prompts (synthetic threads of 1-8 turns,
random unit vectors, generic texts) within the horizon; each measured call is
followed by appending the prompt to the history, as the pipeline does, so the
incremental vector cache is exercised. p50/p99 over the calls after a warm-up;
the first call (which stacks the whole history once) is printed apart.
With --repeat N each size is measured N times (a fresh linker each time) and the
medians of p50 and p99 are printed after the runs, with the load average at the start
and end (on a shared host the tail moves with the load).
Replay: the dev stream through the whole pipeline (redaction, embedding,
linking, topics, encrypted store) in an ephemeral store, as `semtrace replay`.
Wall-clock and CPU (thread) time are both printed: on a shared host the wall-clock
tail includes time spent waiting for a core. Set OPENBLAS_NUM_THREADS=1 to see the
single-threaded figures (on a busy two-core host OpenBLAS threads contend).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.config import load_policies  # noqa: E402
from appliance.link import LinkInput, make_linker  # noqa: E402
from appliance.records import Candidate  # noqa: E402

# the shared data sit next to the checkout (/work/shared beside /work/main) or next to its
# parent (a worktree in /work/wt/NAME)
DEFAULT_GOLD = next((p / "shared" / "bench" / "threads-dev.jsonl" for p in REPO.parents
                     if (p / "shared" / "bench").is_dir()),
                    REPO.parent / "shared" / "bench" / "threads-dev.jsonl")
WORDS = ("weather", "tomorrow", "route", "traffic", "meeting", "schedule", "solar", "energy",
         "history", "price", "compare", "battery", "recipe", "train", "flight", "hotel", "museum",
         "contract", "invoice", "python", "error", "database", "garden", "insurance", "budget",
         "vacation", "doctor", "symptoms", "league", "season", "album")
STARTS = ("What is", "How do I", "Tell me about", "And the", "Why is it", "Can you explain",
          "Thanks,", "What about", "Show me", "Is there")


def _text(rng: random.Random) -> str:
    return f"{rng.choice(STARTS)} {' '.join(rng.sample(WORDS, rng.randint(1, 6)))}?"


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(384).astype(np.float32)
    return v / np.linalg.norm(v)


def history(n: int, now: datetime, horizon_h: float, seed: int = 0) -> list[Candidate]:
    """N earlier prompts of one user, spread over the horizon, in threads of 1-8 turns."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    step = horizon_h * 3600 * 0.9 / max(n, 1)
    out: list[Candidate] = []
    thread, left = 0, 0
    for i in range(n):
        if left == 0:
            thread, left = thread + 1, rng.randint(1, 8)
        left -= 1
        out.append(Candidate(record_id=i + 1, request_id=f"r{i}", thread_id=f"t{thread}",
                             ts=now - timedelta(seconds=(n - i) * step), vector=_unit(nrng),
                             text=_text(rng), session_key=None,
                             entity_keys=(f"LOCATION:{rng.randint(0, 50)}",) if i % 5 else ()))
    return out


def link_cost(n: int, queries: int) -> dict[str, float]:
    """p50/p99 milliseconds of one linker call against N prompts of history."""
    s = load_policies().correlation
    linker = make_linker(s)
    now = datetime(2026, 3, 2, 12, tzinfo=UTC)
    hist = history(n, now, s.horizon_hours)
    rng, nrng = random.Random(1), np.random.default_rng(1)
    times: list[float] = []
    cpu: list[float] = []
    first = 0.0
    for k in range(queries + 10):
        ts = now + timedelta(seconds=20 * k)
        q = LinkInput(ts=ts, vector=_unit(nrng), text=_text(rng))
        t0, c0 = time.perf_counter(), time.thread_time()
        link = linker(q, hist)
        dt, dc = (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000
        if k == 0:
            first = dt
        elif k >= 10:
            times.append(dt)
            cpu.append(dc)
        hist.append(Candidate(record_id=n + k + 1, request_id=f"q{k}",
                              thread_id=link.thread_id or f"n{k}", ts=ts, vector=q.vector,
                              text=q.text, parent_id=link.parent_id))
    times.sort()
    cpu.sort()
    p99 = min(len(times) - 1, int(len(times) * 0.99))
    return {"history": n, "first_call_ms": first, "p50_ms": statistics.median(times),
            "p99_ms": times[p99], "cpu_p50_ms": statistics.median(cpu), "cpu_p99_ms": cpu[p99]}


def replay_throughput(gold: Path) -> dict[str, float]:
    """Prompts per second of the whole pipeline over the stream (ephemeral store)."""
    import appliance.cli  # noqa: F401  (registers the command modules first)
    from appliance.cli.replay import _replay_runtime, run_replay

    with _replay_runtime(None, None, None) as rt:
        t0 = time.perf_counter()
        report = run_replay(rt, gold, io.StringIO(), strict=False, batch=64)
        dt = time.perf_counter() - t0
    n = report.ingested  # type: ignore[attr-defined]
    return {"prompts": n, "seconds": dt, "prompts_per_s": n / dt}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,10000,100000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per size (medians printed)")
    ap.add_argument("--gold", type=Path, default=DEFAULT_GOLD)
    ap.add_argument("--no-replay", action="store_true")
    a = ap.parse_args()
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")
    print(f"{'history':>8} {'first call ms':>14} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'cpu p50 ms':>11} {'cpu p99 ms':>11}")
    for n in (int(x) for x in a.sizes.split(",")):
        load = os.getloadavg()[0]
        runs = [link_cost(n, a.queries) for _ in range(max(a.repeat, 1))]
        for r in runs:
            print(f"{n:>8} {r['first_call_ms']:>14.2f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                  f"{r['cpu_p50_ms']:>11.3f} {r['cpu_p99_ms']:>11.3f}")
        if len(runs) > 1:
            med = {k: statistics.median(r[k] for r in runs)
                   for k in ("p50_ms", "p99_ms", "cpu_p50_ms", "cpu_p99_ms")}
            print(f"{'median':>8} {'':>14} {med['p50_ms']:>8.3f} {med['p99_ms']:>8.3f} "
                  f"{med['cpu_p50_ms']:>11.3f} {med['cpu_p99_ms']:>11.3f}   "
                  f"({len(runs)} runs, load average {load:.1f} -> {os.getloadavg()[0]:.1f})")
    if not a.no_replay:
        r = replay_throughput(a.gold)
        print(f"replay of {a.gold.name}: {r['prompts']:.0f} prompts in {r['seconds']:.1f} s "
              f"= {r['prompts_per_s']:.0f} prompts/s (whole pipeline)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
