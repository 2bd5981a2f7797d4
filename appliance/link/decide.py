"""The decision for one prompt: parent, thread, position, intent, evidence. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from appliance.config import CorrelationSettings
from appliance.cues import cue_names, intent_of, orphan_cues
from appliance.link.cache import VectorCache, forget_texts
from appliance.link.features import (
    FEATURES,
    ORPHAN_CUES,
    REFERRING_CUES,
    LinkInput,
    features,
)
from appliance.link.model import PairModel, load_model
from appliance.records import Candidate, Link


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


def _evidence(names: Sequence[str], row: np.ndarray | None, score: float, runner_up: float,
              cues: frozenset[str], n: int, threshold: float) -> dict[str, Any]:
    """Numbers and cue names only: what the "why linked" panel shows."""
    ev: dict[str, Any] = {"score": round(score, 4), "runner_up": round(runner_up, 4),
                          "threshold": threshold, "cues": sorted(cues), "scored": n}
    if row is not None:
        ev["features"] = {k: round(v, 4) for k, v in zip(names, row.tolist(), strict=True)}
    return ev


def new_position(text: str, score: float, s: CorrelationSettings) -> str:
    """A prompt that starts a thread: `orphaned` when it reads as a follow-up that nothing
    continues (a follow-up cue that still points back when nothing precedes it,
    `cues.orphan_cues`: "Why is it so expensive?", "How about tomorrow?", not "Can you
    explain how vaccines work?" nor "My dog is limping. What could be wrong?"; and a link
    probability below `orphan_threshold`), else `new`. (A change of subject inside a
    conversation is a linked `topic_shift`, never a new thread.)"""
    orphan = score < s.orphan_threshold and bool(orphan_cues(text) & ORPHAN_CUES)
    return "orphaned" if orphan else "new"


def decide(q: LinkInput, cands: Sequence[Candidate], model: PairModel, s: CorrelationSettings,
           cache: VectorCache, threshold: float | None = None) -> Link:
    """The link for one prompt: best-scoring shortlisted candidate, or a new thread.

    `threshold` overrides the policy's `link_threshold` (a tenant's calibrated one).
    """
    intent = intent_of(q.text)
    thr = s.link_threshold if threshold is None else threshold
    if not cands:
        cues = cue_names(q.text)
        return Link(parent_id=None, thread_id=None, position=new_position(q.text, 0.0, s),
                    intent=intent, similarity=None, score=0.0,
                    evidence=_evidence(FEATURES, None, 0.0, 0.0, cues, 0, thr))
    opener = model.opener_proba(q)
    pick, x, sims, cues = features(q, cands, s, cache, opener, model.closer_proba)
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
    ev = _evidence(FEATURES, x[b], score, runner, cues, len(pick), thr)
    ev["parent_score"] = round(float(p[b]), 4)
    ev["opener"] = round(opener, 4)
    if score < thr:
        return Link(parent_id=None, thread_id=None, intent=intent, similarity=float(sims[b]),
                    position=new_position(q.text, score, s), score=score, evidence=ev)
    parent = cands[pick[b]]
    return Link(parent_id=parent.record_id, thread_id=parent.thread_id,
                position=_linked_position(q, cands, parent, (float(sims[b]), opener), cues, s,
                                          intent),
                intent=intent, similarity=float(sims[b]), score=score, evidence=ev)


def _linked_position(q: LinkInput, cands: Sequence[Candidate], parent: Candidate,
                     sim_opener: tuple[float, float], cues: frozenset[str],
                     s: CorrelationSettings, intent: str | None = None) -> str:
    """`topic_shift`: the subject changed inside the conversation (unlike the parent and the
    thread's last turns, nothing in the prompt refers back, and it reads as an opening);
    else `continuation`."""
    sim, opener = sim_opener
    if intent is None:
        intent = intent_of(q.text)
    if (cues & REFERRING_CUES or intent == "conversation_management"
            or opener < s.topic_shift_opener):
        return "continuation"
    recent = [sim]
    for c in reversed(cands[-200:]):
        if c.thread_id == parent.thread_id:
            recent.append(float(c.vector @ q.vector))
            if len(recent) > 3:
                break
    return "topic_shift" if max(recent) < s.topic_shift_similarity else "continuation"


class CachedLinker:
    """The learned linker with its cache: a `Linker`, and `forget()` for erasure."""

    def __init__(self, model: PairModel, settings: CorrelationSettings) -> None:
        self._model, self._s = model, settings
        self.cache = VectorCache()

    def __call__(self, query: LinkInput, candidates: Sequence[Candidate],
                 threshold: float | None = None) -> Link:
        return decide(query, candidates, self._model, self._s, self.cache, threshold)

    def forget(self) -> None:
        """Drop every vector, text fact and thread fact held in memory (after an erasure or
        a shred). All of it, not one user's: rows a user's history has pruned stay stacked
        where no id in memory leads. Decisions do not change; the next call per user
        restacks its history once."""
        self.cache.clear()
        forget_texts()


def make_linker(settings: CorrelationSettings | None = None) -> CachedLinker:
    """The learned linker configured by policy (weights loaded once)."""
    s = settings or CorrelationSettings()
    return CachedLinker(load_model(s), s)
