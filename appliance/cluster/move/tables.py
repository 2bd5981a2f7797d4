"""A move's rows: which tables and rows are these tenants' (found by their columns, so
that later migrations' tables move too), copying them, and what a move reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
