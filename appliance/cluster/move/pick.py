"""Which tenants a move picks: the partition count this node served with, and the tenants
of its store that fall into the partitions moved."""

from __future__ import annotations

from appliance.cluster.move.tables import _columns, _tables
from appliance.errors import SemtraceError
from appliance.store.core import Store


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
