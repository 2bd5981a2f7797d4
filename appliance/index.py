"""Vector index: one usearch index per tenant, in memory only.

Never saved to disk (usearch files are unencrypted and keep removed vectors);
rebuilt at start from the store's decrypted vectors. Searches are scoped to
(tenant, user) unless the caller is allowed cross-user scope.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from usearch.index import Index

EXACT_BELOW = 20_000  # vectors; below this a scoped search is exact
# keys of filler vectors: record ids are SQLite rowids, which never reach 2**63
_FILLER_KEY0 = 1 << 63
# A filler is never searched for, so it is inserted with a narrow beam (usearch's
# expansion_add, 128 by default): at 128 removing half of 120,000 vectors took 63 s, more
# than rebuilding the rest (34 s); at 8, 16 s, recall@10 0.995 vs 0.997 after it
# (bench/index_removal.py, README's Speed table).
FILLER_EXPANSION = 8


@dataclass(frozen=True)
class Match:
    """One nearest neighbour."""

    record_id: int
    similarity: float


class TenantIndex:
    """The vectors of one tenant, with a per-user key list for scoped search."""

    def __init__(self, dims: int, dtype: str = "f16") -> None:
        self.dims = dims
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
        # in the call that removes it.
        self._fillers: list[int] = []
        self._next_filler = _FILLER_KEY0
        self._filler_rng = np.random.default_rng(0)

    def __len__(self) -> int:
        return len(self._owner)

    def add(self, user: str, record_ids: list[int], vectors: np.ndarray) -> None:
        keys = np.asarray(record_ids, dtype=np.uint64)
        reuse = min(len(keys), len(self._fillers))
        if reuse:
            self._index.remove(np.asarray(self._fillers[-reuse:], dtype=np.uint64))
            del self._fillers[-reuse:]
        self._index.add(keys, np.asarray(vectors, dtype=np.float32))
        for rid in record_ids:
            self._users[user].add(rid)
            self._owner[rid] = user
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
        present = [r for r in record_ids if r in self._owner]
        if present:
            self._index.remove(np.asarray(present, dtype=np.uint64))
            self._fill(len(present))
            self._rows = None
        for rid in present:
            user = self._owner.pop(rid)
            self._users[user].discard(rid)
        return len(present)

    def _fill(self, n: int) -> None:
        """Overwrite the `n` slots a removal just freed with filler vectors."""
        keys = list(range(self._next_filler, self._next_filler + n))
        self._next_filler += n
        beam = self._index.expansion_add
        self._index.expansion_add = FILLER_EXPANSION  # type: ignore[misc]  # has a setter
        try:
            self._index.add(np.asarray(keys, dtype=np.uint64),
                            self._filler_rng.standard_normal((n, self.dims)).astype(np.float32))
        finally:
            self._index.expansion_add = beam  # type: ignore[misc]  # real vectors: full beam
        self._fillers.extend(keys)

    def set_expansion(self, expansion_search: int) -> None:
        """Candidates the HNSW search keeps (usearch default 64): higher is slower, more exact."""
        self._index.expansion_search = int(expansion_search)  # type: ignore[misc]  # has a setter

    def user_keys(self, user: str) -> set[int]:
        """Record ids indexed for one user."""
        return set(self._users.get(user, ()))

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
        if not keys:
            return []
        sims = self._vectors(keys) @ query
        top = np.argsort(-sims)[:k]
        return [Match(int(keys[i]), float(sims[i])) for i in top]

    def search(self, query: np.ndarray, k: int, *, user: str | None) -> list[Match]:
        """Top-k by cosine; `user=None` means cross-user (caller checked the scope)."""
        q = np.asarray(query, dtype=np.float32)
        if user is not None:
            keys = sorted(self._users.get(user, ()))
            if len(keys) <= EXACT_BELOW:
                return self.exact(keys, q, k)
        elif len(self._owner) <= EXACT_BELOW:
            return self.exact(sorted(self._owner), q, k)
        want = k + min(k, len(self._fillers)) if user is None else min(len(self._owner), k * 20)
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

    def tenant(self, tenant: str) -> TenantIndex:
        if tenant not in self._tenants:
            self._tenants[tenant] = TenantIndex(self.dims, self.dtype)
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

    def sizes(self) -> dict[str, int]:
        return {t: len(ix) for t, ix in self._tenants.items()}

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
