"""The read side: thread listings, one thread, topics and audit entries. Returns
dataclasses. Similarity search is `appliance.search`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.analytics.small_topics import OTHER_TOPICS
from appliance.audit import Entry as AuditEntry
from appliance.errors import InputError
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
    if f.model:
        clauses.append("models LIKE ?")
        params.append(f'%"{f.model}"%')
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
                   topic_id=r[9], cost=r[10], title=titles.get(r[0]),
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
                  topic_id=head[3], cost=head[4], records=tuple(records),
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


# ---------------------------------------------------------------- listings and views (TUI)


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


def has_table(store: Store, name: str) -> bool:
    """Whether the store has this table (a migration may not have run yet)."""
    return store.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                            (name,)).fetchone() is not None


def data_version(store: Store) -> int:
    """Changes whenever another connection commits: a cheap "is there anything new?"."""
    return int(store.db.execute("PRAGMA data_version").fetchone()[0])


def tenants(store: Store) -> list[str]:
    """Tenants that have threads."""
    return [r[0] for r in store.db.execute("SELECT DISTINCT tenant FROM threads ORDER BY 1")]


def has_held(store: Store, tenant: str) -> bool:
    """Whether the store holds or has held data of `tenant` (a live or shredded bucket)."""
    return store.db.execute(
        "SELECT EXISTS (SELECT 1 FROM buckets WHERE tenant=?) OR "
        "EXISTS (SELECT 1 FROM threads WHERE tenant=?)", (tenant, tenant)).fetchone()[0] == 1


def has_topic(store: Store, tenant: str, topic_id: str) -> bool:
    """Whether `topic_id` is (or was, before a merge) a topic of `tenant`.

    Turns get their topic online, before a refinement publishes it to `topics`; the
    scan of the turns is reached only by an id found nowhere else (a typo).
    """
    args = (tenant, topic_id)
    if has_table(store, "topics") and store.db.execute(
            "SELECT 1 FROM topics WHERE tenant=? AND topic_id=?", args).fetchone():
        return True
    return any(store.db.execute(f"SELECT 1 FROM {table} WHERE tenant=? AND topic_id=? LIMIT 1",
                                args).fetchone() for table in ("threads", "records"))


def live_topic(store: Store, topic_id: str, tenants: list[str]) -> str | None:
    """The topic `topic_id` names now, or None when none of `tenants` has or had it.

    An id is itself, or the topic it was merged into (its threads moved there); else a
    label (any case) of exactly one live topic of `tenants`, or one phrase of its label
    ("weather" of "weather, umbrella"), names that topic: product people think "password
    reset", not `tp_3fa9`. InputError when the label or phrase is several topics'.
    """
    if any(has_topic(store, t, topic_id) for t in tenants):
        return topic_aliases(store).get(topic_id, topic_id)
    if not tenants or not has_table(store, "topics"):
        return None
    wanted = topic_id.strip().lower()
    labelled = store.db.execute(
        "SELECT topic_id, label FROM topics WHERE merged_into IS NULL AND label IS NOT NULL "
        f"AND tenant IN ({','.join('?' * len(tenants))}) ORDER BY topic_id",
        tuple(tenants)).fetchall()
    found = [tid for tid, label in labelled if label.lower() == wanted]
    if len(found) > 1:
        raise InputError(f"'{topic_id}' is the label of {len(found)} topics "
                            f"({', '.join(found)}); name one by its id.")
    if found:
        return str(found[0])
    # one phrase of a two-phrase label ("weather" of "weather, umbrella"), as stats shows it
    found = [tid for tid, label in labelled
             if wanted in (p.strip() for p in label.lower().split(","))]
    if len(found) > 1:
        raise InputError(f"'{topic_id}' is in the labels of {len(found)} topics "
                         f"({', '.join(found)}); name one by its id or whole label.")
    return str(found[0]) if found else None


def no_topic(store: Store, topic: str, tenants: list[str], lists: str) -> str:
    """The sentence for a `--topic` (or `topic:`) that names no topic of `tenants`.

    A word of a label is not a phrase of it (`weather` of "weather forecast, umbrella"),
    so it names nothing; the labels that hold every word given are named, so that the
    reader sees what to type instead of only "no topic" beside a topic about it.
    `lists`: where the topics are listed (`stats topics`, the TUI's `o`).
    """
    if topic.strip() == OTHER_TOPICS:
        # `stats topics` prints this key beside its last row, so it gets typed
        return (f"'{OTHER_TOPICS}' is the row of all the topics of too few people to show "
                f"apart, not one topic: give one topic's id, label or phrase ({lists}).")
    words = set(re.findall(r"\w+", topic.lower()))
    near: list[tuple[str, str]] = []
    if words and tenants and has_table(store, "topics"):
        near = [(tid, label) for tid, label in store.db.execute(
            "SELECT topic_id, label FROM topics WHERE merged_into IS NULL AND label IS NOT "
            f"NULL AND tenant IN ({','.join('?' * len(tenants))}) ORDER BY topic_id",
            tuple(tenants)) if words <= set(re.findall(r"\w+", label.lower()))]
    if not near:
        return f"No topic '{topic}' in scope ({lists})."
    named = ", ".join(f"'{label}' ({tid})" for tid, label in near[:5])
    more = f" and {len(near) - 5} more" if len(near) > 5 else ""
    return (f"No topic '{topic}' in scope: {named}{more} "
            f"{'has' if len(near) == 1 else 'have'} that word; give a whole label, one of "
            "its phrases (between commas) or its id.")


def topic_aliases(store: Store) -> dict[str, str]:
    """Merged topic id -> the id it now resolves to (empty without a topics table)."""
    if not has_table(store, "topics"):
        return {}
    merged = dict(store.db.execute(
        "SELECT topic_id, merged_into FROM topics WHERE merged_into IS NOT NULL"))
    out = {}
    for tid in merged:
        seen, cur = {tid}, merged[tid]
        while cur in merged and merged[cur] not in seen:
            seen.add(cur)
            cur = merged[cur]
        out[tid] = cur
    return out


def topic_labels(store: Store, topic_ids: list[str] | None = None) -> dict[str, str]:
    """Readable labels ("hotel booking") by topic id; the stable read API of topic labels.

    Any id ever handed out (live, or merged into another topic) maps to the label
    of the live topic it resolves to. Ids without a label are absent: a topic is
    labelled only once it has `k_min_users` users, and its label goes when it
    expires or its members are shredded. `topic_ids=None`: every labelled id.
    """
    if not has_table(store, "topics"):
        return {}
    alias = topic_aliases(store)
    live = dict(store.db.execute("SELECT topic_id, label FROM topics WHERE label IS NOT NULL"))
    wanted = list(live) + list(alias) if topic_ids is None else topic_ids
    out = {}
    for tid in wanted:
        label = live.get(alias.get(tid, tid))
        if label:
            out[tid] = label
    return out


def topic_label(store: Store, topic_id: str | None) -> str | None:
    """The readable label of one topic id (resolved through merges), or None."""
    if not topic_id:
        return None
    return topic_labels(store, [topic_id]).get(topic_id)


# An entry is about a tenant when its details name it; a reveal names a record, whose
# tenant is looked up (entries from before reveals named their tenant).
_ABOUT_TENANT = ("(json_extract(details, '$.tenant') = ? OR (event IN ('reveal', "
                 "'reveal_denied') AND json_extract(details, '$.tenant') IS NULL AND "
                 "(SELECT r.tenant FROM records r WHERE r.id = "
                 "json_extract(details, '$.record')) = ?))")


def audit_entries(store: Store, *, events: tuple[str, ...] | None = None,
                  last: int | None = None, tenant: str | None = None,
                  tenants: tuple[str, ...] | None = None) -> list[AuditEntry]:
    """Audit entries in order (only the `last` ones when given), without writing anything.

    Args:
        tenant: only entries about this tenant (a shred, an erasure, a reveal of one of
            its records...); store-wide ones (start, stop, retention runs) are left out.
        tenants: the same for several tenants (a role bound to them).
    """
    if tenant is not None:
        tenants = (tenant,)
    sql = "SELECT seq, ts, event, actor, details, prev_hash, hash FROM audit"
    clauses: list[str] = []
    params: list[str] = []
    if events:
        clauses.append(f"event IN ({','.join('?' * len(events))})")
        params += list(events)
    if tenants is not None:
        clauses.append("(" + " OR ".join([_ABOUT_TENANT] * len(tenants) or ["0"]) + ")")
        params += [t for t in tenants for _ in (0, 1)]
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq DESC" + (f" LIMIT {int(last)}" if last else "")
    rows = store.db.execute(sql, params).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6])
            for r in reversed(rows)]
