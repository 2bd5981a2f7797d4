"""The bench week of bench/topic_rows.py with the threads the shipped linker finds.

`topic_rows.week` gives each prompt its gold thread (a perfect linker). Here the same week
of the wide stream (2026-11-30 to 12-06, tenant `acme`, 80 people) goes through the whole
pipeline as `semtrace replay` runs it (an ephemeral SQLCipher store, the real Presidio,
llama.cpp with the bundled model, the shipped linker and topics, one refinement at the
end), and the threads are read back as `stats` reads them (`analytics.load_threads`:
each thread in the topic the last refinement left it in), with each topic's people as
the last refinement counted them (`topics.contributors`, what `analytics.shared_topics`
compares with `k_min_users`). A replay takes about 10 ms a prompt on the worker thread (a
minute or two, plus loading the models); its result (threads, topics' people and sizes,
`compare`'s counts: no prompt text) is cached under the temp dir beside the topic benches'
streams (bench/topic_data.py), keyed by the week's lines and everything the replay reads
(the appliance package, the policies, the bundled models, the installed packages'
versions), so a rerun of bench/topic_rows.py, block_rows.py or incident_rows.py with
`--threads linker` on the same code takes seconds and reads the same threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_data import CACHE, STREAMS  # noqa: E402

from appliance import analytics  # noqa: E402
from appliance.analytics import ThreadRow, Turn  # noqa: E402
from appliance.cli.replay import _replay_runtime  # noqa: E402
from appliance.config import policy_dir  # noqa: E402
from appliance.config.paths import model_dir  # noqa: E402
from appliance.query import topic_aliases  # noqa: E402
from appliance.replay import ReplayReport, read_prompts, replay  # noqa: E402
from appliance.runtime import make_pipeline  # noqa: E402

TENANT = "acme"  # the stream's tenant: cross-user topics in the shipped privacy.toml


def week_lines(start: datetime, end: datetime) -> list[str]:
    """The wide stream's lines with a timestamp in [start, end)."""
    out = []
    for line in STREAMS["wide"].read_text().splitlines():
        if line.strip():
            ts = datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00"))
            if start <= ts < end:
                out.append(line)
    return out


Week = tuple[list[ThreadRow], dict[str, int], dict[str, int], dict[str, int]]


def _cache_key(lines: list[str]) -> str:
    """A digest of the week's lines and of all a replay of them reads: every file of the
    appliance package, of the policy and model folders, and the installed packages."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256("\n".join(lines).encode())
    for folder in (root / "appliance", policy_dir(), model_dir()):
        for f in sorted(folder.rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
    h.update(" ".join(sorted(f"{d.metadata['Name']}=={d.version}"
                             for d in importlib.metadata.distributions())).encode())
    return h.hexdigest()[:16]


def _dump(week: Week) -> str:
    threads, people, sizes, stats = week
    rows = [{"thread_id": t.thread_id, "user": t.user, "turns": [
        {**dataclasses.asdict(turn), "ts": turn.ts.isoformat()} for turn in t.turns]}
        for t in threads]
    return json.dumps({"threads": rows, "people": people, "sizes": sizes, "stats": stats})


def _load(text: str) -> Week:
    data: dict[str, Any] = json.loads(text)
    threads = [ThreadRow(r["thread_id"], r["user"], tuple(
        Turn(**{**turn, "ts": datetime.fromisoformat(turn["ts"])}) for turn in r["turns"]))
        for r in data["threads"]]
    return threads, data["people"], data["sizes"], data["stats"]


def linker_week(start: datetime, end: datetime) -> Week:
    """The week replayed through the pipeline (or its cached result: the module doc): its
    threads as `stats` reads them, people and threads per topic, and how they compare with
    the gold threads (`compare`)."""
    lines = week_lines(start, end)
    cache = CACHE / f"linker-week-{start:%Y%m%d}-{end:%Y%m%d}-{_cache_key(lines)}.json"
    if cache.exists():
        print(f"  the linker's week from {cache}", file=sys.stderr)
        return _load(cache.read_text())
    week = _replay_week(lines, start, end)
    CACHE.mkdir(mode=0o700, exist_ok=True)
    part = cache.with_suffix(".part")
    part.write_text(_dump(week))
    part.replace(cache)
    return week


def _replay_week(lines: list[str], start: datetime, end: datetime) -> Week:
    """`lines` replayed through the pipeline into an ephemeral store (`linker_week`)."""
    with _replay_runtime(None, None, None) as rt:
        pipe = make_pipeline(rt)
        report = ReplayReport()
        prompts = list(read_prompts(lines, max_text_chars=rt.policies.correlation.max_text_chars,
                                    strict=False, report=report))
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if done % 1024 < n:
                print(f"  replayed {done}/{len(prompts)}", file=sys.stderr)

        out = io.StringIO()
        replay(pipe, prompts, out, report=report, progress=progress, final_topics=True)
        store = rt.store
        merged = topic_aliases(store)
        threads = analytics.load_threads(store, TENANT, start, end, aliases=merged)
        people = dict(store.db.execute(
            "SELECT topic_id, contributors FROM topics WHERE tenant=? AND merged_into IS NULL "
            "AND n > 0", (TENANT,)).fetchall())
        current = {th: merged.get(tp, tp) for th, tp in store.db.execute(
            "SELECT thread_id, topic_id FROM threads WHERE tenant=?", (TENANT,))}
    stats = compare(lines, out.getvalue(), {t.thread_id: t.topic for t in threads}, current)
    stats["skipped_lines"] = len(report.skipped)
    return threads, people, dict(Counter(t.topic for t in threads)), stats


def compare(lines: list[str], out: str, read: dict[str, str], current: dict[str, str | None]
            ) -> dict[str, int]:
    """How the linker's threads stand against the gold ones: threads each way, gold threads
    split over several linker threads, linker threads holding several gold threads, and
    threads whose topic as `stats` reads it is not the one the last refinement gave it
    (349 of 932 before `load_threads` read the threads table: it took the topic a
    thread's first prompt was handed at ingest)."""
    gold = {json.loads(x)["index"]: json.loads(x)["gold_thread_id"] for x in lines}
    found = [(r["index"], r["thread_id"]) for r in map(json.loads, out.splitlines())
             if "thread_id" in r]
    by_gold: dict[str, set[str]] = {}
    by_found: dict[str, set[str]] = {}
    for i, f in found:
        g = gold[i]
        by_gold.setdefault(g, set()).add(f)
        by_found.setdefault(f, set()).add(g)
    return {"gold_threads": len(by_gold), "linker_threads": len(by_found),
            "gold_split": sum(len(v) > 1 for v in by_gold.values()),
            "linker_mixed": sum(len(v) > 1 for v in by_found.values()),
            "topic_not_current": sum(1 for t, topic in read.items()
                                     if current.get(t) not in (None, topic))}
