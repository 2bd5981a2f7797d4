"""Which tenants this node exported, so that `cluster forget` never destroys an only copy.

`forget` destroys a partition's data keys: right after the partition was
exported and imported elsewhere, and a loss otherwise. Run on the wrong node
(the new owner, say) or before the export, it would destroy the only copy. So
`export` notes each tenant it wrote and how many records it had then, and
`forget` refuses a tenant never exported from here, or one that has records the
export did not carry (the node served after it), unless told to discard them.
"""

from __future__ import annotations

import json
from typing import Any

KEY = "cluster_exported"


def _counts(db: Any, tenants: list[str]) -> dict[str, int]:
    marks = ",".join("?" * len(tenants)) or "NULL"
    return {t: int(n) for t, n in db.execute(
        f"SELECT tenant, count(*) FROM records WHERE tenant IN ({marks}) GROUP BY tenant",
        tenants)}


def _read(db: Any) -> dict[str, int]:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    return {str(t): int(n) for t, n in json.loads(row[0]).items()} if row else {}


def note(db: Any, tenants: list[str]) -> None:
    """Remember these tenants as exported with the records they have now."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        done = {**_read(db), **{t: 0 for t in tenants}, **_counts(db, tenants)}
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   (KEY, json.dumps(done, sort_keys=True)))


def not_exported(db: Any, tenants: list[str]) -> list[str]:
    """The tenants whose records here are not all in an export made from this node."""
    done = _read(db)
    now = _counts(db, tenants)
    return sorted(t for t in tenants if t not in done or now.get(t, 0) > done[t])


def drop(db: Any, tenants: list[str]) -> None:
    """Forget the notes of tenants that are gone from this node (inside forget's commit)."""
    done = _read(db)
    left = {t: n for t, n in done.items() if t not in set(tenants)}
    if left:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   (KEY, json.dumps(left, sort_keys=True)))
    else:
        db.execute("DELETE FROM meta WHERE key = ?", (KEY,))
