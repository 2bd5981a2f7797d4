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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sqlcipher3

from appliance import failpoints, migrations
from appliance.errors import SemtraceError, WrongKey
from appliance.keys import Dek, Keyring, RevealOpener, RevealSealer, reveal_sealer
from appliance.records import Candidate, NewRecord, Record
from appliance.store.maintenance import (
    VECTOR_DTYPE,
    Maintenance,
    _aad,
    _bucket_aad,
    day_of,
)
from appliance.store.turns import Turns

DB_FILE = "semtrace.db"
KEYS_FILE = "keys.db"


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


# This store allocates record ids in [id_base, id_base + ID_RANGE); records moved in
# from another node keep theirs (see migrations.m006_record_id_base).
ID_RANGE = 1 << 32


def record_id_base(conn: Any) -> int:
    """The first record id of this store's range (0 for a store older than ranges)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'record_id_base'").fetchone()
    return int(row[0]) if row else 0


class Store(Maintenance, Turns):
    """Records, buckets and threads in one SQLCipher file."""

    def __init__(self, conn: Any, keys_conn: Any, keyring: Keyring, path: Path, *,
                 readonly: bool = False) -> None:
        self._db = conn
        self._kdb = keys_conn
        self._keys = keyring
        self.path = path
        self._deks: dict[int, Dek | None] = {}
        self._bucket_ids: dict[tuple[str, str, str, str], int] = {}
        self.id_base = record_id_base(conn)
        row = conn.execute("SELECT coalesce(max(id), ?) FROM records WHERE id >= ? AND id < ?",
                           (self.id_base, self.id_base, self.id_base + ID_RANGE)).fetchone()
        self._next_id = int(row[0]) + 1
        self.sealer: RevealSealer | None = reveal_sealer(path.parent, keyring)
        if not readonly:
            self._guard_bucket_ids()
            self._note_pseudonym_key()

    def _note_pseudonym_key(self) -> None:
        """Remember which pseudonym key wrote this store; note when it ever changes."""
        row = self._db.execute("SELECT value FROM meta WHERE key='pseudonym_id'").fetchone()
        now = self._keys.pseudonym_id()
        if row is not None and row[0] == now:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if row is not None:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                                 "('pseudonyms_changed_at', ?)", (repr(time.time()),))
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                             "('pseudonym_id', ?)", (now,))

    def earlier_pseudonym_buckets(self, tenant: str) -> tuple[int, float | None]:
        """(live buckets of `tenant` written under an earlier pseudonym key, when it changed).

        Such buckets (from a rotation made before pseudonym keys were carried) cannot
        be attributed to a user: an erasure must say so rather than report success.
        """
        row = self._db.execute("SELECT value FROM meta WHERE key='pseudonyms_changed_at'"
                               ).fetchone()
        if row is None:
            return 0, None
        since = float(row[0])
        n = self._db.execute("SELECT count(*) FROM buckets WHERE tenant=? AND kind='prompts' "
                             "AND destroyed_at IS NULL AND created_at < ?",
                             (tenant, since)).fetchone()[0]
        return int(n), since

    def _guard_bucket_ids(self) -> None:
        """Bucket ids are drawn above every id the data file has seen (never reused).

        The key store's AUTOINCREMENT counter is raised to the data file's highest
        bucket id, in case key rows of destroyed buckets were removed (moved tenants).
        """
        top = int(self._db.execute("SELECT coalesce(max(id), 0) FROM buckets").fetchone()[0])
        row = self._kdb.execute("SELECT seq FROM sqlite_sequence WHERE name='deks'").fetchone()
        if row is None or int(row[0]) < top:
            with self._kdb:
                self._kdb.execute("BEGIN IMMEDIATE")
                self._kdb.execute("DELETE FROM sqlite_sequence WHERE name='deks'")
                self._kdb.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('deks', ?)",
                                  (max(top, int(row[0]) if row else 0),))

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
        return cls(conn, kconn, keyring, path, readonly=readonly)

    def close(self) -> None:
        self._db.close()
        self._kdb.close()

    def side_connection(self) -> Any:
        """A second connection to this store, for a background writer (topic refinement).

        Its short transactions interleave with the ingest path's group commits
        (WAL: readers never wait, writers wait at most for one short transaction).
        """
        return connect(self.path, self._keys, purpose="data")

    @property
    def db(self) -> Any:
        """The raw connection, for the audit log and maintenance in this package."""
        return self._db

    @property
    def keys_db(self) -> Any:
        """The key store's raw connection, for moving a tenant between nodes (cluster/)."""
        return self._kdb

    # ---------------------------------------------------------------- buckets

    def _bucket(self, tenant: str, user: str, day: str, kind: str = "prompts"
                ) -> tuple[int, Dek]:
        """The live bucket's id and DEK, creating both if needed (inside the open transaction).

        A new DEK is committed to the key store first; if the data transaction then
        rolls back, the orphan key decrypts nothing and is never reused. A bucket whose
        key is gone (shredded, erased) takes no new records: the next prompt of that
        user and day gets a fresh bucket with a fresh key.
        """
        key = (tenant, user, day, kind)
        bid = self._bucket_ids.get(key)
        if bid is not None and self._dek(bid) is None:
            bid = None
        if bid is None:
            row = self._db.execute(
                "SELECT id FROM buckets WHERE tenant=? AND user=? AND day=? AND kind=? "
                "AND destroyed_at IS NULL", key).fetchone()
            if row is not None and self._dek(int(row[0])) is None:
                # its key was destroyed by a shred that did not finish: it is closed
                self._db.execute("UPDATE buckets SET destroyed_at=?, destroy_reason="
                                 "coalesce(destroy_reason, 'interrupted') WHERE id=?",
                                 (time.time(), int(row[0])))
                row = None
            if row is None:
                dek, wrapped = self._keys.new_dek(_bucket_aad(*key))
                cur = self._kdb.execute("INSERT INTO deks (wrapped, created_at) VALUES (?, ?)",
                                        (wrapped, time.time()))
                bid = int(cur.lastrowid)
                self._db.execute("INSERT INTO buckets (id, tenant, user, day, kind, created_at) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", (bid, *key, time.time()))
                self._deks[bid] = dek
            else:
                bid = int(row[0])
            self._bucket_ids[key] = bid
        live = self._dek(bid)
        if live is None:  # pragma: no cover - a key destroyed between the two reads above
            raise SemtraceError("This bucket's key was destroyed; it takes no new records.")
        return bid, live

    def _dek(self, bucket_id: int) -> Dek | None:
        if bucket_id not in self._deks:
            meta = self._db.execute("SELECT tenant, user, day, kind FROM buckets WHERE id=?",
                                    (bucket_id,)).fetchone()
            row = self._kdb.execute("SELECT wrapped FROM deks WHERE bucket_id=?",
                                    (bucket_id,)).fetchone()
            if meta is None or row is None or meta[1] is None or meta[2] is None:
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
            failpoints.point("batch.commit")
            self._db.execute("COMMIT")
        except BaseException:
            try:  # a failed ROLLBACK (I/O error) must not leave the caches stale either
                if self._db.in_transaction:  # SQLite may have rolled back itself (disk full)
                    self._db.execute("ROLLBACK")
            finally:
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
            "truncated, text_ct, vector_ct, evidence, trace_id, span_id, entities_ct, cost, "
            "cost_source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.record_id, p.tenant, p.request_id, r.user, bid, p.ts.timestamp(), r.session_key,
             r.thread_id, link.parent_id, link.position, link.intent, link.similarity,
             link.score, r.topic_id, p.model, resp.input_tokens if resp else None,
             resp.output_tokens if resp else None, resp.latency_ms if resp else None,
             resp.status if resp else None, int(p.synthetic), p.index, r.model_id,
             int(r.truncated), text_ct, vec_ct, json.dumps(link.evidence, sort_keys=True),
             r.trace_id, r.span_id, ents_ct, r.cost, r.cost_source))
        self._db.executemany(
            "INSERT OR REPLACE INTO turn_digests (record_id, kind, tenant, user, digest) "
            "VALUES (?,?,?,?,?)", [(r.record_id, kind, p.tenant, r.user, digest)
                                   for kind, digest in r.turn_keys])
        if r.vault and self.sealer is not None:
            # originals under their own per-day key, destroyed at the vault's retention
            vid, vdek = self._bucket(p.tenant, r.user, day_of(p.ts), "vault")
            aad = _aad(r.record_id, "vault")
            inner = self.sealer.seal(json.dumps(list(r.vault)).encode(), aad)
            self._db.execute("INSERT INTO vault (record_id, bucket_id, ct) VALUES (?, ?, ?)",
                             (r.record_id, vid, vdek.seal(inner, aad)))
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
                "input_tokens, output_tokens, models, topic_id, cost) "
                "VALUES (?,?,?,?,?,1,?,?,?,?,?)",
                (r.thread_id, p.tenant, r.user, ts, ts, tin, tout, json.dumps(models), r.topic_id,
                 r.cost))
            return
        models = json.loads(row[0])
        if p.model and p.model not in models:
            models.append(p.model)
        self._db.execute(
            "UPDATE threads SET first_ts=min(first_ts, ?), last_ts=max(last_ts, ?), "
            "turns=turns+1, input_tokens=input_tokens+?, output_tokens=output_tokens+?, "
            "models=?, topic_id=coalesce(?, topic_id), "
            "cost=CASE WHEN ? IS NULL THEN cost ELSE coalesce(cost, 0) + ? END WHERE thread_id=?",
            (ts, ts, tin, tout, json.dumps(models), r.topic_id, r.cost, r.cost, r.thread_id))

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
            "r.synthetic, r.stream_index, r.evidence, r.trace_id, r.span_id, r.feedback, "
            "r.cost, r.cost_source "
            "FROM records r "
            f"LEFT JOIN records p ON p.id = r.parent_id WHERE {where} ORDER BY {order}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self._db.execute(sql, params):
            (rid, req, tenant, user, ts, thread, parent, parent_req, pos, intent, sim, topic,
             bid, tct, model, tin, tout, lat, status, synth, idx, evidence, trace, span,
             feedback, cost, cost_source) = row
            ev = json.loads(evidence) if evidence else None
            out.append(Record(
                record_id=rid, request_id=req, tenant=tenant, user=user,
                ts=datetime.fromtimestamp(ts, UTC), thread_id=thread, parent_id=parent,
                parent_request_id=parent_req, position=pos, intent=intent, similarity=sim,
                topic_id=topic, text=self.text(rid, bid, tct), model=model, input_tokens=tin,
                output_tokens=tout, latency_ms=lat, status=status, synthetic=bool(synth),
                index=idx, evidence=ev, link_source=(ev or {}).get("link_source"),
                trace_id=trace, span_id=span, feedback=json.loads(feedback) if feedback else None,
                cost=cost, cost_source=cost_source))
        return out
