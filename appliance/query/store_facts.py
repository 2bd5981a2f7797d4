"""What the store holds: whether a table exists, its data version, its tenants."""

from __future__ import annotations

from appliance.store import Store


def has_table(store: Store, name: str) -> bool:
    """Whether the store has this table (a migration may not have run yet)."""
    return store.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                            (name,)).fetchone() is not None


def data_version(store: Store) -> int:
    """Changes whenever another connection commits: a cheap "is there anything new?"."""
    return int(store.db.execute("PRAGMA data_version").fetchone()[0])


def tenants(store: Store) -> list[str]:
    """Tenants that have threads."""
    return [r[0] for r in store.db.execute("SELECT DISTINCT tenant FROM threads ORDER BY 1")]


def has_held(store: Store, tenant: str) -> bool:
    """Whether the store holds or has held data of `tenant` (a live or shredded bucket)."""
    return store.db.execute(
        "SELECT EXISTS (SELECT 1 FROM buckets WHERE tenant=?) OR "
        "EXISTS (SELECT 1 FROM threads WHERE tenant=?)", (tenant, tenant)).fetchone()[0] == 1

