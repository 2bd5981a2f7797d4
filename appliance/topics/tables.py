"""The topics tables: what refinement publishes for readers, and what shredding removes.

`topics` holds one row per topic id ever handed out: its counts, its label
(only with `k_min_users` users) and, for ids folded into another topic,
`merged_into`. `topic_terms` holds the label phrases of labelled topics with the
number of threads using each (phrases of one person are never stored).
`threads.topic_id` is each thread's current topic. Nothing here is needed to
rebuild the topics: they are rebuilt from the encrypted records at start, so
shredding a record removes it from every topic.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.store import Store
from appliance.topics.model import utc_day


@dataclass(frozen=True)
class TopicRow:
    """What one refinement publishes about one live topic."""

    topic_id: str
    scope: str
    threads: int
    users: int
    label: str | None
    terms: tuple[tuple[str, int], ...]  # (phrase, threads using it); empty below k users
    created_at: float


def _tx(db: Any, statements: Iterable[tuple[str, Any]]) -> None:
    """Run statements in one write transaction (or inside the caller's)."""
    own = not db.in_transaction
    if own:
        db.execute("BEGIN IMMEDIATE")
    try:
        for sql, params in statements:
            if isinstance(params, list):
                if params:
                    db.executemany(sql, params)
            else:
                db.execute(sql, params)
        if own:
            db.execute("COMMIT")
    except BaseException:
        if own:
            db.execute("ROLLBACK")
        raise


def publish(db: Any, tenant: str, topics: list[TopicRow], merged: dict[str, str],
            threads: list[tuple[str, str]], *, chunk: int = 500) -> None:
    """Write a refinement: topic rows, merges, label phrases, each thread's topic.

    Short transactions of at most `chunk` rows, so that the ingest path's commits
    never wait long behind a refinement.
    """
    now = time.time()
    for s in range(0, len(topics), chunk):
        part = topics[s:s + chunk]
        _tx(db, [
            ("INSERT INTO topics (topic_id, tenant, scope, n, contributors, centroid, label, "
             "created_at, updated_at) VALUES (?,?,?,?,?,NULL,?,?,?) ON CONFLICT(topic_id) DO "
             "UPDATE SET scope=excluded.scope, n=excluded.n, contributors=excluded.contributors, "
             "centroid=NULL, "
             "label=excluded.label, merged_into=NULL, updated_at=excluded.updated_at",
             [(t.topic_id, tenant, t.scope, t.threads, t.users, t.label, t.created_at, now)
              for t in part]),
            ("DELETE FROM topic_terms WHERE topic_id=?", [(t.topic_id,) for t in part]),
            ("INSERT INTO topic_terms (topic_id, term, n) VALUES (?,?,?)",
             [(t.topic_id, p, n) for t in part for p, n in t.terms]),
        ])
    gone = sorted(merged.items())
    for s in range(0, len(gone), chunk):
        pairs = gone[s:s + chunk]
        _tx(db, [
            ("INSERT INTO topics (topic_id, tenant, scope, n, contributors, created_at, "
             "updated_at) VALUES (?,?,'',0,0,?,?) ON CONFLICT(topic_id) DO NOTHING",
             [(old, tenant, now, now) for old, _ in pairs]),
            ("UPDATE topics SET merged_into=?, n=0, contributors=0, centroid=NULL, label=NULL, "
             "updated_at=? WHERE topic_id=?", [(new, now, old) for old, new in pairs]),
            ("UPDATE topics SET merged_into=? WHERE merged_into=?",
             [(new, old) for old, new in pairs]),
            ("DELETE FROM topic_terms WHERE topic_id=?", [(old,) for old, _ in pairs]),
        ])
    for s in range(0, len(threads), chunk):
        _tx(db, [("UPDATE threads SET topic_id=? WHERE thread_id=?",
                  [(tid, th) for th, tid in threads[s:s + chunk]])])
    live = {t.topic_id for t in topics}
    _strip(db, [r[0] for r in db.execute(
        "SELECT topic_id FROM topics WHERE tenant=? AND merged_into IS NULL", (tenant,))
        if r[0] not in live])


def _strip(db: Any, topic_ids: list[str]) -> None:
    """Remove the label, phrases and counts of topics that have no live thread."""
    if topic_ids:
        now = time.time()
        _tx(db, [("UPDATE topics SET label=NULL, centroid=NULL, n=0, contributors=0, "
                  "updated_at=? WHERE topic_id=? AND (label IS NOT NULL OR n > 0)",
                  [(now, t) for t in topic_ids]),
                 ("DELETE FROM topic_terms WHERE topic_id=?", [(t,) for t in topic_ids])])


def aliases(db: Any, tenant: str) -> dict[str, str]:
    """Merged topic id -> the id it was merged into."""
    return dict(db.execute(
        "SELECT topic_id, merged_into FROM topics WHERE tenant=? AND merged_into IS NOT NULL",
        (tenant,)).fetchall())


def live_threads(db: Any, tenant: str) -> dict[str, str | None]:
    """Thread id -> its current topic id, for every thread of a tenant still in the store."""
    return dict(db.execute("SELECT thread_id, topic_id FROM threads WHERE tenant=?",
                           (tenant,)).fetchall())


def shredded_tenants(db: Any, since: float) -> set[str]:
    """Tenants with a bucket shredded after `since` (by erasure or retention, anywhere)."""
    return {r[0] for r in db.execute("SELECT DISTINCT tenant FROM buckets WHERE destroyed_at > ?",
                                     (since,))}


def stored_days(db: Any, tenant: str) -> dict[str, set[str]]:
    """Thread id -> the UTC days of its prompts still stored (their buckets not shredded)."""
    days: dict[str, set[str]] = defaultdict(set)
    for thread, ts in db.execute("SELECT thread_id, ts FROM records WHERE tenant=? AND "
                                 "synthetic=0", (tenant,)):
        days[thread].add(utc_day(float(ts)))
    return days


def load_prompts(store: Store, tenant: str, since: float
                 ) -> Iterable[tuple[str, str, float, np.ndarray, str]]:
    """(thread, user, ts, vector, redacted text) of a tenant's readable prompts since `since`."""
    rows = store.db.execute(
        "SELECT id, thread_id, user, ts, bucket_id, vector_ct, text_ct FROM records "
        "WHERE tenant=? AND synthetic=0 AND ts>=? ORDER BY ts, id", (tenant, since)).fetchall()
    for rid, thread, user, ts, bid, vct, tct in rows:
        vec = store.vector(rid, bid, vct)
        text = store.text(rid, bid, tct)
        if vec is not None and text is not None:
            yield thread, user, float(ts), vec, text


def purge_orphans(db: Any, tenant: str | None = None, *, active_since: float | None = None
                  ) -> int:
    """Strip the words and counts of topics that no live thread belongs to any more.

    Run after shredding (erasure or retention) and by the retention job: a topic
    whose member threads are all gone, or none active since `active_since`
    (`aggregates_days`), keeps no label, no phrases and no counts; its row stays
    so that the ids handed out earlier still resolve. Returns topics stripped.
    """
    where, params = ("WHERE tenant=?", [tenant]) if tenant else ("", [])
    merged = dict(db.execute(f"SELECT topic_id, merged_into FROM topics {where} "
                             f"{'AND' if where else 'WHERE'} merged_into IS NOT NULL", params))

    def live(tid: str) -> str:
        seen = 0
        while tid in merged and seen < 64:
            tid, seen = merged[tid], seen + 1
        return tid

    tsql = "SELECT DISTINCT topic_id FROM threads WHERE topic_id IS NOT NULL"
    tparams: list[Any] = []
    if tenant:
        tsql += " AND tenant=?"
        tparams.append(tenant)
    if active_since is not None:
        tsql += " AND last_ts>=?"
        tparams.append(active_since)
    kept = {live(r[0]) for r in db.execute(tsql, tparams)}
    stale = [r[0] for r in db.execute(
        f"SELECT topic_id FROM topics {where} {'AND' if where else 'WHERE'} merged_into IS NULL "
        "AND (label IS NOT NULL OR centroid IS NOT NULL OR n > 0 OR EXISTS (SELECT 1 FROM "
        "topic_terms x WHERE x.topic_id = topics.topic_id))", params) if r[0] not in kept]
    _strip(db, stale)
    return len(stale)
