"""What the linker knows about a prompt, and its feature rows per shortlisted candidate. Pure."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain

import numpy as np

from appliance.config import CorrelationSettings
from appliance.cues import ack_then_request, cue_names, keywords, placeholder_types, word_count
from appliance.link.cache import VectorCache
from appliance.records import Candidate, Link

Linker = Callable[["LinkInput", Sequence[Candidate]], Link]
FOLLOW_UP_CUES = frozenset({"pronoun", "demonstrative", "ellipsis", "elaboration", "correction"})
# Cues that tie a prompt to what came before: a linked prompt carrying one is never a topic shift.
REFERRING_CUES = FOLLOW_UP_CUES | {"deictic", "answer"}
QUERY_CUES = ("pronoun", "demonstrative", "ellipsis", "elaboration", "correction",
              "acknowledgement", "management", "question", "deictic", "answer", "opening",
              "greeting", "closing")
QUERY_FEATURES = ("q_gap_last", "q_words", *(f"q_{c}" for c in QUERY_CUES), "q_ack_request",
                  "q_entities", "q_max_sim", "q_active_threads", "q_novel", "q_opener")
OPEN_SECONDS = 900.0  # a thread with a turn this recent counts as open


# Generic English cue lexicons (never keyed to any data set's texts).
@dataclass(frozen=True)
class LinkInput:
    """What the linker knows about the new prompt (redacted text only)."""

    ts: datetime
    vector: np.ndarray
    text: str
    session_key: str | None = None
    entity_keys: tuple[str, ...] = ()
    # Probability that the prompt opens a conversation; the linker computes it when None
    # (the training script hands in cross-fitted values).
    opener: float | None = None


@dataclass
class _Thread:
    """A candidate thread as seen from the window of recent turns."""

    turns: list[int]
    rank: int = 0
    row: list[float] | None = None  # THREAD_FEATURES without the margins
    ranked: list[float] | None = None  # its turns' cosines, ascending


def _shortlist(sims: np.ndarray, cands: Sequence[Candidate], lo: int, wlo: int,
               s: CorrelationSettings) -> tuple[list[int], dict[str, _Thread]]:
    """Indices to score in full, and the threads of the window and the shortlist."""
    n = len(cands)
    by_id: dict[str, list[int]] = {}
    for i in range(wlo, n):
        tid = cands[i].thread_id
        turns = by_id.get(tid)
        if turns is None:
            by_id[tid] = [i]
        else:
            turns.append(i)
    threads = {tid: _Thread(turns) for tid, turns in by_id.items()}
    pick = set(range(max(wlo, n - s.recent_candidates), n))
    k = min(s.similar_candidates, len(sims))
    for j in np.argpartition(-sims, k - 1)[:k]:
        i = lo + int(j)
        pick.add(i)
        if i < wlo:
            t = threads.setdefault(cands[i].thread_id, _Thread([]))
            t.turns = sorted({i, *t.turns})
    order = sorted(threads.values(), key=lambda t: -t.turns[-1])
    for rank, t in enumerate(order):
        t.rank = rank
        if rank < s.recent_candidates:
            pick.add(t.turns[-1])
    return sorted(pick), threads


@dataclass(frozen=True)
class _Context:
    """What every row of one prompt shares."""

    q: LinkInput
    cands: Sequence[Candidate]
    mat: np.ndarray
    sims: np.ndarray
    lo: int
    idf: dict[str, float]
    novel: float  # share of the prompt's keywords unseen in the user's recent turns
    qkw: frozenset[str]
    qents: frozenset[str]
    open_threads: frozenset[str]  # threads with a turn in the last OPEN_SECONDS
    closer: Callable[[Candidate], float] | None  # P(a turn closed its conversation)


def _idf(q: LinkInput, cands: Sequence[Candidate], wlo: int) -> tuple[dict[str, float], float]:
    """Inverse document frequency of the prompt's keywords over the user's recent turns,
    and the share of them never seen there."""
    window = [keywords(c.text) for c in cands[wlo:]]
    df = {w: sum(1 for k in window if w in k) for w in keywords(q.text)}
    idf = {w: math.log((len(window) + 1) / (d + 1)) for w, d in df.items()}
    return idf, sum(1 for d in df.values() if d == 0) / max(len(df), 1)


def _open_threads(q: LinkInput, cands: Sequence[Candidate]) -> frozenset[str]:
    return frozenset(c.thread_id for c in cands[-50:]
                     if (q.ts - c.ts).total_seconds() <= OPEN_SECONDS)


def _query_row(ctx: _Context, cues: frozenset[str], opener: float) -> list[float]:
    q, cands = ctx.q, ctx.cands
    gap_last = (q.ts - cands[-1].ts).total_seconds()
    return [math.log1p(max(gap_last, 0.0)), math.log1p(word_count(q.text)),
            *(float(c in cues) for c in QUERY_CUES), float(ack_then_request(q.text)),
            float(min(len(q.entity_keys), 3)), float(ctx.sims.max()),
            float(min(len(ctx.open_threads), 5)), ctx.novel, opener]


def _thread_rows(ctx: _Context, todo: Sequence[_Thread]) -> None:
    """Thread-level evidence (`THREAD_FEATURES` without the margins) for threads not yet
    described: similarity to its centroid, head and recent turns, overlap, pace."""
    q, cands, lo = ctx.q, ctx.cands, ctx.lo
    flat = np.fromiter(chain.from_iterable(t.turns for t in todo), dtype=np.int64) - lo
    lens = np.fromiter((len(t.turns) for t in todo), dtype=np.int64, count=len(todo))
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
    sims = ctx.sims[flat].astype(np.float64)
    sums = np.add.reduceat(sims, starts)
    flat_sims, bounds = sims.tolist(), (starts + lens).tolist()
    # |sum of unit vectors|: q . centroid / |centroid| = sum(sims) / norm
    cents = np.add.reduceat(ctx.mat[flat], starts, axis=0)
    norms = np.where(lens > 1, np.maximum(np.sqrt(np.einsum("ij,ij->i", cents, cents)), 1e-6),
                     1.0)
    centroid = (sums / norms).tolist()
    others_open = len(ctx.open_threads)
    for k, t in enumerate(todo):
        ts = flat_sims[bounds[k] - len(t.turns):bounds[k]]
        t.ranked = sorted(ts)
        recent = ts[-3:]
        last = cands[t.turns[-1]]
        last_cues = cue_names(last.text)
        kw = 0.0
        if ctx.qkw:
            tkw = frozenset().union(*(keywords(cands[j].text) for j in t.turns))
            kw = sum(ctx.idf[w] for w in ctx.qkw & tkw)
        ents = 0.0
        if ctx.qents:
            tents = frozenset().union(*(cands[j].entity_keys for j in t.turns))
            ents = float(min(len(ctx.qents & tents), 3))
        t.row = [
            math.log1p(t.rank), math.log1p(len(t.turns)),
            math.log1p(max((q.ts - last.ts).total_seconds(), 0.0)), t.ranked[-1],
            centroid[k], ts[0], sum(recent) / len(recent), ents, kw,
            float("acknowledgement" in last_cues), float("closing" in last_cues),
            float(others_open - (last.thread_id in ctx.open_threads) > 0),
            _pause(q, cands, t.turns), 0.5 if ctx.closer is None else ctx.closer(last),
        ]


def _pause(q: LinkInput, cands: Sequence[Candidate], turns: list[int]) -> float:
    """How much longer the pause since the thread's last turn is than the thread's own pace:
    log gap minus the median log gap between its turns (0 for a one-turn thread)."""
    if len(turns) < 2:
        return 0.0
    last = turns[-6:]  # its last five gaps
    gaps = sorted(math.log1p(max((cands[b].ts - cands[a].ts).total_seconds(), 0.0))
                  for a, b in zip(last, last[1:], strict=False))
    now = math.log1p(max((q.ts - cands[turns[-1]].ts).total_seconds(), 0.0))
    return now - gaps[len(gaps) // 2]


THREAD_FEATURES = ("thread_rank", "thread_turns", "thread_gap", "thread_max_sim",
                   "centroid_sim", "head_sim", "recent_sim", "ent_thread", "kw_thread",
                   "thread_last_ack", "thread_last_closing", "other_thread_open", "thread_pause",
                   "thread_closer")
MARGINS = ("thread_max_sim", "centroid_sim", "recent_sim", "kw_thread")


def _text_pair(ctx: _Context, i: int, t: _Thread, sim: float) -> tuple[float, ...]:
    """The candidate's text, session and entity evidence, and which turn of its thread the
    prompt depends on: the candidate's cosine rank among the thread's turns, and the
    (IDF-weighted) prompt keywords it shares, all of them and those the thread's latest
    turn lacks."""
    q, c = ctx.q, ctx.cands[i]
    ckw = keywords(c.text)
    assert t.ranked is not None  # set with the thread's row
    shared = ctx.qkw & ckw
    latest = keywords(ctx.cands[t.turns[-1]].text) if i != t.turns[-1] else ckw
    return (
        float(q.session_key is not None and q.session_key == c.session_key),
        float(None not in (q.session_key, c.session_key) and q.session_key != c.session_key),
        float(min(len(ctx.qents.intersection(c.entity_keys)), 3)),
        _jaccard(ctx.qkw, ckw),
        float(len(placeholder_types(q.text) & placeholder_types(c.text))),
        float("acknowledgement" in cue_names(c.text)), math.log1p(word_count(c.text)),
        math.log1p(len(t.ranked) - bisect_right(t.ranked, sim)), sum(ctx.idf[w] for w in shared),
        sum(ctx.idf[w] for w in shared - latest),
    )


def _pair_block(ctx: _Context, pick: list[int], tl: list[_Thread]) -> np.ndarray:
    """PAIR_FEATURES for every shortlisted candidate (rows in `pick` order)."""
    q, cands, lo, n = ctx.q, ctx.cands, ctx.lo, len(ctx.cands)
    idx = np.asarray(pick)
    sim = ctx.sims[idx - lo].astype(np.float64)
    latest = np.fromiter((t.turns[-1] for t in tl), dtype=np.int64, count=len(tl))
    head = np.fromiter((t.turns[0] for t in tl), dtype=np.int64, count=len(tl))
    after = [len(t.turns) - bisect_right(t.turns, i) for i, t in zip(pick, tl, strict=True)]
    gap = [(q.ts - cands[i].ts).total_seconds() for i in pick]
    text = np.array([_text_pair(ctx, i, t, v) for i, t, v in zip(pick, tl, sim.tolist(),
                                                                    strict=True)])
    rank = np.empty(len(pick))
    rank[np.argsort(-sim, kind="stable")] = np.arange(len(pick))
    return np.column_stack([
        sim, sim - float(ctx.sims.max()), np.log1p(np.maximum(gap, 0.0)),
        np.log1p(n - 1 - idx), idx == n - 1, idx == latest, idx == head, np.log1p(after),
        sim - ctx.sims[latest - lo].astype(np.float64), sim - float(ctx.sims[-1]),
        text, np.log1p(rank)]).astype(np.float64)


PAIR_FEATURES = ("sim", "sim_margin", "gap", "recency_rank", "user_latest", "thread_latest",
                 "thread_head", "turns_after", "sim_vs_thread_latest", "sim_vs_user_latest",
                 "same_session", "other_session", "ent_cand", "kw_cand", "ph_types", "cand_ack",
                 "cand_words", "thread_sim_rank", "kw_idf_cand", "kw_only_cand", "sim_rank")


FEATURES = (*QUERY_FEATURES, *THREAD_FEATURES, *(f"{m}_margin" for m in MARGINS),
            *PAIR_FEATURES)


def features(q: LinkInput, cands: Sequence[Candidate], s: CorrelationSettings,
             cache: VectorCache, opener: float = 0.5,
             closer: Callable[[Candidate], float] | None = None
             ) -> tuple[list[int], np.ndarray, np.ndarray, frozenset[str]]:
    """Shortlisted candidate indices, their feature rows, their similarities, the cue names.

    `opener` is the prompt's opener probability (`PairModel.opener_proba`); `closer` gives
    the probability that an earlier turn closed its conversation (`PairModel.closer_proba`;
    0.5 for every turn when None)."""
    n = len(cands)
    lo, wlo = max(0, n - s.scan_candidates), max(0, n - s.max_candidates)
    mat = cache.matrix(cands, lo)
    # einsum, not BLAS: a threaded gemv stalls behind any other load on a small host
    sims = np.einsum("ij,j->i", mat, q.vector.astype(np.float32))
    for i in range(wlo, n):  # the previous answer, when the gateway sent it, counts too
        rv = cands[i].response_vector
        if rv is not None:
            sims[i - lo] = max(sims[i - lo], float(rv @ q.vector))
    pick, threads = _shortlist(sims, cands, lo, wlo, s)
    idf, novel = _idf(q, cands, wlo)
    ctx = _Context(q=q, cands=cands, mat=mat, sims=sims, lo=lo, idf=idf, novel=novel,
                   qkw=keywords(q.text), qents=frozenset(q.entity_keys),
                   open_threads=_open_threads(q, cands), closer=closer)
    cues = cue_names(q.text)
    base = _query_row(ctx, cues, opener)
    tl = [threads[cands[i].thread_id] for i in pick]
    touched = {id(t): t for t in tl}
    todo = [t for t in touched.values() if t.row is None]
    if todo:
        _thread_rows(ctx, todo)
    trows = {k: t.row for k, t in touched.items() if t.row is not None}
    margins = _margins(trows)
    per_thread = {k: r + margins[k] for k, r in trows.items()}
    x = np.empty((len(pick), len(FEATURES)))
    x[:, :len(base)] = base
    x[:, len(base):-len(PAIR_FEATURES)] = [per_thread[id(t)] for t in tl]
    x[:, -len(PAIR_FEATURES):] = _pair_block(ctx, pick, tl)
    return pick, x, sims[np.asarray(pick) - lo], cues


def _margins(trows: dict[int, list[float]]) -> dict[int, list[float]]:
    """Per thread: how far each MARGINS feature is above the best other thread's."""
    out: dict[int, list[float]] = {k: [] for k in trows}
    for m in MARGINS:
        c = THREAD_FEATURES.index(m)
        top = sorted(((r[c], k) for k, r in trows.items()), reverse=True)[:2]
        for k, r in trows.items():
            others = [v for v, kk in top if kk != k]
            out[k].append(r[c] - (others[0] if others else 0.0))
    return out


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0
