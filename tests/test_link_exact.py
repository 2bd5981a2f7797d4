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


def _history(n: int, rng: np.random.Generator) -> list[Any]:
    """One user's turns in threads of 1-8, with sessions, entities and repeated words."""
    from datetime import UTC, datetime, timedelta

    from appliance.records import Candidate

    words = ("hotel", "flight", "museum", "weather", "python", "error", "budget", "garden")
    out, thread, left = [], 0, 0
    start = datetime(2026, 3, 2, tzinfo=UTC)
    for i in range(n):
        if left == 0:
            thread, left = thread + 1, int(rng.integers(1, 9))
        left -= 1
        vec = rng.standard_normal(16).astype(np.float32)
        text = "What about the " + " ".join(rng.choice(words, size=int(rng.integers(1, 4))))
        out.append(Candidate(
            record_id=i + 1, request_id=f"r{i}", thread_id=f"t{thread}",
            ts=start + timedelta(seconds=int(rng.integers(5, 4000)) * (i + 1)),
            vector=vec / np.linalg.norm(vec), text=text + "?",
            session_key=f"s{thread % 3}" if i % 2 else None,
            entity_keys=(f"LOCATION:{int(rng.integers(0, 4))}",) if i % 4 else ()))
    return out


def test_features_from_a_warm_cache_equal_those_computed_afresh(policies) -> None:  # type: ignore[no-untyped-def]
    """The vector cache keeps vectors, times, text facts, keyword postings and per-thread
    facts between calls; none of it may go stale as turns are appended and pruned."""
    from dataclasses import replace

    from appliance.link import LinkInput, VectorCache, features

    s = policies.correlation.model_copy(update={"scan_candidates": 120, "max_candidates": 40,
                                                "recent_candidates": 6,
                                                "similar_candidates": 5})
    rng = np.random.default_rng(3)
    hist = _history(400, rng)
    warm = VectorCache()
    lo, scored = 0, 0
    for k in range(60, 400, 3):
        if k % 40 == 0:
            lo += 25  # the oldest turns leave the horizon
        view = hist[lo:k]
        c = hist[k]
        q = LinkInput(ts=c.ts, vector=c.vector, text=c.text, session_key=c.session_key,
                      entity_keys=c.entity_keys)
        pick, x, sims, _ = features(q, view, s, warm, 0.3)
        pick2, x2, sims2, _ = features(q, view, s, VectorCache(), 0.3)
        assert pick == pick2
        assert np.array_equal(x, x2) and np.array_equal(sims, sims2)
        scored += len(pick)
        if k % 7 == 0:  # a thread's turn moves to another thread: its facts change
            hist[k - 1] = replace(hist[k - 1], thread_id=hist[k - 2].thread_id)
        if k % 50 == 0:  # history reloaded from the store: same records, no entity keys
            hist[:k] = [replace(c, entity_keys=()) for c in hist[:k]]
    assert scored > 1000


def test_keyword_document_frequency_counts_the_window() -> None:
    from appliance.cues import keywords
    from appliance.link import VectorCache

    rng = np.random.default_rng(4)
    hist = _history(300, rng)
    cache = VectorCache()
    for lo, hi in [(0, 100), (0, 150), (40, 200), (40, 200), (120, 300), (60, 300)]:
        view = hist[lo:hi]
        rows = cache.rows(view, 0)
        for a in (hi - lo - 30, 10, 0, 50):  # the window moves on, back, and on again
            rows.post(view, 0, a)
            for w in ("hotel", "flight", "garden", "absent"):
                want = sum(1 for c in hist[lo + a:hi] if w in keywords(c.text))
                assert rows.doc_freq(w, a) == want


_SCORE_IN_A_FRESH_PROCESS = """
import hashlib, sys
from datetime import UTC, datetime, timedelta
import numpy as np
from appliance.config import load_policies
from appliance.link import LinkInput, VectorCache, features
from appliance.records import Candidate

words = ("hotel flight museum weather python error budget garden ticket parking "
         "invoice receipt kernel driver lasagna recipe").split()
rng = np.random.default_rng(5)
start = datetime(2026, 3, 2, tzinfo=UTC)
hist = []
for i in range(160):
    vec = rng.standard_normal(16).astype(np.float32)
    text = " ".join(rng.choice(words, size=int(rng.integers(2, 9))))
    hist.append(Candidate(record_id=i + 1, request_id=f"r{i}", thread_id=f"t{i // 5}",
                          ts=start + timedelta(minutes=3 * i), vector=vec / np.linalg.norm(vec),
                          text=text + "?", session_key=None, entity_keys=()))
s = load_policies().correlation
digest = hashlib.sha256()
for k in range(40, 160, 2):
    c = hist[k]
    q = LinkInput(ts=c.ts, vector=c.vector, text=" ".join(words[(k % 5):]) + "?",
                  session_key=None, entity_keys=())
    _, x, _, _ = features(q, hist[:k], s, VectorCache(), 0.3)
    digest.update(np.ascontiguousarray(x).tobytes())
print(digest.hexdigest())
"""


def test_link_features_do_not_depend_on_the_process_hash_seed() -> None:
    """Python salts string hashes per process, so a set of keywords is walked in another
    order in each process. Keyword weights summed in that order differed in the last bit,
    which moved ties between tree splits: the same traffic could score differently after a
    restart, and `bench/train_linker.py` wrote different trees from the same data."""
    import os
    import subprocess
    import sys

    digests = set()
    for seed in ("1", "2", "3", "4", "5", "6"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _SCORE_IN_A_FRESH_PROCESS], env=env,
                             capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1, f"{len(digests)} different feature matrices from 6 hash seeds"
