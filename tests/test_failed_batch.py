"""A batch that fails leaves memory exactly as the store: a retry never links to itself."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import make_prompt


class FailingDb:
    """The store's connection, failing the statements `fail` picks (after running ROLLBACK)."""

    def __init__(self, conn: Any, fail: Any) -> None:
        self._conn, self._fail = conn, fail

    def execute(self, sql: str, *args: Any) -> Any:
        if self._fail(sql):
            if sql.strip().upper() == "ROLLBACK":
                self._conn.execute(sql)
            raise OSError("disk I/O error (injected)")
        return self._conn.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        if self._fail(sql):  # a batch's records are inserted in one statement
            raise OSError("disk I/O error (injected)")
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _orphans(store: Any) -> int:
    return store.db.execute("SELECT count(*) FROM records r LEFT JOIN buckets b "
                            "ON b.id = r.bucket_id WHERE b.id IS NULL").fetchone()[0]


def test_retry_after_a_failed_commit_links_to_the_earlier_turn_not_to_itself(
        pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_prompt("How do I configure the VPN client on my laptop?", request_id="v-1")
    follow = make_prompt("How do I configure the VPN client on my laptop, step by step?",
                         minutes=1, request_id="v-2")
    pipeline.process([first])
    real = pipeline.store._db
    monkeypatch.setattr(pipeline.store, "_db", FailingDb(real, lambda s: s.startswith(
        "INSERT INTO records")))
    with pytest.raises(OSError):
        pipeline.process([follow])
    monkeypatch.setattr(pipeline.store, "_db", real)
    (retry,) = pipeline.process([follow])
    assert retry.parent_request_id == "v-1"
    assert retry.parent_request_id != retry.request_id and not retry.duplicate
    assert pipeline.store.counts()["records"] == 2


def test_a_failed_rollback_leaves_no_stale_bucket_behind(
        pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    p = make_prompt("Where do I find the travel expense form?", user="dora", request_id="e-1")
    real = pipeline.store._db
    monkeypatch.setattr(pipeline.store, "_db", FailingDb(real, lambda s: s.startswith(
        "INSERT INTO records") or s == "ROLLBACK"))
    with pytest.raises(OSError):
        pipeline.process([p])
    monkeypatch.setattr(pipeline.store, "_db", real)
    (out,) = pipeline.process([p])
    assert not out.duplicate
    assert _orphans(pipeline.store) == 0  # the record's bucket exists: retention can shred it
    (rec,) = pipeline.store.records("r.id = ?", (out.record_id,))
    assert rec.text is not None and "expense" in rec.text


def test_a_failed_batch_teaches_the_tenants_threshold_nothing(
        pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.ingest import content_digest
    from appliance.records import Message

    first = "How do I configure the VPN client on my laptop?"
    pipeline.process([make_prompt(first, request_id="h-1", history=())])
    said = (Message("user", content_digest(first)),)
    follow = make_prompt("Which port does it use?", minutes=1, request_id="h-2", history=said)
    real = pipeline.store._db
    monkeypatch.setattr(pipeline.store, "_db", FailingDb(real, lambda s: s == "COMMIT"))
    with pytest.raises(OSError):
        pipeline.process([follow])
    monkeypatch.setattr(pipeline.store, "_db", real)
    # Neither the store nor memory counts the failed prompt; the retry counts it once.
    assert pipeline.store.link_tallies() == {} and pipeline.thresholds.tally("acme").decisions == 0
    (retry,) = pipeline.process([follow])
    assert retry.parent_request_id == "h-1" and retry.link_source == "history"
    assert pipeline.store.link_tallies()["acme"].decisions == 1
    assert pipeline.thresholds.tally("acme").decisions == 1
