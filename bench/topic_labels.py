"""Topic label benchmark: does a topic's label say what its threads have in common?

Runs the production `TopicAssigner` (shipped settings, scratch SQLCipher store)
over the dev and wide streams, redacted and embedded once (bench/topic_data.py),
with the gold threads, then labels every topic as a refinement publishes it
(`topics.rows.topic_rows`: topics of at least `k_min_users` people). For each
labelled topic:

* coverage: the share of the topic's threads (and of its content prompts) that
  use one of the label's phrases (plurals folded, as the labels are built);
* specificity: the share of the stream's threads using the label's first phrase
  that are in this topic (1: no other topic uses it); the same averaged over
  every phrase of the label (a second phrase may be a word other topics use);
* shared: whether another topic of the same stream carries the same label.

A label built from a phrase that two threads of thirty share has a coverage of
0.07; one that names what most of them ask about, 0.5 or more. Prints figures;
asserts nothing.

    .venv/bin/python bench/topic_labels.py [--json] [--examples 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_data import load_stream  # noqa: E402
from topics import run, settings, thread_ids  # noqa: E402

from appliance.topics.rows import topic_rows  # noqa: E402


def label_figures(ta: Any, k_min_users: int) -> list[dict[str, Any]]:
    """Per labelled topic: its size, label, and the share of threads and prompts using it."""
    state = ta._state("acme")
    members: dict[str, list[Any]] = {}
    for unit in state.units.values():
        if unit.topic and unit.prompts:
            members.setdefault(unit.topic, []).append(unit)
    using: Counter[str] = Counter()
    for units in members.values():
        for u in units:
            using.update(u.phrases.keys())
    out = []
    for row in topic_rows(state, k_min_users):
        if not row.label:
            continue
        units = members.get(row.topic_id, [])
        wanted = row.label.split(", ")
        threads = sum(any(p in u.phrases for p in wanted) for u in units)
        prompts = sum(max((u.phrases.get(p, 0) for p in wanted), default=0) for u in units)
        out.append({"topic": row.topic_id, "label": row.label, "threads": len(units),
                    "users": row.users, "prompts": sum(u.prompts for u in units),
                    "thread_coverage": threads / max(len(units), 1),
                    "prompt_coverage": prompts / max(sum(u.prompts for u in units), 1),
                    "specificity": sum(wanted[0] in u.phrases for u in units)
                    / max(using[wanted[0]], 1),
                    "specificity_every_phrase": statistics.fmean(
                        sum(p in u.phrases for u in units) / max(using[p], 1) for p in wanted)})
    counts = Counter(r["label"] for r in out)
    for r in out:
        r["shared"] = counts[r["label"]] > 1
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Coverage over the labelled topics: median, mean, share under 0.2, shared labels."""
    if not rows:
        return {"labelled": 0}
    cov = [r["thread_coverage"] for r in rows]
    weighted = sum(r["thread_coverage"] * r["threads"] for r in rows) / sum(
        r["threads"] for r in rows)
    return {"labelled": len(rows),
            "thread_coverage_median": round(statistics.median(cov), 3),
            "thread_coverage_mean": round(statistics.fmean(cov), 3),
            "thread_coverage_by_thread": round(weighted, 3),
            "prompt_coverage_mean": round(statistics.fmean(
                r["prompt_coverage"] for r in rows), 3),
            "under_0.2": round(sum(c < 0.2 for c in cov) / len(cov), 3),
            "specificity_mean": round(statistics.fmean(r["specificity"] for r in rows), 3),
            "specificity_every_phrase_mean": round(statistics.fmean(
                r["specificity_every_phrase"] for r in rows), 3),
            "shared_label": round(sum(r["shared"] for r in rows) / len(rows), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="Print every labelled topic as JSON.")
    ap.add_argument("--examples", type=int, default=8,
                    help="Largest topics to print with their label and coverage.")
    args = ap.parse_args()
    cfg = settings()
    report: dict[str, Any] = {}
    for name in ("dev", "wide"):
        stream = load_stream(name)
        _, _, _, ta = run(stream, thread_ids(stream, "gold", None), cfg)
        rows = label_figures(ta, cfg.k_min_users)
        report[name] = {"summary": summary(rows),
                        "largest": sorted(rows, key=lambda r: -r["threads"])[:args.examples]}
        if args.json:
            report[name]["topics"] = rows
    if args.json:
        print(json.dumps(report, indent=1))
        return
    for name, part in report.items():
        print(name, json.dumps(part["summary"]))
        for r in part["largest"]:
            print(f"  {r['threads']:>4} threads {r['users']:>3} people  "
                  f"coverage {r['thread_coverage']:.2f} / {r['prompt_coverage']:.2f}  "
                  f"{r['label']}")


if __name__ == "__main__":
    main()
