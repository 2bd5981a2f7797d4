"""Moving a partition's tenants from one node's store to another's (both nodes stopped).

`export_tenants` writes their rows, still encrypted, and their wrapped data keys
into one SQLCipher file keyed like the store; only a node with the same master
key (the cluster's shared key file) opens it. `import_tenants` copies them into
another store: bucket ids are renumbered (they are key-store row ids), record
ids are kept (they are bound into the records' encryption; each store draws
them from its own range). `forget_tenants` then removes them from the source,
destroying their data keys. Tables are found by their columns (a `tenant`
column, or a `record_id`/`bucket_id`/`topic_id` link), so later migrations'
tables move too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import failpoints, migrations
from appliance.cluster import exported, given_away, imported
from appliance.errors import InputError, SemtraceError, WrongKey
from appliance.keys import Keyring
from appliance.store import import_journal
from appliance.store.core import ID_RANGE, Store, connect, record_id_base
from appliance.store.erasures import Tombstone

# progress(table, tables done, tables in all): for the command's progress bar
Progress = Callable[[str, int, int], None]


def _silent(table: str, done: int, total: int) -> None:
    return None


# Tables that belong to the node, not to a tenant.
NODE_TABLES = {"meta", "audit", "audit_checkpoints", "audit_keys", "_migrations"}
KEY_TABLES = ("deks", "destroyed")


@dataclass(frozen=True)
class MoveReport:
    """What one export, import or forget touched."""

    tenants: list[str]
    records: int
    buckets: int
    tables: dict[str, int]
    already: bool = False  # an import found every row of the export here (an earlier run)
    partitions: str | None = None  # export, import: the partitions moved, e.g. "2-3"


def note_partitions(store: Store, count: int) -> None:
    """Remember the partition count this node serves with (`serve --nats` at each start)."""
    with store.db:
        store.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES "
                         "('cluster_partitions', ?)", (str(count),))


def served_partitions(store: Store) -> int | None:
    """The partition count this node last served with, if it ever served through NATS."""
    row = store.db.execute("SELECT value FROM meta WHERE key='cluster_partitions'").fetchone()
    return int(row[0]) if row else None


def partition_count(store: Store, given: int | None, configured: int) -> int:
    """The count that picks a partition's tenants: the one this node served with.

    `given` (--of) must agree with it; cluster.toml's count is used only for a node
    that never served through NATS. Another count picks other tenants to export or,
    worse, to forget.
    """
    served = served_partitions(store)
    if given is not None and served is not None and given != served:
        raise SemtraceError(f"This node served {served} partitions (--partitions at its last "
                            f"start); --of {given} would pick other tenants. Nothing was "
                            "changed.")
    return given or served or configured


def tenants_in(store: Store, partitions: list[int], count: int) -> list[str]:
    """The tenants with data in this store that fall into `partitions` of `count`."""
    from appliance.cluster.partition import partition_of

    found: set[str] = set()
    for table in _tables(store.db):
        if "tenant" in _columns(store.db, table):
            found.update(r[0] for r in store.db.execute(f"SELECT DISTINCT tenant FROM {table}"))
    wanted = set(partitions)
    return sorted(t for t in found if partition_of(t, count) in wanted)


def _tables(db: Any) -> list[str]:
    return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                     "AND name NOT LIKE 'sqlite_%' ORDER BY name")
            if r[0] not in NODE_TABLES]


def _columns(db: Any, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]


def _scope(db: Any, table: str, tenants: list[str], record_ids: set[int],
           bucket_ids: set[int], topic_ids: set[str]) -> tuple[str, list[Any]] | None:
    """The WHERE clause selecting a table's rows of these tenants; None: not tenant data."""
    cols = _columns(db, table)

    def within(column: str, values: set[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({','.join('?' * len(values)) or 'NULL'})", sorted(values)

    if "tenant" in cols:
        return within("tenant", set(tenants))
    if "record_id" in cols:
        return within("record_id", record_ids)
    if "bucket_id" in cols:
        return within("bucket_id", bucket_ids)
    if "topic_id" in cols:
        return within("topic_id", topic_ids)
    return None


def _ids(db: Any, sql: str, tenants: list[str]) -> set[Any]:
    marks = ",".join("?" * len(tenants)) or "NULL"
    return {r[0] for r in db.execute(sql.format(marks=marks), tenants)}


def _selection(db: Any, tenants: list[str]) -> tuple[set[int], set[int], set[str]]:
    records = _ids(db, "SELECT id FROM records WHERE tenant IN ({marks})", tenants)
    buckets = _ids(db, "SELECT id FROM buckets WHERE tenant IN ({marks})", tenants)
    topics = _ids(db, "SELECT topic_id FROM topics WHERE tenant IN ({marks})", tenants)
    return records, buckets, topics


def _copy(src: Any, dst: Any, table: str, where: tuple[str, list[Any]],
          remap_bucket: dict[int, int] | None = None) -> int:
    cols = [c for c in _columns(src, table) if c in set(_columns(dst, table))]
    rows = src.execute(f"SELECT {','.join(cols)} FROM {table} WHERE {where[0]}",
                       where[1]).fetchall()
    if remap_bucket is not None:
        fix = [i for i, c in enumerate(cols)
               if c == "bucket_id" or (table == "buckets" and c == "id")]
        rows = [tuple(remap_bucket[v] if i in fix and v is not None else v
                      for i, v in enumerate(row)) for row in rows]
    dst.executemany(f"INSERT INTO {table} ({','.join(cols)}) VALUES "
                    f"({','.join('?' * len(cols))})", rows)
    return len(rows)


def export_tenants(store: Store, keyring: Keyring, tenants: list[str], out: Path, *,
                   partitions: str | None = None, origin: str | None = None,
                   progress: Progress = _silent) -> MoveReport:
    """Write these tenants' rows and wrapped keys to a new file `out` (mode 0600).
    `origin`: whose consumers the partitions had (`imported.origin`), for the import."""
    if out.exists():
        raise SemtraceError(f"{out} already exists; it was not overwritten.")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    conn = connect(out, keyring, synchronous="FULL")
    try:
        # One file holds both schemas: one pass over both lists, so that neither list's
        # check for a newer version takes the other's migrations for unknown ones.
        migrations.migrate(conn, migrations.MIGRATIONS + migrations.KEY_MIGRATIONS,
                           name=str(out))
        records, buckets, topics = _selection(store.db, tenants)
        tables: dict[str, int] = {}
        conn.execute("BEGIN")
        todo = _tables(store.db)
        for i, table in enumerate(todo):
            progress(table, i, len(todo) + len(KEY_TABLES))
            where = _scope(store.db, table, tenants, records, buckets, topics)
            if where is not None and table in _tables(conn):
                tables[table] = _copy(store.db, conn, table, where)
        for i, table in enumerate(KEY_TABLES):
            progress(table, len(todo) + i, len(todo) + len(KEY_TABLES))
            tables[table] = _copy(store.keys_db, conn, table,
                                  _scope(store.keys_db, table, tenants, records, buckets,
                                         topics) or ("0", []))
        conn.execute("INSERT INTO meta (key, value) VALUES ('export_tenants', ?)",
                     (",".join(tenants),))
        conn.execute("INSERT INTO meta (key, value) VALUES ('export_pseudonym_id', ?)",
                     (keyring.pseudonym_id(),))
        if partitions is not None:  # for the import's report and its next step
            conn.execute("INSERT INTO meta (key, value) VALUES ('export_partitions', ?)",
                         (partitions,))
        if origin is not None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)",
                         (imported.ORIGIN, origin))
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        out.unlink(missing_ok=True)
        raise
    conn.close()
    return MoveReport(tenants, len(records), len(buckets), tables, partitions=partitions)


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
        raise WrongKey(f"{path} was exported by a node with another master key; the nodes "
                       "of a cluster share one key file.") from None
    try:  # a data dir's own database opens with the key too, and is no export
        conn.execute("SELECT value FROM meta WHERE key = 'export_tenants'").fetchone()[0]
    except Exception:  # no such row, or no meta table (an empty file)
        conn.close()
        raise not_export from None
    known = {fn.__name__ for fn in migrations.MIGRATIONS + migrations.KEY_MIGRATIONS}
    if set(migrations.applied(conn)) != known:
        conn.close()
        raise SemtraceError(f"{path} was exported by another version of semtrace; export and "
                            "import with the same version.")
    return conn


def import_tenants(store: Store, keyring: Keyring, path: Path, *,
                   progress: Progress = _silent,
                   check: Callable[[str | None], None] | None = None) -> MoveReport:
    """Copy an export into this store; refuses tenants it already has and clashing ids.
    `check` is shown the export's origin (`imported.origin`) before anything is written."""
    src = _open_export(path, keyring)
    try:
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
    finally:
        src.close()
    return MoveReport(tenants, len(records), len(buckets), tables, partitions=moved)


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


def forget_tenants(store: Store, tenants: list[str], *, partitions: list[int] | None = None,
                   count: int = 0, progress: Progress = _silent) -> MoveReport:
    """Remove these tenants from this store: data keys destroyed first, then their rows.

    `partitions` (of `count`): the ones they were picked by, noted as given away with
    the rows' removal, so that a stale --own cannot make this node consume them again.
    """
    records, buckets, topics = _selection(store.db, tenants)
    todo = sorted(_tables(store.db), key=lambda t: (t == "buckets", t))
    steps = len(todo) + 2  # the keys first, the freed pages last
    progress("data keys", 0, steps)
    marks = ",".join("?" * len(buckets)) or "NULL"
    store.keys_db.execute("BEGIN IMMEDIATE")
    try:
        store.keys_db.execute(f"DELETE FROM deks WHERE bucket_id IN ({marks})",
                              sorted(buckets))
        store.keys_db.execute(f"DELETE FROM destroyed WHERE bucket_id IN ({marks})",
                              sorted(buckets))
        store.keys_db.execute("COMMIT")
    except BaseException:
        store.keys_db.execute("ROLLBACK")
        raise
    tables: dict[str, int] = {}
    store.db.execute("BEGIN IMMEDIATE")
    try:
        for i, table in enumerate(todo):
            progress(table, 1 + i, steps)
            where = _scope(store.db, table, tenants, records, buckets, topics)
            if where is not None:
                cur = store.db.execute(f"DELETE FROM {table} WHERE {where[0]}", where[1])
                tables[table] = cur.rowcount
        if partitions:
            given_away.note(store.db, partitions, count)
        exported.drop(store.db, tenants)
        store.db.execute("COMMIT")
    except BaseException:
        store.db.execute("ROLLBACK")
        raise
    progress("freeing space", steps - 1, steps)
    with contextlib.suppress(Exception):
        store.db.execute("PRAGMA incremental_vacuum")
    progress("done", steps, steps)
    from appliance.cluster.partition import format_ranges

    return MoveReport(tenants, len(records), len(buckets), tables,
                      partitions=format_ranges(partitions) if partitions else None)
