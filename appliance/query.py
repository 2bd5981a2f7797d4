"""The read side: threads, one thread, search, stats. Returns dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from appliance.embed import Embedder
from appliance.index import VectorIndex
from appliance.records import Hit, Record, Thread
from appliance.store import Store


@dataclass(frozen=True)
class ThreadFilter:
    """Filters for thread listings (all optional)."""

    tenant: str | None = None
    user: str | None = None  # pseudonym
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    topic_id: str | None = None
    min_turns: int = 1


def _thread_where(f: ThreadFilter) -> tuple[str, list[object]]:
    clauses, params = ["turns >= ?"], [f.min_turns]
    if f.tenant:
        clauses.append("tenant = ?")
        params.append(f.tenant)
    if f.user:
        clauses.append("user = ?")
        params.append(f.user)
    if f.since:
        clauses.append("last_ts >= ?")
        params.append(f.since.timestamp())
    if f.until:
        clauses.append("first_ts <= ?")
        params.append(f.until.timestamp())
    if f.topic_id:
        clauses.append("topic_id = ?")
        params.append(f.topic_id)
    if f.model:
        clauses.append("models LIKE ?")
        params.append(f'%"{f.model}"%')
    return " AND ".join(clauses), params


SORT_COLUMNS = {"last": "last_ts", "first": "first_ts", "turns": "turns", "user": "user",
                "tenant": "tenant", "tokens": "input_tokens + output_tokens", "topic": "topic_id"}


def list_threads(store: Store, f: ThreadFilter = ThreadFilter(), *, sort: str = "last",
                 descending: bool = True, limit: int = 100, offset: int = 0) -> list[Thread]:
    """One page of thread summaries."""
    where, params = _thread_where(f)
    col = SORT_COLUMNS.get(sort, "last_ts")
    direction = "DESC" if descending else "ASC"
    rows = store.db.execute(
        "SELECT thread_id, tenant, user, first_ts, last_ts, turns, models, input_tokens, "
        f"output_tokens, topic_id FROM threads WHERE {where} ORDER BY {col} {direction}, "
        "thread_id LIMIT ? OFFSET ?", (*params, int(limit), int(offset))).fetchall()
    return [Thread(thread_id=r[0], tenant=r[1], user=r[2],
                   first_ts=datetime.fromtimestamp(r[3], UTC),
                   last_ts=datetime.fromtimestamp(r[4], UTC), turns=r[5],
                   models=tuple(json.loads(r[6])), input_tokens=r[7], output_tokens=r[8],
                   topic_id=r[9]) for r in rows]


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
                  topic_id=head[3], records=tuple(records))


def list_thread_rows(store: Store, thread_id: str) -> tuple[tuple[str, ...], int, int, str | None]:
    row = store.db.execute(
        "SELECT models, input_tokens, output_tokens, topic_id FROM threads WHERE thread_id=?",
        (thread_id,)).fetchone()
    if row is None:
        return (), 0, 0, None
    return tuple(json.loads(row[0])), row[1], row[2], row[3]


def thread_of_record(store: Store, record_id: int) -> str | None:
    row = store.db.execute("SELECT thread_id FROM records WHERE id=?", (record_id,)).fetchone()
    return row[0] if row else None


def records_by_request(store: Store, tenant: str, request_id: str) -> Record | None:
    rows = store.records("r.tenant = ? AND r.request_id = ?", (tenant, request_id))
    return rows[0] if rows else None


def build_index(store: Store, embedder: Embedder, *, tenant: str | None = None,
                user: str | None = None) -> VectorIndex:
    """An in-memory index of the readable vectors in scope."""
    index = VectorIndex(embedder.dims)
    rows = [r for r in store.iter_vectors(model_id=embedder.model_id)
            if (tenant is None or r[1] == tenant) and (user is None or r[2] == user)]
    index.rebuild(rows)
    return index


def search(store: Store, index: VectorIndex, embedder: Embedder, text: str, *,
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
        if not rec or (since and rec[0].ts < since):
            continue
        r = rec[0]
        hits.append(Hit(record_id=r.record_id, thread_id=r.thread_id,
                        similarity=round(float(m.similarity), 4), text=r.text, tenant=t,
                        user=r.user, ts=r.ts))
        if len(hits) >= k:
            break
    return hits


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
