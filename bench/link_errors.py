"""Where the linker's leave-one-source-out decisions go wrong, per held-out source.

usage: .venv/bin/python bench/link_errors.py PREDICTIONS [--source SRC ...] [--json]

PREDICTIONS is the file `bench/train_linker.py --dump-predictions` writes (one decision per
prompt, indices as train_linker numbers them: stream number * 1,000,000 + index). Every
prompt falls in one class:

* `new_ok` / `link_ok`: a new thread that the linker started, a follow-up linked to its gold
  parent (`wrong_parent`: to another turn of its gold thread);
* `merge_same` / `merge_other`: a gold new conversation joined to an earlier one of the same
  source or of another source (the user's interleaved conversations);
* `wrong_same` / `wrong_other`: a follow-up linked into another conversation;
* `split`: a follow-up that started a new thread.

Each error class is also counted by the gap since the user's previous prompt. Numbers only,
no prompt text.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO.parent / "shared" / "bench"
if not BENCH.exists():  # a worktree under /work/wt/<branch>
    BENCH = REPO.parents[1] / "shared" / "bench"
STREAM_STRIDE = 1_000_000  # as in train_linker.py
GAPS = (30, 120, 300, 900, 3600)  # seconds; the last bucket is "longer"
CLASSES = ("new_ok", "link_ok", "wrong_parent", "merge_same", "merge_other", "wrong_same",
           "wrong_other", "split")


def load_gold() -> dict[int, dict[str, Any]]:
    """Gold rows of every threads-*.jsonl stream, numbered as train_linker numbers them."""
    gold: dict[int, dict[str, Any]] = {}
    for k, path in enumerate(sorted(BENCH.glob("threads-*.jsonl"))):
        off = k * STREAM_STRIDE
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            g = json.loads(line)
            parent = g["gold_parent_index"]
            gold[g["index"] + off] = {
                "user": f"{k}:{g['user_id']}", "thread": f"{k}:{g['gold_thread_id']}",
                "parent": None if parent is None else parent + off, "source": g["source"],
                "t": datetime.fromisoformat(g["ts"].replace("Z", "+00:00")).timestamp()}
    return gold


def classify(g: dict[str, Any], p: dict[str, Any], gold: dict[int, dict[str, Any]]) -> str:
    """The class of one decision (see the module's docstring)."""
    gp, pp = g["parent"], p.get("parent_index")
    if pp is None:
        return "new_ok" if gp is None else "split"
    same = "same" if gold[pp]["source"] == g["source"] else "other"
    if gp is None:
        return f"merge_{same}"
    if gold[pp]["thread"] != g["thread"]:
        return f"wrong_{same}"
    return "link_ok" if pp == gp else "wrong_parent"


def bucket(gap: float | None) -> str:
    if gap is None:
        return "first"
    return next((f"<={b}s" for b in GAPS if gap <= b), "longer")


def tally(pred: dict[int, dict[str, Any]], gold: dict[int, dict[str, Any]],
          sources: set[str] | None) -> dict[str, Any]:
    """Per source: prompts per class, and per error class the prompts per gap bucket."""
    by_user: defaultdict[str, list[int]] = defaultdict(list)
    for i in sorted(gold):
        by_user[gold[i]["user"]].append(i)
    prev = {b: a for ix in by_user.values() for a, b in zip(ix, ix[1:], strict=False)}
    out: dict[str, Any] = {}
    for i, p in sorted(pred.items()):
        g = gold[i]
        if sources and g["source"] not in sources:
            continue
        cls = classify(g, p, gold)
        src = out.setdefault(g["source"], {"classes": Counter(), "gaps": defaultdict(Counter)})
        src["classes"][cls] += 1
        if not cls.endswith("_ok"):
            src["gaps"][cls][bucket(g["t"] - gold[prev[i]]["t"] if i in prev else None)] += 1
    return {s: {"classes": {c: v["classes"][c] for c in CLASSES},
                "gaps": {c: dict(v["gaps"][c]) for c in CLASSES if c in v["gaps"]}}
            for s, v in sorted(out.items())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", type=Path)
    ap.add_argument("--source", action="append", default=[])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    try:
        pred = {p["index"]: p for p in map(json.loads, a.predictions.read_text().splitlines())}
        res = tally(pred, load_gold(), set(a.source) or None)
    except (OSError, ValueError, KeyError) as exc:
        print(f"Cannot read the predictions in {a.predictions}: {exc}.", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(res, indent=1))
        return 0
    print("| source | " + " | ".join(CLASSES) + " |")
    print("|---" * (len(CLASSES) + 1) + "|")
    for src, r in res.items():
        print(f"| {src} | " + " | ".join(str(r["classes"][c]) for c in CLASSES) + " |")
    order = ("first", *(f"<={b}s" for b in GAPS), "longer")
    print("\nerrors by gap since the user's previous prompt")
    for src, r in res.items():
        for cls, gaps in r["gaps"].items():
            print(f"  {src} {cls}: " + ", ".join(f"{b} {gaps[b]}" for b in order if b in gaps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
