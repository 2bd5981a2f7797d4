"""How the linker labels the prompts it starts as new threads: `new` or `orphaned`.

usage: OMP_NUM_THREADS=1 nice .venv/bin/python bench/orphan_labels.py [--examples N] [--json]

Over dev + wide (../shared/bench/threads-*.jsonl, prepared and cached by
bench/train_linker.py), every user's stream is decoded by the shipped linker
(policies/linker-weights.json) with each prompt's opener probability cross-fitted
by source (from an opener model that never saw that prompt's source). Of the
prompts the linker starts as a new thread, and of the follow-ups, three groups
matter:

* gold openers (the first turn of a conversation): they should read `new`;
* gold follow-ups the linker split off: `orphaned` is meant for these (a
  follow-up with nothing found to follow);
* gold follow-ups with a follow-up cue, each as a user's first prompt (nothing
  to follow): what `orphaned` is for.

"before" is the rule before 2026-12-06 (any follow-up cue of `cue_names`),
"after" `decide.new_position` (`cues.orphan_cues`). A further condition, the
opener probability below a threshold, is chosen by leave-one-source-out: for
each source, the grid value with the best Youden index (openers kept `new` +
first-prompt follow-ups called `orphaned` - 1) over the other 11 sources,
applied to the held-out one (1.0 = no such condition). The pair and decision
models are the shipped ones (trained on every source), so which prompts start a
thread is in-sample; the labels' inputs are not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from train_linker import (  # noqa: E402
    BENCH,
    Openers,
    _query,
    load_streams,
    walk,
    with_openers,
)

from appliance.config import load_policies  # noqa: E402
from appliance.cues import cue_names  # noqa: E402
from appliance.link import VectorCache, decide  # noqa: E402
from appliance.link.decide import new_position  # noqa: E402
from appliance.link.features import ORPHAN_CUES  # noqa: E402
from appliance.link.model import load_model  # noqa: E402

GRID = [round(0.05 * k, 2) for k in range(1, 21)]  # 1.0 = the opener probability ignored
SETTINGS = load_policies().correlation


def decode() -> list[dict[str, Any]]:
    """Every prompt as the shipped linker decides it, with the label rule's inputs."""
    s = load_policies().correlation
    _, users = load_streams(sorted(BENCH.glob("threads-*.jsonl")))
    label = {t.index: t.source for ts in users.values() for t in ts}
    print(f"  cross-fitting opener probabilities over {len(set(label.values()))} sources",
          file=sys.stderr)
    ops = Openers(users)
    probs = ops.crossfit(label, None)
    users = with_openers(users, probs, dict.fromkeys(probs, 0.5))
    model, cache = load_model(s), VectorCache()
    out: list[dict[str, Any]] = []
    for turns in users.values():
        def visit(t: Any, cands: list[Any]) -> tuple[str | None, int | None]:
            link = decide(_query(t), cands, model, s, cache)
            out.append({"source": t.source, "opener_gold": t.gold_parent is None,
                        "cues": cue_names(t.text), "score": link.score or 0.0,
                        "opener": t.opener, "position": link.position, "text": t.text,
                        "started": link.parent_id is None})
            return link.thread_id or f"p{t.index}", link.parent_id
        walk(turns, s, visit)
    return out


def orphaned(r: dict[str, Any], orphan_opener: float | None, *, alone: bool = False) -> bool:
    """The label rule on one prompt: the rule before 2026-12-06 (`orphan_opener` None: any
    follow-up cue, link probability below `orphan_threshold`), else `decide.new_position`
    with the opener probability below `orphan_opener` as a further condition (1.0: none).
    `alone`: as a user's first prompt (nothing to follow, probability 0)."""
    score = 0.0 if alone else r["score"]
    if orphan_opener is None:
        return bool(r["cues"] & ORPHAN_CUES) and score < SETTINGS.orphan_threshold
    return (new_position(r["text"], score, SETTINGS) == "orphaned"
            and r["opener"] < orphan_opener)


def rates(rows: list[dict[str, Any]], g: float | None) -> tuple[int, int, int, int, int, int]:
    """(openers started, of them orphaned; follow-ups the linker started, of them orphaned;
    follow-ups with follow-up cues as a first prompt, of them orphaned)."""
    c = [0] * 6
    for r in rows:
        if r["opener_gold"]:
            if r["started"]:
                c[0], c[1] = c[0] + 1, c[1] + orphaned(r, g)
        else:
            if r["started"]:
                c[2], c[3] = c[2] + 1, c[3] + orphaned(r, g)
            if r["cues"] & ORPHAN_CUES:
                c[4], c[5] = c[4] + 1, c[5] + orphaned(r, g, alone=True)
    return c[0], c[1], c[2], c[3], c[4], c[5]


def youden(c: tuple[int, ...]) -> float:
    """Openers kept `new` + cued follow-ups with nothing to follow called `orphaned` - 1."""
    return (1 - c[1] / max(c[0], 1)) + c[5] / max(c[4], 1) - 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=0,
                    help="print this many openers still labelled orphaned (public bench text)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = decode()
    by_src: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_src[r["source"]].append(r)
    result: dict[str, Any] = {"folds": {}}
    chosen: dict[str, float] = {}
    for src in sorted(by_src):
        rest = [r for r in rows if r["source"] != src]
        best = max(GRID, key=lambda g: (round(youden(rates(rest, g)), 6), -g))
        chosen[src] = best
        result["folds"][src] = {"orphan_opener": best, "before": rates(by_src[src], None),
                                "after": rates(by_src[src], 1.0),
                                "gated": rates(by_src[src], best)}
    result["pooled"] = {"before": rates(rows, None), "after": rates(rows, 1.0),
                        "gated": tuple(map(sum, zip(*(f["gated"] for f in
                                                      result["folds"].values()),
                                                    strict=True)))}
    result["grid_all_sources"] = {g: rates(rows, g) for g in GRID}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for when, g in (("before", None), ("after", 1.0)):
        mix = {True: Counter(), False: Counter()}
        for r in rows:
            pos = r["position"]
            if r["started"]:
                orphan = orphaned(r, g)
                pos = "orphaned" if orphan else "new"
            if r["started"] or r["opener_gold"]:
                mix[r["opener_gold"]][pos] += 1
        result[f"positions_{when}"] = {"openers": dict(mix[True]),
                                       "split_followups": dict(mix[False])}
        print(f"positions {when}: all gold openers {dict(mix[True])}; gold follow-ups the "
              f"linker starts as a thread {dict(mix[False])}")
    print("| held-out source | openers started | orphaned before -> after | "
          "follow-ups started | orphaned before -> after | cued follow-ups as a first prompt | "
          "orphaned before -> after | opener gate by LOSO | openers, follow-ups orphaned |")
    print("|---|---|---|---|---|---|---|---|---|")

    def pct(k: int, n: int) -> str:
        return f"{k} ({k / max(n, 1):.1%})"

    for src, f in [*result["folds"].items(), ("**pooled**", {**result["pooled"],
                                                              "orphan_opener": ""})]:
        b, a, c = f["before"], f["after"], f["gated"]
        print(f"| {src} | {b[0]:,} | {pct(b[1], b[0])} -> {pct(a[1], a[0])} | {b[2]:,} | "
              f"{pct(b[3], b[2])} -> {pct(a[3], a[2])} | {b[4]:,} | {pct(b[5], b[4])} -> "
              f"{pct(a[5], a[4])} | {f['orphan_opener']} | {c[1]}, {c[5]} |")
    print("all sources, (openers orphaned, follow-ups started orphaned, first-prompt follow-ups"
          " orphaned) by orphan_opener:", {g: c[1::2] for g, c in
                                           result["grid_all_sources"].items()})
    if args.examples:
        left = [r for r in rows if r["opener_gold"] and r["started"] and orphaned(r, 1.0)]
        for r in left[:args.examples]:
            print(f"  {r['source']}: opener={r['opener']:.2f} {sorted(r['cues'])} {r['text']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
