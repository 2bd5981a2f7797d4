"""The encrypted store: SQLCipher file, envelope encryption of content under DEKs.

The only writer of tables. Prompt text and vectors are AES-GCM-encrypted under
the DEK of their (tenant, user pseudonym, UTC day) bucket, with the record id as
associated data, so destroying a DEK makes those records unreadable everywhere,
copies of the database included.

This module opens the connections and holds the buckets, their DEKs and the
decryption of one field; `Store` gets its writes from `writes.py`, its reads
from `reads.py`, shredding from `maintenance.py` and history from `turns.py`.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlcipher3

from appliance import migrations
from appliance.errors import DamagedFile, InputError, SemtraceError, WrongKey
from appliance.keys import Dek, Keyring, RevealSealer, reveal_sealer
from appliance.store.erasures import Erasures
from appliance.store.maintenance import (
    VECTOR_DTYPE,
    Maintenance,
    _aad,
    _bucket_aad,
)
from appliance.store.pairing import keys_older_sentence
from appliance.store.reads import Reads
from appliance.store.turns import Turns
from appliance.store.writes import Writes

DB_FILE = "semtrace.db"
KEYS_FILE = "keys.db"


def connect(path: Path, keyring: Keyring, *, readonly: bool = False, purpose: str = "data",
            synchronous: str = "NORMAL") -> Any:
    """Open a SQLCipher database with its raw key (no PBKDF2 on open)."""
    if not readonly and not writable(path):  # SQLite would open it read-only and fail later
        raise read_only_refusal(path.parent)
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    if readonly and path.exists() and not writable(path):
        uri += read_only_uri(path)
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
        if not writable(path):
            raise (unsteady_refusal(path.parent) if readonly
                   else read_only_refusal(path.parent)) from None
        # The keyring has already checked the credential: a file that still does not open
        # is damaged or another data dir's, which "wrong key" alone would hide.
        raise WrongKey(f"{path.name} does not open with this data dir's key: it is damaged "
                       "or belongs to another data dir; nothing was changed.") from None
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'FULL' else 'NORMAL'}")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        owner_only(path)
    return conn


def writable(path: Path) -> bool:
    """Whether this process may write `path` (if it exists) and its folder (-wal, -shm)."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def read_only_uri(path: Path) -> str:
    """How SQLite reads `path` in a folder this process may not write, as URI parameters
    after mode=ro; InputError when no read there can be kept consistent.

    A writer connected to the database keeps its write-ahead log (-wal) beside it: mode=ro
    then shares the writer's WAL index (-shm, mapped read-only or rebuilt in heap memory)
    and its locks, so every read sees one committed state. With no -wal, SQLite cannot make
    the -shm a WAL read needs, and only immutable mode opens the file; immutable takes no
    locks and detects no change, so a writer starting meanwhile (a checkpoint rewriting the
    file under the read) would give stale or mixed pages. It is used only on a read-only
    mount, where nothing writes the file through this mount."""
    if path.with_name(path.name + "-wal").exists():
        return ""
    if read_only_mount(path.parent):
        return "&immutable=1"
    raise unsteady_refusal(path.parent)


def read_only_mount(folder: Path) -> bool:
    """Whether `folder` is on a file system mounted read-only here."""
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def unsteady_refusal(data_dir: Path) -> InputError:
    """The refusal of a read no lock can keep consistent: a data dir this process may not
    write, not on a read-only mount, that no writer has open (exit 2, nothing read)."""
    return InputError(
        f"The data dir {data_dir} is read-only for this user but not a read-only mount, and "
        "no service has it open, so a writer starting meanwhile could change it under this "
        "read; read it while its service runs, as the user who writes it, or from a "
        "read-only mount or copy.")


def read_only_sentence(data_dir: Path) -> str:
    return (f"The data dir {data_dir} is read-only for this process and this command writes "
            "to it; make it writable for the user running this.")


def read_only_refusal(data_dir: Path) -> InputError:
    """The refusal of a data dir this process may not write: bad input (exit 2, like every
    other refusal of what the user pointed at), said before anything is changed."""
    return InputError(read_only_sentence(data_dir) + " Nothing was changed.")


def owner_only(path: Path) -> None:
    """The database and its -wal / -shm files readable by their owner only (sqlite creates
    them under the umask; it makes later -wal / -shm files with the database's mode)."""
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if p.stat().st_mode & 0o077:
                p.chmod(0o600)


# This store allocates record ids in [id_base, id_base + ID_RANGE); records moved in
# from another node keep theirs (see m006_record_id_base in migrations/datastore.py).
ID_RANGE = 1 << 32


def record_id_base(conn: Any) -> int:
    """The first record id of this store's range (0 for a store older than ranges)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'record_id_base'").fetchone()
    return int(row[0]) if row else 0


class Store(Writes, Reads, Maintenance, Turns, Erasures):
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
        # migrations this open applied to a store an earlier version wrote, by file
        self.migrated: dict[str, list[str]] = {}
        if not readonly:  # keys of an interrupted `cluster import`, removed before all else
            from appliance.store import import_journal

            import_journal.roll_back(conn, keys_conn)
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
        try:
            # both files checked before either is migrated: a newer version's store is
            # refused as it is
            migrations.refuse_newer(conn, name=str(path))
            migrations.refuse_newer(kconn, migrations.KEY_MIGRATIONS,
                                    name=str(data_dir / KEYS_FILE))
            # and before either is changed: a keys.db older than semtrace.db would read
            # (and close) the buckets it lacks as shredded
            if mismatch := keys_older_sentence(conn, kconn, data_dir):
                raise DamagedFile(mismatch)
            upgraded: dict[str, list[str]] = {}
            if not readonly:
                # an upgrade (not a new store's first open) is named by the caller
                for name, db, known in ((DB_FILE, conn, migrations.MIGRATIONS),
                                        (KEYS_FILE, kconn, migrations.KEY_MIGRATIONS)):
                    earlier = migrations.applied(db)
                    ran = migrations.migrate(db, known, name=str(data_dir / name))
                    if earlier and ran:
                        upgraded[name] = ran
            elif migrations.latest() not in migrations.applied(conn):
                raise SemtraceError("The store needs a migration; start the service once to "
                                    "apply it.")
        except BaseException:
            conn.close()
            kconn.close()
            raise
        store = cls(conn, kconn, keyring, path, readonly=readonly)
        store.migrated = upgraded
        return store

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

    # ---------------------------------------------------------------- decryption

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
