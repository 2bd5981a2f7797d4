"""Linking: which earlier prompt (if any) a new prompt continues. Pure; no I/O.

The caller hands in the prompt's vector and the user's candidate history
(same tenant and user only, oldest first); the linker returns a `Link`.
A learned pairwise model (trained offline by bench/train_linker.py, shipped as
`policies/linker-weights.json`, evaluated here with numpy only) scores a
shortlist of candidates: the most recent turns, the latest turn of each recently
active thread and the most similar turns. The best candidate becomes the parent
when its probability reaches `link_threshold`; otherwise a new thread starts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import CorrelationSettings, policy_dir
from appliance.cues import (  # noqa: F401  (re-exported for callers of link)
    ack_then_request,
    cue_names,
    intent_of,
    keywords,
    placeholder_types,
    word_count,
)
from appliance.errors import ConfigError
from appliance.opener import OpenerModel
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


def link_rule(query: LinkInput, candidates: Sequence[Candidate], *, threshold: float = 0.75,
              window_hours: float = 24.0) -> Link:
    """The design's first rule: most similar earlier prompt within 24 h above the threshold."""
    best: Candidate | None = None
    best_sim = -1.0
    for c in candidates:
        gap_h = (query.ts - c.ts).total_seconds() / 3600.0
        if gap_h < 0 or gap_h > window_hours:
            continue
        sim = float(np.dot(query.vector, c.vector))
        if sim > best_sim:
            best, best_sim = c, sim
    if best is None or best_sim <= threshold:
        return Link(parent_id=None, thread_id=None, position="new", intent="information_seeking",
                    similarity=None if best is None else best_sim)
    return Link(parent_id=best.record_id, thread_id=best.thread_id, position="continuation",
                intent="information_seeking", similarity=best_sim)


@dataclass(eq=False)
class _Block:
    ids: list[int]
    mat: np.ndarray


class VectorCache:
    """Candidate vectors stacked once and extended per call, so a call costs O(new turns).

    The pipeline hands the same history again and again with one more turn
    appended (and the oldest pruned); restacking 10,000 vectors per prompt would
    cost more than the whole decision. Alignment is checked at both ends.
    """

    def __init__(self, max_rows: int = 200_000) -> None:
        self._where: dict[int, tuple[_Block, int]] = {}
        self._rows = 0
        self._max_rows = max_rows

    def matrix(self, cands: Sequence[Candidate], lo: int) -> np.ndarray:
        """Rows for cands[lo:], in order."""
        n = len(cands) - lo
        hit = self._where.get(cands[lo].record_id)
        if hit is not None:
            block, start = hit
            k = min(len(block.ids) - start, n)
            if block.ids[start + k - 1] == cands[lo + k - 1].record_id and start <= 1024 + k:
                if k < n:
                    self._extend(block, cands[lo + k:])
                return block.mat[start:start + n]
            self._drop(block)
        if self._rows + n > self._max_rows:
            self._where.clear()
            self._rows = 0
        block = _Block([], np.zeros((0, cands[lo].vector.shape[0]), dtype=np.float32))
        self._extend(block, cands[lo:])
        return block.mat[:n]

    def _drop(self, block: _Block) -> None:
        for rid in block.ids:
            self._where.pop(rid, None)
        self._rows -= len(block.ids)

    def _extend(self, block: _Block, new: Sequence[Candidate]) -> None:
        rows = len(block.ids) + len(new)
        if rows > block.mat.shape[0]:
            bigger = np.zeros((max(rows, 2 * block.mat.shape[0], 64), block.mat.shape[1]),
                              dtype=np.float32)
            bigger[:len(block.ids)] = block.mat[:len(block.ids)]
            block.mat = bigger
        for c in new:
            block.mat[len(block.ids)] = c.vector
            self._where[c.record_id] = (block, len(block.ids))
            block.ids.append(c.record_id)
        self._rows += len(new)


class PairModel:
    """The learned scorer: logistic regression or boosted trees, as numpy arrays, and the
    opener model whose probability is one of its features."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if list(spec["features"]) != list(FEATURES):
            raise ValueError("the weights file was trained on other features")
        self.opener = OpenerModel(spec["opener"]) if spec.get("opener") else None
        dec = spec.get("decision")
        self.decision = None if not dec else (
            np.asarray(dec["mean"], dtype=np.float64), np.asarray(dec["scale"], dtype=np.float64),
            np.asarray(dec["coef"], dtype=np.float64), float(dec["intercept"]))
        if dec and list(dec["features"]) != list(DECISION_FEATURES):
            raise ValueError("the decision model was trained on other features")
        self.kind = spec["kind"]
        self.mean = np.asarray(spec["scaler"]["mean"], dtype=np.float64)
        self.scale = np.asarray(spec["scaler"]["scale"], dtype=np.float64)
        self.intercept = float(spec["intercept"])
        if self.kind == "logistic":
            self.coef = np.asarray(spec["coef"], dtype=np.float64)
        elif self.kind == "gbm":
            t = spec["trees"]
            self.rate = float(t["learning_rate"])
            self.depth = int(t["depth"])
            # Flattened: node k of tree t lives at t * width + k.
            feat = np.asarray(t["feature"], dtype=np.int64)
            offset = (np.arange(feat.shape[0]) * feat.shape[1])[:, None]
            self.roots = offset[:, 0]
            self.feat = feat.ravel()
            self.thr = np.asarray(t["threshold"], dtype=np.float64).ravel()
            left = (np.asarray(t["left"], dtype=np.int64) + offset).ravel()
            right = (np.asarray(t["right"], dtype=np.int64) + offset).ravel()
            self.children = np.stack([left, right], axis=1).ravel()  # node k: 2k left, 2k+1 right
            self.value = np.asarray(t["value"], dtype=np.float64).ravel()
        else:
            raise ValueError(f"unknown model kind {self.kind!r}")

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Link probability per row of the feature matrix."""
        z = (x - self.mean) / self.scale
        if self.kind == "logistic":
            raw = z @ self.coef + self.intercept
        else:
            flat = z.ravel()
            row_start = (np.arange(z.shape[0]) * z.shape[1])[:, None]
            node = np.repeat(self.roots[None, :], z.shape[0], axis=0)
            for _ in range(self.depth):  # leaves point to themselves
                go_right = np.take(flat, row_start + np.take(self.feat, node)) > np.take(
                    self.thr, node)
                node = np.take(self.children, 2 * node + go_right)
            raw = self.intercept + self.rate * np.take(self.value, node).sum(axis=1)
        return 1.0 / (1.0 + np.exp(-raw))

    def link_proba(self, masses: Sequence[float], opener: float, row: np.ndarray) -> float:
        """Probability that the prompt continues some earlier turn: the decision model over
        the candidates' summed probabilities and a few prompt features, else their sum."""
        total = min(sum(masses), 1.0)
        if self.decision is None:
            return total
        mean, scale, coef, intercept = self.decision
        z = float(((decision_row(masses, opener, row) - mean) / scale) @ coef) + intercept
        return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))

    def opener_proba(self, q: LinkInput) -> float:
        """The prompt's opener probability (given, else from the opener model, else 0.5)."""
        if q.opener is not None:
            return q.opener
        return self.opener.proba(q.vector, q.text) if self.opener is not None else 0.5


def load_model(settings: CorrelationSettings) -> PairModel:
    """The weights file named by the policy; ConfigError names the file when unusable."""
    path = Path(settings.weights_file)
    if not path.is_absolute():
        path = policy_dir() / path
    try:
        return PairModel(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise ConfigError(f"The linker weights file {path} is missing.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"The linker weights file {path} is unusable: {exc}.") from None


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


DECISION_FEATURES = ("total", "best_thread", "runner_up", "opener", "q_gap_last", "thread_gap",
                     "sim", "q_active_threads", "q_words")


def _logit(v: float) -> float:
    v = min(max(v, 1e-4), 1.0 - 1e-4)
    return math.log(v / (1.0 - v))


def decision_row(masses: Sequence[float], opener: float, row: np.ndarray) -> np.ndarray:
    """Input of the decision model: per-thread masses (largest first), the opener probability
    and the best candidate's feature row."""
    ranked = sorted(masses, reverse=True) + [0.0]
    return np.array([_logit(sum(masses)), _logit(ranked[0]), _logit(ranked[1]), _logit(opener),
                     *(float(row[FEATURES.index(n)]) for n in DECISION_FEATURES[4:])])


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _evidence(names: Sequence[str], row: np.ndarray | None, score: float, runner_up: float,
              cues: frozenset[str], n: int, threshold: float) -> dict[str, Any]:
    """Numbers and cue names only: what the "why linked" panel shows."""
    ev: dict[str, Any] = {"score": round(score, 4), "runner_up": round(runner_up, 4),
                          "threshold": threshold, "cues": sorted(cues), "scored": n}
    if row is not None:
        ev["features"] = {k: round(float(v), 4) for k, v in zip(names, row, strict=True)}
    return ev


def _new_position(cues: frozenset[str], score: float, s: CorrelationSettings) -> str:
    """A prompt that starts a thread: `orphaned` when it reads as a follow-up that nothing
    continues, else `new`. (A change of subject inside a conversation is a linked
    `topic_shift`, never a new thread.)"""
    return "orphaned" if cues & FOLLOW_UP_CUES and score < s.orphan_threshold else "new"


def decide(q: LinkInput, cands: Sequence[Candidate], model: PairModel, s: CorrelationSettings,
           cache: VectorCache) -> Link:
    """The link for one prompt: best-scoring shortlisted candidate, or a new thread."""
    intent = intent_of(q.text)
    if not cands:
        cues = cue_names(q.text)
        return Link(parent_id=None, thread_id=None, position=_new_position(cues, 0.0, s),
                    intent=intent, similarity=None, score=0.0,
                    evidence=_evidence(FEATURES, None, 0.0, 0.0, cues, 0, s.link_threshold))
    opener = model.opener_proba(q)
    pick, x, sims, cues = features(q, cands, s, cache, opener)
    p = model.proba(x)
    # A prompt continues at most one turn, so its candidates' probabilities add up to the
    # chance that it continues anything, and a thread's to the chance that it continues that
    # thread: two plausible turns of one thread do not cancel out.
    per_thread: dict[str, float] = {}
    for j, i in enumerate(pick):
        per_thread[cands[i].thread_id] = per_thread.get(cands[i].thread_id, 0.0) + float(p[j])
    ranked = sorted(per_thread.values(), reverse=True)
    best = max(per_thread, key=per_thread.__getitem__)
    b = max((j for j, i in enumerate(pick) if cands[i].thread_id == best), key=lambda j: p[j])
    score = model.link_proba(ranked, opener, x[b])
    runner = ranked[1] if len(ranked) > 1 else 0.0
    ev = _evidence(FEATURES, x[b], score, runner, cues, len(pick), s.link_threshold)
    ev["parent_score"] = round(float(p[b]), 4)
    ev["opener"] = round(opener, 4)
    if score < s.link_threshold:
        return Link(parent_id=None, thread_id=None, intent=intent, similarity=float(sims[b]),
                    position=_new_position(cues, score, s), score=score, evidence=ev)
    parent = cands[pick[b]]
    return Link(parent_id=parent.record_id, thread_id=parent.thread_id,
                position=_linked_position(q, cands, parent, (float(sims[b]), opener), cues, s),
                intent=intent, similarity=float(sims[b]), score=score, evidence=ev)


def _linked_position(q: LinkInput, cands: Sequence[Candidate], parent: Candidate,
                     sim_opener: tuple[float, float], cues: frozenset[str],
                     s: CorrelationSettings) -> str:
    """`topic_shift`: the subject changed inside the conversation (unlike the parent and the
    thread's last turns, nothing in the prompt refers back, and it reads as an opening);
    else `continuation`."""
    sim, opener = sim_opener
    if (cues & REFERRING_CUES or intent_of(q.text) == "conversation_management"
            or opener < s.topic_shift_opener):
        return "continuation"
    recent = [sim]
    for c in reversed(cands[-200:]):
        if c.thread_id == parent.thread_id:
            recent.append(float(c.vector @ q.vector))
            if len(recent) > 3:
                break
    return "topic_shift" if max(recent) < s.topic_shift_similarity else "continuation"


def make_linker(settings: CorrelationSettings | None = None) -> Linker:
    """The learned linker configured by policy (weights loaded once)."""
    s = settings or CorrelationSettings()
    model = load_model(s)
    cache = VectorCache()

    def linker(query: LinkInput, candidates: Sequence[Candidate]) -> Link:
        return decide(query, candidates, model, s, cache)

    return linker
