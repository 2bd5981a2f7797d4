"""Search: stored prompts most similar to a text, within a tenant / user / time scope.

The vectors are decrypted from the store into an in-memory index (usearch files
are not encrypted, so no index is ever written to disk).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import numpy as np

from appliance.embed import Embedder
from appliance.index import Match, VectorIndex
from appliance.records import Hit
from appliance.store import Store


def build_index(store: Store, embedder: Embedder, *, tenant: str | None = None,
                user: str | None = None) -> VectorIndex:
    """An in-memory index of the readable vectors in scope."""
    index = VectorIndex(embedder.dims)
    rows = [r for r in store.iter_vectors(model_id=embedder.model_id)
            if (tenant is None or r[1] == tenant) and (user is None or r[2] == user)]
    index.rebuild(rows)
    return index


class Searchable(Protocol):
    """What `search` looks in: an `index.VectorIndex`, or the query socket's kept index
    (`readindex.ScopedIndex`)."""

    def sizes(self) -> dict[str, int]: ...

    def search(self, tenant: str, query: np.ndarray, k: int = 10, *,
               user: str | None) -> list[Match]: ...


def search(store: Store, index: Searchable, embedder: Embedder, text: str, *,
           tenant: str | None, user: str | None, k: int = 10,
           since: datetime | None = None) -> list[Hit]:
    """Prompts most similar to `text` within scope (user None = cross-user, caller checked)."""
    vec, _ = embedder.embed([text])
    tenants = [tenant] if tenant else sorted(index.sizes())
    matches = []
    for t in tenants:
        matches += [(t, m) for m in index.search(t, vec[0], k * 4 if since else k, user=user)]
    matches.sort(key=lambda tm: -tm[1].similarity)
    hits: list[Hit] = []
    for t, m in matches:
        rec = store.records("r.id = ?", (m.record_id,))
        if not rec or rec[0].text is None or (since and rec[0].ts < since):
            continue  # deleted, or its key destroyed, since the index was built
        r = rec[0]
        hits.append(Hit(record_id=r.record_id, thread_id=r.thread_id,
                        similarity=round(float(m.similarity), 4), text=r.text, tenant=t,
                        user=r.user, ts=r.ts))
        if len(hits) >= k:
            break
    return hits


# HNSW search expansion for `semtrace search`: recall@10 >= 0.95 at 1M f16 vectors
# (bench/search.py); usearch's default of 64 gives less.
SEARCH_EXPANSION = 128
PROGRESS_EVERY = 500  # prompts decrypted between two progress reports


def build_search_index(store: Store, embedder: Embedder, *, tenants: list[str],
                       user: str | None = None, since: datetime | None = None,
                       dtype: str = "f16",
                       progress: Callable[[int, int], None] | None = None) -> VectorIndex:
    """An in-memory index of the readable vectors of `tenants` (one user's; since a time).

    Searches over it are exact below `index.EXACT_BELOW` vectors in scope and
    usearch HNSW (with `dtype` quantisation) above. `progress(done, total)` is told how
    many of the prompts in scope were decrypted (seconds on 100,000).
    """
    index = VectorIndex(embedder.dims, dtype)
    if not tenants:
        return index
    sql = ("SELECT id, tenant, user, bucket_id, vector_ct FROM records WHERE model_id=? AND "
           f"tenant IN ({','.join('?' * len(tenants))})")
    params: list[object] = [embedder.model_id, *tenants]
    if user is not None:
        sql += " AND user=?"
        params.append(user)
    if since is not None:
        sql += " AND ts>=?"
        params.append(since.timestamp())
    rows = []
    total = (store.db.execute(sql.replace("id, tenant, user, bucket_id, vector_ct",
                                          "count(*)", 1), params).fetchone()[0]
             if progress is not None else 0)
    for n, (rid, tenant, who, bid, vct) in enumerate(
            store.db.execute(sql + " ORDER BY id", params), 1):
        vec = store.vector(rid, bid, vct)
        if vec is not None:
            rows.append((rid, tenant, who, vec))
        if progress is not None and (n % PROGRESS_EVERY == 0 or n == total):
            progress(n, total)
    index.rebuild(rows)
    for tenant in tenants:
        index.tenant(tenant).set_expansion(SEARCH_EXPANSION)
    return index
