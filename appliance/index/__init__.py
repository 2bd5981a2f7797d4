"""Vector index: one usearch index per tenant, in memory only.

Never saved to disk (usearch files are unencrypted and keep removed vectors);
rebuilt at start from the store's decrypted vectors. Searches are scoped to
(tenant, user) unless the caller is allowed cross-user scope.

A removed vector's slot is overwritten at once by a filler (see `TenantIndex`). When the
fillers are half the slots or more and at least `COMPACT_MIN` (an erased tenant, a big old
month shredded, half of each of many mid-size tenants shredded), the tenant is queued for
the index's one rebuild thread (`rebuilds.RebuildQueue`), which rebuilds the queued tenants
one after the other, each from its live vectors beside its old index, swapped in at the
end: memory falls back to the live size without a restart. Adds, removals and searches go
on meanwhile, each under the tenant's lock, which the rebuild holds only to copy a chunk of
vectors and, at the end, to apply the few changes made since the copy and swap. One
rebuild at a time in the process: memory peaks at one tenant's old and new index. At exit
a running rebuild stops at its next chunk and the exit waits for it (a thread left inside
usearch while Python finalises aborts the process: SIGABRT); the queued ones are dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from usearch.index import Index

from appliance.index.rebuilds import (
    ONE_REBUILD,
    STOP,
    RebuildQueue,
    Stopped,
    stop_if_exiting,
)
from appliance.index.slots import Beside, Change, fill, give_back, put, vectors_of

log = logging.getLogger("semtrace.index")

EXACT_BELOW = 20_000  # vectors; below this a scoped search is exact
# keys of filler vectors: record ids are SQLite rowids, which never reach 2**63
_FILLER_KEY0 = 1 << 63
# A tenant's index is rebuilt once its fillers are as many as its vectors or more, and at
# least this many (~1.2 KB each at 384 dims, f16). A rebuild copies the live vectors, no
# more than the fillers, so the removals that made them pay for its work whatever the
# tenant's size; this floor only has to outweigh a rebuild's fixed cost (its thread, a new
# index, malloc_trim: a few ms against ~0.3 s to copy 1,000 vectors) and spare a tenant a
# rebuild for a few hundred KB. (At 10,000, tenants of 15,000 prompts, half of each
# shredded, kept twice their memory: bench/index_removal.py --tenants 8 --n 15000.)
COMPACT_MIN = 1_000
_COPY_CHUNK = 2_000  # vectors the rebuild copies from the old index per hold of the lock
# the changes made since the copy are applied to the new index outside the lock, in at
# most _CATCH_UP_ROUNDS rounds, until no more than _SWAP_AT are left for the swap
_SWAP_AT = 500
_CATCH_UP_ROUNDS = 4


@dataclass(frozen=True)
class Match:
    """One nearest neighbour."""

    record_id: int
    similarity: float


class TenantIndex:
    """The vectors of one tenant, with a per-user key list for scoped search."""

    def __init__(self, dims: int, dtype: str = "f16", *, name: str = "",
                 rebuilds: RebuildQueue | None = None) -> None:
        self.dims, self.dtype, self.name = dims, dtype, name
        # the rebuild thread's queue: its VectorIndex's, shared by all its tenants
        self._rebuilds = rebuilds if rebuilds is not None else RebuildQueue()
        self._index = Index(ndim=dims, metric="cos", dtype=dtype)
        self._users: dict[str, set[int]] = defaultdict(set)
        self._owner: dict[int, str] = {}
        # every key (ascending) and its stored vector, normalised, for exact searches: made
        # on the first one, extended by adds, dropped by removals and whenever the tenant
        # outgrows EXACT_BELOW (then each exact search reads its own keys' vectors)
        self._rows: tuple[np.ndarray, np.ndarray] | None = None
        # usearch keeps a removed vector's bytes in its slot until an add reuses the slot,
        # and hands out freed slots oldest first. So every slot a removal frees is taken at
        # once by a filler (a random vector, nothing of any prompt) and the free list stays
        # empty; an add first removes as many fillers as it has vectors, so its vectors take
        # exactly their slots: memory stays what it was, and a removed vector is overwritten
        # in the call that removes it; too many fillers, and the index is rebuilt.
        self._fillers: list[int] = []
        self._next_filler = _FILLER_KEY0
        self._filler_rng = np.random.default_rng(0)
        # held by every call that reads or changes the fields above: the rebuild's thread
        # shares them with the one thread that adds, removes and searches
        self._lock = threading.Lock()
        self._dirty: set[int] | None = None  # keys changed since a running rebuild began
        self._idle = threading.Event()  # cleared while queued for a rebuild or in one
        self._idle.set()
        self._retry_at = 0  # fillers a failed rebuild waits for before it is tried again
        self.compactions = 0  # rebuilds done

    def __len__(self) -> int:
        return len(self._owner)

    @property
    def slots(self) -> int:
        """Slots the usearch index holds: the vectors and the fillers."""
        with self._lock:
            return int(self._index.size)

    @property
    def memory_bytes(self) -> int:
        """Memory usearch says the index takes."""
        with self._lock:
            return int(self._index.memory_usage)

    def add(self, user: str, record_ids: list[int], vectors: np.ndarray) -> None:
        keys = np.asarray(record_ids, dtype=np.uint64)
        with self._lock:
            put(self._index, self._fillers, keys, np.asarray(vectors, dtype=np.float32))
            for rid in record_ids:
                self._users[user].add(rid)
                self._owner[rid] = user
            if self._dirty is not None:
                self._dirty.update(record_ids)
            if self._rows is not None and len(self._owner) > EXACT_BELOW:
                self._rows = None
            elif self._rows is not None:
                every = np.concatenate([self._rows[0], keys])
                vecs = np.concatenate([self._rows[1], self._stored(keys)])
                if len(self._rows[0]) and keys.min() <= self._rows[0][-1]:
                    order = np.argsort(every, kind="stable")
                    every, vecs = every[order], vecs[order]
                self._rows = (every, vecs)

    def remove(self, record_ids: list[int]) -> int:
        with self._lock:
            present = [r for r in record_ids if r in self._owner]
            if present:
                self._index.remove(np.asarray(present, dtype=np.uint64))
                fillers = self._filler_keys(len(present))
                fill(self._index, fillers, self._filler_rng)
                self._fillers.extend(fillers)
                self._rows = None
                if self._dirty is not None:
                    self._dirty.update(present)
            for rid in present:
                user = self._owner.pop(rid)
                self._users[user].discard(rid)
            if self._idle.is_set() and self._wants_rebuild():
                self._queue_rebuild()
        return len(present)

    def _queue_rebuild(self) -> None:
        """Queue this tenant for the rebuild thread (under the lock)."""
        if self._rebuilds.want(self):
            self._idle.clear()

    def _filler_keys(self, n: int) -> list[int]:
        """`n` new filler keys (under the lock)."""
        keys = list(range(self._next_filler, self._next_filler + n))
        self._next_filler += n
        return keys

    def _wants_rebuild(self) -> bool:
        fillers = len(self._fillers)
        return fillers >= max(COMPACT_MIN, self._retry_at) and fillers >= len(self._owner)

    @property
    def rebuilding(self) -> bool:
        """Whether a rebuild of this tenant runs or waits its turn."""
        return not self._idle.is_set()

    def settle(self) -> None:
        """No rebuild is due (the rebuild thread's, also when it drops the queue at exit)."""
        self._idle.set()

    def rebuild_turn(self) -> None:
        """The rebuild thread's turn for this tenant: rebuild if the fillers still call for
        it (new prompts may have taken its slots back while it waited), then queue it again
        if removals made meanwhile left as many fillers in the new index, or settle."""
        with ONE_REBUILD:
            with self._lock:
                if STOP.is_set() or not self._wants_rebuild():
                    self.settle()
                    return
            try:
                self._rebuild()
            except Stopped:  # exiting: the old index is dropped with the process
                self.settle()
                return
            except Exception as exc:  # the old index stays as it was (out of memory?)
                log.error("index rebuild failed", extra={
                    "event": "index_compact_failed", "tenant": self.name,
                    "exc_type": type(exc).__name__})
                with self._lock:  # tried again once as many more removals would pay for
                    self._retry_at = len(self._fillers) + max(  # another attempt as for
                        COMPACT_MIN, len(self._owner))  # this one
                    self.settle()
                return
        with self._lock:  # at the back of the queue: the other tenants' turns first
            if not (self._wants_rebuild() and self._rebuilds.want(self)):
                self.settle()

    def wait_compacted(self) -> None:
        """Return once no rebuild of this tenant runs or is queued (tests, bench)."""
        self._idle.wait()

    def compact(self) -> None:
        """Rebuild the usearch index from the live vectors beside the old one, then swap
        it in (the module doc says how adds, removals and searches go on meanwhile)."""
        with ONE_REBUILD:
            self._rebuild()

    def _rebuild(self) -> None:
        """`compact`, holding ONE_REBUILD."""
        t0 = time.perf_counter()
        with self._lock:
            self._dirty = set()
            keys = sorted(self._owner)
            before = (int(self._index.size), int(self._index.memory_usage))
            new = Beside(Index(ndim=self.dims, metric="cos", dtype=self.dtype,
                                expansion_search=self._index.expansion_search))
        try:
            for at in range(0, len(keys), _COPY_CHUNK):
                stop_if_exiting()
                with self._lock:  # and what changed meanwhile, so that a vector removed
                    change = self._change(new)  # is in the new index a chunk at most
                    adding = set(change.add)
                    take = [k for k in keys[at:at + _COPY_CHUNK] if k in self._owner
                            and k not in new.held and k not in adding]
                    vecs = vectors_of(self._index, take) if take else None
                new.apply(change)
                if vecs is not None:  # one core: the others stay with ingest
                    new.index.add(np.asarray(take, dtype=np.uint64), vecs, threads=1)
                    new.held.update(take)
            for _ in range(_CATCH_UP_ROUNDS):  # outside the lock while many changed
                stop_if_exiting()
                with self._lock:
                    if len(self._dirty) <= _SWAP_AT:
                        break
                    change = self._change(new)
                new.apply(change)
            with self._lock:
                new.apply(self._change(new))
                new.index.expansion_search = self._index.expansion_search  # type: ignore[misc]
                self._index, self._fillers, self._rows = new.index, new.fillers, None
                self._retry_at = 0  # a failed rebuild's later mark is met: the usual one
                after = (int(new.index.size), int(new.index.memory_usage))
                live = len(self._owner)
                self.compactions += 1
        finally:
            with self._lock:
                self._dirty = None
        give_back()  # the old index went at the swap
        log.info("index rebuilt", extra={
            "event": "index_compacted", "tenant": self.name, "vectors": live,
            "slots_before": before[0], "slots_after": after[0],
            "mb_before": round(before[1] / 2**20, 1), "mb_after": round(after[1] / 2**20, 1),
            "seconds": round(time.perf_counter() - t0, 1)})

    def _change(self, new: Beside) -> Change:
        """What the keys changed since the rebuild began (or since the last call) mean for
        its new index (under the lock)."""
        changed, self._dirty = self._dirty or set(), set()
        drop = sorted(k for k in changed if k in new.held)
        add = sorted(k for k in changed if k in self._owner)
        return Change(drop, self._filler_keys(len(drop)), add,
                       vectors_of(self._index, add) if add else None)

    def set_expansion(self, expansion_search: int) -> None:
        """Candidates the HNSW search keeps (usearch default 64): higher is slower, more exact."""
        with self._lock:
            self._index.expansion_search = int(expansion_search)  # type: ignore[misc]

    def user_keys(self, user: str) -> set[int]:
        """Record ids indexed for one user."""
        with self._lock:
            return set(self._users.get(user, ()))

    def keys(self) -> set[int]:
        """Record ids indexed (every user)."""
        with self._lock:
            return set(self._owner)

    def _stored(self, keys: np.ndarray) -> np.ndarray:
        """The vectors of `keys` as the index holds them (quantised), normalised."""
        vecs = np.asarray(self._index.get(keys), dtype=np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs

    def _vectors(self, keys: list[int]) -> np.ndarray:
        wanted = np.asarray(keys, dtype=np.uint64)
        if len(self._owner) > EXACT_BELOW:
            return self._stored(wanted)
        if self._rows is None:
            every = np.asarray(sorted(self._owner), dtype=np.uint64)
            self._rows = (every, self._stored(every))
        if len(wanted) == len(self._rows[0]):
            return self._rows[1]  # keys are sorted and distinct: all of them
        return self._rows[1][np.searchsorted(self._rows[0], wanted)]

    def exact(self, keys: list[int], query: np.ndarray, k: int) -> list[Match]:
        """Top-k by cosine among `keys` (distinct, ascending; all compared: no graph)."""
        with self._lock:
            return self._exact(keys, query, k)

    def _exact(self, keys: list[int], query: np.ndarray, k: int) -> list[Match]:
        if not keys:
            return []
        sims = self._vectors(keys) @ query
        top = np.argsort(-sims)[:k]
        return [Match(int(keys[i]), float(sims[i])) for i in top]

    def search(self, query: np.ndarray, k: int, *, user: str | None) -> list[Match]:
        """Top-k by cosine; `user=None` means cross-user (caller checked the scope)."""
        q = np.asarray(query, dtype=np.float32)
        with self._lock:
            if user is not None:
                keys = sorted(self._users.get(user, ()))
                if len(keys) <= EXACT_BELOW:
                    return self._exact(keys, q, k)
            elif len(self._owner) <= EXACT_BELOW:
                return self._exact(sorted(self._owner), q, k)
            want = (k + min(k, len(self._fillers)) if user is None
                    else min(len(self._owner), k * 20))
            matches = self._index.search(q, want)
            out = []
            for key, dist in zip(matches.keys, matches.distances, strict=True):
                rid = int(key)
                if rid in self._owner and (user is None or self._owner[rid] == user):
                    out.append(Match(rid, 1.0 - float(dist)))
        return out[:k]


class VectorIndex:
    """All tenants' indexes."""

    def __init__(self, dims: int, dtype: str = "f16") -> None:
        self.dims = dims
        self.dtype = dtype
        self._tenants: dict[str, TenantIndex] = {}
        self._rebuilds = RebuildQueue()  # one rebuild thread for all the tenants

    def tenant(self, tenant: str) -> TenantIndex:
        if tenant not in self._tenants:
            self._tenants[tenant] = TenantIndex(self.dims, self.dtype, name=tenant,
                                                 rebuilds=self._rebuilds)
        return self._tenants[tenant]

    def add(self, tenant: str, user: str, record_ids: list[int], vectors: np.ndarray) -> None:
        self.tenant(tenant).add(user, record_ids, vectors)

    def remove(self, tenant: str, record_ids: list[int]) -> int:
        if tenant not in self._tenants:
            return 0
        return self._tenants[tenant].remove(record_ids)

    def search(self, tenant: str, query: np.ndarray, k: int = 10, *,
               user: str | None) -> list[Match]:
        if tenant not in self._tenants:
            return []
        return self._tenants[tenant].search(query, k, user=user)

    def user_keys(self, tenant: str, user: str) -> set[int]:
        """Record ids indexed for one user."""
        if tenant not in self._tenants:
            return set()
        return self._tenants[tenant].user_keys(user)

    def keys(self, tenant: str) -> set[int]:
        """Record ids indexed for a tenant (every user)."""
        if tenant not in self._tenants:
            return set()
        return self._tenants[tenant].keys()

    def sizes(self) -> dict[str, int]:
        return {t: len(ix) for t, ix in self._tenants.items()}

    def slots(self) -> dict[str, int]:
        """Slots held per tenant: its vectors and the fillers of removed ones."""
        return {t: ix.slots for t, ix in self._tenants.items()}

    def rebuild(self, rows: list[tuple[int, str, str, np.ndarray]]) -> int:
        """Fill from (record id, tenant, user, vector) rows, grouped per (tenant, user)."""
        groups: dict[tuple[str, str], tuple[list[int], list[np.ndarray]]] = defaultdict(
            lambda: ([], []))
        for rid, tenant, user, vec in rows:
            ids, vecs = groups[(tenant, user)]
            ids.append(rid)
            vecs.append(vec)
        for (tenant, user), (ids, vecs) in groups.items():
            self.add(tenant, user, ids, np.vstack(vecs))
        return len(rows)
