"""The live topic state of one tenant, and what one thread adds to its topic.

`TenantTopics` holds a tenant's threads (as units), its scopes' topic rows, the
aliases of merged topic ids and the live threads' word counts; `share` and
`cohesion` are what one thread contributes to its topic's row. No I/O, no locks:
`TopicAssigner` holds the lock.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from appliance.topics.cluster import LEXICAL_DIMS
from appliance.topics.model import DayShare, ScopeTopics, Sparse, Unit, utc_day
from appliance.topics.terms import phrases, prompt_weight

MAX_PHRASES = 200  # phrases kept per thread


@dataclass
class TenantTopics:
    """The live topic state of one tenant."""

    units: dict[str, Unit] = field(default_factory=dict)  # thread id -> unit
    scopes: dict[str, ScopeTopics] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # merged id -> id it went into
    created: dict[str, float] = field(default_factory=dict)
    recent: dict[str, tuple[str, float]] = field(default_factory=dict)  # user -> (topic, ts)
    contentless: dict[str, str | None] = field(default_factory=dict)  # thread -> inherited
    pending: int = 0  # content prompts since the last refinement
    df: Counter[str] = field(default_factory=Counter)  # live threads using each word

    def resolve(self, topic_id: str | None) -> str | None:
        """The live topic an id now belongs to (following merges)."""
        seen = 0
        while topic_id in self.alias and seen < 64:
            topic_id, seen = self.alias[topic_id], seen + 1
        return topic_id

    def feed(self, unit: Unit, vector: np.ndarray, text: str, ts: float) -> None:
        """Add one content prompt to its thread: vector, weight, time and words (also kept
        by the prompt's UTC day, which a retention shred may take alone: `drop_days`)."""
        w = prompt_weight(text)
        vec = w * np.asarray(vector, dtype=np.float32)
        key = utc_day(ts)
        day = unit.days.get(key)
        if day is None:
            day = unit.days[key] = DayShare(np.zeros_like(vec))
        for part in (unit, day):
            part.total = part.total + vec
            part.prompts += 1
            part.weight += w
            part.weight2 += w * w
            part.last_ts = max(part.last_ts, ts)
        day.fed_at = time.time()
        if len(unit.phrases) < MAX_PHRASES:
            found = phrases(text)
            self.df.update(p for p in found if " " not in p and p not in unit.phrases)
            unit.phrases.update(found)
            day.phrases.update(found)

    def drop_days(self, unit: Unit, keep: Collection[str], shredded_at: float) -> bool:
        """Take out of a thread the days of it no longer stored (a retention shred of its
        older days): their vectors, weights and words, in memory as in the store.

        `keep`: the thread's days still stored; a day fed after `shredded_at` (a prompt
        on its way to the store) stays. True when the thread changed.
        """
        gone = [d for d, share in unit.days.items()
                if d not in keep and share.fed_at <= shredded_at]
        if not gone:
            return False
        before = {p for p in unit.phrases if " " not in p}
        for d in gone:
            del unit.days[d]
        days = list(unit.days.values())
        unit.total = sum((d.total for d in days), np.zeros_like(unit.total))
        unit.prompts = sum(d.prompts for d in days)
        unit.weight = sum(d.weight for d in days)
        unit.weight2 = sum(d.weight2 for d in days)
        unit.last_ts = max((d.last_ts for d in days), default=0.0)
        unit.phrases = sum((d.phrases for d in days), Counter())
        for word in before - set(unit.phrases):
            self.df[word] -= 1
            if self.df[word] <= 0:
                del self.df[word]
        return True

    def lexical(self, unit: Unit, weight: float) -> Sparse | None:
        """A thread's words as the refinement sees them (`cluster.lexical_vectors`, with
        the live threads' idf), scaled by its mass: its share of its topic's row.

        `weight` is `topic_lexical_weight`: at 0 words play no part (None).
        """
        if weight <= 0:
            return None
        n = max(len(self.units), 1)
        row: dict[int, float] = defaultdict(float)
        for word, count in unit.phrases.items():
            df = self.df.get(word, 0)
            if " " in word or df < 2:
                continue
            row[zlib.crc32(word.encode()) % LEXICAL_DIMS] += \
                (1.0 + np.log(count)) * np.log(n / df)
        cols = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
        vals = np.fromiter(row.values(), dtype=np.float32, count=len(row))
        norm = float(np.linalg.norm(vals))
        return cols, (vals * (unit.weight / norm) if norm > 0 else vals)


def share(unit: Unit, weight: float) -> tuple[np.ndarray, float, Sparse | None, float, float]:
    """What a thread adds to its topic's row: its sum, mass, words, and the sums of
    its prompts' squared feature norms and squared weights (`cluster.self_similarity`).

    `weight` is `topic_lexical_weight`.
    """
    words = 1.0 if unit.lexical is not None and len(unit.lexical[0]) else 0.0
    return (unit.total, unit.weight, unit.lexical,
            unit.weight2 * ((1.0 - weight) + weight * words), unit.weight2)


def cohesion(unit: Unit, weight: float) -> float:
    """The mean similarity between a thread's own distinct prompts (NaN for one)."""
    _, mass, lexical, own, squares = share(unit, weight)
    pairs = mass * mass - squares
    if pairs <= 1e-6:
        return float("nan")
    words = 1.0 if lexical is not None and len(lexical[0]) else 0.0
    norm = (1.0 - weight) * float(unit.total @ unit.total) + weight * mass * mass * words
    return (norm - own) / pairs
