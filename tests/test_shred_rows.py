"""What a shred removes from the data store besides the key: a due day's records with their
turn digests, tool-loop calls and vectors in the kept index, while the day kept keeps
all of them, its thread's summary counts only what is left, and the store's foreign keys
still hold afterwards (the row deletion runs with them off, deleting the rows the
cascade would, see Maintenance._deleting).

Real Store (SQLCipher, per-day keys) and usearch index; synthetic vectors (the store
does not care what embedded them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.audit import AuditLog
from appliance.config import RetentionSettings
from appliance.index import VectorIndex
from appliance.keys import Keyring
from appliance.records import Link, NewRecord, Prompt, Response
from appliance.retention import Shredder, run_retention
from appliance.store import Store, day_of

OLD = datetime(2026, 1, 10, 12, tzinfo=UTC)  # due at NOW (30 days' retention)
NEW = datetime(2026, 3, 1, 12, tzinfo=UTC)  # kept
NOW = datetime(2026, 3, 2, tzinfo=UTC)
DIMS = 8


def _record(store: Store, i: int, ts: datetime, thread: str, user: str) -> NewRecord:
    link = Link(parent_id=None, thread_id=None, position="new", intent=None, similarity=None)
    p = Prompt(request_id=f"r{i}", tenant="acme", user_id="raw", ts=ts, text="")
    vec = np.random.default_rng(i).standard_normal(DIMS).astype(np.float32)
    return NewRecord(record_id=store.allocate_id(), prompt=p, user=user, session_key=None,
                     link=link, thread_id=thread, text=f"prompt {i}", vector=vec,
                     model_id="m", turn_keys=(("prompt", f"p{i}"), ("response_id", f"resp{i}")))


@pytest.fixture
def filled(tmp_path: Path) -> tuple[Store, Keyring, VectorIndex, list[NewRecord]]:
    ring = Keyring.random()
    store = Store.open(tmp_path, ring)
    user = ring.pseudonym("acme", "gina")
    rows = [_record(store, 0, OLD, "th-a", user),  # th-a spans the two days
            _record(store, 1, OLD + timedelta(minutes=1), "th-a", user),
            _record(store, 2, OLD + timedelta(minutes=2), "th-b", user),  # th-b: old day only
            _record(store, 3, NEW, "th-a", user)]
    store.insert(rows)
    for r in rows:  # a tool-loop call attached to every turn
        assert store.attach_call("acme", f"call{r.prompt.request_id}", user,
                                 f"resp{r.prompt.request_id[1:]}", Response(), None,
                                 lambda _key: []) is not None
    index = VectorIndex(DIMS)
    for r in rows:
        index.add("acme", user, [r.record_id], np.asarray([r.vector]))
    return store, ring, index, rows


def _count(store: Store, table: str, record_ids: list[int]) -> int:
    marks = ",".join("?" * len(record_ids))
    column = "id" if table == "records" else "record_id"
    return int(store.db.execute(f"SELECT count(*) FROM {table} WHERE {column} IN ({marks})",
                                record_ids).fetchone()[0])


def _foreign_keys_hold(store: Store) -> None:
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(Exception, match="FOREIGN KEY"):
        store.db.execute("INSERT INTO turn_digests (record_id, kind, tenant, user, digest) "
                         "VALUES (-5, 'prompt', 'acme', 'x', 'd')")


def test_retention_removes_the_due_days_turn_digests_calls_and_vectors_and_keeps_the_rest(
        filled: Any) -> None:
    store, ring, index, rows = filled
    old = [r.record_id for r in rows[:3]]
    kept = [rows[3].record_id]
    assert _count(store, "turn_digests", old) == 6 and _count(store, "turn_calls", old) == 3
    report = run_retention(Shredder(store, AuditLog(store.db, ring.audit_signer()), index),
                           RetentionSettings(), ring, now=NOW)
    assert (report.shredded, report.records) == (1, 3)
    for table in ("records", "turn_digests", "turn_calls"):
        assert _count(store, table, old) == 0, table
    assert _count(store, "records", kept) == 1
    assert _count(store, "turn_digests", kept) == 2 and _count(store, "turn_calls", kept) == 1
    threads = dict(store.db.execute("SELECT thread_id, turns FROM threads").fetchall())
    assert threads == {"th-a": 1}  # th-b had only the old day's turn
    assert index.user_keys("acme", rows[0].user) == set(kept)
    _foreign_keys_hold(store)
    store.close()


def test_an_interrupted_shred_is_finished_with_the_same_rows_removed(filled: Any) -> None:
    store, ring, index, rows = filled
    old = [r.record_id for r in rows[:3]]
    bid = store.bucket_id("acme", rows[0].user, day_of(OLD))
    store.destroy_key(bid)  # killed after destroying the key, before deleting the rows
    report = run_retention(Shredder(store, AuditLog(store.db, ring.audit_signer()), index),
                           RetentionSettings(), ring, now=NOW)
    assert report.finished_interrupted == 1
    for table in ("records", "turn_digests", "turn_calls"):
        assert _count(store, table, old) == 0, table
    assert _count(store, "turn_calls", [rows[3].record_id]) == 1
    _foreign_keys_hold(store)
    store.close()


def test_foreign_keys_are_on_again_after_a_row_deletion_that_failed(filled: Any) -> None:
    store, ring, index, rows = filled
    bid = store.bucket_id("acme", rows[0].user, day_of(OLD))
    store.db.execute("CREATE TEMP TRIGGER refuse BEFORE DELETE ON records "
                     "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(Exception, match="refused"):
        store.shred_many([bid], reason="retention")
    store.db.execute("DROP TRIGGER refuse")
    assert _count(store, "turn_calls", [rows[0].record_id]) == 1  # rolled back as a whole
    _foreign_keys_hold(store)
    store.close()
