"""The TUI's read access: one read connection behind a lock, results as dataclasses.

Workers call these from threads; the lock keeps one statement on the SQLCipher
connection at a time. Nothing here writes (the connection is read-only). Screens
read through `Reader`: this store reader for operators holding the key, or
`remote.SocketReader` over the service's query socket for everyone else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from appliance.errors import InputError
from appliance.query import (
    ThreadFilter,
    ThreadMarks,
    data_version,
    get_thread,
    list_threads_page,
    live_topic,
    no_topic,
    tenants,
    thread_marks,
    topic_aliases,
    users_with_prefix,
)
from appliance.reads import check_tenant
from appliance.records import Thread
from appliance.runtime import Runtime
from appliance.store import Store
from appliance.tui.filters import FilterError, Filters, is_pseudonym

Pseudonym = Callable[[str, str], str]  # (tenant, user id) -> pseudonym: Keyring.pseudonym

# UI column key -> query sort key
SORTS = {"tenant": "tenant", "user": "user", "started": "first", "last": "last",
         "turns": "turns", "topic": "topic", "models": "models", "tokens": "tokens",
         "cost": "cost", "marks": "marks"}


@dataclass(frozen=True)
class ThreadRow:
    """One line of the threads table."""

    thread: Thread
    marks: ThreadMarks | None
    topic: str | None  # the topic's label, else its id


@dataclass(frozen=True)
class ThreadDetail:
    """One thread for the thread view, with the name of its topic."""

    thread: Thread
    topic: str | None  # the topic's label, else its id


@dataclass(frozen=True)
class ThreadPage:
    """A page of the threads table and where it sits in the whole listing."""

    rows: tuple[ThreadRow, ...]
    total: int
    offset: int
    version: int


def read_page(store: Store, filters: Filters, tenant: str | None, *, sort: str = "last",
              descending: bool = True, offset: int = 0, limit: int = 100
              ) -> tuple[tuple[ThreadRow, ...], int]:
    """One page of threads matching `filters` in `tenant` (None: all), and how many match."""
    f = ThreadFilter(tenant=tenant, since=filters.since, until=filters.until,
                     model=filters.model)
    topic_ids: tuple[str, ...] = ()
    if filters.topic:  # the topic it now is (a release's id may have merged since) and
        # every id merged into that one; a label or one phrase of it names its topic, as
        # `threads list --topic` takes it, and a topic none of them names is a sentence
        named = live_topic(store, filters.topic, [tenant] if tenant else tenants(store))
        if named is None:
            raise InputError(no_topic(store, filters.topic,
                                      [tenant] if tenant else tenants(store),
                                      "o lists the topics"))
        aliases = topic_aliases(store)
        live = aliases.get(named, named)
        topic_ids = tuple(dict.fromkeys(
            (filters.topic, live, *(k for k, v in aliases.items() if v == live))))
    rows, total = list_threads_page(
        store, f, user_prefix=filters.user, position=filters.position, topic_ids=topic_ids,
        sort=SORTS.get(sort, "last"), descending=descending, limit=limit, offset=offset)
    marks = thread_marks(store, [t.thread_id for t in rows])
    return tuple(ThreadRow(t, marks.get(t.thread_id), t.topic_label or t.topic_id)
                 for t in rows), total


def users_named(store: Store, tenant: str, user: str, pseudonym: Pseudonym | None) -> list[str]:
    """The tenant's pseudonyms a `user:` filter names: those starting with a pseudonym
    prefix, or the tenant's pseudonym of a user id as the gateway sends it."""
    if not is_pseudonym(user) and pseudonym is not None:
        user = pseudonym(tenant, user)
    return users_with_prefix(store, tenant, user)


def resolve_user(store: Store, filters: Filters, tenant: str | None, scope: Sequence[str],
                 pseudonym: Pseudonym | None) -> Filters:
    """`user:` as a pseudonym (prefix) the listing can match: a user id as the gateway
    sends it (`user:alice@example.com`) becomes its pseudonym in the tenant that has it.

    FilterError when the id is a user of several tenants in scope and none was named.
    """
    user = filters.user
    if user is None or is_pseudonym(user) or pseudonym is None:
        return filters
    tenants_in = [tenant] if tenant else list(scope)
    found = [(t, pseudonym(t, user)) for t in tenants_in if users_named(store, t, user,
                                                                         pseudonym)]
    if len(found) > 1:
        raise FilterError(f"That user id is a user of {len(found)} tenants "  # never echoed
                          f"({', '.join(t for t, _ in found)}): add tenant:.")
    if not found:  # no such user: a pseudonym no thread has, so nothing matches
        return replace(filters, user=pseudonym(tenants_in[0] if tenants_in else "", user))
    return replace(filters, user=found[0][1], tenant=filters.tenant or found[0][0])


class Reader(Protocol):
    """What the screens read from: the store (StoreReader) or the service (remote.py)."""

    tenant: str | None
    currency: str
    release_epsilon: dict[str, float]  # what a release of each kind spends

    def version(self) -> int: ...

    def threads(self, filters: Filters, *, sort: str = "last", descending: bool = True,
                offset: int = 0, limit: int = 100) -> ThreadPage: ...

    def thread(self, thread_id: str) -> ThreadDetail | None: ...

    def tenants(self) -> list[str]: ...


class StoreReader:
    """Read-only views over an opened runtime, limited to one tenant when `tenant` is set."""

    def __init__(self, rt: Runtime, *, tenant: str | None = None) -> None:
        self.rt = rt
        self.tenant = tenant
        self.lock = threading.Lock()
        self.currency = rt.policies.pricing.currency
        self.release_epsilon = rt.policies.privacy.release_epsilons()

    def version(self) -> int:
        """Changes when the service (or any other connection) commits."""
        with self.lock:
            return data_version(self.rt.store)

    def _tenant_of(self, filters: Filters) -> str | None:
        return session_tenant(self.tenant, filters)

    def threads(self, filters: Filters, *, sort: str = "last", descending: bool = True,
                offset: int = 0, limit: int = 100) -> ThreadPage:
        """One page of threads matching `filters`, with markers and topic labels."""
        tenant = self._tenant_of(filters)
        with self.lock:
            check_tenant(self.rt.store, self.rt.policies, filters.tenant)  # a typo: a sentence
            filters = resolve_user(self.rt.store, filters, tenant,
                                   [tenant] if tenant else tenants(self.rt.store),
                                   self.rt.keyring.pseudonym)
            tenant = tenant or filters.tenant
            version = data_version(self.rt.store)
            rows, total = read_page(self.rt.store, filters, tenant, sort=sort,
                                    descending=descending, offset=offset, limit=limit)
        return ThreadPage(rows=rows, total=total, offset=offset, version=version)

    def thread(self, thread_id: str) -> ThreadDetail | None:
        """A thread with its turns and topic label (None when absent or out of scope)."""
        with self.lock:
            thread = get_thread(self.rt.store, thread_id)
        if thread is None or (self.tenant and thread.tenant != self.tenant):
            return None
        return ThreadDetail(thread, thread.topic_label or thread.topic_id)

    def tenants(self) -> list[str]:
        """Tenants in scope that have threads."""
        if self.tenant:
            return [self.tenant]
        with self.lock:
            return tenants(self.rt.store)


def session_tenant(session: str | None, filters: Filters) -> str | None:
    """The tenant a listing covers: the session's, which a `tenant:` filter may not leave."""
    if session and filters.tenant and filters.tenant != session:
        raise FilterError(f"This session is limited to tenant '{session}'.")
    return session or filters.tenant
