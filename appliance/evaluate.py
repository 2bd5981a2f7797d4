"""Thread-linking metrics against a gold stream, and the two reference baselines. Pure.

The metrics are those of the evaluators' `score_threads.py` (pairwise P/R/F1 over
same-user prompt pairs, adjusted Rand index, parent-link accuracy, new-thread
detection, topic ARI, isolation counters); tests/test_eval.py checks that both
give the same numbers on the same prediction file.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from datetime import datetime
from math import comb
from typing import Any

import numpy as np

from appliance.ingest import parse_ts
from appliance.link import LinkInput, link_rule
from appliance.records import Candidate

Row = Mapping[str, Any]


def ari(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Adjusted Rand index between two labelings (Hubert and Arabie)."""
    n = len(a)
    if n < 2:
        return 1.0
    sum_ij = sum(comb(v, 2) for v in Counter(zip(a, b, strict=True)).values())
    sum_a = sum(comb(v, 2) for v in Counter(a).values())
    sum_b = sum(comb(v, 2) for v in Counter(b).values())
    expected = sum_a * sum_b / comb(n, 2)
    max_idx = (sum_a + sum_b) / 2
    if max_idx == expected:
        return 1.0
    return (sum_ij - expected) / (max_idx - expected)


def prf(tp: int, npred: int, ngold: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts (0 when undefined)."""
    p = tp / npred if npred else 0.0
    r = tp / ngold if ngold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def _pairs(labels: Iterable[Hashable]) -> int:
    return sum(comb(v, 2) for v in Counter(labels).values())


def _links(rows: Sequence[Row], by_index: Mapping[int, Row], pparent: Mapping[int, Any],
           pthread: Mapping[int, Any]) -> dict[str, int]:
    cross = invalid = inconsistent = 0
    for g in rows:
        i, p = g["index"], pparent[g["index"]]
        if p is None:
            continue
        if not isinstance(p, int) or isinstance(p, bool) or p not in by_index or p >= i:
            invalid += 1
        elif by_index[p]["user_id"] != g["user_id"]:
            cross += 1
        elif p in pthread and pthread[p] != pthread[i]:
            inconsistent += 1
    return {"cross_user_links": cross, "invalid_parent_links": invalid,
            "parent_in_other_pred_thread": inconsistent}


def score(gold: Sequence[Row], pred: Mapping[int, Row],
          subset: set[int] | None = None) -> dict[str, Any]:
    """All thread metrics of `pred` (index -> prediction) over `gold` (or a subset)."""
    rows = [g for g in gold if subset is None or g["index"] in subset]
    by_index = {g["index"]: g for g in gold}
    res: dict[str, Any] = {"prompts": len(rows)}
    pthread: dict[int, Any] = {}
    pparent: dict[int, Any] = {}
    ptopic: dict[int, Any] = {}
    for g in rows:
        i, p = g["index"], pred.get(g["index"])
        if p is None:
            pthread[i], pparent[i], ptopic[i] = ("__missing__", i), None, ("__missing__", i)
        else:
            pthread[i], pparent[i] = ("t", p.get("thread_id")), p.get("parent_index")
            t = p.get("topic_id")
            ptopic[i] = ("t", t) if t is not None else ("__none__", i)
    byu: dict[Any, list[int]] = defaultdict(list)
    for g in rows:
        byu[g["user_id"]].append(g["index"])
    tp = gp = pp = 0
    aris = []
    for ix in byu.values():
        gl = [by_index[i]["gold_thread_id"] for i in ix]
        pl = [pthread[i] for i in ix]
        tp, gp, pp = tp + _pairs(zip(gl, pl, strict=True)), gp + _pairs(gl), pp + _pairs(pl)
        aris.append(ari([str(x) for x in gl], [str(x) for x in pl]))
    res["pair_P"], res["pair_R"], res["pair_F1"] = prf(tp, pp, gp)
    res["gold_pairs"], res["pred_pairs"], res["true_pairs"] = gp, pp, tp
    res["ARI_mean_per_user"] = sum(aris) / len(aris) if aris else None
    res["ARI_global"] = ari([f'{g["user_id"]}\x00{g["gold_thread_id"]}' for g in rows],
                            [f'{g["user_id"]}\x00{pthread[g["index"]]}' for g in rows])
    correct = [g for g in rows if pparent[g["index"]] == g["gold_parent_index"]]
    res["parent_acc"] = len(correct) / len(rows) if rows else None
    fu = [g for g in rows if g["gold_parent_index"] is not None]
    res["parent_acc_on_followups"] = (
        sum(1 for g in fu if pparent[g["index"]] == g["gold_parent_index"]) / len(fu)
        if fu else None)
    gnew = [g["gold_parent_index"] is None for g in rows]
    pnew = [pparent[g["index"]] is None for g in rows]
    ntp = sum(1 for a, b in zip(gnew, pnew, strict=True) if a and b)
    res["newthread_P"], res["newthread_R"], res["newthread_F1"] = prf(ntp, sum(pnew), sum(gnew))
    res["topic_ARI"] = None
    if any("topic_id" in p for p in pred.values()):
        tix = [g["index"] for g in rows if g.get("gold_topic_id") is not None]
        res["topic_ARI"] = ari([by_index[i]["gold_topic_id"] for i in tix],
                               [str(ptopic[i]) for i in tix]) if tix else None
        res["topic_ARI_prompts"] = len(tix)
    res.update(_links(rows, by_index, pparent, pthread))
    res["missing_predictions"] = sum(1 for g in rows if g["index"] not in pred)
    res["gold_threads"] = len({(g["user_id"], g["gold_thread_id"]) for g in rows})
    res["pred_threads"] = len({(g["user_id"], pthread[g["index"]]) for g in rows})
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}


def score_all(gold: Sequence[Row], pred: Mapping[int, Row], *,
              by_source: bool = False) -> dict[str, Any]:
    """`score` over everything, and per gold `source` when asked."""
    out = score(gold, pred)
    if by_source:
        sources = sorted({str(g.get("source")) for g in gold})
        out["by_source"] = {s: score(gold, pred, {g["index"] for g in gold
                                                  if str(g.get("source")) == s})
                            for s in sources}
    return out


def _user_streams(gold: Sequence[Row]) -> dict[tuple[Any, Any], list[Row]]:
    streams: dict[tuple[Any, Any], list[Row]] = defaultdict(list)
    for g in sorted(gold, key=lambda r: (parse_ts(r["ts"]), r["index"])):
        streams[(g.get("tenant"), g["user_id"])].append(g)
    return streams


def gap_baseline(gold: Sequence[Row], *, minutes: float = 30.0) -> dict[int, dict[str, Any]]:
    """A user's prompt continues their previous one when it comes within `minutes`."""
    pred: dict[int, dict[str, Any]] = {}
    for stream in _user_streams(gold).values():
        prev: Row | None = None
        for g in stream:
            near = prev is not None and (parse_ts(g["ts"]) - parse_ts(prev["ts"])
                                         ).total_seconds() <= minutes * 60
            if prev is not None and near:
                pred[g["index"]] = {"index": g["index"], "parent_index": prev["index"],
                                    "thread_id": pred[prev["index"]]["thread_id"]}
            else:
                pred[g["index"]] = {"index": g["index"], "parent_index": None,
                                    "thread_id": f"gap-{g['index']}"}
            prev = g
    return pred


def cosine_baseline(gold: Sequence[Row], vectors: Mapping[int, np.ndarray], *,
                    threshold: float = 0.75, hours: float = 24.0) -> dict[int, dict[str, Any]]:
    """The design's v0 rule (most similar earlier prompt within `hours` above `threshold`)."""
    pred: dict[int, dict[str, Any]] = {}
    for stream in _user_streams(gold).values():
        history: list[Candidate] = []
        for g in stream:
            i, ts = g["index"], parse_ts(g["ts"])
            vec = vectors[i]
            link = link_rule(LinkInput(ts=ts, vector=vec, text=""), history,
                             threshold=threshold, window_hours=hours)
            thread = link.thread_id or f"cos-{i}"
            pred[i] = {"index": i, "parent_index": link.parent_id, "thread_id": thread}
            history.append(_candidate(i, thread, ts, vec))
    return pred


def _candidate(i: int, thread: str, ts: datetime, vec: np.ndarray) -> Candidate:
    return Candidate(record_id=i, request_id=str(i), thread_id=thread, ts=ts, vector=vec,
                     text="")
