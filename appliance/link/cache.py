"""What the linker keeps between calls: the candidates' vectors, timestamps and text facts
stacked once and extended per call, and what it knows of each thread's turns."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

from appliance.cues import clear_cue_caches, cue_names, keywords, placeholder_types, word_count
from appliance.records import Candidate

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def micros(ts: datetime) -> int:
    """Whole microseconds since the epoch: differences divided by 1e6 are exactly
    `timedelta.total_seconds()` of the datetimes' difference."""
    return (ts - (_NAIVE_EPOCH if ts.tzinfo is None else _EPOCH)) // _MICROSECOND


@dataclass(frozen=True, slots=True)
class TextFacts:
    """What the feature rows use of a candidate's (redacted) text."""

    kw: frozenset[str]
    ph: frozenset[str]
    ack: bool
    closing: bool
    log_words: float


@lru_cache(maxsize=65536)
def text_facts(text: str) -> TextFacts:
    cues = cue_names(text)
    return TextFacts(kw=keywords(text), ph=placeholder_types(text),
                     ack="acknowledgement" in cues, closing="closing" in cues,
                     log_words=math.log1p(word_count(text)))


def forget_texts() -> None:
    """Drop every text's memoised facts (keywords, placeholder types, cues): after an
    erasure or a shred no derived text of the records stays in memory."""
    text_facts.cache_clear()
    clear_cue_caches()


@dataclass(frozen=True, slots=True)
class ThreadFacts:
    """What the linker uses of a thread's turns apart from the prompt, kept while the
    thread's turns in view stay the same. Only what a record's id fixes (vector, time,
    text). Entity keys are read from the candidates themselves (a candidate reloaded from
    the store has them too: migration m004)."""

    norm: float  # |sum of the turns' vectors| (1 for a single turn)
    keywords: frozenset[str]
    last_us: int  # micros of its latest turn
    pace: float | None  # log seconds of the median of its last five gaps (None: one turn)


@dataclass(eq=False)
class _Block:
    ids: list[int]
    mat: np.ndarray
    us: np.ndarray  # micros(ts) per row
    facts: list[TextFacts | None] = field(default_factory=list)  # worked out when first used
    postings: dict[str, list[int]] = field(default_factory=dict)  # keyword -> rows holding it
    posted: tuple[int, int] = (0, 0)  # the rows the postings cover


@dataclass(frozen=True)
class Rows:
    """cands[lo:] as the cache holds them; positions below are relative to lo."""

    mat: np.ndarray
    us: np.ndarray
    block: _Block
    start: int

    def facts(self, cands: Sequence[Candidate], idx: Sequence[int], lo: int
              ) -> list[TextFacts]:
        """TextFacts of cands[i] for each i in idx (all >= lo)."""
        held, off = self.block.facts, self.start - lo
        out = []
        for i in idx:
            got = held[i + off]
            if got is None:
                got = held[i + off] = text_facts(cands[i].text)
            out.append(got)
        return out

    def post(self, cands: Sequence[Candidate], lo: int, a: int) -> None:
        """Make `doc_freq` cover the rows from position a on (the block's postings grow
        at the end as the window moves on; anything else starts them afresh)."""
        block, b = self.block, self.start + len(self.us)
        first, last = block.posted
        a += self.start
        if a > last or a < first and first != last:
            block.postings, first, last = {}, a, a
        if first == last:
            first = last = a
        for row, c in enumerate(cands[last - self.start + lo:b - self.start + lo], last):
            for w in keywords(c.text):
                block.postings.setdefault(w, []).append(row)
        block.posted = (first, max(last, b))

    def doc_freq(self, word: str, a: int) -> int:
        """How many rows from position a on hold the keyword (after `post` from a or
        earlier)."""
        rows = self.block.postings.get(word)
        if not rows:
            return 0
        return (bisect_left(rows, self.start + len(self.us))
                - bisect_left(rows, self.start + a))


class VectorCache:
    """Candidate vectors (with timestamps and text facts) stacked once and extended per call,
    so a call costs O(new turns).

    The pipeline hands the same history again and again with one more turn
    appended (and the oldest pruned); restacking 10,000 vectors per prompt would
    cost more than the whole decision. Alignment is checked at both ends.
    """

    def __init__(self, max_rows: int = 200_000) -> None:
        self._where: dict[int, tuple[_Block, int]] = {}
        self._rows = 0
        self._max_rows = max_rows
        # by the record ids of a thread's turns in view
        self.threads: dict[tuple[int, ...], ThreadFacts] = {}

    def matrix(self, cands: Sequence[Candidate], lo: int) -> np.ndarray:
        """Vector rows for cands[lo:], in order."""
        return self.rows(cands, lo).mat

    def rows(self, cands: Sequence[Candidate], lo: int) -> Rows:
        """Vectors, `micros` timestamps and text facts of cands[lo:], in order."""
        n = len(cands) - lo
        hit = self._where.get(cands[lo].record_id)
        if hit is not None:
            block, start = hit
            k = min(len(block.ids) - start, n)
            if block.ids[start + k - 1] == cands[lo + k - 1].record_id and start <= 1024 + k:
                if k < n:
                    self._extend(block, cands[lo + k:])
                return Rows(block.mat[start:start + n], block.us[start:start + n], block, start)
            self._drop(block)
        if self._rows + n > self._max_rows:
            self.clear()
        block = _Block([], np.zeros((0, cands[lo].vector.shape[0]), dtype=np.float32),
                       np.zeros(0, dtype=np.int64))
        self._extend(block, cands[lo:])
        return Rows(block.mat[:n], block.us[:n], block, 0)

    def clear(self) -> None:
        """Hold nothing: no vector, timestamp, text fact or thread fact of any record. The
        next call restacks what it is handed, with the same results."""
        self._where.clear()
        self._rows = 0
        self.threads.clear()

    def __contains__(self, record_id: object) -> bool:
        """Whether the cache holds this record's row, or facts of a thread it is a turn of."""
        return record_id in self._where or any(record_id in key for key in self.threads)

    def _drop(self, block: _Block) -> None:
        for rid in block.ids:
            self._where.pop(rid, None)
        self._rows -= len(block.ids)

    def _extend(self, block: _Block, new: Sequence[Candidate]) -> None:
        rows = len(block.ids) + len(new)
        if rows > block.mat.shape[0]:
            size = max(rows, 2 * block.mat.shape[0], 64)
            bigger = np.zeros((size, block.mat.shape[1]), dtype=np.float32)
            bigger[:len(block.ids)] = block.mat[:len(block.ids)]
            us = np.zeros(size, dtype=np.int64)
            us[:len(block.ids)] = block.us[:len(block.ids)]
            block.mat, block.us = bigger, us
        first = len(block.ids)
        block.mat[first:rows] = np.stack([c.vector for c in new])
        block.us[first:rows] = [micros(c.ts) for c in new]
        block.facts.extend([None] * len(new))
        for row, c in enumerate(new, first):
            self._where[c.record_id] = (block, row)
        block.ids.extend(c.record_id for c in new)
        self._rows += len(new)
