"""`cluster forget`: these tenants removed from this store, their data keys destroyed
first."""

from __future__ import annotations

import contextlib

from appliance.cluster import exported, given_away
from appliance.cluster.move.tables import MoveReport, Progress, _scope, _selection, _silent, _tables
from appliance.store.core import Store


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
