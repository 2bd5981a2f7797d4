"""In-memory topic state: threads as units, one scope's topic matrix, fresh ids."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field

import numpy as np


def new_topic_id() -> str:
    """A fresh, opaque topic id."""
    return "tp_" + secrets.token_hex(6)


@dataclass
class Unit:
    """One thread as topics see it: the weighted sum of its content prompts' vectors, phrases."""

    thread_id: str
    scope: str
    user: str
    total: np.ndarray
    prompts: int = 0
    weight: float = 0.0  # sum of its prompts' weights (`terms.prompt_weight`): its mass
    weight2: float = 0.0  # sum of their squares (for the cohesion of a group)
    phrases: Counter[str] = field(default_factory=Counter)
    last_ts: float = 0.0
    topic: str | None = None

    @property
    def vector(self) -> np.ndarray:
        """The weighted mean of the thread's content prompts' vectors (not normalised)."""
        return (self.total / max(self.weight, 1e-9)).astype(np.float32)


class ScopeTopics:
    """The topics of one scope as (sum of member prompts' vectors, prompt count) rows.

    `score` is the mean cosine similarity between a thread's prompts and a
    topic's prompts (average linkage), which, unlike the cosine to a centroid,
    does not grow as a broad topic gathers members, nor as threads grow long.
    """

    def __init__(self, dims: int) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.totals = np.zeros((16, dims), dtype=np.float32)
        self.counts = np.zeros(16, dtype=np.float32)

    def _row(self, topic_id: str) -> int:
        i = self.pos.get(topic_id)
        if i is None:
            i = len(self.ids)
            if i == len(self.counts):
                self.totals = np.vstack([self.totals, np.zeros_like(self.totals)])
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
            self.ids.append(topic_id)
            self.pos[topic_id] = i
        return i

    def add(self, topic_id: str, total: np.ndarray, count: float) -> None:
        i = self._row(topic_id)
        self.totals[i] += total
        self.counts[i] += count

    def remove(self, topic_id: str, total: np.ndarray, count: float) -> None:
        i = self.pos.get(topic_id)
        if i is not None:
            self.totals[i] -= total
            self.counts[i] = max(self.counts[i] - count, 0)

    def score(self, topic_id: str, vector: np.ndarray) -> float:
        i = self.pos.get(topic_id)
        if i is None or self.counts[i] <= 0:
            return -np.inf
        return float(self.totals[i] @ vector / self.counts[i])

    def best(self, vector: np.ndarray) -> tuple[str | None, float]:
        """The topic whose threads are on average most similar to `vector`, and that mean."""
        k = len(self.ids)
        if not k:
            return None, -np.inf
        sims = np.full(k, -np.inf, dtype=np.float32)
        live = self.counts[:k] > 0
        # blocks of 1024 rows stay below OpenBLAS's threading threshold, which costs
        # more than it saves on a busy 2-core host
        dots = np.concatenate([self.totals[s:min(s + 1024, k)] @ vector
                               for s in range(0, k, 1024)])
        sims[live] = dots[live] / self.counts[:k][live]
        i = int(np.argmax(sims))
        return (self.ids[i], float(sims[i])) if live[i] else (None, -np.inf)

    def rebuild(self, members: list[tuple[str, np.ndarray, float]]) -> None:
        """Recompute every row from (topic id, thread's sum, thread's prompts)."""
        dims = self.totals.shape[1]
        self.ids, self.pos = [], {}
        self.totals = np.zeros((max(16, len(members)), dims), dtype=np.float32)
        self.counts = np.zeros(max(16, len(members)), dtype=np.float32)
        for tid, total, count in members:
            self.add(tid, total, count)
