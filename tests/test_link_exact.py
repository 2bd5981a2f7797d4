"""The linker's fast paths compute exactly what the plain computation does.

Pure unit tests with plain arrays and lists: the compiled tree ensemble against a
node-by-node walk of the shipped weights file.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def _walk(trees: dict[str, Any], row: np.ndarray) -> float:
    """learning_rate * sum of the leaves, walking each stored tree node by node."""
    total = 0.0
    for feat, thr, left, right, value in zip(trees["feature"], trees["threshold"], trees["left"],
                                             trees["right"], trees["value"], strict=True):
        node = 0
        while not left[node] == right[node] == node:
            node = right[node] if row[feat[node]] > thr[node] else left[node]
        total += value[node]
    return float(trees["learning_rate"]) * total


def test_compiled_trees_score_as_walking_each_stored_tree(policies) -> None:  # type: ignore[no-untyped-def]
    from appliance.config import policy_dir
    from appliance.link.trees import CompiledTrees

    spec = json.loads((policy_dir() / policies.correlation.weights_file).read_text())
    trees = spec["trees"]
    rng = np.random.default_rng(0)
    # Values on both sides of, and exactly at, the thresholds each feature is tested against.
    width = len(spec["features"])
    cuts: list[list[float]] = [[0.0] for _ in range(width)]
    for feat, thr, left in zip(trees["feature"], trees["threshold"], trees["left"], strict=True):
        for k, (f, t) in enumerate(zip(feat, thr, strict=True)):
            if left[k] != k:
                cuts[f].append(t)
    z = np.array([[rng.choice(c) + rng.choice([-1e-9, 0.0, 1e-9]) for c in cuts]
                  for _ in range(300)])
    got = CompiledTrees(trees).raw(z)
    want = np.array([_walk(trees, row) for row in z])
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)
    assert len(set(np.round(want, 6))) > 30  # the rows reach many different leaves
