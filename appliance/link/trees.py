"""Boosted trees compiled to complete, level-major numpy arrays and walked for all rows and
trees at once. Pure.

The weights file stores each tree as node arrays (`feature`, `threshold`, `left`, `right`,
`value`; a leaf points to itself). Compiling pads every tree to a complete tree of the
ensemble's depth (below a leaf, a test that always goes left carries its value down) and
lays the nodes out level by level, tree after tree, so one step from node `g` at level `l`
to its child is `2 * g + c[l] + (x > threshold)`: no child lookups, one gather per array.
The result is the same as walking the stored trees: the same comparisons, the same leaves,
summed in the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CompiledTrees:
    """A gradient-boosted ensemble as flat arrays (`raw` gives the summed, scaled leaves)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        feat = np.asarray(spec["feature"], dtype=np.int64)
        thr = np.asarray(spec["threshold"], dtype=np.float64)
        left = np.asarray(spec["left"], dtype=np.int64)
        right = np.asarray(spec["right"], dtype=np.int64)
        value = np.asarray(spec["value"], dtype=np.float64)
        if not feat.shape == thr.shape == left.shape == right.shape == value.shape:
            raise ValueError("the tree arrays differ in shape")
        self.rate = float(spec["learning_rate"])
        self.depth = int(spec["depth"])
        self.n_trees = feat.shape[0]
        t, d = self.n_trees, self.depth
        base = [(2 ** lv - 1) * t for lv in range(d + 1)]  # first node of each level
        self.feature = np.zeros(base[d], dtype=np.intp)
        self.threshold = np.full(base[d], np.inf)  # +inf: always left (NaN goes left too)
        self.leaf = np.zeros(t * 2 ** d)
        for k in range(t):
            nodes = [0]
            for lv in range(d):
                at = base[lv] + k * 2 ** lv
                for j, node in enumerate(nodes):
                    if not left[k, node] == right[k, node] == node:
                        self.feature[at + j] = feat[k, node]
                        self.threshold[at + j] = thr[k, node]
                nodes = [c for node in nodes for c in (left[k, node], right[k, node])]
            self.leaf[k * 2 ** d:(k + 1) * 2 ** d] = value[k, nodes]
        # child of node g at level lv: 2 * g + step[lv] + went_right
        self.step = [base[lv + 1] - 2 * base[lv] for lv in range(d)]
        # level 0 is the same node of each tree for every row: no gathers
        self.root_feature, self.root_threshold = self.feature[:t], self.threshold[:t]
        self.root_step = 2 * np.arange(t) + (self.step[0] if d else 0)
        self.leaf_base = base[d]

    def raw(self, z: np.ndarray) -> np.ndarray:
        """learning_rate * (sum of the leaves reached) per row of the (scaled) feature matrix."""
        rows, width = z.shape
        flat = z.ravel()
        row_start = (np.arange(rows) * width)[:, None]
        if not self.step:  # single leaves
            return self.rate * np.broadcast_to(self.leaf, (rows, self.n_trees)).sum(axis=1)
        node = self.root_step + (z[:, self.root_feature] > self.root_threshold)
        for step in self.step[1:]:
            right = flat.take(row_start + self.feature.take(node)) > self.threshold.take(node)
            node *= 2
            node += right
            node += step
        node -= self.leaf_base
        return self.rate * self.leaf.take(node).sum(axis=1)
