"""A tenant index's slots: the vectors it takes, the fillers that overwrite removed ones,
and the index a rebuild makes beside the live one (`appliance.index` says how they are used).
"""

from __future__ import annotations

import contextlib
import ctypes
from dataclasses import dataclass, field

import numpy as np
from usearch.index import Index

# A filler is never searched for, so it is inserted with a narrow beam (usearch's
# expansion_add, 128 by default): at 128 removing half of 120,000 vectors took 63 s, more
# than rebuilding the rest (34 s); at 8, 16 s, recall@10 0.995 vs 0.997 after it
# (bench/index_removal.py, README's Speed table).
FILLER_EXPANSION = 8


def vectors_of(index: Index, keys: list[int]) -> np.ndarray:
    """The vectors of `keys` as `index` holds them (quantised)."""
    return np.asarray(index.get(np.asarray(keys, dtype=np.uint64)), dtype=np.float32)


def put(index: Index, fillers: list[int], keys: np.ndarray, vectors: np.ndarray) -> None:
    """Add vectors into `index`, taking filler slots first (their keys leave `fillers`)."""
    reuse = min(len(keys), len(fillers))
    if reuse:
        index.remove(np.asarray(fillers[-reuse:], dtype=np.uint64))
        del fillers[-reuse:]
    index.add(keys, vectors)


def fill(index: Index, keys: list[int], rng: np.random.Generator) -> None:
    """Add random filler vectors under `keys`: they take the slots a removal just freed."""
    beam = index.expansion_add
    index.expansion_add = FILLER_EXPANSION  # type: ignore[misc]  # has a setter
    try:
        index.add(np.asarray(keys, dtype=np.uint64),
                  rng.standard_normal((len(keys), index.ndim)).astype(np.float32))
    finally:
        index.expansion_add = beam  # type: ignore[misc]  # real vectors: full beam


def give_back() -> None:
    """Return freed heap pages to the system: glibc keeps most of an old index's pages
    otherwise (an 80 MB index dropped: 11 MB of RSS freed at once, 22 MB after this)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: its allocator decides
        ctypes.CDLL(None).malloc_trim(0)


@dataclass(frozen=True)
class Change:
    """Keys changed since a rebuild began, as its new index must take them."""

    drop: list[int]  # removed (or re-added) since their vector was copied
    fillers: list[int]  # keys for the fillers that overwrite the dropped ones' slots
    add: list[int]  # live keys added (or re-added) since the copy began
    vectors: np.ndarray | None  # theirs, read from the old index


@dataclass
class Beside:
    """The index a rebuild is making (its thread's alone until the swap)."""

    index: Index
    held: set[int] = field(default_factory=set)  # record ids in it
    fillers: list[int] = field(default_factory=list)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(1))

    def apply(self, change: Change) -> None:
        if change.drop:
            self.index.remove(np.asarray(change.drop, dtype=np.uint64))
            fill(self.index, change.fillers, self.rng)
            self.fillers.extend(change.fillers)
            self.held.difference_update(change.drop)
        if change.vectors is not None:
            put(self.index, self.fillers, np.asarray(change.add, dtype=np.uint64),
                 change.vectors)
            self.held.update(change.add)
