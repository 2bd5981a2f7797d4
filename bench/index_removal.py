"""Removal benchmark: what shredding or erasing many vectors costs the in-memory index.

`index.TenantIndex` overwrites each removed vector's slot at once with a random "filler"
vector (usearch keeps a removed vector's bytes until its slot is reused), inserted with a
narrow beam (`index.slots.FILLER_EXPANSION`; `--filler-expansion 128` measures the code before,
which inserted fillers as carefully as prompts), and a later add takes the fillers' slots
back. Once the fillers are half the slots or more (and at least `index.COMPACT_MIN`), a
thread rebuilds the index from what is left beside it and swaps it in (`--no-compact`: the
code before, which kept every slot until new prompts or a restart). This measures, on one
tenant of synthetic clustered vectors (bench/search.py's):

1. the full index: its build, usearch memory, process RSS, cross-user top-10 p50/p95 and
   recall@10;
2. after removing a share of it (`--remove`, default 0.5) in shredding's own calls (one
   `remove` a bucket of `--bucket` records, buckets picked at random): the removal's own
   time and its slowest call, then searches made while the rebuild runs (their p50 and
   slowest: the rebuild holds the lock only briefly) and the rebuild's time and the process
   RSS at its peak, then the same figures as 1 (recall against exact search over what is
   left);
3. a fresh index of what 2 holds, as a service restart builds it (the index is rebuilt from
   the store at every start), searched query by query in turn with 2, so that other load
   on the host weighs on both alike;
4. (`--churn`) 2 after as many new vectors are added (retention's steady state: the adds
   take the fillers' slots back).

`--tenants T` (T > 1) measures a host of T tenants of `--n` vectors each instead, in one
`VectorIndex` as the service holds them: their buckets removed in one shuffled run (a month
shredded across the host), then the memory usearch and the process hold once every rebuild
is done, the rebuilds' count and time (`--compact-min 10000`: the floor before), and, from
the removal's start until then, the most rebuild threads alive at once and the highest RSS.

Prints figures; asserts nothing.

    nice .venv/bin/python bench/index_removal.py [--n 200000] [--remove 0.5] [--bucket 20]
        [--no-compact]
    nice .venv/bin/python bench/index_removal.py --tenants 8 --n 15000 [--compact-min 10000]
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance import index  # noqa: E402
from appliance.index import EXACT_BELOW, TenantIndex, VectorIndex, slots  # noqa: E402
from bench.search import DIMS, K, exact_top, rss_mb, vectors  # noqa: E402


def build(ids: np.ndarray, data: np.ndarray, users: int, dtype: str) -> TenantIndex:
    """A tenant index over `data` (keys `ids`), added one user at a time as a start does."""
    ix = TenantIndex(DIMS, dtype=dtype)
    for u, part in enumerate(np.array_split(np.arange(len(ids)), users)):
        ix.add(f"user{u}", ids[part].tolist(), data[part])
    return ix


def measure(indexes: list[TenantIndex], ids: np.ndarray, data: np.ndarray,
            queries: np.ndarray) -> list[dict[str, float]]:
    """Cross-user top-K latency and recall@K against exact search over (ids, data), of each
    index, query by query in turn (so that other load on the host weighs on each alike)."""
    truth = ids[exact_top(data, queries)]
    lat: list[list[float]] = [[] for _ in indexes]
    hits = [0] * len(indexes)
    for q, want in zip(queries, truth, strict=True):
        for i, ix in enumerate(indexes):
            t = time.perf_counter()
            got = ix.search(q, K, user=None)
            lat[i].append((time.perf_counter() - t) * 1e3)
            hits[i] += len({m.record_id for m in got} & set(want.tolist()))
    return [{"p50": statistics.median(ms), "p95": float(np.percentile(ms, 95)),
             "recall": h / (K * len(queries)), "usearch_mb": ix._index.memory_usage / 2**20,
             "slots": float(ix._index.size)} for ix, ms, h in zip(indexes, lat, hits, strict=True)]


def show(label: str, r: dict[str, float], live: int, rss: float) -> None:
    grew = "  n/a" if rss != rss else f"{rss:+5.0f}"  # nan: not measured
    print(f"{label:<30} {live:>8,} live {int(r['slots']):>8,} slots  usearch "
          f"{r['usearch_mb']:5.0f} MB  RSS {grew} MB  p50 {r['p50']:5.2f} ms  "
          f"p95 {r['p95']:5.2f} ms  recall@{K} {r['recall']:.3f}", flush=True)


class _Rebuilds(logging.Handler):
    """Collects the `index_compacted` events' figures."""

    def __init__(self, out: list[dict[str, float]]) -> None:
        super().__init__()
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == "index_compacted":
            self.out.append({k: float(getattr(record, k)) for k in (
                "vectors", "slots_before", "slots_after", "mb_before", "mb_after", "seconds")})


def _search_while_rebuilding(ix: TenantIndex, queries: np.ndarray) -> tuple[list[float], float]:
    """Cross-user top-K searches, one after the other, while a rebuild runs: their
    latencies (ms) and the highest RSS (MB) seen meanwhile."""
    lat: list[float] = []
    peak = rss_mb()
    while ix.rebuilding:
        for q in queries:
            t = time.perf_counter()
            ix.search(q, K, user=None)
            lat.append((time.perf_counter() - t) * 1e3)
            if not ix.rebuilding:
                break
        peak = max(peak, rss_mb())
    ix.wait_compacted()
    return lat, peak


def _host_figures(host: VectorIndex) -> tuple[int, int, float]:
    """Vectors, slots and usearch MB over all of a host's tenants."""
    tenants = [host.tenant(t) for t in host.sizes()]
    return (sum(len(ix) for ix in tenants), sum(ix.slots for ix in tenants),
            sum(ix.memory_bytes for ix in tenants) / 2**20)


class _Watch:
    """Samples, every 50 ms until stopped, the index's rebuild threads alive and the
    process RSS: their highest values."""

    def __init__(self) -> None:
        self.threads, self.rss = 0, rss_mb()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            alive = sum(t.name == "semtrace-index-rebuild" for t in threading.enumerate())
            self.threads, self.rss = max(self.threads, alive), max(self.rss, rss_mb())

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def many_tenants(args: argparse.Namespace, rebuilds: list[dict[str, float]]) -> None:
    """`--tenants T`: T tenants of `--n` vectors, a share of each removed in one shuffled
    run of buckets across them, then every rebuild waited for."""
    total = args.tenants * args.n
    users = max(1, min(args.users, args.n // args.bucket))
    print(f"{args.tenants} tenants of {args.n:,} clustered vectors of {DIMS} dims, {users} "
          f"users each, {args.dtype}; remove {args.remove:.0%} of each in calls of "
          f"{args.bucket}, " + (f"rebuilt from {index.COMPACT_MIN:,} fillers at half the slots"
                                 if args.compact else "never rebuilt (--no-compact)"),
          flush=True)
    data = vectors(total, kind="clustered", topics=max(total // 250, 1))
    host = VectorIndex(DIMS, args.dtype)
    base = rss_mb()
    t0 = time.perf_counter()
    for t in range(args.tenants):
        at = t * args.n
        for u, part in enumerate(np.array_split(np.arange(at, at + args.n), users)):
            host.add(f"tenant{t}", f"user{u}", part.tolist(), data[part])
    took = time.perf_counter() - t0
    live, held, mb = _host_figures(host)
    full_rss = rss_mb() - base
    print(f"   built in {took:.0f} s: {live:,} vectors, {held:,} slots, usearch {mb:.0f} MB, "
          f"RSS +{full_rss:.0f} MB", flush=True)

    rng = np.random.default_rng(args.seed)
    runs = [(t, s) for t in range(args.tenants) for s in rng.permutation(
        np.arange(0, args.n, args.bucket))[: int(args.n / args.bucket * args.remove)]]
    order = rng.permutation(len(runs))
    watch = _Watch()
    t0 = time.perf_counter()
    for i in order:
        t, s = runs[i]
        at = t * args.n + int(s)
        host.remove(f"tenant{t}", list(range(at, at + min(args.bucket, args.n - int(s)))))
    took = time.perf_counter() - t0
    for t in host.sizes():
        host.tenant(t).wait_compacted()
    waited = time.perf_counter() - t0 - took
    watch.stop()
    live, held, after_mb = _host_figures(host)
    print(f"   removed {total - live:,} vectors in {len(runs):,} calls: {took:.0f} s, then "
          f"{waited:.0f} s until every rebuild was done; at most {watch.threads} rebuild "
          f"threads alive at once, RSS at most +{watch.rss - base:.0f} MB", flush=True)
    if rebuilds:
        secs = [r["seconds"] for r in rebuilds]
        print(f"   {len(rebuilds)} rebuilds of {min(r['vectors'] for r in rebuilds):,.0f} to "
              f"{max(r['vectors'] for r in rebuilds):,.0f} vectors: {sum(secs):.0f} s in all "
              f"(each {min(secs):.1f} to {max(secs):.1f} s), usearch "
              f"{sum(r['mb_before'] for r in rebuilds):.0f} -> "
              f"{sum(r['mb_after'] for r in rebuilds):.0f} MB of theirs", flush=True)
    else:
        print("   no rebuild", flush=True)
    gc.collect()
    print(f"   after: {live:,} vectors, {held:,} slots, usearch {after_mb:.0f} MB "
          f"({after_mb / mb:.0%} of before the removal), RSS +{rss_mb() - base:.0f} MB "
          f"(+{full_rss:.0f} MB before it)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--remove", type=float, default=0.5, help="share of the vectors removed")
    ap.add_argument("--bucket", type=int, default=20, help="records a remove call")
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dtype", default="f16")
    ap.add_argument("--expansion", type=int, default=128,
                    help="HNSW search expansion (the query socket's default is 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tenants", type=int, default=1,
                    help="more than 1: a host of that many tenants of --n vectors each")
    ap.add_argument("--compact-min", type=int, default=None,
                    help="fillers a tenant needs before a rebuild (default: the code's, "
                    "index.COMPACT_MIN; 10000: the floor before)")
    ap.add_argument("--filler-expansion", type=int, default=None,
                    help="the beam fillers are inserted with (default: the code's, "
                    "index.slots.FILLER_EXPANSION; 128: as before it existed)")
    ap.add_argument("--churn", action=argparse.BooleanOptionalAction, default=True,
                    help="then add as many new vectors (retention's steady state)")
    ap.add_argument("--compact", action=argparse.BooleanOptionalAction, default=True,
                    help="rebuild once the fillers are half the slots (--no-compact: the "
                    "code before, which kept them until new prompts or a restart)")
    args = ap.parse_args()
    if args.filler_expansion is not None:
        slots.FILLER_EXPANSION = args.filler_expansion
    if args.compact_min is not None:
        index.COMPACT_MIN = args.compact_min
    if not args.compact:
        index.COMPACT_MIN = 2**62
    rebuilds: list[dict[str, float]] = []
    log = logging.getLogger("semtrace.index")
    log.setLevel(logging.INFO)
    log.addHandler(_Rebuilds(rebuilds))
    if args.tenants > 1:
        many_tenants(args, rebuilds)
        return
    if args.n <= EXACT_BELOW:
        sys.exit(f"--n must be above {EXACT_BELOW:,}: below it every search is exact")
    topics = max(args.n // 250, 1)
    data = vectors(args.n, kind="clustered", topics=topics)
    fresh = vectors(int(args.n * args.remove) + args.bucket, kind="clustered",
                    topics=topics, seed=2)
    queries = vectors(args.queries, kind="clustered", topics=topics, seed=1)
    ids = np.arange(args.n, dtype=np.int64)
    print(f"{args.n:,} clustered vectors of {DIMS} dims, {args.users} users, {args.dtype}, "
          f"expansion {args.expansion}; remove {args.remove:.0%} in calls of {args.bucket}, "
          f"fillers inserted with expansion_add {slots.FILLER_EXPANSION}, "
          + (f"rebuilt from {index.COMPACT_MIN:,} fillers at half the slots" if args.compact
             else "never rebuilt (--no-compact)"))

    base = rss_mb()
    t0 = time.perf_counter()
    ix = build(ids, data, args.users, args.dtype)
    took = time.perf_counter() - t0
    ix.set_expansion(args.expansion)
    full_rss = rss_mb() - base
    print(f"   built in {took:.0f} s ({args.n / took:,.0f} vectors/s)", flush=True)
    show("1. full", measure([ix], ids, data, queries)[0], len(ix), full_rss)

    rng = np.random.default_rng(args.seed)
    # whole buckets (runs of one user's consecutive keys), as retention shreds them
    starts = np.arange(0, args.n, args.bucket)
    gone_starts = rng.permutation(starts)[: int(len(starts) * args.remove)]
    base = rss_mb()
    slowest = 0.0
    t0 = time.perf_counter()
    for s in gone_starts:
        t = time.perf_counter()
        ix.remove(list(range(int(s), min(int(s) + args.bucket, args.n))))
        slowest = max(slowest, time.perf_counter() - t)
    took = time.perf_counter() - t0
    during, peak = _search_while_rebuilding(ix, queries)
    waited = time.perf_counter() - t0 - took
    removal_rss = rss_mb() - base
    gone = np.zeros(args.n, dtype=bool)
    for s in gone_starts:
        gone[s:s + args.bucket] = True
    kept_ids, kept = ids[~gone], data[~gone]
    removed = int(gone.sum())
    print(f"   removed {removed:,} vectors in {len(gone_starts):,} calls: {took:.0f} s "
          f"({removed / took:,.0f} vectors/s, fillers included), the slowest call "
          f"{slowest * 1e3:.0f} ms", flush=True)
    for r in rebuilds:
        print(f"   rebuilt: {r['slots_before']:,.0f} -> {r['slots_after']:,.0f} slots, usearch "
              f"{r['mb_before']:.0f} -> {r['mb_after']:.0f} MB, {r['seconds']:.0f} s "
              f"in its thread", flush=True)
    if during:
        print(f"   {len(during):,} searches while it ran (the last {waited:.0f} s of it "
              f"after the removal): p50 {statistics.median(during):.2f} ms, slowest "
              f"{max(during):.0f} ms; RSS at most {peak - base:+.0f} MB over before the "
              f"removal", flush=True)

    gc.collect()
    base = rss_mb()
    t0 = time.perf_counter()
    rebuilt = build(kept_ids, kept, args.users, args.dtype)
    took = time.perf_counter() - t0
    rebuilt.set_expansion(args.expansion)
    rebuilt_rss = rss_mb() - base
    print(f"   a fresh index of what is left (a restart's rebuild): {took:.0f} s "
          f"({len(kept_ids) / took:,.0f} vectors/s)", flush=True)
    after, fresh_ix = measure([ix, rebuilt], kept_ids, kept, queries)
    show("2. after the removal" + (" + rebuild" if rebuilds else ""), after, len(ix),
         full_rss + removal_rss)
    show("3. rebuilt from what is left", fresh_ix, len(rebuilt), rebuilt_rss)
    del rebuilt
    gc.collect()

    if args.churn:
        new_ids = np.arange(args.n, args.n + removed, dtype=np.int64)
        t0 = time.perf_counter()
        for u, part in enumerate(np.array_split(np.arange(removed), args.users)):
            ix.add(f"user{u}", new_ids[part].tolist(), fresh[part])
        took = time.perf_counter() - t0
        print(f"   added {removed:,} new vectors into the fillers' slots: {took:.0f} s "
              f"({removed / took:,.0f} vectors/s)", flush=True)
        show("4. 2 + as many new ones", measure(
            [ix], np.concatenate([kept_ids, new_ids]), np.concatenate([kept, fresh[:removed]]),
            queries)[0], len(ix), float("nan"))

if __name__ == "__main__":
    main()
