"""A tenant's in-memory index, on the real usearch, is rebuilt at its live size once removed
vectors' fillers are half its slots or more (an erased tenant, a big old month shredded): before,
it kept every slot until new prompts took them back or the service restarted. Adds,
removals and searches made while the rebuild runs all hold."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from usearch.index import Index

from appliance import index
from appliance.index import TenantIndex, VectorIndex, rebuilds

DIMS = 16
SERVICE_COMPACT_MIN = index.COMPACT_MIN  # the fixture below lowers it for most tests


@pytest.fixture(autouse=True)
def _small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rebuild from 300 fillers (1,000 in service), copy 200 vectors a chunk, and search
    through the HNSW graph rather than exactly (below 20,000 vectors in service)."""
    monkeypatch.setattr(index, "COMPACT_MIN", 300)
    monkeypatch.setattr(index, "_COPY_CHUNK", 200)
    monkeypatch.setattr(index, "EXACT_BELOW", 50)


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Vectors in one orthant, as embeddings share directions; the fillers are random."""
    return np.abs(rng.standard_normal((n, DIMS))).astype(np.float32)


def _tenant(n: int, seed: int = 0) -> tuple[TenantIndex, np.ndarray]:
    vecs = _vectors(np.random.default_rng(seed), n)
    ix = TenantIndex(DIMS, name="acme")
    ix.set_expansion(512)  # searches over a few hundred vectors are then exact
    for u, part in enumerate(np.array_split(np.arange(n), 10)):
        ix.add(f"user{u}", part.tolist(), vecs[part])
    return ix, vecs


def _held(ix: TenantIndex, keys: list[int]) -> dict[int, bytes]:
    """Each vector's bytes exactly as the index keeps them."""
    return {k: np.asarray(ix._index.get(np.uint64(k))).tobytes() for k in keys}


def _top(ix: TenantIndex, query: np.ndarray, k: int, user: str | None = None) -> list[int]:
    return [m.record_id for m in ix.search(query, k, user=user)]


def _answers(ix: TenantIndex, queries: np.ndarray, keys: list[int] | None = None,
             ) -> list[list[tuple[int, float]]]:
    """Top 10 (record id, similarity) of each query, cross-user and within one user:
    searched, or compared with every one of `keys`."""
    return [[(m.record_id, m.similarity) for m in (
        ix.search(q, 10, user=user) if keys is None else
        ix.exact(sorted(set(keys) & ix.user_keys(user)) if user else keys, q, 10))]
            for q in queries for user in (None, "user3")]


def test_removing_most_of_a_tenant_rebuilds_its_index_at_the_live_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 vectors; 1,600 removed bucket by bucket left 2,000 slots until a restart. One
    more bucket removed, past the threshold, and the index holds the 380 left: the same
    vectors, bit for bit, and searches answer as comparing the query with each of them."""
    ix, _ = _tenant(2000)
    gone = [int(k) for k in np.random.default_rng(1).permutation(2000)[:1620]]
    removed = _held(ix, gone[:50])
    monkeypatch.setattr(index, "COMPACT_MIN", 10**9)
    for at in range(0, 1600, 20):  # as retention removes them, a bucket a call
        assert ix.remove(gone[at:at + 20]) == 20
    ix.wait_compacted()
    assert ix.slots == 2000
    live = sorted(set(range(2000)) - set(gone))
    queries = _vectors(np.random.default_rng(2), 40)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    kept = _held(ix, live)
    monkeypatch.setattr(index, "COMPACT_MIN", 300)
    assert ix.remove(gone[1600:]) == 20
    before = _answers(ix, queries, live)  # the old index's vectors, while it rebuilds
    ix.wait_compacted()

    assert ix.compactions == 1 and len(ix) == 380
    assert ix.slots == 380 and ix._fillers == []
    assert ix._index.capacity < 2000  # was 2,048 (memory: bench/index_removal.py)
    assert _held(ix, live) == kept
    assert _answers(ix, queries, live) == before
    for b, a in zip(before, _answers(ix, queries), strict=True):
        assert len(a) == 10 and np.allclose([s for _, s in a], [s for _, s in b], atol=2e-3)
    image = bytes(ix._index.save())
    assert all(v in image for v in _held(ix, live).values())
    assert not any(v in image for v in removed.values())


def test_a_tenant_is_rebuilt_once_half_its_slots_are_fillers_not_before() -> None:
    """Less than half removed: the slots stay, for new prompts to take back."""
    ix, _ = _tenant(1000)
    for at in range(0, 480, 20):
        ix.remove(list(range(at, at + 20)))
    ix.wait_compacted()
    assert ix.compactions == 0 and ix.slots == 1000 and len(ix) == 520
    ix.remove(list(range(480, 500)))  # half: rebuilt
    ix.wait_compacted()
    assert ix.compactions == 1 and ix.slots == len(ix) == 500


def _paused_rebuild(monkeypatch: pytest.MonkeyPatch, pause_at: int) -> tuple[
        threading.Event, threading.Event]:
    """Stop the rebuild's thread after it has copied `pause_at` chunks into its new index
    (outside the lock) until the test says go."""
    copied, go = threading.Event(), threading.Event()
    real_add = Index.add
    chunks = [0]

    def add(self: Index, keys: Any, vectors: Any, *args: Any, **kwargs: Any) -> Any:
        out = real_add(self, keys, vectors, *args, **kwargs)
        if kwargs.get("threads") == 1:  # a chunk the rebuild copies
            chunks[0] += 1
            if chunks[0] == pause_at:
                copied.set()
                assert go.wait(60)
        return out

    monkeypatch.setattr(Index, "add", add)
    return copied, go


def _meanwhile(fn: Callable[[], None]) -> None:
    """Run `fn` on another thread and see it end while the rebuild is paused: nothing
    waits for the rebuild (60 s: a hang guard, not a speed check)."""
    worker = threading.Thread(target=fn)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "blocked behind the rebuild"


@pytest.mark.parametrize("pause_at", [1, 2])  # in the copy; after its last chunk
def test_an_add_and_a_removal_racing_the_rebuild_both_hold(
        monkeypatch: pytest.MonkeyPatch, pause_at: int) -> None:
    """While the rebuild copies (paused after a chunk), the ingest thread removes a vector
    it already copied and one it has not, adds a prompt, gives a record id a new vector,
    searches and sets the search beam: none waits for the rebuild, and after the swap no
    removed vector is found (nor are its bytes held), every added one is, and the beam
    holds."""
    ix, vecs = _tenant(600)
    copied, go = _paused_rebuild(monkeypatch, pause_at)
    ix.remove(list(range(0, 310)))  # 310 fillers, 290 vectors: the rebuild starts
    assert copied.wait(60)
    rng = np.random.default_rng(3)
    fresh = _vectors(rng, 3)
    old_bytes = _held(ix, [320, 590])  # 320: copied first; 590: in a later chunk (or not)
    found: list[list[int]] = []

    def ingest() -> None:
        assert ix.remove([320, 590]) == 2
        ix.add("user9", [700, 701], fresh[:2])
        assert ix.remove([330]) == 1  # a vector replaced under the same record id
        ix.add("user9", [330], fresh[2:])
        found.append(_top(ix, fresh[0], 1))
        ix.set_expansion(300)

    _meanwhile(ingest)
    assert found == [[700]]  # the search, during the rebuild, saw the add
    go.set()
    ix.wait_compacted()

    assert ix.compactions == 1 and ix._index.expansion_search == 300
    live = sorted(set(range(310, 600)) - {320, 590} | {700, 701})
    assert sorted(ix.user_keys("user9")) == sorted(
        {k for k in live if k < 600 and k * 10 // 600 == 9} | {700, 701, 330})
    assert len(ix) == len(live) and ix.slots == len(live) + len(ix._fillers)
    assert ix.slots < 600
    for k, v in ((700, fresh[0]), (701, fresh[1]), (330, fresh[2])):
        assert _top(ix, v, 1) == [k]
    for k in (320, 590):
        assert k not in _top(ix, vecs[k], 20)
    image = bytes(ix._index.save())
    assert not any(v in image for v in old_bytes.values())
    scratch = TenantIndex(DIMS)
    scratch.add("x", [0], fresh[2:])
    assert _held(ix, [330])[330] == _held(scratch, [0])[0]  # its new vector, not its old
    for k in live[:40]:
        assert _top(ix, ix._stored(np.asarray([k], dtype=np.uint64))[0], 1) == [k]


def test_ingest_running_freely_alongside_the_rebuild_loses_and_resurrects_nothing() -> None:
    """The ingest thread adds and removes as fast as it can for as long as the rebuild
    runs (interleaving as the threads fall): the index ends with exactly what is live."""
    ix, vecs = _tenant(1500)
    ix.remove(list(range(0, 800)))  # 800 fillers > 700 vectors: the rebuild starts
    rng = np.random.default_rng(4)
    live = set(range(800, 1500))
    added: dict[int, np.ndarray] = {}
    next_id = 2000
    while ix.rebuilding or not added:
        v = _vectors(rng, 2)
        ix.add("user0", [next_id, next_id + 1], v)
        added |= {next_id: v[0], next_id + 1: v[1]}
        live |= {next_id, next_id + 1}
        victim = int(rng.choice(sorted(live)))
        assert ix.remove([victim]) == 1
        live.discard(victim)
        next_id += 2
    ix.wait_compacted()

    assert ix.compactions >= 1
    assert set(ix._owner) == live and len(ix) == len(live)
    assert ix.slots == len(live) + len(ix._fillers)
    keys = {int(k) for k in ix._index.keys} - set(ix._fillers)
    assert keys == live  # every live vector in the index, no removed one
    for k in sorted(set(added) & live)[:30]:
        assert _top(ix, added[k], 1) == [k]


_EXIT_MID_REBUILD = """
import sys, threading, time
import numpy as np
from usearch.index import Index
from appliance import index
from appliance.index import TenantIndex

index.COMPACT_MIN, index._COPY_CHUNK = 300, 30_000
copying = threading.Event()
real_add = Index.add

def add(self, keys, vectors, *args, **kwargs):
    if kwargs.get("threads") == 1:  # the rebuild's copy: seconds of usearch, GIL released
        copying.set()
    return real_add(self, keys, vectors, *args, **kwargs)

Index.add = add
ix = TenantIndex(32, name="acme")
vecs = np.abs(np.random.default_rng(0).standard_normal((60_000, 32))).astype(np.float32)
ix.add("u", list(range(60_000)), vecs)
ix.remove(list(range(30_000)))  # half: the rebuild's thread starts
assert copying.wait(600)
time.sleep(0.5)  # into usearch's add (30,000 vectors: seconds)
print("exit while the rebuild copies", flush=True)
"""


def test_the_process_exits_cleanly_while_a_rebuild_runs(tmp_path: Any) -> None:
    """The service stopping (a restart, an upgrade) while a tenant's index is rebuilt: the
    rebuild's thread was inside usearch when Python finalised, and the process died of
    SIGABRT ('terminate called without an active exception', exit 134) instead of exiting
    0. Now the rebuild stops at its next chunk and the process exits as asked."""
    script = tmp_path / "exit_mid_rebuild.py"
    script.write_text(_EXIT_MID_REBUILD)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert "exit while the rebuild copies" in done.stdout
    assert done.returncode == 0, done.stderr[-500:]
    assert "terminate called" not in done.stderr


def test_after_a_failed_rebuild_and_a_good_one_the_next_rebuild_starts_at_the_usual_point(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A rebuild that failed (out of memory) waits for as many more removals as it had
    vectors to copy (COMPACT_MIN at least: a big tenant is not copied again and again for a
    few more removals); once one has then succeeded, the tenant's later removals rebuild it
    at the usual point again (half its slots fillers), not only past the failed one's mark."""
    ix, _ = _tenant(1000)
    real = index.Index

    def no_memory(*args: Any, **kwargs: Any) -> Index:
        raise MemoryError

    monkeypatch.setattr(index, "Index", no_memory)
    ix.remove(list(range(0, 500)))  # half: the rebuild of 500 vectors starts, and fails
    ix.wait_compacted()
    assert ix.compactions == 0 and ix.slots == 1000
    monkeypatch.setattr(index, "Index", real)
    ix.remove(list(range(500, 800)))  # 300 more (COMPACT_MIN): not yet
    ix.wait_compacted()
    assert ix.compactions == 0 and ix.slots == 1000
    ix.remove(list(range(800, 1000)))  # 500 more: tried again, and done
    ix.wait_compacted()
    assert ix.compactions == 1 and ix.slots == len(ix) == 0

    vecs = _vectors(np.random.default_rng(5), 1000)
    ix.add("user0", list(range(2000, 3000)), vecs)
    ix.remove(list(range(2000, 2700)))  # 700 fillers, 300 vectors: past half, as before
    ix.wait_compacted()
    assert ix.compactions == 2 and ix.slots == len(ix) == 300


def test_many_mid_size_tenants_each_shredded_by_half_get_their_memory_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Six tenants of 4,000 vectors, half of each removed bucket by bucket in one shuffled
    run (a month shredded across the host), with the service's floor: each held 4,000 slots
    until a restart, as a tenant was rebuilt only from 10,000 fillers. Now each is rebuilt
    at its live size and no removed vector's bytes are left. A tenant of 1,200 with 600
    removed, under the floor, is not rebuilt for so little (its slots wait for new prompts)."""
    monkeypatch.setattr(index, "COMPACT_MIN", SERVICE_COMPACT_MIN)
    host = VectorIndex(DIMS)
    rng = np.random.default_rng(6)
    sizes = {f"t{t}": 4000 for t in range(6)} | {"small": 1200}
    for t, n in sizes.items():
        for u, part in enumerate(np.array_split(np.arange(n), 20)):
            host.add(t, f"user{u}", part.tolist(), _vectors(rng, len(part)))
    capacity = {t: host.tenant(t)._index.capacity for t in sizes}
    gone = {t: rng.permutation(n)[: n // 2] for t, n in sizes.items()}
    removed = {t: _held(host.tenant(t), [int(k) for k in gone[t][:20]]) for t in sizes}
    calls = [(t, [int(k) for k in gone[t][at:at + 20]])
             for t in sizes for at in range(0, len(gone[t]), 20)]
    for i in rng.permutation(len(calls)):
        assert host.remove(*calls[i]) == len(calls[i][1])
    for t in sizes:
        host.tenant(t).wait_compacted()

    assert host.sizes() == {t: n // 2 for t, n in sizes.items()}
    mid = [t for t in sizes if t != "small"]
    assert {t: host.slots()[t] for t in mid} == {t: 2000 for t in mid}
    for t in mid:
        ix = host.tenant(t)
        assert ix.compactions == 1 and ix._fillers == []
        assert ix._index.capacity < capacity[t]  # 4,096 before (memory: the bench)
        image = bytes(ix._index.save())
        assert not any(v in image for v in removed[t].values())
    assert host.tenant("small").compactions == 0 and host.slots()["small"] == 1200


def _rebuild_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == rebuilds.THREAD_NAME]


def test_many_tenants_crossing_the_threshold_at_once_share_one_rebuild_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A retention day shreds half of each of 40 tenants: each one past the threshold
    started a thread of its own, all but one waiting for the one rebuild at a time (40
    threads; hundreds on a host of hundreds of tenants). Now the tenants are queued for the
    index's one rebuild thread, which rebuilds them one after the other: one thread while
    the first rebuild runs, every tenant then at its live size with nothing removed left,
    and no thread once the queue is done. A tenant whose slots new prompts took back
    while it waited is skipped, and keeps its vectors."""
    copied, go = _paused_rebuild(monkeypatch, 1)
    host = VectorIndex(DIMS)
    rng = np.random.default_rng(7)
    names = [f"t{t:02}" for t in range(40)]
    for t, name in enumerate(names):
        at = t * 1000
        for u, part in enumerate(np.array_split(np.arange(at, at + 700), 7)):
            host.add(name, f"user{u}", part.tolist(), _vectors(rng, len(part)))
    gone = {name: [t * 1000 + int(k) for k in rng.permutation(700)[:350]]
            for t, name in enumerate(names)}
    removed = {name: _held(host.tenant(name), gone[name][:10]) for name in names}
    calls = [(name, gone[name][at:at + 25]) for name in names for at in range(0, 350, 25)]
    first = names[0]
    for name, keys in [c for c in calls if c[0] == first] + [
            calls[i] for i in rng.permutation(len(calls)) if calls[i][0] != first]:
        assert host.remove(name, keys) == len(keys)
    assert copied.wait(60)  # the first tenant's rebuild copies; every other one is due
    threads = _rebuild_threads()
    assert len(threads) == 1, f"{len(threads)} rebuild threads"
    assert all(host.tenant(name).rebuilding for name in names)
    back = names[-1]  # new prompts take its slots back while it waits its turn
    fresh = _vectors(rng, 340)
    host.add(back, "user0", list(range(50_000, 50_340)), fresh)
    go.set()
    for name in names:
        host.tenant(name).wait_compacted()

    rebuilt = names[:-1]
    assert {n: host.tenant(n).compactions for n in names} == {
        n: int(n in rebuilt) for n in names}
    assert {n: host.slots()[n] for n in rebuilt} == {n: 350 for n in rebuilt}
    for name in rebuilt:
        image = bytes(host.tenant(name)._index.save())
        assert not any(v in image for v in removed[name].values())
    assert host.sizes()[back] == 690 and host.slots()[back] == 700
    for k in (50_000, 50_339):
        assert host.search(back, fresh[k - 50_000], 1, user="user0")[0].record_id == k
    for _ in range(600):  # the queue is done: its thread ends (a hang guard, 60 s)
        if not _rebuild_threads():
            break
        threading.Event().wait(0.1)
    assert _rebuild_threads() == []


_EXIT_WITH_A_QUEUE = """
import atexit, sys, threading, time

tenants = {}

def report():  # registered first, so it runs after the index's own exit handler
    settled = all(ix._idle.wait(60) for ix in tenants.values())
    done = sum(ix.compactions for ix in tenants.values())
    print(f"at exit: {done} of {len(tenants)} queued tenants rebuilt, settled {settled}",
          flush=True)

atexit.register(report)

import numpy as np
from usearch.index import Index
from appliance import index
from appliance.index import VectorIndex

index.COMPACT_MIN, index._COPY_CHUNK = 300, 20_000
copying = threading.Event()
real_add = Index.add

def add(self, keys, vectors, *args, **kwargs):
    if kwargs.get("threads") == 1:  # the rebuild's copy: seconds of usearch, GIL released
        copying.set()
    return real_add(self, keys, vectors, *args, **kwargs)

Index.add = add
host = VectorIndex(32)
rng = np.random.default_rng(0)
host.add("big", "u", list(range(40_000)),
         np.abs(rng.standard_normal((40_000, 32))).astype(np.float32))
for t in range(30):
    host.add(f"t{t}", "u", list(range(600)),
             np.abs(rng.standard_normal((600, 32))).astype(np.float32))
host.remove("big", list(range(20_000)))  # half: the rebuild thread starts on it
for t in range(30):  # and these wait their turn
    host.remove(f"t{t}", list(range(300)))
    tenants[f"t{t}"] = host.tenant(f"t{t}")
assert copying.wait(600)
time.sleep(0.5)  # into usearch's add (20,000 vectors: seconds)
alive = [t for t in threading.enumerate() if t.name == "semtrace-index-rebuild"]
print(f"exit while the rebuild copies, {len(alive)} rebuild thread(s)", flush=True)
"""


def test_the_process_exits_cleanly_while_tenants_wait_for_the_rebuild_thread(
        tmp_path: Any) -> None:
    """The service stopping while one tenant is rebuilt and 30 more wait their turn: the
    running rebuild stops at its next chunk, the queued tenants are dropped (not rebuilt
    first, which would hold the stop for minutes on a big host) and the process exits 0,
    not of SIGABRT."""
    script = tmp_path / "exit_with_a_queue.py"
    script.write_text(_EXIT_WITH_A_QUEUE)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script)], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert "exit while the rebuild copies, 1 rebuild thread(s)" in done.stdout, done.stdout
    assert "at exit: 0 of 30 queued tenants rebuilt, settled True" in done.stdout
    assert done.returncode == 0, done.stderr[-500:]
    assert "terminate called" not in done.stderr
