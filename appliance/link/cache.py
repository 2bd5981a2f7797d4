"""The candidates' vectors, stacked once and extended per call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from appliance.records import Candidate


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
