"""Store maintenance: crypto-shredding, re-embedding, compaction (key rotation is in rotation.py).

A mixin of `Store` (still the only writer of tables), kept apart so that the
write/read path and the destructive operations each read as one piece.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from appliance import failpoints
from appliance.keys import Dek, Keyring

VECTOR_DTYPE = np.float32


@dataclass(frozen=True)
class ShredResult:
    """What one bucket shred did."""

    bucket_id: int
    records: int
    already: bool
    record_ids: tuple[int, ...] = ()


def day_of(ts: datetime) -> str:
    """The UTC day a timestamp falls in: the bucket's day."""
    return ts.astimezone(UTC).strftime("%Y-%m-%d")


def _aad(record_id: int, what: str) -> bytes:
    return f"semtrace:{what}:{record_id}".encode()


def _bucket_aad(tenant: str, user: str, day: str, kind: str = "prompts") -> bytes:
    if kind == "prompts":
        return f"semtrace:dek:{tenant}\0{user}\0{day}".encode()
    return f"semtrace:dek:{kind}:{tenant}\0{user}\0{day}".encode()


class Maintenance:
    """Shredding and other maintenance over the attributes `Store` sets up."""

    _db: Any
    _kdb: Any
    _keys: Keyring
    _deks: dict[int, Dek | None]
    _bucket_ids: dict[tuple[str, str, str, str], int]

    def _dek(self, bucket_id: int) -> Dek | None:  # pragma: no cover - provided by Store
        raise NotImplementedError

    def text(self, record_id: int, bucket_id: int, blob: bytes | None) -> str | None:
        raise NotImplementedError  # pragma: no cover - provided by Store

    # ---------------------------------------------------------------- shredding

    def bucket_id(self, tenant: str, user: str, day: str, kind: str = "prompts") -> int | None:
        """The bucket of (tenant, user, day): the live one, else the newest shredded one."""
        row = self._db.execute("SELECT id FROM buckets WHERE tenant=? AND user=? AND day=? "
                               "AND kind=? ORDER BY destroyed_at IS NULL DESC, id DESC LIMIT 1",
                               (tenant, user, day, kind)).fetchone()
        return int(row[0]) if row else None

    def shred(self, tenant: str, user: str, day: str, *, reason: str = "retention") -> ShredResult:
        """Crypto-shred one prompts bucket: destroy its DEK (committed first), then its rows.

        Crash-safe: once the key's destruction is committed nothing is readable; a
        later call finishes deleting rows. Returns what was removed.
        """
        bid = self.bucket_id(tenant, user, day)
        if bid is None:
            return ShredResult(bucket_id=-1, records=0, already=True)
        already = self._kdb.execute("SELECT 1 FROM destroyed WHERE bucket_id=?",
                                    (bid,)).fetchone() is not None
        ids = tuple(self.shredded_record_ids(bid))
        self.destroy_key(bid)
        failpoints.point("shred.keys_destroyed")  # key gone, rows still there
        with self._db:
            self._db.execute("UPDATE buckets SET destroyed_at=coalesce(destroyed_at, ?), "
                             "destroy_reason=coalesce(destroy_reason, ?) WHERE id=?",
                             (time.time(), reason, bid))
        self._deks[bid] = None
        self._bucket_ids = {k: v for k, v in self._bucket_ids.items() if v != bid}
        n = self.delete_bucket_rows(bid)
        return ShredResult(bucket_id=bid, records=n, already=already, record_ids=ids)

    def shred_many(self, bucket_ids: list[int], *, reason: str) -> dict[int, tuple[int, ...]]:
        """Crypto-shred many buckets: destroy all their DEKs in one committed key-store
        transaction, then delete their rows in one data transaction.

        Same crash-safety as `shred`. Returns the removed record ids per bucket (for a
        vault bucket, the ids of the records whose originals it held).
        """
        if not bucket_ids:
            return {}
        marks = ",".join("?" * len(bucket_ids))
        ids: dict[int, list[int]] = {b: [] for b in bucket_ids}
        for rid, bid in self._db.execute(
                f"SELECT id, bucket_id FROM records WHERE bucket_id IN ({marks}) UNION ALL "
                f"SELECT record_id, bucket_id FROM vault WHERE bucket_id IN ({marks}) AND "
                "bucket_id IN (SELECT id FROM buckets WHERE kind = 'vault')",
                bucket_ids + bucket_ids):
            ids[bid].append(rid)
        now = time.time()
        with self._kdb:
            self._kdb.execute("BEGIN IMMEDIATE")
            self._kdb.execute("UPDATE deks SET wrapped=zeroblob(length(wrapped)) "
                              f"WHERE bucket_id IN ({marks})", bucket_ids)
            self._kdb.execute(f"DELETE FROM deks WHERE bucket_id IN ({marks})", bucket_ids)
            self._kdb.executemany("INSERT OR IGNORE INTO destroyed (bucket_id, destroyed_at) "
                                  "VALUES (?, ?)", [(b, now) for b in bucket_ids])
        failpoints.point("shred.keys_destroyed")  # keys gone, rows still there
        for b in bucket_ids:
            self._deks[b] = None
        self._bucket_ids = {k: v for k, v in self._bucket_ids.items() if v not in ids}
        with self._deleting():
            self._db.execute(f"UPDATE buckets SET destroyed_at=coalesce(destroyed_at, ?), "
                             f"destroy_reason=coalesce(destroy_reason, ?) WHERE id IN ({marks})",
                             (now, reason, *bucket_ids))
            self._delete_rows(bucket_ids)
        return {b: tuple(v) for b, v in ids.items()}

    def destroy_key(self, bucket_id: int) -> None:
        """Overwrite and delete a bucket's wrapped DEK in the key store, then commit."""
        with self._kdb:
            self._kdb.execute("BEGIN IMMEDIATE")
            # Overwrite first: with secure_delete the freed cells are zeroed too.
            self._kdb.execute("UPDATE deks SET wrapped=zeroblob(length(wrapped)) "
                              "WHERE bucket_id=?", (bucket_id,))
            self._kdb.execute("DELETE FROM deks WHERE bucket_id=?", (bucket_id,))
            self._kdb.execute("INSERT OR IGNORE INTO destroyed (bucket_id, destroyed_at) "
                              "VALUES (?, ?)", (bucket_id, time.time()))
        self._kdb.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._deks[bucket_id] = None

    def delete_bucket_rows(self, bucket_id: int) -> int:
        """Delete the rows of a destroyed bucket and fix the thread summaries."""
        with self._deleting():
            return self._delete_rows([bucket_id])

    @contextmanager
    def _deleting(self) -> Iterator[None]:
        """The write transaction of a shred's row deletion, with foreign keys off.

        With them on, SQLite runs the ON DELETE CASCADE of turn_digests and turn_calls as a
        sub-program per deleted record: most of a shred's time (bench/shred.py). Here
        `_delete_rows` deletes those rows itself, by set, in the same transaction, so the
        data ends as the cascade leaves it. The pragma cannot change inside a transaction,
        hence around it; they are on again when it ends, committed or not.
        """
        self._db.execute("PRAGMA foreign_keys = OFF")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                yield
        finally:
            self._db.execute("PRAGMA foreign_keys = ON")

    def _delete_rows(self, bucket_ids: list[int]) -> int:
        """Inside `_deleting`: delete the buckets' records with their turn digests, turn calls
        and vault entries, withdraw their topics and fix their threads' summaries."""
        marks = ",".join("?" * len(bucket_ids))
        seen = self._db.execute("SELECT DISTINCT thread_id, topic_id FROM records "
                                f"WHERE bucket_id IN ({marks})", bucket_ids).fetchall()
        threads = sorted({r[0] for r in seen})
        self._withdraw_topics({r[1] for r in seen if r[1] is not None}, threads)
        ids = f"SELECT id FROM records WHERE bucket_id IN ({marks})"
        self._db.execute(f"DELETE FROM turn_digests WHERE record_id IN ({ids})", bucket_ids)
        self._db.execute(f"DELETE FROM turn_calls WHERE record_id IN ({ids})", bucket_ids)
        self._db.execute(f"DELETE FROM vault WHERE bucket_id IN ({marks}) OR record_id IN "
                         f"({ids})", bucket_ids + bucket_ids)
        n = self._db.execute(f"DELETE FROM records WHERE bucket_id IN ({marks})",
                             bucket_ids).rowcount
        for t in threads:
            self._refresh_thread(t)
        return int(n)

    def shredded_record_ids(self, bucket_id: int) -> list[int]:
        """Ids still present in a bucket (used by the index to drop vectors)."""
        return [r[0] for r in self._db.execute("SELECT id FROM records WHERE bucket_id=?",
                                               (bucket_id,))]

    def _withdraw_topics(self, topics: set[str], threads: list[str]) -> None:
        """Withdraw what the topics of the prompts being shredded published (their own
        topics, their threads' and what those were merged into): the label, the label
        phrases and the counts were computed from these prompts, their words and their
        users (a phrase two people used, one of them erased, was still stored; a label
        stayed with fewer than k_min_users people left). Part of the shred's own
        transaction; the service's next refinement publishes them again from what remains.
        """
        hit = [r[0] for r in self._db.execute(
            "WITH RECURSIVE hit(id) AS (SELECT value FROM json_each(?) "
            "UNION SELECT t.topic_id FROM threads t WHERE t.thread_id IN "
            "(SELECT value FROM json_each(?)) "
            "UNION SELECT x.merged_into FROM topics x JOIN hit ON x.topic_id = hit.id) "
            "SELECT id FROM hit WHERE id IS NOT NULL",
            (json.dumps(sorted(topics)), json.dumps(threads)))]
        if hit:
            now = time.time()
            self._db.executemany(
                "UPDATE topics SET label=NULL, centroid=NULL, n=0, contributors=0, updated_at=? "
                "WHERE topic_id=? AND merged_into IS NULL", [(now, t) for t in hit])
            self._db.executemany("DELETE FROM topic_terms WHERE topic_id=?", [(t,) for t in hit])

    def _refresh_thread(self, thread_id: str) -> None:
        row = self._db.execute(
            "SELECT count(*), min(ts), max(ts), coalesce(sum(input_tokens), 0), "
            "coalesce(sum(output_tokens), 0), sum(cost) FROM records WHERE thread_id=?",
            (thread_id,)
        ).fetchone()
        if row[0] == 0:
            self._db.execute("DELETE FROM threads WHERE thread_id=?", (thread_id,))
            return
        models = [r[0] for r in self._db.execute(
            "SELECT DISTINCT model FROM records WHERE thread_id=? AND model IS NOT NULL",
            (thread_id,))]
        self._db.execute(
            "UPDATE threads SET turns=?, first_ts=?, last_ts=?, input_tokens=?, output_tokens=?, "
            "cost=?, models=? WHERE thread_id=?", (*row, json.dumps(models), thread_id))

    def stale_texts(self, model_id: str, limit: int) -> list[tuple[int, str]]:
        """(record id, redacted text) of readable records embedded by another model."""
        rows = self._db.execute("SELECT id, bucket_id, text_ct FROM records WHERE model_id != ? "
                                "ORDER BY id LIMIT ?", (model_id, limit)).fetchall()
        out = []
        for rid, bid, tct in rows:
            text = self.text(rid, bid, tct)
            if text is None:  # key destroyed: nothing to re-embed, mark it as current
                self._db.execute("UPDATE records SET model_id=? WHERE id=?", (model_id, rid))
            else:
                out.append((rid, text))
        return out

    def count_stale(self, model_id: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM records WHERE model_id != ?",
                                    (model_id,)).fetchone()[0])

    def replace_vectors(self, rows: list[tuple[int, np.ndarray]], model_id: str) -> None:
        """Store new vectors (one transaction), encrypted under each record's DEK."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            for rid, vec in rows:
                bid = self._db.execute("SELECT bucket_id FROM records WHERE id=?",
                                       (rid,)).fetchone()[0]
                dek = self._dek(bid)
                if dek is None:
                    continue
                ct = dek.seal(np.asarray(vec, dtype=VECTOR_DTYPE).tobytes(), _aad(rid, "vector"))
                self._db.execute("UPDATE records SET vector_ct=?, model_id=? WHERE id=?",
                                 (ct, model_id, rid))

    def forget_shredded(self, tenant: str, *, anonymise_before: float,
                        delete_before: float) -> tuple[int, int]:
        """Reduce what is kept about shredded buckets (the per-user calendar).

        Buckets shredded before `anonymise_before` keep no user and no day (only id,
        tenant and when and why they were shredded, for the report's self-check);
        those shredded before `delete_before` (aggregates_days) are removed, with the
        key store's note of their destruction. One tenant; returns (anonymised, removed).
        A per-user topic's row (kept, stripped, so that its id still resolves) stops naming
        its user once the user holds no live bucket: its scope named the pseudonym, beside
        the time of the user's first prompt, for good.
        """
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            anon = self._db.execute(
                "UPDATE buckets SET user=NULL, day=NULL WHERE tenant=? AND destroyed_at < ? AND "
                "(user IS NOT NULL OR day IS NOT NULL)", (tenant, anonymise_before)).rowcount
            self._db.execute(
                "UPDATE topics SET scope='' WHERE tenant=? AND scope LIKE 'user:%' AND NOT "
                "EXISTS (SELECT 1 FROM buckets b WHERE b.tenant=topics.tenant AND b.user="
                "substr(topics.scope, 6) AND b.destroyed_at IS NULL)", (tenant,))
            gone = [r[0] for r in self._db.execute(
                "SELECT id FROM buckets b WHERE tenant=? AND destroyed_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM records r WHERE r.bucket_id = b.id) AND NOT EXISTS "
                "(SELECT 1 FROM vault v WHERE v.bucket_id = b.id)", (tenant, delete_before))]
            self._db.executemany("DELETE FROM buckets WHERE id=?", [(b,) for b in gone])
        if gone:
            with self._kdb:
                self._kdb.execute("BEGIN IMMEDIATE")
                self._kdb.executemany("DELETE FROM destroyed WHERE bucket_id=?",
                                      [(b,) for b in gone])
        return int(anon), len(gone)

    def shred_watermark(self) -> float:
        row = self._db.execute("SELECT coalesce(max(destroyed_at), 0) FROM buckets").fetchone()
        return float(row[0])

    def shredded_since(self, mark: float) -> tuple[float, set[tuple[str, str | None]]]:
        """(new watermark, (tenant, user) of buckets shredded after `mark`); user None: a
        bucket anonymised since (a day after its shred), whose user is no longer known."""
        rows = self._db.execute("SELECT tenant, user, destroyed_at, id FROM buckets "
                                "WHERE destroyed_at > ?", (mark,)).fetchall()
        new_mark = max([mark, *(float(r[2]) for r in rows)])
        for r in rows:
            self._deks[int(r[3])] = None  # a key destroyed elsewhere is forgotten here too
        gone = {int(r[3]) for r in rows}
        self._bucket_ids = {k: v for k, v in self._bucket_ids.items() if v not in gone}
        return new_mark, {(r[0], r[1]) for r in rows}

    def record_ids_of(self, tenant: str, user: str | None = None) -> set[int]:
        """Ids of the records stored for one user of a tenant (None: every user)."""
        if user is None:
            return {r[0] for r in self._db.execute(
                "SELECT id FROM records WHERE tenant=?", (tenant,))}
        return {r[0] for r in self._db.execute(
            "SELECT id FROM records WHERE tenant=? AND user=?", (tenant, user))}

    def unfinished_buckets(self) -> list[int]:
        """Buckets whose key is destroyed but whose rows remain (an interrupted shred)."""
        destroyed = {r[0] for r in self._kdb.execute("SELECT bucket_id FROM destroyed")}
        with_rows = {r[0] for r in self._db.execute("SELECT DISTINCT bucket_id FROM records")}
        with_rows |= {r[0] for r in self._db.execute("SELECT DISTINCT bucket_id FROM vault")}
        return sorted(destroyed & with_rows)

    def key_exists(self, bucket_id: int) -> bool:
        return self._kdb.execute("SELECT 1 FROM deks WHERE bucket_id=?",
                                 (bucket_id,)).fetchone() is not None

    def delete_vault(self, bucket_id: int) -> int:
        """Delete a bucket's vault entries (vault retention is shorter than the prompts')."""
        with self._db:
            n = self._db.execute("DELETE FROM vault WHERE bucket_id=?", (bucket_id,)).rowcount
        return int(n)

    def compact(self) -> None:
        """Return freed pages and flush the WALs (after shredding)."""
        self._db.execute("PRAGMA incremental_vacuum")
        self.checkpoint()

    def checkpoint(self) -> None:
        """Flush the WALs into the main files and truncate them (after shredding).

        The data file's checkpoint waits one second, not the connection's 30, for a
        reader holding an older snapshot (`semtrace backup` exporting one for minutes):
        the service's worker must not stall; that WAL, which holds only ciphertext whose
        keys are gone, is truncated at the next checkpoint. The key store's (the wrapped
        keys' old pages) waits as long as it takes.
        """
        self._db.execute("PRAGMA busy_timeout = 1000")
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.execute("PRAGMA busy_timeout = 30000")  # connect()'s timeout
        self._kdb.execute("PRAGMA wal_checkpoint(TRUNCATE)")
