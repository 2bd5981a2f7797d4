"""Per-tenant threshold calibration rules, compared leave-one-source-out, offline.

usage: nice .venv/bin/python bench/calibration.py RUN.json DUMP [--rule NAME=SPEC ...]

RUN.json is the JSON printed by `bench/train_linker.py --calibrate --thresholds T1,T2,...
--dump-predictions DUMP` (the first JSON value of its standard output), DUMP the same path:
the run wrote every held-out decision at each threshold to DUMP.<threshold>. For each
held-out source the run split its users in two halves and kept each half's tally (what the
service tallies from history-linked traffic). Here each rule re-chooses every half's
threshold from its tally (`calibrate.choose`), and the other half is scored at it, as the
run itself does: a user's stream is decoded alone, so the decisions of a half at a threshold
are the run's decisions at that threshold for its users. The rule the run used reproduces
its "calibrated" figures exactly (checked, and printed). Needs no model, no scikit-learn.

A rule SPEC: comma-separated `min_side=N`, `prior=W`, `shrink=K`, `shrink_new=K`, `lo=T`,
`hi=T`, `z=Z` over the shipped rule (`appliance/link/calibrate.py`); `old` is the rule
before 2026-12-07 (no side minimum, no shrinking, no bounds).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BENCH = REPO.parent / "shared" / "bench"

from appliance.config import load_policies  # noqa: E402
from appliance.evaluate import score  # noqa: E402
from appliance.link.calibrate import Rule, Tally, choose  # noqa: E402

HEADLINE = ("pair_F1", "newthread_F1", "parent_acc")
STREAM_STRIDE = 1_000_000  # as bench/train_linker.py numbers the streams' prompts
OLD = Rule(min_side=1, prior=0.0, bounds=(0.0, 1.0), shrink=0.0, shrink_new=0.0)


def gold_rows(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Gold rows with global indices and users, as bench/train_linker.py loads them."""
    rows: list[dict[str, Any]] = []
    for k, path in enumerate(paths):
        off = k * STREAM_STRIDE
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            g = json.loads(line)
            parent = g["gold_parent_index"]
            rows.append({**g, "index": g["index"] + off, "user_id": f"{k}:{g['user_id']}",
                         "gold_thread_id": f"{k}:{g['gold_thread_id']}",
                         "gold_parent_index": None if parent is None else parent + off})
    return rows


def parse_rule(spec: str, base: Rule) -> Rule:
    if spec == "old":
        return OLD
    r = base
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        if key == "min_side":
            r = replace(r, min_side=int(value))
        elif key == "prior":
            r = replace(r, prior=float(value))
        elif key == "lo":
            r = replace(r, bounds=(float(value), r.bounds[1]))
        elif key == "hi":
            r = replace(r, bounds=(r.bounds[0], float(value)))
        elif key == "z":
            r = replace(r, z=float(value))
        elif key == "shrink":
            r = replace(r, shrink=float(value))
        elif key == "shrink_new":
            r = replace(r, shrink_new=float(value))
        else:
            raise SystemExit(f"--rule: no setting {key!r} (min_side, prior, shrink, lo, hi, "
                             "z)")
    return r


def evaluate(run: dict[str, Any], decisions: dict[float, dict[int, dict[str, Any]]],
             gold: list[dict[str, Any]], rule: Rule, policy: float,
             min_decisions: int) -> dict[str, Any]:
    """Per fold: both halves' choices under `rule` and the fold's figures; and the mean."""
    user_of = {g["index"]: g["user_id"] for g in gold}
    source_of = {g["index"]: g["source"] for g in gold}
    grid = sorted(decisions)
    folds: dict[str, Any] = {}
    pooled: dict[int, dict[str, Any]] = {}
    for fold, halves in sorted(run["loso"]["calibrated"]["choices"].items()):
        test = {i for i, s in source_of.items() if s == fold}
        pred: dict[int, dict[str, Any]] = {}
        picked = []
        for h, half in enumerate(halves):
            tally = Tally(tuple(half["attach"]), tuple(half["new"]))
            c = choose(tally, policy, min_decisions, grid, rule)
            picked.append({"threshold": c.threshold, "source": c.source,
                           "decisions": c.decisions, "attach": round(sum(tally.attach)),
                           "new": round(sum(tally.new)), "gain": c.gain})
            other = set(halves[1 - h]["users"])
            at = decisions[min(grid, key=lambda t: abs(t - c.threshold))]
            pred.update({i: p for i, p in at.items() if i in test and user_of[i] in other})
        pooled.update(pred)
        f = score(gold, pred, test)
        folds[fold] = {"figures": {k: f[k] for k in HEADLINE}, "choices": picked}
    mean = sum(f["figures"][k] for f in folds.values() for k in HEADLINE) / (3 * len(folds))
    everything = {i for i, s in source_of.items() if s in folds}
    p = score(gold, pooled, everything)
    return {"folds": folds, "mean": round(mean, 4), "pooled": {k: p[k] for k in HEADLINE}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("dump", type=Path)
    ap.add_argument("--rule", action="append", default=[], metavar="NAME=SPEC")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    text = a.run.read_text()
    run, _ = json.JSONDecoder().raw_decode(text[text.index("{"):])
    s = load_policies().correlation
    policy, min_decisions = s.link_threshold, s.calibration.min_decisions
    decisions = {}
    for path in sorted(a.dump.parent.glob(a.dump.name + ".*")):
        suffix = path.name[len(a.dump.name) + 1:]
        if suffix.replace(".", "", 1).isdigit():
            decisions[float(suffix)] = {p["index"]: p for p in map(
                json.loads, path.read_text().splitlines())}
    gold = gold_rows(sorted(BENCH.glob("threads-*.jsonl")))
    cal = s.calibration
    shipped = Rule(min_side=cal.min_each_side, shrink=cal.shrink_continuations,
                   shrink_new=cal.shrink_new)
    rules = {"old": OLD, "shipped": shipped}
    for item in a.rule:
        name, _, spec = item.partition("=")
        rules[name] = parse_rule(spec, shipped)
    out = {name: evaluate(run, decisions, gold, r, policy, min_decisions)
           for name, r in rules.items()}
    ran = run["loso"]["calibrated"]["folds"]
    same = all(abs(out["old"]["folds"][f]["figures"][k] - ran[f][k]) < 1e-9
               for f in ran for k in HEADLINE)
    if a.json:
        print(json.dumps({"reproduces_run": same, "rules": out}, indent=1))
        return 0
    print(f"the run's own calibrated figures reproduced by the rule 'old': {same}")
    for name, res in out.items():
        print(f"\n{name}: {rules[name]}\n")
        print("| held-out source | figures | choices (threshold, continuations / new) |")
        print("|---|---|---|")
        for fold, f in res["folds"].items():
            figs = " / ".join(f"{f['figures'][k]:.3f}" for k in HEADLINE)
            chs = "; ".join(f"{c['threshold']} ({c['source']}, {c['attach']} / {c['new']})"
                            for c in f["choices"])
            print(f"| {fold} | {figs} | {chs} |")
        pooled = " / ".join(f"{res['pooled'][k]:.3f}" for k in HEADLINE)
        print(f"| **pooled** | {pooled} | |\n\nmean of the folds' three figures: {res['mean']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
