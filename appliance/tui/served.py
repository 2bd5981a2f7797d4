"""The TUI's reads as the service answers them over its query socket (queryserver.py).

Runs on the service's worker thread after `queryserver.authorize` checked the role,
its OS identities and the request's `tenant`; everything here stays inside the
role's tenants. Ops: `session` (what the app needs to start), `page`, `version`,
`screen_search` and `released`. No textual import: the service loads this.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from appliance.config import Policies
from appliance.embed import Embedder
from appliance.errors import AccessDenied, SemtraceError
from appliance.ingest import MAX_ID, parse_ts
from appliance.protocol import ProtocolError
from appliance.query import tenants
from appliance.readindex import ReaderIndex
from appliance.reads import check_tenant
from appliance.records import POSITIONS
from appliance.roles import bound_tenants, sees
from appliance.search import Searchable, build_index, search
from appliance.store import Store
from appliance.tui.aggregates import KINDS, aggregate_view
from appliance.tui.data import Pseudonym, read_page, resolve_user, users_named
from appliance.tui.filters import KEYS, Filters
from appliance.tui.searcher import scopes

SORT_KEYS = ("tenant", "user", "started", "last", "turns", "topic", "models", "tokens",
             "cost", "marks")
MAX_PAGE = 1000


def _tenant(obj: dict[str, Any], role: str, policies: Policies, rid: str | None) -> str | None:
    """The one tenant a request covers: the one it names, or its role's only tenant."""
    tenant = obj.get("tenant")
    bound = bound_tenants(policies.access, role)
    if tenant is None and bound is not None:
        if len(bound) > 1:
            raise AccessDenied(f"The {role} role sees tenants {', '.join(bound)}; name one.")
        tenant = bound[0]
    return tenant if isinstance(tenant, str) else None


def _scope(store: Store, role: str, policies: Policies, tenant: str | None) -> list[str]:
    if tenant is not None:
        return [tenant]
    return [t for t in tenants(store) if sees(policies.access, role, t)]


def _time(value: Any, key: str, rid: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_ts(str(value))
    except SemtraceError:
        raise ProtocolError("bad_request", f"'{key}' must be an ISO-8601 date or time.",
                            rid) from None


def _filters(raw: Any, rid: str | None) -> Filters:
    raw = raw if raw is not None else {}
    if not isinstance(raw, dict) or set(raw) - set(KEYS) or not all(
            v is None or isinstance(v, str) and v.strip() and len(v) <= MAX_ID
            for v in raw.values()):  # "" matched nothing: an empty page (the TUI sends none)
        raise ProtocolError("bad_request", "'filters' must map some of "
                            f"{', '.join(KEYS)} to non-empty strings of at most {MAX_ID} "
                            "characters.", rid)
    if raw.get("position") is not None and raw["position"] not in POSITIONS:
        raise ProtocolError("bad_request", "'filters' position must be one of "
                            f"{', '.join(POSITIONS)}.", rid)  # else: an empty page
    return Filters(tenant=raw.get("tenant"), user=raw.get("user"),
                   since=_time(raw.get("since"), "since", rid),
                   until=_time(raw.get("until"), "until", rid), topic=raw.get("topic"),
                   model=raw.get("model"), position=raw.get("position"))


def _int(obj: dict[str, Any], key: str, default: int, top: int, rid: str | None) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise ProtocolError("bad_request", f"'{key}' must be an integer from 0 to {top}.", rid)
    return value


def answer(obj: dict[str, Any], role: str, policies: Policies, store: Store,
           embedder: Embedder | None, rid: str | None, version: Callable[[], int],
           kept: ReaderIndex | None = None, pseudonym: Pseudonym | None = None
           ) -> dict[str, Any]:
    """The body of the reply to one of the TUI's ops (`version`: what changes whenever
    anything is committed; `kept`: the service's search index, else one is built;
    `pseudonym`: turns a `user:` filter's user id into its pseudonym)."""
    op = obj.get("op")
    if op == "version":
        return {"version": version()}
    if op == "session":
        r = policies.access.roles[role]
        return {"permissions": list(r.permissions), "bound": list(r.tenants),
                "tenants": _scope(store, role, policies, None),
                "currency": policies.pricing.currency,
                "release_epsilon": policies.privacy.release_epsilons()}
    tenant = _tenant(obj, role, policies, rid)
    if op != "page":  # a page's filters may name its tenant: checked below
        # a typo is a sentence: it was an empty view (a full budget_left, a search
        # 'skipped' as if cross-user search were off there)
        check_tenant(store, policies, tenant)
    if op == "page":
        sort = obj.get("sort", "last")
        if sort not in SORT_KEYS:
            raise ProtocolError("bad_request", f"'sort' must be one of {', '.join(SORT_KEYS)}.",
                                rid)
        v = version()
        filters = _filters(obj.get("filters"), rid)
        if tenant is not None and filters.tenant not in (None, tenant):
            # it was ignored: the page answered for the request's tenant as if it matched
            raise ProtocolError("bad_request", "'filters' names another tenant than the "
                                "request's 'tenant'; a page covers one tenant.", rid)
        tenant = tenant or filters.tenant
        check_tenant(store, policies, tenant)  # a typo is a sentence, not an empty page
        try:
            filters = resolve_user(store, filters, tenant,
                                   _scope(store, role, policies, tenant), pseudonym)
        except ValueError as exc:  # FilterError: a user id of several tenants
            raise ProtocolError("bad_request", str(exc), rid) from None
        descending = obj.get("descending", True)
        if not isinstance(descending, bool):
            raise ProtocolError("bad_request", "'descending' must be true or false.", rid)
        rows, total = read_page(store, filters, tenant, sort=sort,
                                descending=descending,
                                offset=_int(obj, "offset", 0, 10**9, rid),
                                limit=_int(obj, "limit", 100, MAX_PAGE, rid))
        return {"rows": rows, "total": total, "version": v}
    if op == "released":
        kind, now = obj.get("kind"), _time(obj.get("now"), "now", rid)
        if kind not in KINDS or now is None:
            raise ProtocolError("bad_request", f"'kind' must be one of {', '.join(KINDS)}, "
                                "with 'now'.", rid)
        topic = obj.get("topic")  # not dropped when it is no name: the whole view is not it
        if topic is not None and (not isinstance(topic, str) or not topic):
            raise ProtocolError("bad_request", "'topic' must be a non-empty string.", rid)
        if topic is not None and len(topic) > MAX_ID:
            raise ProtocolError("bad_request", f"'topic' is longer than {MAX_ID} characters.",
                                rid)
        return {"view": aggregate_view(store, policies, _scope(store, role, policies, tenant),
                                       str(kind), now, topic=topic, role=role)}
    return _screen_search(obj, role, policies, store, embedder, tenant, rid, kept, pseudonym)


def _screen_search(obj: dict[str, Any], role: str, policies: Policies, store: Store,
                   embedder: Embedder | None, tenant: str | None,
                   rid: str | None, kept: ReaderIndex | None = None,
                   pseudonym: Pseudonym | None = None) -> dict[str, Any]:
    """The search screen's query: `user:` prefixes widen to a cross-user search only where
    `cross_user_search` allows it (searcher.scopes)."""
    text, prefix = obj.get("text"), obj.get("user")
    if not isinstance(text, str) or not text.strip():
        raise ProtocolError("bad_request", "Type what to search for.", rid)
    if prefix is not None and (not isinstance(prefix, str) or not prefix
                               or len(prefix) > MAX_ID):
        raise ProtocolError("bad_request", "'user' must be a non-empty string of at most "
                            f"{MAX_ID} characters.", rid)
    if embedder is None:
        raise ProtocolError("bad_request", "This service has no embedding model.", rid)
    since = _time(obj.get("since"), "since", rid)
    k = max(_int(obj, "k", 20, 1000, rid), 1)
    tenant_list = _scope(store, role, policies, tenant)
    users = ({t: users_named(store, t, prefix, pseudonym) for t in tenant_list} if prefix
             else {})
    pairs, skipped = scopes(policies, role, tenant_list, users)
    searched = sorted({t for t, _ in pairs})
    if kept is not None and kept.model_id != embedder.model_id:
        kept = None
    if kept is not None:
        kept.refresh(store, searched)
    hits = []
    for t, user in pairs:
        index: Searchable = (kept.scoped([t], since) if kept is not None
                             else build_index(store, embedder, tenant=t, user=user))
        hits += search(store, index, embedder, text, tenant=t, user=user, k=k, since=since)
    hits.sort(key=lambda h: (-h.similarity, h.record_id))
    return {"hits": hits[:k], "searched": searched, "skipped": skipped}

