"""Search for the TUI: the model is loaded on first use, indexes are built per scope.

Scope follows policy: an analyst searches across the users of a tenant only
where `cross_user_search` allows it; elsewhere a `user:` filter is needed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from appliance.config import Policies
from appliance.embed import Embedder
from appliance.index import VectorIndex
from appliance.query import data_version
from appliance.records import Hit
from appliance.roles import allowed
from appliance.search import build_index, search
from appliance.tui.data import StoreReader, users_named
from appliance.tui.filters import FilterError, Filters


@dataclass(frozen=True)
class SearchResult:
    """Hits across the scopes searched, best first, and the tenants left out and why."""

    hits: tuple[Hit, ...]
    searched: tuple[str, ...]
    skipped: tuple[str, ...]  # tenants where cross-user search is off and no user was given


def scopes(policies: Policies, role: str, tenant_list: list[str],
           users: dict[str, list[str]]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """(tenant, user or None) pairs to search, and tenants skipped by policy. Pure.

    Args:
        users: per tenant, the pseudonyms matched by a `user:` filter (absent: no filter).
    """
    out: list[tuple[str, str | None]] = []
    skipped: list[str] = []
    auditor = allowed(policies.access, role, "audit")
    for t in tenant_list:
        cross = auditor or policies.privacy.cross_user_search.get(t, False)
        if t in users and (cross or len(users[t]) <= 1):
            out += [(t, u) for u in users[t]]
        elif cross:
            out.append((t, None))
        else:  # a `user:` prefix matching several users is a cross-user search too
            skipped.append(t)
    return out, skipped


class Searcher:
    """Embeds queries with a lazily loaded model and searches the store within scope."""

    def __init__(self, reader: StoreReader, policies: Policies, role: str,
                 embedder_factory: Callable[[], Embedder]) -> None:
        self.reader, self.policies, self.role = reader, policies, role
        self._factory = embedder_factory
        self._embedder: Embedder | None = None
        self._indexes: dict[tuple[str, str | None], tuple[int, VectorIndex]] = {}
        self._lock = threading.Lock()

    @property
    def model_loaded(self) -> bool:
        return self._embedder is not None

    def embedder(self) -> Embedder:
        """The embedding model (loaded on first call; slow, so call it from a worker)."""
        with self._lock:
            if self._embedder is None:
                self._embedder = self._factory()
            return self._embedder

    def _index(self, embedder: Embedder, tenant: str, user: str | None) -> VectorIndex:
        store = self.reader.rt.store
        version = data_version(store)
        cached = self._indexes.get((tenant, user))
        if cached is None or cached[0] != version:
            cached = (version, build_index(store, embedder, tenant=tenant, user=user))
            self._indexes[(tenant, user)] = cached
        return cached[1]

    def run(self, text: str, filters: Filters, *, k: int = 20,
            progress: Callable[[str], None] | None = None) -> SearchResult:
        """Prompts most similar to `text` within the role's scope and the filters."""
        if not text.strip():
            raise FilterError("Type what to search for.")
        if self.reader.tenant and filters.tenant and filters.tenant != self.reader.tenant:
            raise FilterError(f"This session is limited to tenant '{self.reader.tenant}'.")
        tenant_list = [filters.tenant] if filters.tenant else self.reader.tenants()
        if not self.model_loaded and progress:
            progress("Loading the embedding model…")
        embedder = self.embedder()
        hits: list[Hit] = []
        with self.reader.lock:
            store = self.reader.rt.store
            users = ({t: users_named(store, t, filters.user, self.reader.rt.keyring.pseudonym)
                      for t in tenant_list} if filters.user else {})
            pairs, skipped = scopes(self.policies, self.role, tenant_list, users)
            for tenant, user in pairs:
                if progress:
                    progress(f"Searching {tenant}…")
                index = self._index(embedder, tenant, user)
                hits += search(store, index, embedder, text, tenant=tenant, user=user, k=k,
                               since=filters.since)
        hits.sort(key=lambda h: (-h.similarity, h.record_id))
        return SearchResult(tuple(hits[:k]), tuple(sorted({t for t, _ in pairs})),
                            tuple(skipped))
