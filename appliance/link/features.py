"""What the linker knows about a prompt, and its feature rows per shortlisted candidate. Pure."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

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
              "closing")
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
    max_sim: float = -1.0
    row: list[float] | None = None  # THREAD_FEATURES without the margins


def _shortlist(sims: np.ndarray, cands: Sequence[Candidate], lo: int, wlo: int,
               s: CorrelationSettings) -> tuple[list[int], dict[str, _Thread]]:
    """Indices to score in full, and the threads of the window and the shortlist."""
    n = len(cands)
    threads: dict[str, _Thread] = {}
    for i in range(wlo, n):
        threads.setdefault(cands[i].thread_id, _Thread([])).turns.append(i)
    pick = set(range(max(wlo, n - s.recent_candidates), n))
    k = min(s.similar_candidates, len(sims))
    for j in np.argpartition(-sims, k - 1)[:k]:
        i = lo + int(j)
        pick.add(i)
        if i < wlo:
            t = threads.setdefault(cands[i].thread_id, _Thread([]))
            t.turns = sorted({i, *t.turns})
    order = sorted(threads.values(), key=lambda t: -t.turns[-1])
    flat = sims[wlo - lo:].tolist()
    for rank, t in enumerate(order):
        t.rank = rank
        t.max_sim = max(flat[i - wlo] if i >= wlo else float(sims[i - lo]) for i in t.turns)
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


def _thread_row(ctx: _Context, t: _Thread) -> list[float]:
    """Thread-level evidence: similarity to its centroid, head and recent turns, overlap."""
    q, cands = ctx.q, ctx.cands
    if t.row is None:
        sims = [float(ctx.sims[j - ctx.lo]) for j in t.turns]
        norm = 1.0
        if len(t.turns) > 1:  # |sum of unit vectors|: q . centroid / |centroid| = sum(sims) / norm
            centroid = np.add.reduce(ctx.mat[np.asarray(t.turns) - ctx.lo])
            norm = max(math.sqrt(float(centroid @ centroid)), 1e-6)
        tkw = [keywords(cands[j].text) for j in t.turns] if ctx.qkw else []
        tents = set().union(*(cands[j].entity_keys for j in t.turns)) if ctx.qents else set()
        last = cands[t.turns[-1]]
        last_cues = cue_names(last.text)
        t.row = [
            math.log1p(t.rank), math.log1p(len(t.turns)),
            math.log1p(max((q.ts - last.ts).total_seconds(), 0.0)), t.max_sim,
            sum(sims) / norm, sims[0], sum(sims[-3:]) / len(sims[-3:]),
            float(min(len(ctx.qents & tents), 3)),
            sum(ctx.idf[w] for w in ctx.qkw if any(w in k for k in tkw)),
            float("acknowledgement" in last_cues), float("closing" in last_cues),
            float(bool(ctx.open_threads - {last.thread_id})),
        ]
    return t.row


THREAD_FEATURES = ("thread_rank", "thread_turns", "thread_gap", "thread_max_sim",
                   "centroid_sim", "head_sim", "recent_sim", "ent_thread", "kw_thread",
                   "thread_last_ack", "thread_last_closing", "other_thread_open")
MARGINS = ("thread_max_sim", "centroid_sim", "recent_sim", "kw_thread")


def _pair_row(ctx: _Context, i: int, t: _Thread) -> list[float]:
    q, c, n = ctx.q, ctx.cands[i], len(ctx.cands)
    sim = float(ctx.sims[i - ctx.lo])
    return [
        sim, sim - float(ctx.sims.max()), math.log1p(max((q.ts - c.ts).total_seconds(), 0.0)),
        math.log1p(n - 1 - i), float(i == n - 1), float(i == t.turns[-1]),
        float(i == t.turns[0]), math.log1p(sum(1 for j in t.turns if j > i)),
        sim - float(ctx.sims[t.turns[-1] - ctx.lo]), sim - float(ctx.sims[-1]),
        float(q.session_key is not None and q.session_key == c.session_key),
        float(None not in (q.session_key, c.session_key) and q.session_key != c.session_key),
        float(min(len(ctx.qents.intersection(c.entity_keys)), 3)),
        _jaccard(ctx.qkw, keywords(c.text)),
        float(len(placeholder_types(q.text) & placeholder_types(c.text))),
        float("acknowledgement" in cue_names(c.text)), math.log1p(word_count(c.text)),
    ]


PAIR_FEATURES = ("sim", "sim_margin", "gap", "recency_rank", "user_latest", "thread_latest",
                 "thread_head", "turns_after", "sim_vs_thread_latest", "sim_vs_user_latest",
                 "same_session", "other_session", "ent_cand", "kw_cand", "ph_types", "cand_ack",
                 "cand_words")


FEATURES = (*QUERY_FEATURES, *THREAD_FEATURES, *(f"{m}_margin" for m in MARGINS),
            *PAIR_FEATURES)


def features(q: LinkInput, cands: Sequence[Candidate], s: CorrelationSettings,
             cache: VectorCache, opener: float = 0.5
             ) -> tuple[list[int], np.ndarray, np.ndarray, frozenset[str]]:
    """Shortlisted candidate indices, their feature rows, their similarities, the cue names.

    `opener` is the prompt's opener probability (`PairModel.opener_proba`)."""
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
                   open_threads=_open_threads(q, cands))
    cues = cue_names(q.text)
    base = _query_row(ctx, cues, opener)
    touched = {id(threads[cands[i].thread_id]): threads[cands[i].thread_id] for i in pick}
    trows = {k: _thread_row(ctx, t) for k, t in touched.items()}
    margins = _margins(trows)
    rows = []
    for i in pick:
        t = threads[cands[i].thread_id]
        rows.append(base + trows[id(t)] + margins[id(t)] + _pair_row(ctx, i, t))
    return pick, np.asarray(rows, dtype=np.float64), sims[np.asarray(pick) - lo], cues


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
