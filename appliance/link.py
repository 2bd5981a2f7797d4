"""Linking: which earlier prompt (if any) a new prompt continues. Pure; no I/O.

The caller hands in the prompt's vector and the user's candidate history
(same tenant and user only, within the horizon); the linker returns a `Link`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from appliance.records import Candidate, Link


@dataclass(frozen=True)
class LinkInput:
    """What the linker knows about the new prompt (redacted text only)."""

    ts: datetime
    vector: np.ndarray
    text: str
    session_key: str | None = None
    entity_keys: tuple[str, ...] = ()


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


def make_linker(settings: object | None = None) -> Callable[[LinkInput, Sequence[Candidate]], Link]:
    """The linker configured by policy."""

    def linker(query: LinkInput, candidates: Sequence[Candidate]) -> Link:
        return link_rule(query, candidates)

    return linker
