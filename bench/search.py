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


def vectors(n: int, *, kind: str, topics: int, seed: int = 0,
            families: int = 50) -> np.ndarray:
    """n L2-normalised float32 vectors, built in chunks to bound memory.

    "clustered": topic centre + paraphrase-family centre (0.8) + noise (0.04 per
    dimension), topics of ~250 prompts in 50 families; its neighbour similarities
    (top-1 0.75, top-10 0.51 with 250 prompts per topic) are close to the dev
    stream's real embeddings (0.77, 0.53), with smaller gaps between neighbours.
    "uniform": random directions, the worst case for HNSW.
    """
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(0)  # the same topics for data and queries
    tc = centres.standard_normal((topics, DIMS)).astype(np.float32)
    fc = centres.standard_normal((topics * families, DIMS)).astype(np.float32)
    tc /= np.linalg.norm(tc, axis=1, keepdims=True)
    fc /= np.linalg.norm(fc, axis=1, keepdims=True)
    out = np.empty((n, DIMS), dtype=np.float32)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        noise = rng.standard_normal((m, DIMS)).astype(np.float32)
        if kind == "uniform":
            block = noise
        else:
            fam = rng.integers(0, topics * families, m)
            block = tc[fam // families] + 0.8 * fc[fam] + 0.04 * noise
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


def build(data: np.ndarray, dtype: str, users: int) -> tuple[TenantIndex, dict[str, float]]:
    """A tenant index over `data`, added in per-user batches as the store rebuilds it."""
    before = rss_mb()
    ix = TenantIndex(DIMS, dtype=dtype)
    t0 = time.perf_counter()
    per_user = len(data) // users
    for u in range(users):
        lo, hi = u * per_user, (u + 1) * per_user if u < users - 1 else len(data)
        ix.add(f"user{u}", list(range(lo, hi)), data[lo:hi])
    return ix, {"build_s": time.perf_counter() - t0,
                "usearch_mb": ix._index.memory_usage / 2**20,
                "rss_growth_mb": rss_mb() - before}


def measure(ix: TenantIndex, queries: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Single-query latency and recall@10 of cross-user searches."""
    lat, hits = [], 0
    for q, want in zip(queries, truth, strict=True):
        t = time.perf_counter()
        got = ix.search(q, K, user=None)
        lat.append((time.perf_counter() - t) * 1e3)
        hits += len({m.record_id for m in got} & set(want.tolist()))
    return {"p50_ms": statistics.median(lat), "p95_ms": float(np.percentile(lat, 95)),
            "recall10": hits / (K * len(queries))}


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
    ap.add_argument("--expansions", default="64,128,256",
                    help="HNSW search expansions to measure on each index.")
    args = ap.parse_args()
    t0 = time.perf_counter()
    topics = max(args.n // 250, 1)
    data = vectors(args.n, kind=args.kind, topics=topics)
    queries = vectors(args.queries, kind=args.kind, topics=topics, seed=1)
    truth = exact_top(data, queries)
    print(f"{args.n:,} {args.kind} vectors of {DIMS} dims, {args.users} users; exact above "
          f"{EXACT_BELOW:,} is replaced by HNSW; data + ground truth in "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"exact float32 brute force p50: {exact_latency(data, queries):.1f} ms")
    for dtype in args.dtypes.split(","):
        ix, b = build(data, dtype, args.users)
        print(f"{dtype:>4}: built in {b['build_s']:.0f} s; index {b['usearch_mb']:.0f} MB "
              f"(usearch) / {b['rss_growth_mb']:.0f} MB RSS growth")
        for ef in (int(x) for x in args.expansions.split(",")):
            ix.set_expansion(ef)
            r = measure(ix, queries, truth)
            print(f"      expansion {ef:>3}: top-{K} p50 {r['p50_ms']:.2f} ms, p95 "
                  f"{r['p95_ms']:.2f} ms, recall@10 {r['recall10']:.3f}")
        del ix

if __name__ == "__main__":
    main()
