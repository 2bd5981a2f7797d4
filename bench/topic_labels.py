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

With --loso the label rule's parameters (`terms.phrase_label`: F-beta, bonus per
extra word, second-phrase score share and thread share) are chosen on all sources
but one (mean per-source F1 of coverage and every-phrase specificity) and scored
on the held-out one, each topic counted for the source of most of its prompts.

    .venv/bin/python bench/topic_labels.py [--json] [--examples 10] [--loso]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from label_judge import generic_reasons, judge, judged_summary, majority_subject  # noqa: E402
from topic_data import load_stream  # noqa: E402
from topics import run, settings, thread_ids  # noqa: E402

from appliance.topics.rows import LabelInput, label_inputs, tenant_words  # noqa: E402
from appliance.topics.terms import (  # noqa: E402
    LABEL_COMMON_SHARE,
    LABEL_MIN_SCORE,
    LABEL_MIN_SHARE,
    LABEL_SECOND_SHARE,
    LABEL_STOP,
    LABEL_WORD_BONUS,
    PHRASE_STOP,
    phrase_label,
)

Prepared = tuple[list[LabelInput], Counter[str]]


def prepare(ta: Any, k_min_users: int) -> Prepared:
    """The topics that get a label (k_min_users people), and threads using each phrase."""
    inputs = list(label_inputs(ta._state("acme")))
    using: Counter[str] = Counter()
    for t in inputs:
        for u in t.members:
            using.update(u.phrases.keys())
    return [t for t in inputs if t.users >= k_min_users], using


def label_figures(prepared: Prepared, source_of: dict[str, str] | None = None,
                  gold_of: dict[str, str | None] | None = None,
                  **params: float) -> list[dict[str, Any]]:
    """Per topic of `k_min_users` people: its size, label (None: none qualified), the share
    of threads and prompts using it, and the judge's verdict (bench/label_judge.py).

    `params` go to `terms.phrase_label` (none: the shipped label), but `common_share`,
    the share of `rows.tenant_words`; `source_of` maps a thread id to its bench source,
    to name each topic's majority source, `gold_of` to its gold topic.
    """
    inputs, using = prepared
    share = params.pop("common_share", LABEL_COMMON_SHARE)
    common = tenant_words(inputs, 0, share=share)
    judge_common = tenant_words(inputs, 0)  # the judge's: more than half, whatever is tuned
    out = []
    for t in inputs:
        units = t.members
        label = phrase_label(t.counts, t.background, units=len(units),
                             common=common.get(t.scope, frozenset()), **params)
        by_source: Counter[str] = Counter()
        for u in units:
            by_source[(source_of or {}).get(u.thread_id, "?")] += u.prompts
        gold = majority_subject((gold_of or {}).get(u.thread_id) for u in units)
        row: dict[str, Any] = {
            "topic": t.topic_id, "label": label, "threads": len(units), "users": t.users,
            "prompts": sum(u.prompts for u in units), "source": by_source.most_common(1)[0][0],
            "gold": gold, "judged": judge(label, gold),
            "generic": generic_reasons(label or "", judge_common.get(t.scope, frozenset()),
                                       PHRASE_STOP, LABEL_STOP)}
        out.append(row)
        if not label:
            continue
        wanted = label.split(", ")
        threads = sum(any(p in u.phrases for p in wanted) for u in units)
        prompts = sum(max((u.phrases.get(p, 0) for p in wanted), default=0) for u in units)
        row.update({"thread_coverage": threads / max(len(units), 1),
                    "prompt_coverage": prompts / max(sum(u.prompts for u in units), 1),
                    "specificity": sum(wanted[0] in u.phrases for u in units)
                    / max(using[wanted[0]], 1),
                    "specificity_every_phrase": statistics.fmean(
                        sum(p in u.phrases for u in units) / max(using[p], 1)
                        for p in wanted)})
    counts = Counter(r["label"] for r in out if r["label"])
    for r in out:
        r["shared"] = counts[r["label"]] > 1 if r["label"] else False
    return out


def summary(every: list[dict[str, Any]]) -> dict[str, float]:
    """Coverage over the labelled topics: median, mean, share under 0.2, shared labels;
    the judge's figures over every topic of `k_min_users` people (bench/label_judge.py)."""
    rows = [r for r in every if r["label"]]
    if not rows:
        return {"labelled": 0, **judged_summary(every)}
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
            "shared_label": round(sum(r["shared"] for r in rows) / len(rows), 3),
            **judged_summary(every)}


# The label rule's parameters searched by --loso (`terms.phrase_label`); a second share
# above 1 never appends a second phrase.
GRID = {"beta": (0.5, 0.75, 1.0, 1.5, 2.0), "word_bonus": (0.0, 0.15, 0.35, 0.5),
        "second_share": (0.4, 0.5, 0.6, 0.7, 1.01), "min_share": (0.3, 0.5, 0.7)}
SHIPPED = {"beta": 1.0, "word_bonus": LABEL_WORD_BONUS, "second_share": LABEL_SECOND_SHARE,
           "min_share": LABEL_MIN_SHARE}


def source_scores(every: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per majority source of the labelled topics: coverage (weighted by threads), first
    and every-phrase specificity, and their F1 (coverage against every-phrase specificity);
    and of its judged topics (bench/label_judge.py), the accepted and wrong shares and
    `net` (accepted - wrong: a wrong label costs what a right one gains, none costs 0)."""
    out = {}
    for src in sorted({r["source"] for r in every}):
        judged = [r for r in every if r["source"] == src and r["judged"] != "unjudged"]
        mine = [r for r in every if r["source"] == src and r["label"]]
        cov = sum(r["thread_coverage"] * r["threads"] for r in mine) / max(sum(
            r["threads"] for r in mine), 1)
        spec = statistics.fmean(r["specificity"] for r in mine) if mine else 0.0
        every_p = statistics.fmean(r["specificity_every_phrase"] for r in mine) if mine else 0.0
        n = max(len(judged), 1)
        acc = sum(r["judged"] == "accepted" for r in judged) / n
        wrong = sum(r["judged"] == "wrong" for r in judged) / n
        out[src] = {"topics": len(mine), "coverage": cov, "specificity": spec,
                    "every_phrase": every_p,
                    "f1": 2 * cov * every_p / max(cov + every_p, 1e-9),
                    "judged": float(len(judged)), "accepted": acc, "wrong": wrong,
                    "net": acc - wrong}
    return out


def loso(prepared: dict[str, Prepared], source_of: dict[str, dict[str, str]],
         gold_of: dict[str, dict[str, str | None]]) -> dict[str, Any]:
    """Choose the label rule's parameters on the other sources, score the held-out one."""
    cells = [dict(zip(GRID, v, strict=True)) for v in itertools.product(*GRID.values())]
    if SHIPPED not in cells:
        cells.append(SHIPPED)
    table = []
    for i, cell in enumerate(cells):
        rows = [r for name, p in prepared.items()
                for r in label_figures(p, source_of[name], gold_of[name], **cell)]
        table.append((cell, source_scores(rows)))
        if i % 50 == 0:
            print(f"  cell {i + 1} of {len(cells)}", file=sys.stderr)
    shipped = next(sc for c, sc in table if c == SHIPPED)
    folds = []
    for held in sorted(shipped):
        train = [s for s in shipped if s != held]

        def fitness(item: tuple[dict[str, float], Any], train: list[str] = train) -> float:
            return statistics.fmean(item[1][s]["f1"] for s in train)

        best = max(table, key=fitness)  # first best in grid order
        folds.append({"held_out": held, "topics": shipped[held]["topics"], "chosen": best[0],
                      "train_f1": round(fitness(best), 3),
                      "held_out_scores": {k: round(v, 3) for k, v in best[1][held].items()},
                      "shipped_scores": {k: round(v, 3) for k, v in shipped[held].items()}})
    held = {k: round(statistics.fmean(f[k]["f1"] for f in folds), 3)
            for k in ("held_out_scores", "shipped_scores")}
    return {"objective": "mean over the training sources of F1(coverage weighted by threads, "
                         "every-phrase specificity)", "cells": len(cells), "folds": folds,
            "held_out_f1_mean": held["held_out_scores"],
            "shipped_f1_mean": held["shipped_scores"],
            "shipped_in_sample": round(fitness((SHIPPED, shipped), list(shipped)), 3),
            "best_in_sample": max(table, key=lambda it: statistics.fmean(
                it[1][s]["f1"] for s in shipped))[0]}


# The least score a label's first phrase needs (`terms.LABEL_MIN_SCORE`), searched by
# --loso-floor in ascending order (0: always a label); the share of topics that makes a
# word the tenant's stays the brief's "most" (`terms.LABEL_COMMON_SHARE`, 0.5).
FLOOR_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.45)


def loso_floor(prepared: dict[str, Prepared], source_of: dict[str, dict[str, str]],
               gold_of: dict[str, dict[str, str | None]]) -> dict[str, Any]:
    """Choose `min_score` on the other sources, the rest shipped: the best mean `net` over
    the training sources with judged topics, the lowest floor of the best (label the
    most topics)."""
    table = []
    for floor in FLOOR_GRID:
        rows = [r for name, p in prepared.items()
                for r in label_figures(p, source_of[name], gold_of[name], min_score=floor)]
        table.append((floor, source_scores(rows)))
    shipped = next(sc for c, sc in table if c == LABEL_MIN_SCORE)
    judged = [s for s in shipped if shipped[s]["judged"]]
    folds = []
    for held in judged:
        train = [s for s in judged if s != held]

        def fitness(item: tuple[float, Any], train: list[str] = train) -> float:
            return round(statistics.fmean(item[1][s]["net"] for s in train), 6)

        best = max(table, key=fitness)  # the first (lowest) of the best
        folds.append({"held_out": held, "chosen": best[0], "train_net": fitness(best),
                      "held_out_scores": {k: round(v, 3) for k, v in best[1][held].items()},
                      "shipped_scores": {k: round(v, 3) for k, v in shipped[held].items()}})
    return {"objective": "mean net (accepted - wrong share of judged topics) over the "
                         "training sources with judged topics, lowest floor of the best",
            "grid": FLOOR_GRID, "folds": folds,
            "held_out_net_mean": round(statistics.fmean(
                f["held_out_scores"]["net"] for f in folds), 3),
            "shipped_net_mean": round(statistics.fmean(
                f["shipped_scores"]["net"] for f in folds), 3),
            "all_sources": max(table, key=lambda it: fitness(it, judged))[0],
            "per_floor": {c: {s: round(sc[s]["net"], 3) for s in judged} for c, sc in table}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="Print every labelled topic as JSON.")
    ap.add_argument("--examples", type=int, default=8,
                    help="Largest topics to print with their label and coverage.")
    ap.add_argument("--loso", action="store_true",
                    help="Leave one source out: choose the label rule's parameters on the "
                         "other sources, score the held-out one, print every fold.")
    ap.add_argument("--loso-floor", action="store_true",
                    help="Leave one source out for the least score of a label "
                         "(`terms.LABEL_MIN_SCORE`), the rest shipped.")
    args = ap.parse_args()
    cfg = settings()
    report: dict[str, Any] = {}
    prepared: dict[str, Prepared] = {}
    source_of: dict[str, dict[str, str]] = {}
    gold_of: dict[str, dict[str, str | None]] = {}
    for name in ("dev", "wide"):
        stream = load_stream(name)
        ids = thread_ids(stream, "gold", None)
        source_of[name] = {t: r["source"] for t, r in zip(ids, stream.rows, strict=True)}
        gold_of[name] = {}
        for t, r in zip(ids, stream.rows, strict=True):  # a thread's first prompt's gold
            gold_of[name].setdefault(t, r["gold_topic_id"])
        _, _, _, ta = run(stream, ids, cfg)
        prepared[name] = prepare(ta, cfg.k_min_users)
        rows = label_figures(prepared[name], source_of[name], gold_of[name])
        report[name] = {"summary": summary(rows),
                        "largest": sorted(rows, key=lambda r: -r["threads"])[:args.examples]}
        if args.json:
            report[name]["topics"] = rows
    if args.loso:
        report["loso"] = loso(prepared, source_of, gold_of)
    if args.loso_floor:
        report["loso_floor"] = loso_floor(prepared, source_of, gold_of)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    for name in ("dev", "wide"):
        part = report[name]
        print(name, json.dumps(part["summary"]))
        for r in part["largest"]:
            cov = (f"{r['thread_coverage']:.2f} / {r['prompt_coverage']:.2f}"
                   if r["label"] else "  -  /  - ")
            print(f"  {r['threads']:>4} threads {r['users']:>3} people  coverage {cov}  "
                  f"{r['judged']:<10} {r['label']}  {' '.join(r['generic'])}")
    if args.loso:
        lo = report["loso"]
        print(f"loso ({lo['cells']} cells; {lo['objective']}); shipped {SHIPPED}; "
              f"held-out F1 mean {lo['held_out_f1_mean']} (shipped: {lo['shipped_f1_mean']})")
        for f in lo["folds"]:
            h, sh = f["held_out_scores"], f["shipped_scores"]
            print(f"  {f['held_out']:<14} {f['topics']:>3} topics  chosen {f['chosen']}  "
                  f"train {f['train_f1']:.3f}  held out cov {h['coverage']:.3f} "
                  f"spec {h['specificity']:.3f} every {h['every_phrase']:.3f} "
                  f"f1 {h['f1']:.3f}  | shipped cov {sh['coverage']:.3f} "
                  f"spec {sh['specificity']:.3f} every {sh['every_phrase']:.3f} "
                  f"f1 {sh['f1']:.3f}")
    if args.loso_floor:
        lc = report["loso_floor"]
        print(f"loso min_score ({lc['objective']}; grid {lc['grid']}); shipped "
              f"{LABEL_MIN_SCORE}, all sources {lc['all_sources']}; held-out net mean "
              f"{lc['held_out_net_mean']} (shipped {lc['shipped_net_mean']})")
        for f in lc["folds"]:
            h, sh = f["held_out_scores"], f["shipped_scores"]
            print(f"  {f['held_out']:<14} chosen {f['chosen']}  train {f['train_net']}  held out "
                  f"net {h['net']:.3f} ({h['judged']:.0f} judged) f1 {h['f1']:.3f}  | shipped "
                  f"net {sh['net']:.3f} f1 {sh['f1']:.3f}")


if __name__ == "__main__":
    main()
