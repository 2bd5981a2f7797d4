"""Removing vectors from the in-memory index (shredding, erasure) on the real usearch: each
removed vector's slot is overwritten at once by a filler, and the filler costs as little as
an insertion can (bench/index_removal.py measures how little)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest


def test_removed_vectors_are_overwritten_by_fillers_inserted_with_a_narrow_beam(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A filler was inserted into the HNSW graph as carefully as a prompt's vector (usearch's
    expansion_add, 128), though nothing ever searches for it: removing half of a 120,000-
    vector tenant took 63 s, more than rebuilding what was left (34 s), on the worker thread
    that also ingests (16 s now). Fillers now go in with a narrow beam and prompts' vectors with the
    full one; every removed vector is still gone from the index's bytes, and what is left
    is still found."""
    from usearch.index import Index

    from appliance.index import TenantIndex

    beams: list[tuple[bool, int]] = []  # (a filler's add, the beam it was inserted with)
    real_add = Index.add

    def add(self: Index, keys: Any, vectors: Any, *args: Any, **kwargs: Any) -> Any:
        beams.append((int(np.min(keys)) >= 1 << 63, int(self.expansion_add)))
        return real_add(self, keys, vectors, *args, **kwargs)

    monkeypatch.setattr(Index, "add", add)
    default = int(Index(ndim=16, metric="cos", dtype="f16").expansion_add)
    rng = np.random.default_rng(5)
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    ix = TenantIndex(16)
    ix.add("a", list(range(150)), vecs[:150])
    ix.add("b", list(range(150, 300)), vecs[150:])
    gone = [int(k) for k in rng.permutation(300)[:150]]
    held = {k: np.asarray(ix._index.get(np.uint64(k))).tobytes() for k in range(300)}
    for start in range(0, len(gone), 10):  # bucket by bucket, as retention removes them
        assert ix.remove(gone[start:start + 10]) == 10
    ix.add("a", list(range(300, 340)), rng.standard_normal((40, 16)).astype(np.float32))

    fillers = [beam for is_filler, beam in beams if is_filler]
    prompts = [beam for is_filler, beam in beams if not is_filler]
    assert len(fillers) == 15 and prompts == [default] * 3
    assert max(fillers) * 8 <= default, fillers  # was the full beam
    assert int(ix._index.expansion_add) == default  # and the next prompt gets it back
    image = bytes(ix._index.save())
    assert not any(held[k] in image for k in gone)
    kept = [k for k in range(300) if k not in set(gone)]
    assert all(held[k] in image for k in kept)
    assert len(ix) == 190
    for k in kept[:20]:
        assert ix.search(vecs[k], 1, user=None)[0].record_id == k
