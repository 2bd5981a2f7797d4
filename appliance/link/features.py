"""What the linker knows about a prompt, and its feature rows per shortlisted candidate. Pure."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import accumulate, chain
from typing import Protocol

import numpy as np

from appliance.config import CorrelationSettings
from appliance.cues import ack_then_request, cue_names, keywords, placeholder_types, word_count
from appliance.link.cache import Rows, TextFacts, ThreadFacts, VectorCache, micros
from appliance.records import Candidate, Link


class Linker(Protocol):
    """A content linker: a prompt's link from the user's recent turns, oldest first;
    `threshold` overrides the policy's `link_threshold` (a tenant's calibrated one)."""

    def __call__(self, query: LinkInput, candidates: Sequence[Candidate],
                 threshold: float | None = None) -> Link: ...


FOLLOW_UP_CUES = frozenset({"pronoun", "demonstrative", "ellipsis", "elaboration", "correction"})
# Cues that tie a prompt to what came before: a linked prompt carrying one is never a topic shift.
REFERRING_CUES = FOLLOW_UP_CUES | {"deictic", "answer", "unresolved"}
# Cues that make a prompt with nothing to follow `orphaned`: a reference the prompt cannot
# resolve itself ("unresolved": not the "it" of "will it rain", not "it" after "the reset
# link", not "this weekend"), or a form that only continues something.
ORPHAN_CUES = frozenset({"unresolved", "ellipsis", "elaboration", "correction"})
QUERY_CUES = ("pronoun", "demonstrative", "ellipsis", "elaboration", "correction",
              "acknowledgement", "management", "question", "deictic", "answer", "opening",
              "greeting", "closing", "unresolved")
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
    """Indices to score in full, and the threads they belong to (turns in the window and the
    shortlist, rank by latest turn among all the window's threads)."""
    n = len(cands)
    by_id: defaultdict[str, list[int]] = defaultdict(list)
    for i, tid in enumerate([c.thread_id for c in cands[wlo:]], wlo):
        by_id[tid].append(i)
    pick = set(range(max(wlo, n - s.recent_candidates), n))
    k = min(s.similar_candidates, len(sims))
    for j in np.argpartition(-sims, k - 1)[:k].tolist():
        i = lo + j
        pick.add(i)
        if i < wlo:
            tid = cands[i].thread_id
            by_id[tid] = sorted({i, *by_id.get(tid, ())})
    order = sorted(by_id.values(), key=lambda turns: -turns[-1])
    pick.update(turns[-1] for turns in order[:s.recent_candidates])
    out = sorted(pick)
    wanted = {cands[i].thread_id for i in out}
    ranks = {turns[-1]: rank for rank, turns in enumerate(order)}
    return out, {tid: _Thread(by_id[tid], ranks[by_id[tid][-1]]) for tid in wanted}


@dataclass(frozen=True)
class _Context:
    """What every row of one prompt shares."""

    q: LinkInput
    cands: Sequence[Candidate]
    mat: np.ndarray
    sims: np.ndarray
    us: np.ndarray  # micros(ts) of cands[lo:]
    lo: int
    rows: Rows  # the cache's view of cands[lo:]
    idf: dict[str, float]
    novel: float  # share of the prompt's keywords unseen in the user's recent turns
    qkw: frozenset[str]
    qents: frozenset[str]
    open_threads: frozenset[str]  # threads with a turn in the last OPEN_SECONDS
    closer: Callable[[Candidate], float] | None  # P(a turn closed its conversation)

    def facts(self, idx: Sequence[int]) -> list[TextFacts]:
        return self.rows.facts(self.cands, idx, self.lo)


def _idf(qkw: frozenset[str], rows: Rows, w0: int) -> tuple[dict[str, float], float]:
    """Inverse document frequency of the prompt's keywords over the user's recent turns
    (rows from position w0 on), and the share of them never seen there."""
    df = {w: rows.doc_freq(w, w0) for w in qkw}
    idf = {w: math.log((len(rows.us) - w0 + 1) / (d + 1)) for w, d in df.items()}
    return idf, sum(1 for d in df.values() if d == 0) / max(len(df), 1)


def _open_threads(q: LinkInput, cands: Sequence[Candidate], us: np.ndarray) -> frozenset[str]:
    """Threads among the last 50 turns with a turn in the last OPEN_SECONDS (`us`: the
    micros of the last len(us) turns)."""
    k = min(50, len(cands))
    if k > len(us):
        return frozenset(c.thread_id for c in cands[-k:]
                         if (q.ts - c.ts).total_seconds() <= OPEN_SECONDS)
    recent = np.flatnonzero((micros(q.ts) - us[-k:]) / 1e6 <= OPEN_SECONDS) + len(cands) - k
    return frozenset(cands[i].thread_id for i in recent.tolist())


def _query_row(ctx: _Context, cues: frozenset[str], opener: float) -> list[float]:
    q, cands = ctx.q, ctx.cands
    gap_last = (q.ts - cands[-1].ts).total_seconds()
    return [math.log1p(max(gap_last, 0.0)), math.log1p(word_count(q.text)),
            *(float(c in cues) for c in QUERY_CUES), float(ack_then_request(q.text)),
            float(min(len(q.entity_keys), 3)), float(ctx.sims.max()),
            float(min(len(ctx.open_threads), 5)), ctx.novel, opener]


def _thread_rows(ctx: _Context, todo: Sequence[_Thread], memo: dict[tuple[int, ...], ThreadFacts]
                 ) -> None:
    """Thread-level evidence (`THREAD_FEATURES` without the margins) for threads not yet
    described: similarity to its centroid, head and recent turns, overlap, pace."""
    q, cands, lo = ctx.q, ctx.cands, ctx.lo
    q_us = micros(q.ts)
    lens = [len(t.turns) for t in todo]
    bounds = list(accumulate(lens))
    sims = ctx.sims[[j - lo for t in todo for j in t.turns]].astype(np.float64)
    sums = np.add.reduceat(sims, [0, *bounds[:-1]]).tolist()
    flat_sims = sims.tolist()
    keys = [tuple([cands[j].record_id for j in t.turns]) for t in todo]
    new = [k for k, key in enumerate(keys) if key not in memo]
    if new:
        if len(memo) > 50_000:  # a few hundred bytes each
            memo.clear()
        _describe(ctx, [todo[k] for k in new], [keys[k] for k in new], memo)
    idf, qkw, qents, open_threads = ctx.idf, ctx.qkw, ctx.qents, ctx.open_threads
    others_open = len(open_threads)
    lasts = ctx.facts([t.turns[-1] for t in todo])
    for k, t in enumerate(todo):
        f = memo[keys[k]]
        ts = flat_sims[bounds[k] - lens[k]:bounds[k]]
        t.ranked = ranked = sorted(ts)
        recent = ts[-3:]
        latest, last = t.turns[-1], lasts[k]
        now = math.log1p(max((q_us - f.last_us) / 1e6, 0.0))
        t.row = [
            math.log1p(t.rank), math.log1p(lens[k]), now, ranked[-1],
            sums[k] / f.norm,  # |sum of unit vectors|: q . centroid / |centroid|
            ts[0], sum(recent) / len(recent),
            float(min(len(qents.intersection(
                chain.from_iterable(cands[j].entity_keys for j in t.turns))), 3))
            if qents else 0.0,
            math.fsum(idf[w] for w in qkw & f.keywords) if qkw else 0.0,
            float(last.ack), float(last.closing),
            float(others_open - (cands[latest].thread_id in open_threads) > 0),
            0.0 if f.pace is None else now - f.pace,
            0.5 if ctx.closer is None else ctx.closer(cands[latest]),
        ]


def _describe(ctx: _Context, threads: list[_Thread], keys: list[tuple[int, ...]],
              memo: dict[tuple[int, ...], ThreadFacts]) -> None:
    """ThreadFacts of threads whose turns in view are new: norm of the vector sum,
    keywords of all turns, latest time, median pause (of the last five)."""
    norms = [1.0] * len(threads)
    multi = [k for k, t in enumerate(threads) if len(t.turns) > 1]
    if multi:
        lens = [len(threads[k].turns) for k in multi]
        flat = [j - ctx.lo for k in multi for j in threads[k].turns]
        cents = np.add.reduceat(ctx.mat[flat], np.cumsum([0, *lens[:-1]]), axis=0)
        got = np.maximum(np.sqrt(np.einsum("ij,ij->i", cents, cents)), 1e-6).tolist()
        for k, norm in zip(multi, got, strict=True):
            norms[k] = norm
    stamps = ctx.us[[j - ctx.lo for t in threads for j in t.turns]].tolist()
    end = 0
    for t, key, norm in zip(threads, keys, norms, strict=True):
        us, end = stamps[end:end + len(t.turns)], end + len(t.turns)
        last = us[-6:]  # its last five gaps; log1p is monotone, so log of the median
        gaps = sorted(b - a for a, b in zip(last, last[1:], strict=False))
        memo[key] = ThreadFacts(
            norm=norm, keywords=frozenset().union(*(f.kw for f in ctx.facts(t.turns))),
            last_us=us[-1],
            pace=math.log1p(max(gaps[len(gaps) // 2] / 1e6, 0.0)) if gaps else None)


THREAD_FEATURES = ("thread_rank", "thread_turns", "thread_gap", "thread_max_sim",
                   "centroid_sim", "head_sim", "recent_sim", "ent_thread", "kw_thread",
                   "thread_last_ack", "thread_last_closing", "other_thread_open", "thread_pause",
                   "thread_closer")
MARGINS = ("thread_max_sim", "centroid_sim", "recent_sim", "kw_thread")


def _text_rows(ctx: _Context, pick: list[int], tl: list[_Thread], sim: list[float]
               ) -> list[tuple[float, ...]]:
    """Per candidate: its text, session and entity evidence, and which turn of its thread
    the prompt depends on: the candidate's cosine rank among the thread's turns, and the
    (IDF-weighted) prompt keywords it shares, all of them and those the thread's latest
    turn lacks."""
    q, idf, qkw, qents = ctx.q, ctx.idf, ctx.qkw, ctx.qents
    qs, qph = q.session_key, placeholder_types(q.text)
    out: list[tuple[float, ...]] = []
    for i, t, v, f in zip(pick, tl, sim, ctx.facts(pick), strict=True):
        c = ctx.cands[i]
        assert t.ranked is not None  # set with the thread's row
        shared = qkw & f.kw
        kw = only = 0.0
        if shared:
            latest = ctx.facts(t.turns[-1:])[0].kw if i != t.turns[-1] else f.kw
            kw = math.fsum(idf[w] for w in shared)
            only = math.fsum(idf[w] for w in shared - latest)
        cs = c.session_key
        out.append((
            float(qs is not None and qs == cs), float(None not in (qs, cs) and qs != cs),
            float(min(len(qents.intersection(c.entity_keys)), 3)) if qents else 0.0,
            len(shared) / (len(qkw) + len(f.kw) - len(shared)) if qkw and f.kw else 0.0,
            float(len(qph & f.ph)) if qph else 0.0,
            float(f.ack), f.log_words, math.log1p(len(t.ranked) - bisect_right(t.ranked, v)),
            kw, only,
        ))
    return out


def _pair_block(ctx: _Context, pick: list[int], tl: list[_Thread]) -> np.ndarray:
    """PAIR_FEATURES for every shortlisted candidate (rows in `pick` order)."""
    lo, n = ctx.lo, len(ctx.cands)
    idx = np.asarray(pick)
    sim = ctx.sims[idx - lo].astype(np.float64)
    latest = np.fromiter((t.turns[-1] for t in tl), dtype=np.int64, count=len(tl))
    head = np.fromiter((t.turns[0] for t in tl), dtype=np.int64, count=len(tl))
    after = [len(t.turns) - bisect_right(t.turns, i) for i, t in zip(pick, tl, strict=True)]
    gap = (micros(ctx.q.ts) - ctx.us[idx - lo]) / 1e6
    text = np.array(_text_rows(ctx, pick, tl, sim.tolist()))
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
    rows = cache.rows(cands, lo)
    mat, us = rows.mat, rows.us
    # einsum, not BLAS: a threaded gemv stalls behind any other load on a small host
    sims = np.einsum("ij,j->i", mat, q.vector.astype(np.float32))
    answers = [(i, c.response_vector) for i, c in enumerate(cands[wlo:], wlo)
               if c.response_vector is not None]
    for i, rv in answers:  # the previous answer, when the gateway sent it, counts too
        sims[i - lo] = max(sims[i - lo], float(rv @ q.vector))
    pick, threads = _shortlist(sims, cands, lo, wlo, s)
    qkw = keywords(q.text)
    rows.post(cands, lo, wlo - lo)
    idf, novel = _idf(qkw, rows, wlo - lo)
    ctx = _Context(q=q, cands=cands, mat=mat, sims=sims, us=us, lo=lo, rows=rows,
                   idf=idf, novel=novel, qkw=qkw, qents=frozenset(q.entity_keys),
                   open_threads=_open_threads(q, cands, us), closer=closer)
    cues = cue_names(q.text)
    base = _query_row(ctx, cues, opener)
    tl = [threads[cands[i].thread_id] for i in pick]
    todo = list({id(t): t for t in tl}.values())
    _thread_rows(ctx, todo, cache.threads)
    trows = np.array([t.row for t in todo])
    where = {id(t): k for k, t in enumerate(todo)}
    per_thread = np.hstack([trows, _margins(trows)])
    x = np.empty((len(pick), len(FEATURES)))
    x[:, :len(base)] = base
    x[:, len(base):-len(PAIR_FEATURES)] = per_thread[[where[id(t)] for t in tl]]
    x[:, -len(PAIR_FEATURES):] = _pair_block(ctx, pick, tl)
    return pick, x, sims[np.asarray(pick) - lo], cues


def _margins(trows: np.ndarray) -> np.ndarray:
    """Per thread (row): how far each MARGINS feature is above the best other thread's."""
    cols = trows[:, [THREAD_FEATURES.index(m) for m in MARGINS]]
    if len(cols) == 1:
        return cols - 0.0
    best = cols.argmax(axis=0)
    at = np.arange(cols.shape[1])
    top = cols[best, at]
    rest = cols.copy()
    rest[best, at] = -np.inf
    out = cols - top
    out[best, at] = top - rest.max(axis=0)
    return out


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0
