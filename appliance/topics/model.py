"""In-memory topic state: threads as units, one scope's topic matrix, fresh ids."""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from appliance.topics.cluster import LEXICAL_DIMS

# a thread's hashed TF-IDF words as (columns, values), scaled by its mass
Sparse = tuple[np.ndarray, np.ndarray]
ROWS = 4  # initial topic rows of a scope (a per-user scope holds few); they double as needed


def new_topic_id() -> str:
    """A fresh, opaque topic id."""
    return "tp_" + secrets.token_hex(6)


def utc_day(ts: float) -> str:
    """The UTC day of a prompt's time: the day of the bucket its record is stored in."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


@dataclass
class DayShare:
    """What one UTC day of a thread's prompts added to it (a retention shred takes a day)."""

    total: np.ndarray
    prompts: int = 0
    weight: float = 0.0
    weight2: float = 0.0
    phrases: Counter[str] = field(default_factory=Counter)
    last_ts: float = 0.0
    fed_at: float = 0.0  # wall-clock time of its last prompt here (an in-flight one is kept)


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
    lexical: Sparse | None = None  # its words' share of its topic's row (`ScopeTopics`)
    days: dict[str, DayShare] = field(default_factory=dict)  # UTC day -> its share

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
        self.totals = np.zeros((ROWS, dims), dtype=np.float32)
        self.counts = np.zeros(ROWS, dtype=np.float32)
        self.members = np.zeros(ROWS, dtype=np.int64)  # threads per topic
        self.lexical = np.zeros((ROWS, LEXICAL_DIMS), dtype=np.float32)  # sums of words
        self.own = np.zeros(ROWS, dtype=np.float64)  # sums of prompts' squared norms
        self.squares = np.zeros(ROWS, dtype=np.float64)  # ... and of their squared weights

    def _row(self, topic_id: str) -> int:
        i = self.pos.get(topic_id)
        if i is None:
            i = len(self.ids)
            if i == len(self.counts):
                self.totals = np.vstack([self.totals, np.zeros_like(self.totals)])
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
                self.members = np.concatenate([self.members, np.zeros_like(self.members)])
                self.lexical = np.vstack([self.lexical, np.zeros_like(self.lexical)])
                self.own = np.concatenate([self.own, np.zeros_like(self.own)])
                self.squares = np.concatenate([self.squares, np.zeros_like(self.squares)])
            self.ids.append(topic_id)
            self.pos[topic_id] = i
        return i

    def add(self, topic_id: str, total: np.ndarray, count: float,
            lexical: Sparse | None = None, own: float = 0.0, squares: float = 0.0) -> None:
        i = self._row(topic_id)
        self.totals[i] += total
        self.counts[i] += count
        self.members[i] += 1
        self.own[i] += own
        self.squares[i] += squares
        if lexical is not None:
            self.lexical[i, lexical[0]] += lexical[1]

    def remove(self, topic_id: str, total: np.ndarray, count: float,
               lexical: Sparse | None = None, own: float = 0.0, squares: float = 0.0) -> None:
        i = self.pos.get(topic_id)
        if i is not None:
            self.totals[i] -= total
            self.own[i] -= own
            self.squares[i] -= squares
            if lexical is not None:
                self.lexical[i, lexical[0]] -= lexical[1]
            self.counts[i] = max(self.counts[i] - count, 0)
            self.members[i] = max(self.members[i] - 1, 0)

    def score(self, topic_id: str, vector: np.ndarray, lexical: Sparse | None = None,
              weight: float = 0.0) -> float:
        i = self.pos.get(topic_id)
        if i is None or self.counts[i] <= 0:
            return -np.inf
        dot = (1.0 - weight) * float(self.totals[i] @ vector)
        if lexical is not None and weight > 0:
            dot += weight * float(self.lexical[i, lexical[0]] @ lexical[1])
        return dot / float(self.counts[i])

    def threads(self, topic_id: str) -> int:
        """How many threads a topic holds."""
        i = self.pos.get(topic_id)
        return 0 if i is None else int(self.members[i])

    def best(self, vector: np.ndarray, lexical: Sparse | None = None, *, weight: float = 0.0,
             threshold: float = -np.inf, absorb: float | None = None,
             support: int = 1, seed: float = 0.0,
             cohesion: float = np.nan) -> tuple[str | None, float]:
        """The topic whose threads are on average most similar to `vector`, and that mean.

        With `lexical` (the thread's unit TF-IDF words) the similarity is the
        refinement's: (1 - weight) x embeddings + weight x words. Only topics at
        least that similar count: `threshold`, or `absorb` for an established
        topic (at least `support` threads), as in the refinement; a small one
        also needs `seed` x the cohesion of the tighter of it and the thread
        (`cohesion`: the thread's own, NaN for one prompt).
        """
        k = len(self.ids)
        if not k:
            return None, -np.inf
        sims = np.full(k, -np.inf, dtype=np.float32)
        live = self.counts[:k] > 0
        if absorb is not None and support > 1:
            floor = np.where(self.members[:k] >= support, absorb, threshold)
        else:
            floor = np.full(k, threshold)
        # blocks of 1024 rows stay below OpenBLAS's threading threshold, which costs
        # more than it saves on a busy 2-core host
        dots = np.concatenate([self.totals[s:min(s + 1024, k)] @ vector
                               for s in range(0, k, 1024)])
        if lexical is not None and weight > 0:
            dots = (1.0 - weight) * dots + weight * (self.lexical[:k, lexical[0]] @ lexical[1])
        sims[live] = dots[live] / self.counts[:k][live]
        sims[sims < floor] = -np.inf
        if seed > 0 and absorb is not None and support > 1:
            for j in np.flatnonzero(np.isfinite(sims) & (self.members[:k] < support)):
                need = seed * np.fmax(self.cohesion(int(j), weight), cohesion)
                if sims[j] < need:  # NaN (neither has two prompts): the floor only
                    sims[j] = -np.inf
        i = int(np.argmax(sims))
        return (self.ids[i], float(sims[i])) if np.isfinite(sims[i]) else (None, -np.inf)

    def cohesion(self, i: int, weight: float) -> float:
        """The mean similarity between topic row i's distinct prompts (NaN for one)."""
        pairs = float(self.counts[i]) ** 2 - self.squares[i]
        if pairs <= 1e-6:
            return float("nan")
        norm = (1.0 - weight) * float(self.totals[i] @ self.totals[i])
        if weight > 0:
            norm += weight * float(self.lexical[i] @ self.lexical[i])
        return (norm - self.own[i]) / pairs

    def rebuild(self, members: list[tuple[str, np.ndarray, float, Sparse | None, float, float]]
                ) -> None:
        """Recompute every row from (topic id, thread's sum, its mass, its words, the sums
        of its prompts' squared norms and squared weights)."""
        dims = self.totals.shape[1]
        rows = max(ROWS, len({m[0] for m in members}))
        self.ids, self.pos = [], {}
        self.totals = np.zeros((rows, dims), dtype=np.float32)
        self.counts = np.zeros(rows, dtype=np.float32)
        self.members = np.zeros(rows, dtype=np.int64)
        self.lexical = np.zeros((rows, LEXICAL_DIMS), dtype=np.float32)
        self.own = np.zeros(rows, dtype=np.float64)
        self.squares = np.zeros(rows, dtype=np.float64)
        for tid, total, count, lexical, own, squares in members:
            self.add(tid, total, count, lexical, own, squares)
