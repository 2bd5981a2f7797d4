"""The query socket's vector index, kept in memory between searches (reader thread only).

`semtrace search` run directly builds an index of the vectors in scope for each query.
The service instead keeps one index per tenant that has been searched, and brings it up
to date before each search from that search's own read-only store:

- rows added since the last search (ids above the last one seen) are decrypted and added;
- the vectors of buckets whose key was destroyed since (a shred or an erasure, even one
  killed before its rows were deleted) are removed;
- when a tenant's count of rows up to the last id seen is not what those removals leave
  (rows deleted or added some other way, or not yet deleted), its index is dropped and
  rebuilt from the store, which decrypts no vector whose key is gone.

Memory only, like `index.py`: never written to disk. Searches scoped to one user or to a
time (`since`) are exact over the matching vectors below `index.EXACT_BELOW` of them, as
in an index built for that scope.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from appliance.index import EXACT_BELOW, Match, TenantIndex
from appliance.store import Store

SLACK_S = 3600.0  # destructions are looked for this far before the latest one seen


@dataclass
class _Tenant:
    """One tenant's index and what it was built from."""

    index: TenantIndex
    last_id: int = 0
    rows: int = 0  # the tenant's records with id <= last_id, less those of destroyed keys
    ts: dict[int, float] = field(default_factory=dict)  # indexed record id -> epoch s
    buckets: dict[int, list[int]] = field(default_factory=dict)  # bucket -> indexed ids
    bucket_rows: dict[int, int] = field(default_factory=dict)  # bucket -> rows counted

    def forget(self, gone: set[int]) -> None:
        """Remove the vectors of these (key-destroyed) buckets and their rows' count."""
        ids = [rid for b in gone & self.buckets.keys() for rid in self.buckets.pop(b)]
        self.index.remove(ids)
        for rid in ids:
            del self.ts[rid]
        self.rows -= sum(self.bucket_rows.pop(b, 0) for b in gone)


class ReaderIndex:
    """Per-tenant in-memory indexes for one embedding model, refreshed per search."""

    def __init__(self, dims: int, model_id: str, *, dtype: str = "f16",
                 expansion: int = 128) -> None:
        self.dims, self.model_id, self.dtype, self.expansion = dims, model_id, dtype, expansion
        self._tenants: dict[str, _Tenant] = {}
        self._mark: float | None = None  # the latest destruction seen (epoch s)
        self._seen: set[int] = set()  # destroyed buckets seen since _mark - SLACK_S

    def tenants(self) -> list[str]:
        """Tenants whose index is held."""
        return sorted(self._tenants)

    def refresh(self, store: Store, tenants: list[str]) -> None:
        """Bring the indexes of `tenants` up to date with `store` (see the module doc)."""
        gone = self._destroyed_since(store)
        if gone:
            for held in self._tenants.values():
                held.forget(gone)
        for tenant in tenants:
            self._refresh(store, tenant)

    def _destroyed_since(self, store: Store) -> set[int]:
        """Buckets whose key was destroyed since the last call (read from the key store)."""
        since = -1.0 if self._mark is None else self._mark - SLACK_S
        rows = store.keys_db.execute("SELECT bucket_id, destroyed_at FROM destroyed "
                                     "WHERE destroyed_at >= ?", (since,)).fetchall()
        seen = {int(r[0]) for r in rows}
        new = seen - self._seen
        self._mark = max([self._mark or 0.0, *(float(r[1]) for r in rows)])
        self._seen = {int(b) for b, at in rows if float(at) >= self._mark - SLACK_S}
        return new

    def _refresh(self, store: Store, tenant: str) -> None:
        held = self._tenants.get(tenant)
        if held is not None:
            rows = int(store.db.execute("SELECT count(*) FROM records WHERE tenant=? AND id<=?",
                                        (tenant, held.last_id)).fetchone()[0])
            if rows != held.rows:
                held = None
        if held is None:
            held = _Tenant(TenantIndex(self.dims, self.dtype, name=tenant))
            held.index.set_expansion(self.expansion)
            self._tenants[tenant] = held
        new = store.db.execute(
            "SELECT id, user, bucket_id, vector_ct, ts, model_id FROM records "
            "WHERE tenant=? AND id>? ORDER BY id", (tenant, held.last_id)).fetchall()
        groups: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        for rid, user, bid, vct, ts, model_id in new:
            held.bucket_rows[bid] = held.bucket_rows.get(bid, 0) + 1
            vec = store.vector(rid, bid, vct) if model_id == self.model_id else None
            if vec is not None:
                ids, vecs = groups.setdefault(user, ([], []))
                ids.append(rid)
                vecs.append(vec)
                held.ts[rid] = float(ts)
                held.buckets.setdefault(bid, []).append(rid)
        for user, (ids, vecs) in groups.items():
            held.index.add(user, ids, np.vstack(vecs))
        if new:
            held.last_id = int(new[-1][0])
        held.rows += len(new)

    def sizes(self) -> dict[str, int]:
        """Vectors held per tenant."""
        return {t: len(h.index) for t, h in self._tenants.items()}

    def scoped(self, tenants: list[str], since: datetime | None) -> ScopedIndex:
        """What `search.search` searches: these tenants' indexes (refreshed first), limited
        to prompts since a time."""
        return ScopedIndex(self, tuple(tenants), None if since is None else since.timestamp())

    def search(self, tenant: str, query: np.ndarray, k: int, *, user: str | None,
               since: float | None = None) -> list[Match]:
        """Top-k by cosine in one tenant (`user=None`: cross-user, caller checked)."""
        held = self._tenants.get(tenant)
        if held is None:
            return []
        if since is None:
            return held.index.search(query, k, user=user)
        keys = [rid for rid, ts in held.ts.items() if ts >= since]
        if user is not None:
            mine = held.index.user_keys(user)
            keys = [rid for rid in keys if rid in mine]
        if len(keys) <= EXACT_BELOW:
            return held.index.exact(sorted(keys), np.asarray(query, dtype=np.float32), k)
        wanted = set(keys)
        return [m for m in held.index.search(query, k * 4, user=user)
                if m.record_id in wanted][:k]  # the caller over-asks when `since` is set


@dataclass(frozen=True)
class ScopedIndex:
    """A `ReaderIndex` seen through a time limit, searched like an `index.VectorIndex`."""

    reader: ReaderIndex
    tenants: tuple[str, ...]  # the search's scope: never more than these
    since: float | None

    def sizes(self) -> dict[str, int]:
        held = self.reader.sizes()
        return {t: held.get(t, 0) for t in self.tenants}

    def search(self, tenant: str, query: np.ndarray, k: int = 10, *,
               user: str | None) -> list[Match]:
        if tenant not in self.tenants:
            return []
        return self.reader.search(tenant, query, k, user=user, since=self.since)
