"""Where an ingested prompt's CPU goes, stage by stage, on the real pipeline.

The dev stream (or --benchlike N prompts shaped like bench/load.py's 8 clients: 80 users of
one tenant, the dev stream's texts) through Presidio, llama.cpp with the bundled model, the
linker, topics, the SQLCipher store and the usearch index, in an ephemeral store, in batches
as the service forms them. Prints the CPU time a prompt of each stage on its thread
(redaction, linking + topics, commit, index on the worker; embedding on the embedding
thread, where it runs beside the worker's linking of the batch before), the process's CPU a
prompt and the wall-clock time (prompts/s).

--dump FILE writes what was decided and stored (replay output lines and every stored
record: thread, parent, position, intent, similarity, redacted text, evidence, cost, topic;
thread and topic ids numbered by first appearance, since they are random) to compare a
change's outputs byte for byte (`cmp`) with the code before it. --profile FILE writes a
cProfile of the ingest (pstats). Prints figures; asserts nothing.

    OMP_NUM_THREADS=1 nice .venv/bin/python bench/ingest_stages.py [--batch 64]
        [--benchlike 2000] [--dump OUT.json] [--profile OUT.prof]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import appliance.pipeline as pipeline_module  # noqa: E402
from appliance.cli.replay import _replay_runtime  # noqa: E402
from appliance.replay import ReplayReport, read_prompts, replay  # noqa: E402
from appliance.runtime import make_pipeline, settle_heap  # noqa: E402

DEV = next((p / "shared" / "bench" / "threads-dev.jsonl" for p in REPO.parents
            if (p / "shared" / "bench").is_dir()), REPO.parent / "shared" / "bench"
           / "threads-dev.jsonl")


class _ThreadClock:
    """Stands in for the pipeline's stage clock: sums each stage's CPU time on the thread
    that ran it (the clock is made on that thread)."""

    totals: dict[str, int] = {}

    def __init__(self, timer: Any) -> None:
        self._last = time.thread_time_ns()

    def __call__(self, stage: str) -> None:
        now = time.thread_time_ns()
        self.totals[stage] = self.totals.get(stage, 0) + now - self._last
        self._last = now


def benchlike(texts: list[str], n: int) -> list[str]:
    """`n` prompts as bench/load.py's 8 clients send them, interleaved, a fixed clock."""
    base = datetime(2026, 12, 6, 9, 0, tzinfo=UTC).timestamp()
    out = []
    for i in range(n // 8):
        for k in range(8):
            ts = datetime.fromtimestamp(base + (i * 8 + k) * 0.01, UTC)
            out.append(json.dumps({
                "tenant": "bench", "user_id": f"c{k}-{i % 10}", "request_id": f"conc-{k}-{i}",
                "text": texts[(k * 7919 + i) % len(texts)],
                "ts": ts.isoformat().replace("+00:00", "Z")}))
    return out


def dump(rt: Any, out: str, path: Path) -> None:
    """What was decided and stored, random ids numbered by first appearance."""
    names: dict[tuple[str, str], str] = {}

    def name(value: str | None, kind: str) -> str | None:
        if value is None:
            return None
        return names.setdefault((kind, value), f"{kind}{sum(k == kind for k, _ in names)}")

    lines = []
    for line in out.splitlines():
        row = json.loads(line)
        row["thread_id"], row["topic_id"] = name(row["thread_id"], "T"), name(row["topic_id"],
                                                                               "P")
        lines.append(row)
    recs = rt.store.records("1=1", ())
    index_of = {r.record_id: r.index for r in recs}
    stored = [{"request_id": r.request_id, "thread": name(r.thread_id, "T"),
               "parent": index_of.get(r.parent_id), "position": r.position,
               "intent": r.intent, "similarity": r.similarity, "text": r.text,
               "evidence": json.dumps(r.evidence or {}, sort_keys=True, default=str),
               "cost": r.cost, "link_source": r.link_source, "topic": name(r.topic_id, "R")}
              for r in sorted(recs, key=lambda r: r.request_id)]
    path.write_text(json.dumps({"out": lines, "records": stored}, indent=0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stream", type=Path, default=DEV)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--benchlike", type=int, default=0)
    ap.add_argument("--dump", type=Path)
    ap.add_argument("--profile", type=Path)
    args = ap.parse_args()
    if not args.stream.exists():
        raise SystemExit(f"{args.stream} not found (give --stream THREADS.jsonl)")
    lines = args.stream.read_text().splitlines()
    if args.benchlike:
        lines = benchlike([json.loads(x)["text"] for x in lines], args.benchlike)
    pipeline_module._StageClock = _ThreadClock  # type: ignore[misc, assignment]
    with _replay_runtime(None, None, None) as rt:
        pipe = make_pipeline(rt)
        settle_heap()
        report = ReplayReport()
        prompts = list(read_prompts(lines, max_text_chars=rt.policies.correlation.max_text_chars,
                                    strict=False, report=report))
        out = io.StringIO()
        prof = cProfile.Profile() if args.profile else None
        cpu, wall = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        replay(pipe, prompts, out, batch=args.batch, report=report, final_topics=True)
        if prof:
            prof.disable()
            prof.dump_stats(args.profile)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        n = len(prompts)
        stages = ", ".join(f"{k} {v / 1e6 / n:.2f}" for k, v in _ThreadClock.totals.items())
        print(f"{n} prompts in batches of {args.batch}: {wall:.1f} s ({n / wall:.0f} prompts/s), "
              f"process CPU {cpu * 1000 / n:.2f} ms a prompt; CPU ms a prompt, each stage on "
              f"its thread: {stages}; load average {os.getloadavg()[0]:.1f}")
        if args.dump:
            dump(rt, out.getvalue(), args.dump)


if __name__ == "__main__":
    main()
