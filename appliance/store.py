"""The encrypted store: SQLCipher file, envelope encryption of content under DEKs.

The only writer of tables. Prompt text and vectors are AES-GCM-encrypted under
the DEK of their (tenant, user pseudonym, UTC day) bucket, with the record id as
associated data, so destroying a DEK makes those records unreadable everywhere,
copies of the database included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlcipher3

from appliance import migrations
from appliance.errors import SemtraceError, WrongKey
from appliance.keys import Dek, Keyring, RevealOpener, RevealSealer, reveal_sealer
from appliance.records import Candidate, NewRecord, Record

DB_FILE = "semtrace.db"
KEYS_FILE = "keys.db"
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


def _bucket_aad(tenant: str, user: str, day: str) -> bytes:
    return f"semtrace:dek:{tenant}\0{user}\0{day}".encode()


def connect(path: Path, keyring: Keyring, *, readonly: bool = False, purpose: str = "data",
            synchronous: str = "NORMAL") -> Any:
    """Open a SQLCipher database with its raw key (no PBKDF2 on open)."""
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlcipher3.connect(uri, uri=True, check_same_thread=False, timeout=30.0,
                              isolation_level=None)
    conn.execute("PRAGMA cipher_log_level = NONE")
    conn.execute(f"PRAGMA key = \"{keyring.sqlcipher_key(purpose)}\"")
    conn.execute("PRAGMA cipher_memory_security = ON")
    try:
        if not readonly and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # lets shredding return free pages
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlcipher3.DatabaseError:
        conn.close()
        raise WrongKey("The database does not open with this key; nothing was changed.") from None
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


class Store:
    """Records, buckets and threads in one SQLCipher file."""

    def __init__(self, conn: Any, keys_conn: Any, keyring: Keyring, path: Path) -> None:
        self._db = conn
        self._kdb = keys_conn
        self._keys = keyring
        self.path = path
        self._deks: dict[int, Dek | None] = {}
        self._bucket_ids: dict[tuple[str, str, str], int] = {}
        row = conn.execute("SELECT coalesce(max(id), 0) FROM records").fetchone()
        self._next_id = int(row[0]) + 1
        self.sealer: RevealSealer | None = reveal_sealer(path.parent)

    @classmethod
    def open(cls, data_dir: Path, keyring: Keyring, *, readonly: bool = False,
             synchronous: str = "NORMAL") -> Store:
        """Open (and migrate, unless read-only) the store in `data_dir`."""
        path = data_dir / DB_FILE
        if readonly and not path.exists():
            raise SemtraceError(f"{data_dir} holds no store (run `semtrace init`).")
        conn = connect(path, keyring, readonly=readonly, synchronous=synchronous)
        kconn = connect(data_dir / KEYS_FILE, keyring, readonly=readonly, purpose="keys",
                        synchronous="FULL")
        if not readonly:
            migrations.migrate(conn)
            migrations.migrate(kconn, migrations.KEY_MIGRATIONS)
        elif migrations.latest() not in migrations.applied(conn):
            raise SemtraceError("The store needs a migration; start the service once to apply it.")
        return cls(conn, kconn, keyring, path)

    def close(self) -> None:
        self._db.close()
        self._kdb.close()

    @property
    def db(self) -> Any:
        """The raw connection, for the audit log and maintenance in this package."""
        return self._db

    # ---------------------------------------------------------------- buckets

    def _bucket(self, tenant: str, user: str, day: str) -> tuple[int, Dek]:
        """The bucket's id and DEK, creating both if needed (inside the open transaction).

        A new DEK is committed to the key store first; if the data transaction then
        rolls back, the orphan key decrypts nothing and is never reused.
        """
        key = (tenant, user, day)
        bid = self._bucket_ids.get(key)
        if bid is None:
            row = self._db.execute(
                "SELECT id, destroyed_at FROM buckets WHERE tenant=? AND user=? AND day=?", key
            ).fetchone()
            if row is None:
                dek, wrapped = self._keys.new_dek(_bucket_aad(*key))
                cur = self._kdb.execute("INSERT INTO deks (wrapped, created_at) VALUES (?, ?)",
                                        (wrapped, time.time()))
                bid = int(cur.lastrowid)
                self._db.execute("INSERT INTO buckets (id, tenant, user, day, created_at) "
                                 "VALUES (?, ?, ?, ?, ?)", (bid, *key, time.time()))
                self._deks[bid] = dek
            elif row[1] is not None:
                raise SemtraceError("This bucket's key was destroyed; it takes no new records.")
            else:
                bid = int(row[0])
            self._bucket_ids[key] = bid
        live = self._dek(bid)
        if live is None:
            raise SemtraceError("This bucket's key was destroyed; it takes no new records.")
        return bid, live

    def _dek(self, bucket_id: int) -> Dek | None:
        if bucket_id not in self._deks:
            meta = self._db.execute("SELECT tenant, user, day FROM buckets WHERE id=?",
                                    (bucket_id,)).fetchone()
            row = self._kdb.execute("SELECT wrapped FROM deks WHERE bucket_id=?",
                                    (bucket_id,)).fetchone()
            if meta is None or row is None:
                self._deks[bucket_id] = None
            else:
                self._deks[bucket_id] = self._keys.unwrap(row[0], _bucket_aad(*meta))
        return self._deks[bucket_id]

    # ---------------------------------------------------------------- writes

    def allocate_id(self) -> int:
        """Reserve the next record id (single writer)."""
        rid = self._next_id
        self._next_id += 1
        return rid

    def insert(self, rows: list[NewRecord]) -> None:
        """Write a batch of records and their thread summaries in one transaction."""
        if not rows:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for row in rows:
                self._insert_one(row)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            self._forget_uncommitted()
            raise

    def _forget_uncommitted(self) -> None:
        self._bucket_ids.clear()
        self._deks = {k: v for k, v in self._deks.items() if v is None}

    def _insert_one(self, r: NewRecord) -> None:
        p = r.prompt
        bid, dek = self._bucket(p.tenant, r.user, day_of(p.ts))
        resp = p.response
        text_ct = dek.seal(r.text.encode("utf-8"), _aad(r.record_id, "text"))
        vec_ct = dek.seal(np.asarray(r.vector, dtype=VECTOR_DTYPE).tobytes(),
                          _aad(r.record_id, "vector"))
        link = r.link
        ents_ct = dek.seal(json.dumps(list(r.entity_keys)).encode(),
                           _aad(r.record_id, "entities")) if r.entity_keys else None
        self._db.execute(
            "INSERT INTO records (id, tenant, request_id, user, bucket_id, ts, session_key, "
            "thread_id, parent_id, position, intent, similarity, score, topic_id, model, "
            "input_tokens, output_tokens, latency_ms, status, synthetic, stream_index, model_id, "
            "truncated, text_ct, vector_ct, evidence, trace_id, span_id, entities_ct) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.record_id, p.tenant, p.request_id, r.user, bid, p.ts.timestamp(), r.session_key,
             r.thread_id, link.parent_id, link.position, link.intent, link.similarity,
             link.score, r.topic_id, p.model, resp.input_tokens if resp else None,
             resp.output_tokens if resp else None, resp.latency_ms if resp else None,
             resp.status if resp else None, int(p.synthetic), p.index, r.model_id,
             int(r.truncated), text_ct, vec_ct, json.dumps(link.evidence, sort_keys=True),
             r.trace_id, r.span_id, ents_ct))
        if r.vault and self.sealer is not None:
            aad = _aad(r.record_id, "vault")
            inner = self.sealer.seal(json.dumps(list(r.vault)).encode(), aad)
            blob = dek.seal(inner, aad)
            self._db.execute("INSERT INTO vault (record_id, bucket_id, ct) VALUES (?, ?, ?)",
                             (r.record_id, bid, blob))
        self._upsert_thread(r)

    def _upsert_thread(self, r: NewRecord) -> None:
        p, resp = r.prompt, r.prompt.response
        tin = (resp.input_tokens or 0) if resp else 0
        tout = (resp.output_tokens or 0) if resp else 0
        row = self._db.execute("SELECT models FROM threads WHERE thread_id=?",
                               (r.thread_id,)).fetchone()
        ts = p.ts.timestamp()
        if row is None:
            models = [p.model] if p.model else []
            self._db.execute(
                "INSERT INTO threads (thread_id, tenant, user, first_ts, last_ts, turns, "
                "input_tokens, output_tokens, models, topic_id) VALUES (?,?,?,?,?,1,?,?,?,?)",
                (r.thread_id, p.tenant, r.user, ts, ts, tin, tout, json.dumps(models), r.topic_id))
            return
        models = json.loads(row[0])
        if p.model and p.model not in models:
            models.append(p.model)
        self._db.execute(
            "UPDATE threads SET first_ts=min(first_ts, ?), last_ts=max(last_ts, ?), "
            "turns=turns+1, input_tokens=input_tokens+?, output_tokens=output_tokens+?, "
            "models=?, topic_id=coalesce(topic_id, ?) WHERE thread_id=?",
            (ts, ts, tin, tout, json.dumps(models), r.topic_id, r.thread_id))

    def set_feedback(self, tenant: str, request_id: str, feedback: dict[str, Any]) -> bool:
        """Merge feedback (rating, abandonment) into a stored request; False if unknown."""
        row = self._db.execute("SELECT id, feedback FROM records WHERE tenant=? AND request_id=?",
                               (tenant, request_id)).fetchone()
        if row is None:
            return False
        merged = {**(json.loads(row[1]) if row[1] else {}), **feedback}
        with self._db:
            self._db.execute("UPDATE records SET feedback=? WHERE id=?",
                             (json.dumps(merged, sort_keys=True), row[0]))
        return True

    def reveal(self, record_id: int, opener: RevealOpener) -> list[tuple[str, str]] | None:
        """The original values behind a record's placeholders; None if none are held."""
        row = self._db.execute("SELECT bucket_id, ct FROM vault WHERE record_id=?",
                               (record_id,)).fetchone()
        if row is None:
            return None
        inner = self._decrypt(record_id, row[0], row[1], "vault")
        if inner is None:
            return None
        pairs = json.loads(opener.open(inner, _aad(record_id, "vault")))
        return [(str(a), str(b)) for a, b in pairs]

    def counts(self) -> dict[str, int]:
        """Row counts for stats."""
        q = self._db.execute
        return {"records": int(q("SELECT count(*) FROM records").fetchone()[0]),
                "threads": int(q("SELECT count(*) FROM threads").fetchone()[0]),
                "buckets": int(q("SELECT count(*) FROM buckets").fetchone()[0])}

    # ---------------------------------------------------------------- reads

    def _decrypt(self, record_id: int, bucket_id: int, blob: bytes | None,
                 what: str) -> bytes | None:
        dek = self._dek(bucket_id)
        if dek is None or blob is None:
            return None
        return dek.open(blob, _aad(record_id, what))

    def text(self, record_id: int, bucket_id: int, blob: bytes | None) -> str | None:
        """Decrypted redacted text, or None once its key is destroyed."""
        raw = self._decrypt(record_id, bucket_id, blob, "text")
        return raw.decode("utf-8") if raw is not None else None

    def vector(self, record_id: int, bucket_id: int, blob: bytes | None) -> np.ndarray | None:
        """Decrypted vector, or None once its key is destroyed."""
        raw = self._decrypt(record_id, bucket_id, blob, "vector")
        return np.frombuffer(raw, dtype=VECTOR_DTYPE) if raw is not None else None

    def request_exists(self, tenant: str, request_id: str) -> int | None:
        """Record id of an already stored request, for idempotent ingest."""
        row = self._db.execute("SELECT id FROM records WHERE tenant=? AND request_id=?",
                               (tenant, request_id)).fetchone()
        return int(row[0]) if row else None

    def candidates(self, tenant: str, user: str, since: float, *,
                   model_id: str) -> list[Candidate]:
        """The user's prompts since `since` (epoch s) with vectors of `model_id`, oldest first."""
        rows = self._db.execute(
            "SELECT id, request_id, thread_id, ts, bucket_id, vector_ct, text_ct, session_key, "
            "parent_id, position, entities_ct FROM records "
            "WHERE tenant=? AND user=? AND ts>=? AND model_id=? ORDER BY ts, id",
            (tenant, user, since, model_id)).fetchall()
        out = []
        for rid, req, thread, ts, bid, vct, tct, skey, parent, pos, ect in rows:
            vec = self.vector(rid, bid, vct)
            text = self.text(rid, bid, tct)
            if vec is None or text is None:
                continue
            ents = self._decrypt(rid, bid, ect, "entities")
            out.append(Candidate(record_id=rid, request_id=req, thread_id=thread,
                                 ts=datetime.fromtimestamp(ts, UTC), vector=vec, text=text,
                                 session_key=skey, parent_id=parent, position=pos,
                                 entity_keys=tuple(json.loads(ents)) if ents else ()))
        return out

    def iter_vectors(self, *, model_id: str) -> Iterator[tuple[int, str, str, np.ndarray]]:
        """(record id, tenant, user, vector) of every readable record of `model_id`."""
        cur = self._db.execute(
            "SELECT id, tenant, user, bucket_id, vector_ct FROM records WHERE model_id=? "
            "ORDER BY id", (model_id,))
        for rid, tenant, user, bid, vct in cur:
            vec = self.vector(rid, bid, vct)
            if vec is not None:
                yield rid, tenant, user, vec

    def records(self, where: str, params: tuple[Any, ...], *, order: str = "r.ts, r.id",
                limit: int | None = None) -> list[Record]:
        """Records matching a WHERE clause written by this package (never user text)."""
        sql = (
            "SELECT r.id, r.request_id, r.tenant, r.user, r.ts, r.thread_id, r.parent_id, "
            "p.request_id, r.position, r.intent, r.similarity, r.topic_id, r.bucket_id, "
            "r.text_ct, r.model, r.input_tokens, r.output_tokens, r.latency_ms, r.status, "
            "r.synthetic, r.stream_index, r.evidence, r.trace_id, r.span_id, r.feedback "
            "FROM records r "
            f"LEFT JOIN records p ON p.id = r.parent_id WHERE {where} ORDER BY {order}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self._db.execute(sql, params):
            (rid, req, tenant, user, ts, thread, parent, parent_req, pos, intent, sim, topic,
             bid, tct, model, tin, tout, lat, status, synth, idx, evidence, trace, span,
             feedback) = row
            out.append(Record(
                record_id=rid, request_id=req, tenant=tenant, user=user,
                ts=datetime.fromtimestamp(ts, UTC), thread_id=thread, parent_id=parent,
                parent_request_id=parent_req, position=pos, intent=intent, similarity=sim,
                topic_id=topic, text=self.text(rid, bid, tct), model=model, input_tokens=tin,
                output_tokens=tout, latency_ms=lat, status=status, synthetic=bool(synth),
                index=idx, evidence=json.loads(evidence) if evidence else None,
                trace_id=trace, span_id=span, feedback=json.loads(feedback) if feedback else None))
        return out

    # ---------------------------------------------------------------- shredding

    def bucket_id(self, tenant: str, user: str, day: str) -> int | None:
        row = self._db.execute("SELECT id FROM buckets WHERE tenant=? AND user=? AND day=?",
                               (tenant, user, day)).fetchone()
        return int(row[0]) if row else None

    def shred(self, tenant: str, user: str, day: str, *, reason: str = "retention") -> ShredResult:
        """Crypto-shred one bucket: destroy its DEK (committed first), then delete its rows.

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
        with self._db:
            self._db.execute("UPDATE buckets SET destroyed_at=coalesce(destroyed_at, ?), "
                             "destroy_reason=coalesce(destroy_reason, ?) WHERE id=?",
                             (time.time(), reason, bid))
        self._deks[bid] = None
        self._bucket_ids.pop((tenant, user, day), None)
        n = self.delete_bucket_rows(bid)
        return ShredResult(bucket_id=bid, records=n, already=already, record_ids=ids)

    def shred_many(self, bucket_ids: list[int], *, reason: str) -> dict[int, tuple[int, ...]]:
        """Crypto-shred many buckets: destroy all their DEKs in one committed key-store
        transaction, then delete their rows in one data transaction.

        Same crash-safety as `shred`. Returns the removed record ids per bucket.
        """
        if not bucket_ids:
            return {}
        marks = ",".join("?" * len(bucket_ids))
        ids: dict[int, list[int]] = {b: [] for b in bucket_ids}
        for rid, bid in self._db.execute(
                f"SELECT id, bucket_id FROM records WHERE bucket_id IN ({marks})", bucket_ids):
            ids[bid].append(rid)
        now = time.time()
        with self._kdb:
            self._kdb.execute("BEGIN IMMEDIATE")
            self._kdb.execute("UPDATE deks SET wrapped=zeroblob(length(wrapped)) "
                              f"WHERE bucket_id IN ({marks})", bucket_ids)
            self._kdb.execute(f"DELETE FROM deks WHERE bucket_id IN ({marks})", bucket_ids)
            self._kdb.executemany("INSERT OR IGNORE INTO destroyed (bucket_id, destroyed_at) "
                                  "VALUES (?, ?)", [(b, now) for b in bucket_ids])
        for b in bucket_ids:
            self._deks[b] = None
        self._bucket_ids = {k: v for k, v in self._bucket_ids.items() if v not in ids}
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"UPDATE buckets SET destroyed_at=coalesce(destroyed_at, ?), "
                             f"destroy_reason=coalesce(destroy_reason, ?) WHERE id IN ({marks})",
                             (now, reason, *bucket_ids))
            threads = [r[0] for r in self._db.execute(
                f"SELECT DISTINCT thread_id FROM records WHERE bucket_id IN ({marks})",
                bucket_ids)]
            self._db.execute(f"DELETE FROM vault WHERE bucket_id IN ({marks})", bucket_ids)
            self._db.execute(f"DELETE FROM records WHERE bucket_id IN ({marks})", bucket_ids)
            for t in threads:
                self._refresh_thread(t)
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
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            threads = [r[0] for r in self._db.execute(
                "SELECT DISTINCT thread_id FROM records WHERE bucket_id=?", (bucket_id,))]
            self._db.execute("DELETE FROM vault WHERE bucket_id=?", (bucket_id,))
            n = self._db.execute("DELETE FROM records WHERE bucket_id=?", (bucket_id,)).rowcount
            for t in threads:
                self._refresh_thread(t)
        return int(n)

    def shredded_record_ids(self, bucket_id: int) -> list[int]:
        """Ids still present in a bucket (used by the index to drop vectors)."""
        return [r[0] for r in self._db.execute("SELECT id FROM records WHERE bucket_id=?",
                                               (bucket_id,))]

    def _refresh_thread(self, thread_id: str) -> None:
        row = self._db.execute(
            "SELECT count(*), min(ts), max(ts), coalesce(sum(input_tokens), 0), "
            "coalesce(sum(output_tokens), 0) FROM records WHERE thread_id=?", (thread_id,)
        ).fetchone()
        if row[0] == 0:
            self._db.execute("DELETE FROM threads WHERE thread_id=?", (thread_id,))
            return
        models = [r[0] for r in self._db.execute(
            "SELECT DISTINCT model FROM records WHERE thread_id=? AND model IS NOT NULL",
            (thread_id,))]
        self._db.execute(
            "UPDATE threads SET turns=?, first_ts=?, last_ts=?, input_tokens=?, output_tokens=?, "
            "models=? WHERE thread_id=?", (*row, json.dumps(models), thread_id))

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

    def rotate(self, new: Keyring) -> int:
        """Re-wrap every DEK under `new` and re-key both database files (key rotation)."""
        meta = {r[0]: (r[1], r[2], r[3]) for r in self._db.execute(
            "SELECT id, tenant, user, day FROM buckets")}
        rows = self._kdb.execute("SELECT bucket_id, wrapped FROM deks").fetchall()
        with self._kdb:
            self._kdb.execute("BEGIN IMMEDIATE")
            for bid, wrapped in rows:
                aad = _bucket_aad(*meta[bid])
                self._kdb.execute("UPDATE deks SET wrapped=? WHERE bucket_id=?",
                                  (self._keys.rewrap(wrapped, aad, new), bid))
        self.checkpoint()
        self._kdb.execute(f"PRAGMA rekey = \"{new.sqlcipher_key('keys')}\"")
        self._db.execute(f"PRAGMA rekey = \"{new.sqlcipher_key()}\"")
        self._keys = new
        self._deks.clear()
        return len(rows)

    def shred_watermark(self) -> float:
        row = self._db.execute("SELECT coalesce(max(destroyed_at), 0) FROM buckets").fetchone()
        return float(row[0])

    def shredded_since(self, mark: float) -> tuple[float, set[tuple[str, str]]]:
        """(new watermark, (tenant, user) of buckets shredded after `mark`)."""
        rows = self._db.execute("SELECT tenant, user, destroyed_at, id FROM buckets "
                                "WHERE destroyed_at > ?", (mark,)).fetchall()
        new_mark = max([mark, *(float(r[2]) for r in rows)])
        for r in rows:
            self._deks[int(r[3])] = None  # a key destroyed elsewhere is forgotten here too
        gone = {int(r[3]) for r in rows}
        self._bucket_ids = {k: v for k, v in self._bucket_ids.items() if v not in gone}
        return new_mark, {(r[0], r[1]) for r in rows}

    def record_ids_of(self, tenant: str, user: str) -> set[int]:
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
        """Flush the WALs into the main files and truncate them (after shredding)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._kdb.execute("PRAGMA wal_checkpoint(TRUNCATE)")
