"""Where the linker's leave-one-source-out decisions go wrong, per held-out source.

usage: .venv/bin/python bench/link_errors.py PREDICTIONS [--source SRC ...] [--interleaving]
       [--json]

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

`--interleaving` splits the gold follow-ups instead: *linear* ones (the user's previous
prompt is in the same conversation) and *interleaved* ones (the user's previous prompt
belongs to another of their conversations), with the share of each that the linker put in
the right conversation, and the three figures (pairwise F1 / new-thread F1 / parent
accuracy) as decided and with every interleaved follow-up given its gold parent (threads
re-derived along the parent links): how much of what is left is interleaving. Its last
column gives only the wrongly threaded interleaved follow-ups that a later turn of their own
conversation linked to their gold parent (the bound on re-threading a turn once the next one
shows where it belongs).
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


def interleaving(pred: dict[int, dict[str, Any]], gold: dict[int, dict[str, Any]],
                 sources: set[str] | None) -> dict[str, Any]:
    """Per source (and pooled): follow-ups linear / interleaved, the share of each put in the
    right conversation, and the figures as decided and with interleaved follow-ups right."""
    from appliance.evaluate import score

    by_user: defaultdict[str, list[int]] = defaultdict(list)
    for i in sorted(gold, key=lambda i: (gold[i]["user"], gold[i]["t"], i)):
        by_user[gold[i]["user"]].append(i)
    prev = {b: a for ix in by_user.values() for a, b in zip(ix, ix[1:], strict=False)}
    inter = {i for i, g in gold.items()
             if g["parent"] is not None and i in prev and gold[prev[i]]["thread"] != g["thread"]}
    def wrong(i: int) -> bool:
        pp = pred[i].get("parent_index")
        return pp is None or gold[pp]["thread"] != gold[i]["thread"]

    # the wrongly threaded interleaved follow-ups that a later turn of their own
    # conversation was linked to (it dragged that turn along): what re-threading a turn
    # once the next one shows where it belongs could recover at most
    followed = {p["parent_index"] for j, p in pred.items() if p.get("parent_index") in pred
                and gold[p["parent_index"]]["thread"] == gold[j]["thread"]}
    cascade = {i for i in inter if i in pred and wrong(i) and i in followed}
    fixed, fixed_cascade = _gold_parents(pred, gold, by_user, inter), \
        _gold_parents(pred, gold, by_user, cascade)
    rows = {i: {"index": i, "user_id": g["user"], "gold_thread_id": g["thread"],
                "gold_parent_index": g["parent"], "source": g["source"]}
            for i, g in gold.items() if i in pred}
    groups: defaultdict[str, list[int]] = defaultdict(list)
    for i, r in rows.items():
        if not sources or r["source"] in sources:
            groups[r["source"]].append(i)
            groups["pooled"].append(i)
    keys = ("pair_F1", "newthread_F1", "parent_acc")
    out: dict[str, Any] = {}
    for src, ix in sorted(groups.items(), key=lambda kv: (kv[0] == "pooled", kv[0])):
        count: Counter[tuple[str, bool]] = Counter()
        for i in ix:
            if gold[i]["parent"] is None:
                continue
            pp = pred[i].get("parent_index")
            right = pp is not None and gold[pp]["thread"] == gold[i]["thread"]
            count[("interleaved" if i in inter else "linear", right)] += 1
        sg = [rows[i] for i in ix]
        as_decided, with_right = score(sg, pred), score(sg, fixed)
        with_cascade = score(sg, fixed_cascade)
        out[src] = {
            **{f"{k}_followups": count[(k, True)] + count[(k, False)]
               for k in ("linear", "interleaved")},
            **{f"{k}_thread_right": round(count[(k, True)] / max(1, count[(k, True)]
                                                                  + count[(k, False)]), 3)
               for k in ("linear", "interleaved")},
            "as_decided": [round(as_decided[k], 3) for k in keys],
            "interleaved_right": [round(with_right[k], 3) for k in keys],
            "cascade_followups": sum(1 for i in ix if i in cascade),
            "cascade_right": [round(with_cascade[k], 3) for k in keys]}
    return out


def _gold_parents(pred: dict[int, dict[str, Any]], gold: dict[int, dict[str, Any]],
                  by_user: dict[str, list[int]], which: set[int]) -> dict[int, dict[str, Any]]:
    """The decisions with the prompts in `which` given their gold parent, and every thread
    re-derived along the parent links."""
    fixed = {i: dict(p) for i, p in pred.items()}
    thread: dict[int, str] = {}
    for ix in by_user.values():
        for i in ix:
            if i not in fixed:
                continue
            if i in which:
                fixed[i]["parent_index"] = gold[i]["parent"]
            parent = fixed[i].get("parent_index")
            thread[i] = thread.get(parent, f"o{i}") if parent is not None else f"o{i}"
            fixed[i]["thread_id"] = thread[i]
    return fixed


def print_interleaving(res: dict[str, Any]) -> None:
    print("| source | follow-ups | interleaved | conversation right: linear / interleaved "
          "| as decided | interleaved follow-ups right | followed wrong ones right |")
    print("|---|---|---|---|---|---|---|")
    for src, r in res.items():
        n = r["linear_followups"] + r["interleaved_followups"]
        print(f"| {src} | {n:,} | {r['interleaved_followups']:,} "
              f"({r['interleaved_followups'] / max(n, 1):.0%}) | {r['linear_thread_right']:.3f} / "
              f"{r['interleaved_thread_right']:.3f} | "
              + " / ".join(f"{v:.3f}" for v in r["as_decided"]) + " | "
              + " / ".join(f"{v:.3f}" for v in r["interleaved_right"]) + " | "
              + f"{r['cascade_followups']}: "
              + " / ".join(f"{v:.3f}" for v in r["cascade_right"]) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", type=Path)
    ap.add_argument("--source", action="append", default=[])
    ap.add_argument("--interleaving", action="store_true",
                    help="follow-ups after another conversation's turn, and what they cost")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    try:
        pred = {p["index"]: p for p in map(json.loads, a.predictions.read_text().splitlines())}
        gold = load_gold()
        res = (interleaving if a.interleaving else tally)(pred, gold, set(a.source) or None)
    except (OSError, ValueError, KeyError) as exc:
        print(f"Cannot read the predictions in {a.predictions}: {exc}.", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(res, indent=1))
        return 0
    if a.interleaving:
        print_interleaving(res)
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
