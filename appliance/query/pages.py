"""Listings and views for paging UIs (the TUI): a page of threads with its total, the
marks beside each thread, users by pseudonym prefix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from appliance.query.threads import (
    SORT_COLUMNS,
    THREAD_COLUMNS,
    ThreadFilter,
    _thread_where,
    _threads,
)
from appliance.records import Thread
from appliance.store import Store


@dataclass(frozen=True)
class ThreadMarks:
    """What a listing shows beside a thread: feedback, abandonment, failed turns."""

    rating: float | None = None  # the lowest rating given to a turn of the thread
    abandoned: bool = False
    errors: int = 0
    blocked: int = 0


# Both per-thread lookups below are probes of covering indexes, never reads of turns:
# records_marked holds only the marked turns (its condition is this one, word for word)
# and records_position answers the position filter (m011_thread_listing_indexes).
_MARKS_SQL = ("(SELECT count(*) FROM records m WHERE m.thread_id = threads.thread_id AND "
              "(m.feedback IS NOT NULL OR m.status IN ('error', 'blocked')))")
PAGE_SORTS = {**SORT_COLUMNS, "models": "models", "marks": _MARKS_SQL}


def list_threads_page(store: Store, f: ThreadFilter = ThreadFilter(), *,
                      user_prefix: str | None = None, position: str | None = None,
                      topic_ids: tuple[str, ...] = (), sort: str = "last",
                      descending: bool = True, limit: int = 100,
                      offset: int = 0) -> tuple[list[Thread], int]:
    """One page of thread summaries and how many threads match, for paging UIs.

    Args:
        user_prefix: keep users whose pseudonym starts with this.
        position: keep threads with at least one turn at this position.
        topic_ids: keep threads of any of these topics (a topic and its merged ids).
        sort: a key of PAGE_SORTS.
    """
    where, params = _thread_where(f)
    if user_prefix:
        where += " AND substr(user, 1, ?) = ?"
        params += [len(user_prefix), user_prefix]
    if position:
        where += (" AND EXISTS (SELECT 1 FROM records p WHERE p.thread_id = threads.thread_id "
                  "AND p.position = ?)")
        params.append(position)
    if topic_ids:
        where += f" AND topic_id IN ({','.join('?' * len(topic_ids))})"
        params += list(topic_ids)
    total = int(store.db.execute(f"SELECT count(*) FROM threads WHERE {where}",
                                 params).fetchone()[0])
    col = PAGE_SORTS.get(sort, "last_ts")
    rows = store.db.execute(
        f"SELECT {THREAD_COLUMNS} FROM threads WHERE {where} ORDER BY {col} "
        f"{'DESC' if descending else 'ASC'}, thread_id LIMIT ? OFFSET ?",
        (*params, int(limit), int(offset))).fetchall()
    return _threads(store, rows), total


def thread_marks(store: Store, thread_ids: list[str]) -> dict[str, ThreadMarks]:
    """Feedback and failure markers of the given threads (threads without any are absent)."""
    if not thread_ids:
        return {}
    rows = store.db.execute(
        "SELECT thread_id, feedback, status FROM records WHERE thread_id IN "
        f"({','.join('?' * len(thread_ids))}) AND (feedback IS NOT NULL OR "
        "status IN ('error', 'blocked'))", thread_ids).fetchall()
    acc: dict[str, dict[str, Any]] = {}
    for thread_id, feedback, status in rows:
        m = acc.setdefault(thread_id, {"rating": None, "abandoned": False, "errors": 0,
                                       "blocked": 0})
        fb = json.loads(feedback) if feedback else {}
        if isinstance(fb.get("rating"), int | float):
            m["rating"] = fb["rating"] if m["rating"] is None else min(m["rating"], fb["rating"])
        m["abandoned"] = m["abandoned"] or bool(fb.get("abandoned"))
        m["errors"] += status == "error"
        m["blocked"] += status == "blocked"
    return {k: ThreadMarks(**v) for k, v in acc.items()}


def users_with_prefix(store: Store, tenant: str, prefix: str, *, limit: int = 50) -> list[str]:
    """Pseudonyms of a tenant's users that start with `prefix`."""
    return [r[0] for r in store.db.execute(
        "SELECT DISTINCT user FROM threads WHERE tenant = ? AND substr(user, 1, ?) = ? "
        "ORDER BY 1 LIMIT ?", (tenant, len(prefix), prefix, int(limit)))]
