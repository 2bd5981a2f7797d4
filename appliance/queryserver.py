"""The query socket: readers (CLI, TUI) ask the service, which holds the key, so an analyst
needs no master passphrase. Each request runs under the role the peer's OS identity may
take (SO_PEERCRED, supplementary groups included), limited to the role's tenants.

Requests are NDJSON like the ingest protocol, each with `"v": 1`, an `op`, and an
optional `role` and `tenant`. `authorize` is the one permission check: the op's
permission (PERMISSIONS; `stats` needs `user_stats` with a `user`, else `aggregates`),
the role's identities and its tenants. Then:

- `threads` {tenant, user, topic, since, until, limit} / `thread` {thread_id}: thread
  listings (threads:read);
- `search` {text, tenant, user, since, limit}: as `semtrace search` (reads.run_search),
  with the tenants left out because cross-user search is off there (`skipped`);
- `stats` {kind, tenant, user, from, to, topic, bucket, baseline_from, baseline_to}:
  the JSON `semtrace stats KIND --json` prints; cross-user figures come from the privacy
  gate, spending or reading today's cached release exactly as the direct command does;
- `session`, `page`, `version`, `screen_search`, `released`: what the TUI's screens read
  (tui/served.py answers them, tui/remote.py asks).

Over this socket a role that lists no uids/gids is the service owner's only: whoever
reaches the socket gets nothing by naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from appliance.config import AccessSettings, Policies
from appliance.embed import Embedder
from appliance.errors import AccessDenied, SemtraceError
from appliance.ingest import MAX_ID, cut_text, parse_ts
from appliance.keys import Keyring
from appliance.privacy import BudgetSpent
from appliance.protocol import VERSION, ProtocolError, echo_id
from appliance.query import (
    NAMES_A_THREAD,
    ThreadFilter,
    data_version,
    find_thread,
    list_threads,
    live_topic,
    no_topic,
    tenants,
)
from appliance.readindex import ReaderIndex
from appliance.reads import (
    StatsQuery,
    check_tenant,
    reads_threads,
    run_search,
    run_stats,
    search_skipped,
    stats_permission,
    user_named,
)
from appliance.reads_json import stats_json
from appliance.records import jsonable
from appliance.roles import Caller, bound_tenants, require, resolve_role, sees
from appliance.store import Store, connect

PERMISSIONS = {"threads": "threads:read", "thread": "threads:read", "page": "threads:read",
               "session": "threads:read", "version": "threads:read", "search": "search",
               "screen_search": "search", "stats": "aggregates", "released": "aggregates"}
QUERY_OPS = tuple(PERMISSIONS)
MAX_LIMIT = 10_000
MAX_TENANT = 128  # as on the ingest socket: no tenant is longer
BUDGET_SPENT = "budget_spent"  # the `reason` of a stats refusal for a spent privacy budget


def check_op(obj: dict[str, Any]) -> None:
    """The request's version and op, as on the ingest socket: `bad_version`, `unknown_op`
    (pure)."""
    rid = echo_id(obj.get("request_id"))
    v = obj.get("v", VERSION)
    if isinstance(v, bool) or v != VERSION:  # true == 1 in Python, not in JSON
        raise ProtocolError("bad_version", f"Protocol version {VERSION} is the only one served.",
                            rid)
    if obj.get("op") not in QUERY_OPS:
        raise ProtocolError("unknown_op", f"'op' must be one of {', '.join(QUERY_OPS)}.", rid)


def permission(obj: dict[str, Any]) -> str:
    """The permission a request needs (pure)."""
    op = obj.get("op")
    if op == "stats":
        user = obj.get("user")
        if user is not None and not isinstance(user, str):
            raise ProtocolError("bad_request", "'user' must be a string.")
        return stats_permission(user)
    return PERMISSIONS[str(op)]


def authorize(access: AccessSettings, obj: dict[str, Any], caller: Caller, *,
              owner_uid: int) -> str:
    """The role a query runs under, or ProtocolError `forbidden` (pure)."""
    role = obj.get("role")
    if role is not None and (not isinstance(role, str) or not role):
        # "" is not "no role": a caller that meant one must not get the default's reads
        raise ProtocolError("bad_request", "'role' must be a non-empty string.")
    tenant = obj.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise ProtocolError("bad_request", "'tenant' must be a string.")
    for key, value, top in (("role", role, MAX_ID), ("tenant", tenant, MAX_TENANT)):
        if value is not None and len(value) > top:  # never echoed whole in a refusal
            raise ProtocolError("bad_request", f"'{key}' is longer than {top} characters.")
    try:
        name = resolve_role(access, role)
        r = access.roles[name]
        if not r.uids and not r.gids and caller.uid != owner_uid:
            raise AccessDenied(
                f"The {name} role binds no uids or gids in access.toml; over the query socket "
                f"only the service's own user may take it: add uids = [{caller.uid}] (or a "
                f"group of yours to gids) under [roles.{name}] in the service's access.toml "
                "and reload it (systemctl reload semtrace).")
        return require(access, name, permission(obj), caller=caller, tenant=tenant)
    except AccessDenied as exc:
        raise ProtocolError("forbidden", str(exc)) from None


def _str(obj: dict[str, Any], key: str, rid: str | None, *, required: bool = False
         ) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ProtocolError("bad_request", f"'{key}' must be a non-empty string.", rid)
    if key != "text" and len(value) > MAX_ID:  # a name or time, quoted in some refusals
        raise ProtocolError("bad_request", f"'{key}' is longer than {MAX_ID} characters.", rid)
    return value


def _when(obj: dict[str, Any], key: str, rid: str | None) -> datetime | None:
    value = _str(obj, key, rid)
    if value is None:
        return None
    try:
        return parse_ts(value)
    except SemtraceError:
        raise ProtocolError("bad_request", f"'{key}' must be an ISO-8601 date or time.",
                            rid) from None


def _limit(obj: dict[str, Any], default: int, top: int, rid: str | None) -> int:
    limit = obj.get("limit", default)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= top:
        raise ProtocolError("bad_request", f"'limit' must be an integer from 1 to {top}.", rid)
    return limit


@dataclass(frozen=True)
class QueryVector:
    """The service's embedding of a search's text, made before the read (on the reader
    thread, under the model's lock: one llama.cpp model may not run on two threads at
    once); the search runs with this in place of the model."""

    model_id: str
    dims: int
    text: str
    vector: np.ndarray

    def embed(self, texts: list[str]) -> tuple[np.ndarray, list[bool]]:
        if texts != [self.text]:
            raise ValueError("a query vector embeds only its own text")
        return self.vector[None, :], [False]


def search_text(obj: dict[str, Any]) -> str | None:
    """The text a request searches for (to embed before the read), if any."""
    text = obj.get("text")
    if obj.get("op") in ("search", "screen_search") and isinstance(text, str) and text.strip():
        return text
    return None


def model_text(text: str, max_chars: int) -> str:
    """What of a search's text the model is given: its words, cut as an ingest's text is
    (`max_text_chars`): the same tokens, as the model keeps only the first `max_tokens`.
    Under the model's lock, which an ingest batch's embedding waits on, the tokenizer took
    a whole 256 KB line (225 ms measured); now at most `max_chars` characters."""
    return cut_text(" ".join(text.split()), max_chars)


class ReadSide:
    """Where the query socket's reads run (one reader thread): each query on a read-only
    store of its own, so that a long search or listing never holds up ingest and no key
    cached from before a shred is used; cross-user stats spend and cache on a side
    connection of the service's store. One long-lived read-only connection only watches
    for commits (its `data_version`), for the TUI's refresh. Searches use one vector
    index kept in memory (readindex.py), brought up to date from each search's store."""

    def __init__(self, writer: Store, keyring: Keyring) -> None:
        self.writer = writer
        self.keyring = keyring
        self._watch: Any = None
        self._kept: ReaderIndex | None = None

    def kept(self, embedder: Embedder | None) -> ReaderIndex | None:
        """The search index kept for `embedder`'s model (a new one if the model changed)."""
        if embedder is None:
            return None
        if self._kept is None or self._kept.model_id != embedder.model_id:
            self._kept = ReaderIndex(embedder.dims, embedder.model_id)
        return self._kept

    def version(self) -> int:
        """Changes whenever any connection (ingest, maintenance, a release) commits."""
        if self._watch is None:
            self._watch = connect(self.writer.path, self.keyring, readonly=True)
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    def answer(self, obj: dict[str, Any], role: str, policies: Policies,
               embedder: Embedder | None) -> dict[str, Any]:
        store = Store.open(self.writer.path.parent, self.keyring, readonly=True)
        ledger = self.writer.side_connection() if obj.get("op") == "stats" else None
        try:
            return answer(obj, role, policies, store, self.keyring, embedder,
                          ledger_db=ledger, version=self.version, kept=self.kept(embedder))
        finally:
            if ledger is not None:
                ledger.close()
            store.close()

    def close(self) -> None:
        self._kept = None
        if self._watch is not None:
            self._watch.close()
            self._watch = None


def answer(obj: dict[str, Any], role: str, policies: Policies, store: Store,
           keyring: Keyring, embedder: Embedder | None = None, *,
           ledger_db: Any = None, version: Callable[[], int] | None = None,
           kept: ReaderIndex | None = None) -> dict[str, Any]:
    """The reply to an authorized query (`version`: the TUI's change counter; `kept`:
    the reader's search index, else each search builds its own)."""
    rid = echo_id(obj.get("request_id"))
    op = obj.get("op")
    try:
        if op in ("thread", "threads"):
            body = _threads(obj, role, policies, store, keyring, rid)
        elif op == "search":
            body = _search(obj, role, policies, store, keyring, embedder, rid, kept)
        elif op == "stats":
            body = _stats(obj, role, policies, store, keyring, rid, ledger_db)
        else:
            from appliance.tui import served

            body = jsonable(served.answer(obj, role, policies, store, embedder, rid,
                                          version or (lambda: data_version(store)), kept,
                                          keyring.pseudonym))
    except AccessDenied as exc:
        raise ProtocolError("forbidden", str(exc), rid) from None
    except BudgetSpent as exc:  # still bad_request (the protocol's code), with its reason, so
        # that the CLI exits 5 as the direct command does, not 2 as for a typo
        raise ProtocolError("bad_request", str(exc), rid,
                            extra={"reason": BUDGET_SPENT}) from None
    except SemtraceError as exc:  # a bad window, an unknown kind: one sentence
        raise ProtocolError("bad_request", str(exc), rid) from None
    except OverflowError:  # a time at the calendar's ends (0001-01-01, 9999-12-31) moved by
        # a day or a window: the client's input, not a fault to retry
        raise ProtocolError("bad_request", "A time in the request is out of range (too near "
                            "year 1 or 9999 to be used).", rid) from None
    return {"request_id": rid, "ok": True, "role": role, **body}


def _threads(obj: dict[str, Any], role: str, policies: Policies, store: Store,
             keyring: Keyring, rid: str | None) -> dict[str, Any]:
    access = policies.access
    bound = bound_tenants(access, role)
    if obj.get("op") == "thread":
        thread_id = _str(obj, "thread_id", rid, required=True)
        thread = find_thread(store, str(thread_id))
        if thread is None or not sees(access, role, thread.tenant):
            raise ProtocolError("not_found",
                                f"No thread with this id in scope ({NAMES_A_THREAD}).", rid)
        return {"thread": jsonable(thread), "currency": policies.pricing.currency}
    tenant, user = obj.get("tenant"), obj.get("user")
    limit = _limit(obj, 50, MAX_LIMIT, rid)
    if user is not None and (not isinstance(user, str) or not user.strip() or tenant is None
                             or len(user) > MAX_ID):  # "": an empty list, as if none had any
        raise ProtocolError("bad_request", f"'user' must be a non-empty string of at most "
                            f"{MAX_ID} characters, with 'tenant'.", rid)
    if tenant is None and bound is not None and len(bound) == 1:
        tenant = bound[0]
    check_tenant(store, policies, tenant if isinstance(tenant, str) else None)
    pseudo = user_named(store, keyring, tenant, user) if user is not None and tenant else None
    topic = _str(obj, "topic", rid)
    if topic is not None:
        scope = [tenant] if tenant else (bound or tenants(store))
        topic = live_topic(store, topic, scope)
        if topic is None:
            raise ProtocolError("not_found", no_topic(store, obj["topic"], scope,
                                                      "`stats topics` lists them"), rid)
    rows = list_threads(store, ThreadFilter(tenant=tenant, user=pseudo, topic_id=topic,
                                            tenants=tuple(bound) if bound else None,
                                            since=_when(obj, "since", rid),
                                            until=_when(obj, "until", rid)),
                        limit=limit)
    return {"threads": jsonable(rows), "currency": policies.pricing.currency}


def _search(obj: dict[str, Any], role: str, policies: Policies, store: Store,
            keyring: Keyring, embedder: Embedder | None, rid: str | None,
            kept: ReaderIndex | None = None) -> dict[str, Any]:
    if embedder is None:
        raise ProtocolError("bad_request", "This service has no embedding model.", rid)
    text = _str(obj, "text", rid, required=True)
    tenant, user = _str(obj, "tenant", rid), _str(obj, "user", rid)
    hits = run_search(store, keyring, policies, role, embedder, str(text),
                      tenant=tenant, user=user, since=_when(obj, "since", rid),
                      limit=_limit(obj, 10, 1000, rid), kept=kept)
    return {"hits": jsonable(hits),
            "skipped": search_skipped(store, policies, role, tenant, user)}


def _stats(obj: dict[str, Any], role: str, policies: Policies, store: Store,
           keyring: Keyring, rid: str | None, ledger_db: Any = None) -> dict[str, Any]:
    kind = _str(obj, "kind", rid, required=True)
    tenant = _str(obj, "tenant", rid, required=True)
    start, end = _when(obj, "from", rid), _when(obj, "to", rid)
    if start is None or end is None or start >= end:
        raise ProtocolError("bad_request", "'from' and 'to' must be ISO times, 'from' first.",
                            rid)
    b_start, b_end = _when(obj, "baseline_from", rid), _when(obj, "baseline_to", rid)
    if (b_start is None) != (b_end is None) or (b_start and b_end and b_start >= b_end):
        raise ProtocolError("bad_request", "'baseline_from' and 'baseline_to' go together, "
                            "'baseline_from' first.", rid)
    bucket = obj.get("bucket", "day")
    if bucket not in ("day", "hour"):
        raise ProtocolError("bad_request", "'bucket' must be 'day' or 'hour'.", rid)
    q = StatsQuery(kind=str(kind), tenant=str(tenant), user=_str(obj, "user", rid),
                   start=start, end=end, topic=_str(obj, "topic", rid), bucket=bucket,
                   baseline=(b_start, b_end) if b_start and b_end else None)
    made = obj.get("release", False)  # the TUI's `n`: today's release even of nothing
    if not isinstance(made, bool):
        raise ProtocolError("bad_request", "'release' must be true or false.", rid)
    # a window with no thread: said without a release to a role that may list them
    report = run_stats(q, store, keyring, policies, ledger_db=ledger_db,
                       reads_threads=not made and reads_threads(policies, role, q.tenant))
    return {"report": stats_json(report, policies.pricing.currency)}
