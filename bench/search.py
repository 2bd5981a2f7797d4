"""Search benchmark: top-10 over N stored prompts of one tenant, through `index.TenantIndex`.

Synthetic unit vectors (clustered like sentence embeddings: a few thousand
"topic" centres with noise, or uniform with --kind uniform), one tenant, many
users. For each quantisation: build time, index memory (usearch's own count and
the process RSS growth), single-query latency p50/p95 of a cross-user search
(HNSW above `EXACT_BELOW`), and recall@10 against exact float32 search.
Prints figures; asserts nothing.

    .venv/bin/python bench/search.py [--n 1000000] [--dtypes f16,i8] [--queries 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.index import EXACT_BELOW, TenantIndex  # noqa: E402

DIMS = 384
K = 10


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def vectors(n: int, *, kind: str, seed: int = 0, centres: int = 4000) -> np.ndarray:
    """n L2-normalised float32 vectors (built in chunks to bound memory)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIMS), dtype=np.float32)
    c = np.random.default_rng(0).standard_normal((centres, DIMS)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        if kind == "uniform":
            block = rng.standard_normal((m, DIMS)).astype(np.float32)
        else:  # cosine ~0.5-0.6 to the centre, like paraphrases of one topic
            block = c[rng.integers(0, centres, m)] + 0.06 * rng.standard_normal(
                (m, DIMS)).astype(np.float32)
        out[s:s + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Exact top-K row ids by cosine (blocked float32 matmul)."""
    best_s = np.full((len(queries), K), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), K), dtype=np.int64)
    for s in range(0, len(data), 200_000):
        sims = queries @ data[s:s + 200_000].T
        idx = np.argpartition(-sims, K, axis=1)[:, :K]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, idx, 1)], axis=1)
        cand_i = np.concatenate([best_i, idx + s], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :K]
        best_s, best_i = (np.take_along_axis(cand_s, order, 1),
                          np.take_along_axis(cand_i, order, 1))
    return best_i


def run(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, dtype: str,
        users: int) -> dict[str, float]:
    before = rss_mb()
    ix = TenantIndex(DIMS, dtype=dtype)
    t0 = time.perf_counter()
    per_user = len(data) // users
    for u in range(users):  # per-user batches, as the store rebuilds it
        lo, hi = u * per_user, (u + 1) * per_user if u < users - 1 else len(data)
        ix.add(f"user{u}", list(range(lo, hi)), data[lo:hi])
    build = time.perf_counter() - t0
    lat, hits = [], 0
    for q, want in zip(queries, truth, strict=True):
        t = time.perf_counter()
        got = ix.search(q, K, user=None)
        lat.append((time.perf_counter() - t) * 1e3)
        hits += len({m.record_id for m in got} & set(want.tolist()))
    usearch_mb = ix._index.memory_usage / 2**20
    return {"build_s": build, "p50_ms": statistics.median(lat),
            "p95_ms": float(np.percentile(lat, 95)), "recall10": hits / (K * len(queries)),
            "usearch_mb": usearch_mb, "rss_growth_mb": rss_mb() - before}


def exact_latency(data: np.ndarray, queries: np.ndarray) -> float:
    """p50 of brute-force float32 search over the whole tenant (for comparison)."""
    lat = []
    for q in queries[:20]:
        t = time.perf_counter()
        sims = data @ q
        np.argpartition(-sims, K)[:K]
        lat.append((time.perf_counter() - t) * 1e3)
    return statistics.median(lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dtypes", default="f16,i8")
    ap.add_argument("--kind", choices=["clustered", "uniform"], default="clustered")
    ap.add_argument("--users", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    data = vectors(args.n, kind=args.kind)
    queries = vectors(args.queries, kind=args.kind, seed=1)
    truth = exact_top(data, queries)
    print(f"{args.n:,} {args.kind} vectors of {DIMS} dims, {args.users} users; exact above "
          f"{EXACT_BELOW:,} is replaced by HNSW; data + ground truth in "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"exact float32 brute force p50: {exact_latency(data, queries):.1f} ms")
    for dtype in args.dtypes.split(","):
        r = run(data, queries, truth, dtype, args.users)
        print(f"{dtype:>4}: build {r['build_s']:.0f} s, search top-{K} p50 {r['p50_ms']:.2f} ms "
              f"p95 {r['p95_ms']:.2f} ms, recall@10 {r['recall10']:.3f}, index "
              f"{r['usearch_mb']:.0f} MB (usearch) / {r['rss_growth_mb']:.0f} MB RSS growth")


if __name__ == "__main__":
    main()
