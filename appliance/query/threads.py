"""Thread listings and one thread: filters, summaries in pages, a thread with its turns,
the thread a record id names."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.pricing import as_read
from appliance.query.topics import topic_label, topic_labels
from appliance.records import Record, Thread
from appliance.store import Store
from appliance.titles import shorten, thread_titles


@dataclass(frozen=True)
class ThreadFilter:
    """Filters for thread listings (all optional)."""

    tenant: str | None = None
    user: str | None = None  # pseudonym
    since: datetime | None = None
    until: datetime | None = None  # exclusive: threads that started before it
    model: str | None = None
    topic_id: str | None = None
    min_turns: int = 1
    tenants: tuple[str, ...] | None = None  # only these (a role bound to several tenants)


def _thread_where(f: ThreadFilter) -> tuple[str, list[object]]:
    clauses: list[str] = ["turns >= ?"]
    params: list[object] = [f.min_turns]
    if f.tenant:
        clauses.append("tenant = ?")
        params.append(f.tenant)
    if f.tenants is not None:
        clauses.append(f"tenant IN ({','.join('?' * len(f.tenants))})" if f.tenants else "0")
        params.extend(f.tenants)
    if f.user:
        clauses.append("user = ?")
        params.append(f.user)
    if f.since:
        clauses.append("last_ts >= ?")
        params.append(f.since.timestamp())
    if f.until:
        clauses.append("first_ts < ?")  # half-open: a window [since, until)
        params.append(f.until.timestamp())
    if f.topic_id:
        clauses.append("topic_id = ?")
        params.append(f.topic_id)
    if f.model:  # the model's JSON string among the thread's, as written: not a LIKE
        # pattern ('%' matched every thread with a model, 'gpt_4o' matched 'gpt-4o')
        clauses.append("instr(models, ?) > 0")
        params.append(json.dumps(f.model))
    return " AND ".join(clauses), params


THREAD_COLUMNS = ("thread_id, tenant, user, first_ts, last_ts, turns, models, input_tokens, "
                  "output_tokens, topic_id, cost")
SORT_COLUMNS = {"last": "last_ts", "first": "first_ts", "turns": "turns", "user": "user",
                "tenant": "tenant", "tokens": "input_tokens + output_tokens", "topic": "topic_id",
                "cost": "cost"}


def list_threads(store: Store, f: ThreadFilter = ThreadFilter(), *, sort: str = "last",
                 descending: bool = True, limit: int = 100, offset: int = 0) -> list[Thread]:
    """One page of thread summaries."""
    where, params = _thread_where(f)
    col = SORT_COLUMNS.get(sort, "last_ts")
    direction = "DESC" if descending else "ASC"
    rows = store.db.execute(
        f"SELECT {THREAD_COLUMNS} FROM threads WHERE {where} ORDER BY {col} {direction}, "
        "thread_id LIMIT ? OFFSET ?", (*params, int(limit), int(offset))).fetchall()
    return _threads(store, rows)


def _threads(store: Store, rows: list[tuple[Any, ...]]) -> list[Thread]:
    """Thread summaries (with their titles) from rows of THREAD_COLUMNS."""
    titles = thread_titles(store, [r[0] for r in rows])
    labels = topic_labels(store, sorted({r[9] for r in rows if r[9]}))
    return [Thread(thread_id=r[0], tenant=r[1], user=r[2],
                   first_ts=datetime.fromtimestamp(r[3], UTC),
                   last_ts=datetime.fromtimestamp(r[4], UTC), turns=r[5],
                   models=tuple(json.loads(r[6])), input_tokens=r[7], output_tokens=r[8],
                   topic_id=r[9], cost=as_read(r[10]), title=titles.get(r[0]),
                   topic_label=labels.get(r[9] or "")) for r in rows]


def count_threads(store: Store, f: ThreadFilter = ThreadFilter()) -> int:
    where, params = _thread_where(f)
    return int(store.db.execute(f"SELECT count(*) FROM threads WHERE {where}",
                                params).fetchone()[0])


def get_thread(store: Store, thread_id: str) -> Thread | None:
    """A thread with its turns in time order, or None."""
    records = store.records("r.thread_id = ?", (thread_id,))
    if not records:
        return None
    head = list_thread_rows(store, thread_id)
    return Thread(thread_id=thread_id, tenant=records[0].tenant, user=records[0].user,
                  first_ts=records[0].ts, last_ts=records[-1].ts, turns=len(records),
                  models=head[0], input_tokens=head[1], output_tokens=head[2],
                  topic_id=head[3], cost=as_read(head[4]), records=tuple(records),
                  title=next((shorten(r.text) for r in records if r.text and r.text.strip()),
                             None), topic_label=topic_label(store, head[3]))


def list_thread_rows(store: Store, thread_id: str
                     ) -> tuple[tuple[str, ...], int, int, str | None, float | None]:
    """(models, input tokens, output tokens, topic id, cost) of a thread's summary row."""
    row = store.db.execute(
        "SELECT models, input_tokens, output_tokens, topic_id, cost FROM threads "
        "WHERE thread_id=?", (thread_id,)).fetchone()
    if row is None:
        return (), 0, 0, None, None
    return tuple(json.loads(row[0])), row[1], row[2], row[3], row[4]


RECORD_REF = re.compile(r"#?([0-9]{1,19})")
# what the sentence for an id that names no thread in scope adds
NAMES_A_THREAD = ("give a thread's id, th_…, as `threads list` prints it, or a record's "
                  "id, #N, as `search` prints it")


def find_thread(store: Store, ident: str) -> Thread | None:
    """The thread `ident` names: a thread's id, or a record's id (`#N` or `N`, as `threads
    show`, `search` and the TUI's side panel print it): the thread that record is in."""
    ref = RECORD_REF.fullmatch(ident.strip())
    if ref is not None:  # (beyond SQLite's integers: no such record)
        thread_id = thread_of_record(store, int(ref[1])) if int(ref[1]) < 2**63 else None
        return get_thread(store, thread_id) if thread_id is not None else None
    return get_thread(store, ident)


def thread_of_record(store: Store, record_id: int) -> str | None:
    row = store.db.execute("SELECT thread_id FROM records WHERE id=?", (record_id,)).fetchone()
    return row[0] if row else None


def records_by_request(store: Store, tenant: str, request_id: str) -> Record | None:
    rows = store.records("r.tenant = ? AND r.request_id = ?", (tenant, request_id))
    return rows[0] if rows else None
