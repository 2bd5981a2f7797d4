"""The TUI over the service's query socket: no key on this side, so an analyst needs no
master passphrase. The service checks every request against the role the caller's OS
identity may take (queryserver.authorize) and answers with what that role may see;
these classes only turn its JSON back into the dataclasses the screens show.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.errors import AccessDenied, InputError
from appliance.query import ThreadMarks
from appliance.reads_json import hit_from_json, row_from_json, thread_from_json
from appliance.tui.aggregates import AggregateView, Released
from appliance.tui.data import ThreadDetail, ThreadPage, ThreadRow, session_tenant
from appliance.tui.filters import FilterError, Filters
from appliance.tui.searcher import SearchResult


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat().replace("+00:00", "Z")


def view_from_json(d: dict[str, Any]) -> AggregateView:
    return AggregateView(
        kind=d["kind"], start=_ts(d["start"]), end=_ts(d["end"]), currency=d["currency"],
        k_min_users=d["k_min_users"], topic=d.get("topic"),
        aliases=tuple((str(a), str(b)) for a, b in d.get("aliases", ())),
        epsilon=float(d.get("epsilon", 0.0)),
        tenants=tuple(Released(t["tenant"], tuple(row_from_json("topics", r) for r in t["rows"]),
                               _ts(t["released_at"]) if t["released_at"] else None,
                               bool(t.get("per_user_topics")),
                               tuple(t.get("uncounted", ())), t.get("budget_left"),
                               bool(t.get("empty")))
                      for t in d["tenants"]))


class SocketReader:
    """The screens' reads, asked of the service under the caller's OS identity."""

    def __init__(self, path: Path, *, role: str | None, tenant: str | None = None) -> None:
        self.path = path
        self.asked_role = role
        session = self.ask("session")
        self.role: str = session["role"]
        self.permissions: tuple[str, ...] = tuple(session["permissions"])
        bound = session["bound"]
        if tenant is None and bound:
            if len(bound) > 1:
                raise AccessDenied(f"The {self.role} role sees tenants {', '.join(bound)}; "
                                   "pick one with --tenant.")
            tenant = bound[0]
        if tenant is not None:
            self.ask("version", tenant=tenant)  # the service refuses a tenant out of scope
            # and one the store never held (a typo would open on an empty table)
            self.ask("threads", tenant=tenant, limit=1)
        self.tenant = tenant
        self.all_tenants: list[str] = session["tenants"]
        self.currency: str = session["currency"]
        self.release_epsilon: dict[str, float] = session["release_epsilon"]

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request; a refusal as AccessDenied, any other error as SemtraceError."""
        from appliance.cli.sockets import ask

        return ask(self.path, {"op": op, "role": self.asked_role, **fields})

    def version(self) -> int:
        return int(self.ask("version", tenant=self.tenant)["version"])

    def threads(self, filters: Filters, *, sort: str = "last", descending: bool = True,
                offset: int = 0, limit: int = 100) -> ThreadPage:
        tenant = session_tenant(self.tenant, filters)
        raw = {k: (_iso(v) if isinstance(v, datetime) else v)
               for k, v in vars(filters).items() if v is not None and k != "tenant"}
        got = self.ask("page", tenant=tenant, filters=raw, sort=sort, descending=descending,
                       offset=offset, limit=limit)
        rows = tuple(ThreadRow(thread_from_json(r["thread"]),
                               ThreadMarks(**r["marks"]) if r["marks"] else None, r["topic"])
                     for r in got["rows"])
        return ThreadPage(rows=rows, total=got["total"], offset=offset, version=got["version"])

    def thread(self, thread_id: str) -> ThreadDetail | None:
        try:
            thread = thread_from_json(self.ask("thread", thread_id=thread_id)["thread"])
        except InputError:
            return None  # not_found: absent, or another tenant's (a stopped service, a
            # refusal or a failed read are said as they are, not as "not in this store")
        if self.tenant and thread.tenant != self.tenant:
            return None
        return ThreadDetail(thread, thread.topic_label or thread.topic_id)

    def tenants(self) -> list[str]:
        return [self.tenant] if self.tenant else self.all_tenants


class SocketAggregates:
    """Today's topic and model releases, read (or made, spending budget) by the service."""

    def __init__(self, reader: SocketReader) -> None:
        self.reader = reader

    def view(self, kind: str, now: datetime, *, topic: str | None = None) -> AggregateView:
        got = self.reader.ask("released", tenant=self.reader.tenant, kind=kind, now=_iso(now),
                              topic=topic)
        return view_from_json(got["view"])

    def release(self, kind: str, now: datetime, *, role: str,
                topic: str | None = None) -> tuple[str, ...]:
        """Ask the service for today's release of each tenant that lacks one: it spends
        the kind's epsilon through the privacy gate as `semtrace stats KIND` does, and as
        `n` does on a local store, also where the window holds no thread (`release`)."""
        view = self.view(kind, now, topic=topic)
        for tenant in view.missing:
            self.reader.ask("stats", kind=kind, tenant=tenant, topic=topic, release=True,
                            **{"from": _iso(view.start), "to": _iso(view.end)})
        return view.missing


class SocketSearcher:
    """The search screen's queries, run by the service with its own embedding model."""

    model_loaded = True

    def __init__(self, reader: SocketReader) -> None:
        self.reader = reader

    def run(self, text: str, filters: Filters, *, k: int = 20,
            progress: Callable[[str], None] | None = None) -> SearchResult:
        if not text.strip():
            raise FilterError("Type what to search for.")
        tenant = session_tenant(self.reader.tenant, filters)
        if progress:
            progress("Searching…")
        got = self.reader.ask("screen_search", text=text, tenant=tenant, user=filters.user,
                              since=_iso(filters.since), k=k)
        return SearchResult(tuple(hit_from_json(h) for h in got["hits"]),
                            tuple(got["searched"]), tuple(got["skipped"]))
