"""`cluster export`: these tenants' rows, still encrypted, and their wrapped data keys,
written to one new SQLCipher file keyed like the store."""

from __future__ import annotations

import os
from pathlib import Path

from appliance import migrations
from appliance.cluster import imported
from appliance.cluster.move.tables import (
    KEY_TABLES,
    MoveReport,
    Progress,
    _copy,
    _scope,
    _selection,
    _silent,
    _tables,
)
from appliance.errors import InputError
from appliance.keys import Keyring
from appliance.store.core import Store, connect


def export_tenants(store: Store, keyring: Keyring, tenants: list[str], out: Path, *,
                   partitions: str | None = None, origin: str | None = None,
                   progress: Progress = _silent) -> MoveReport:
    """Write these tenants' rows and wrapped keys to a new file `out` (mode 0600).
    `origin`: whose consumers the partitions had (`imported.origin`), for the import."""
    if out.exists():
        raise InputError(f"--out {out} already exists; it was not overwritten: give a new "
                         "file.")
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
