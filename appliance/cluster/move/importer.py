"""`cluster import`: an export copied into this store, its bucket ids renumbered (they
are key-store row ids), its record ids kept (they are bound into the records' encryption)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlcipher3

from appliance import failpoints, migrations
from appliance.cluster import given_away, imported
from appliance.cluster.move.tables import (
    KEY_TABLES,
    MoveReport,
    Progress,
    _copy,
    _ids,
    _scope,
    _selection,
    _silent,
    _tables,
)
from appliance.errors import InputError, SemtraceError, WrongKey
from appliance.keys import Keyring
from appliance.store import import_journal
from appliance.store.core import ID_RANGE, Store, connect, record_id_base
from appliance.store.erasures import Tombstone


def _open_export(path: Path, keyring: Keyring) -> Any:
    not_export = InputError(f"{path} is not a file written by `semtrace cluster export`; "
                            "nothing was imported.")
    if not path.exists():
        raise SemtraceError(f"{path} does not exist.")
    if path.is_dir() or path.stat().st_size % 512 or not path.stat().st_size:
        raise not_export  # an SQLCipher file is whole pages, of 512 bytes at least
    try:
        conn = connect(path, keyring, readonly=True)
    except WrongKey:
        if _cut_short(path, keyring):
            raise _damaged(path) from None
        raise WrongKey(f"{path} was exported by a node with another master key; the nodes "
                       "of a cluster share one key file.") from None
    try:  # a data dir's own database opens with the key too, and is no export
        conn.execute("SELECT value FROM meta WHERE key = 'export_tenants'").fetchone()[0]
    except Exception:  # no such row, or no meta table (an empty file); or damaged
        damaged = not _intact(conn)
        conn.close()
        raise (_damaged(path) if damaged else not_export) from None
    known = {fn.__name__ for fn in migrations.MIGRATIONS + migrations.KEY_MIGRATIONS}
    try:
        applied = set(migrations.applied(conn))
    except sqlcipher3.DatabaseError:
        conn.close()
        raise _damaged(path) from None
    if applied != known:
        conn.close()
        raise SemtraceError(f"{path} was exported by another version of semtrace; export and "
                            "import with the same version.")
    return conn


def import_tenants(store: Store, keyring: Keyring, path: Path, *,
                   progress: Progress = _silent,
                   check: Callable[[str | None], None] | None = None) -> MoveReport:
    """Copy an export into this store; refuses tenants it already has and clashing ids.
    `check` is shown the export's origin (`imported.origin`) before anything is written.
    A page of the file that fails to read (cut short, or altered since it was written) is
    an `InputError` naming the file, nothing imported; the store's own errors go up."""
    src = _open_export(path, keyring)
    try:
        return _import_from(store, keyring, path, src, progress, check)
    except sqlcipher3.DatabaseError:
        if _intact(src):
            raise  # the store's, not the file's
        raise _damaged(path) from None
    finally:
        src.close()


def _import_from(store: Store, keyring: Keyring, path: Path, src: Any, progress: Progress,
                 check: Callable[[str | None], None] | None) -> MoveReport:
    """`import_tenants` from the open export `src`."""
    row = src.execute("SELECT value FROM meta WHERE key='export_tenants'").fetchone()
    tenants = [t for t in (row[0] if row else "").split(",") if t]
    row = src.execute("SELECT value FROM meta WHERE key='export_partitions'").fetchone()
    moved = row[0] if row else None
    row = src.execute("SELECT value FROM meta WHERE key = ?", (imported.ORIGIN,)).fetchone()
    carried = row[0] if row else None
    pseudo = src.execute("SELECT value FROM meta WHERE key='export_pseudonym_id'"
                         ).fetchone()
    if pseudo is not None and pseudo[0] != keyring.pseudonym_id():
        raise SemtraceError(
            f"{path} was exported by a node whose user pseudonyms come from another key "
            "(its data dir was first initialised with another passphrase or key file, "
            "then rotated to the cluster's); its users would be strangers here, their "
            "conversations split and an erasure would miss them. Nothing was imported.")
    records, buckets, topics = _selection(src, tenants)
    if _imported_before(store, tenants, records):
        return MoveReport(tenants, len(records), len(buckets), {}, already=True,
                          partitions=moved)
    _check_import(store, src, tenants)
    if check is not None:
        check(carried)
    wrapped = src.execute("SELECT bucket_id, wrapped, created_at FROM deks").fetchall()
    remap = _new_bucket_ids(store, buckets | {r[0] for r in wrapped})
    # noted before the keys commit, cleared with the rows: keys without rows are undone
    import_journal.note(store.db, list(remap.values()))
    try:
        tables = _import_rows(store, src, tenants, wrapped, remap, progress, carried)
    except BaseException:
        import_journal.roll_back(store.db, store.keys_db)
        raise
    return MoveReport(tenants, len(records), len(buckets), tables, partitions=moved)


def _damaged(path: Path) -> InputError:
    return InputError(f"{path} is damaged (cut short or altered since `semtrace cluster "
                      "export` wrote it: its pages do not verify); copy it again from the "
                      "node that exported it, or export again there. Nothing was imported.")


def _intact(src: Any) -> bool:
    """Whether every page of the open export verifies (SQLCipher's HMAC) and its b-trees are
    whole (a file cut short at a page boundary leaves pages missing)."""
    try:
        if src.execute("PRAGMA cipher_integrity_check").fetchall():
            return False
        return [tuple(r) for r in src.execute("PRAGMA quick_check").fetchall()] == [("ok",)]
    except sqlcipher3.DatabaseError:
        return False


def _cut_short(path: Path, keyring: Keyring) -> bool:
    """Whether a file that does not open has its first page whole, read with this node's
    key (so the key is right), and is damaged further on: SQLite says "malformed" there,
    "not a database" for another key."""
    conn = sqlcipher3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        conn.execute(f"PRAGMA key = \"{keyring.sqlcipher_key('data')}\"")
        conn.execute("PRAGMA schema_version").fetchone()
        return True  # the key opens it: what failed is further on
    except sqlcipher3.DatabaseError as exc:
        return "malformed" in str(exc)
    finally:
        conn.close()


def _import_rows(store: Store, src: Any, tenants: list[str], wrapped: list[Any],
                 remap: dict[int, int], progress: Progress,
                 carried: str | None = None) -> dict[str, int]:
    """The keys, committed first (a key whose rows then fail to commit is rolled back),
    then the rows, committed with the removal of the import's journal note and the note
    of whose copy of the partitions came (`carried`: `imported.origin`)."""
    records, buckets, topics = _selection(src, tenants)
    store.keys_db.execute("BEGIN IMMEDIATE")
    try:
        store.keys_db.executemany(
            "INSERT INTO deks (bucket_id, wrapped, created_at) VALUES (?, ?, ?)",
            [(remap[old], blob, created) for old, blob, created in wrapped])
        _copy(src, store.keys_db, "destroyed", ("1", []), remap)
        store.keys_db.execute("COMMIT")
    except BaseException:
        store.keys_db.execute("ROLLBACK")
        raise
    failpoints.point("import.keys_committed")  # keys in, rows not yet
    tables: dict[str, int] = {}
    store.db.execute("BEGIN IMMEDIATE")
    try:
        todo = _ordered(_tables(src))
        for i, table in enumerate(todo):
            progress(table, i, len(todo))
            if table in KEY_TABLES or table not in _tables(store.db):
                continue
            if table == "erasures":  # tombstones: merged with any this node has
                stones = _tombstones(src, tenants)
                store.keep_tombstones(stones)
                tables[table] = len(stones)
                continue
            where = _scope(src, table, tenants, records, buckets, topics)
            if where is not None:
                tables[table] = _copy(src, store.db, table, where, remap)
        import_journal.clear(store.db)
        given_away.take_back_tenants(store.db, tenants)  # its partitions are this node's again
        imported.note(store.db, carried)  # serve refuses them if the exporter consumed since
        store.db.execute("COMMIT")
    except BaseException:
        store.db.execute("ROLLBACK")
        raise
    return tables


def _tombstones(src: Any, tenants: list[str]) -> list[Tombstone]:
    marks = ",".join("?" * len(tenants)) or "NULL"
    return [Tombstone(t, u, float(a), None if c is None else float(c)) for t, u, a, c in
            src.execute("SELECT tenant, user, started_at, completed_at FROM erasures "
                        f"WHERE tenant IN ({marks})", tenants)]


def _new_bucket_ids(store: Store, old: set[int]) -> dict[int, int]:
    """Fresh bucket ids above every id this store's two files ever used."""
    top = max(store.keys_db.execute("SELECT coalesce(max(bucket_id), 0) FROM deks").fetchone()[0],
              store.keys_db.execute("SELECT coalesce(max(bucket_id), 0) FROM destroyed")
              .fetchone()[0],
              store.db.execute("SELECT coalesce(max(id), 0) FROM buckets").fetchone()[0])
    return {b: top + 1 + i for i, b in enumerate(sorted(old))}


def _ordered(tables: list[str]) -> list[str]:
    """Buckets before the tables that reference them."""
    return sorted(tables, key=lambda t: (t != "buckets", t))


def _imported_before(store: Store, tenants: list[str], records: set[int]) -> bool:
    """Whether every tenant and record of the export is here already: an earlier run of
    this import committed, and stopped before it deleted the file."""
    if not tenants or not records:
        return False
    here = _ids(store.db, "SELECT DISTINCT tenant FROM buckets WHERE tenant IN ({marks})",
                tenants)
    found = {r[0] for r in store.db.execute(
        f"SELECT id FROM records WHERE id IN ({','.join('?' * len(records))}) AND tenant IN "
        f"({','.join('?' * len(tenants))})", [*sorted(records), *tenants])}
    return here == set(tenants) and found == records


def _check_import(store: Store, src: Any, tenants: list[str]) -> None:
    if not tenants:
        raise SemtraceError("The export holds no tenant.")
    here = _ids(store.db, "SELECT DISTINCT tenant FROM buckets WHERE tenant IN ({marks})",
                tenants)
    if here:
        raise SemtraceError(f"This node already holds data of tenant {sorted(here)[0]}; "
                            "nothing was imported.")
    lo, hi = src.execute("SELECT min(id), max(id) FROM records").fetchone()
    base = record_id_base(store.db)
    clash = store.db.execute("SELECT 1 FROM records WHERE id BETWEEN ? AND ? LIMIT 1",
                             (lo or 0, hi or -1)).fetchone()
    if clash or (lo is not None and base <= hi and lo < base + ID_RANGE):
        raise SemtraceError("The exported records' ids fall in this node's id range; "
                            "import them into another node (or a newly initialised one).")
