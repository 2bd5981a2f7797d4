"""The journal of a `cluster import` under way, so that an interrupted one leaves no key.

An import commits the moved tenants' data keys to the key file first, then their
rows to the data file: two SQLCipher files, two commits. A crash (or an error)
between them would leave data keys with no bucket: copies of keys that the
retention and erasure of the moved rows never destroy, and that a re-run of the
import would then duplicate. So the new bucket ids are noted in the data file's
`meta` before the keys are committed, and the note is removed in the same
transaction that commits the rows. A note still there means the rows never
arrived: `roll_back` deletes those keys (only ids with no bucket row) and the
note. `Store` does it at every writable open, before anything else runs; the
import does it at once on an error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from appliance.words import plural

log = logging.getLogger("semtrace.store")
KEY = "import_pending"


def note(db: Any, bucket_ids: list[int]) -> None:
    """Commit the note of the bucket ids an import is about to give keys to."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   (KEY, json.dumps(sorted(bucket_ids))))


def clear(db: Any) -> None:
    """Remove the note, inside the transaction that commits the imported rows."""
    db.execute("DELETE FROM meta WHERE key = ?", (KEY,))


def pending(db: Any) -> list[int] | None:
    """The bucket ids of an import that did not commit its rows, if any."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    return [int(b) for b in json.loads(row[0])] if row else None


def roll_back(db: Any, keys_db: Any) -> int:
    """Delete the keys of an import whose rows never committed; the number deleted."""
    ids = pending(db)
    if ids is None:
        return 0
    with_rows = {r[0] for r in db.execute(
        f"SELECT id FROM buckets WHERE id IN ({','.join('?' * len(ids)) or 'NULL'})", ids)}
    orphans = [b for b in ids if b not in with_rows]
    marks = ",".join("?" * len(orphans)) or "NULL"
    with keys_db:
        keys_db.execute("BEGIN IMMEDIATE")
        removed = keys_db.execute(f"DELETE FROM deks WHERE bucket_id IN ({marks})",
                                  orphans).rowcount
        keys_db.execute(f"DELETE FROM destroyed WHERE bucket_id IN ({marks})", orphans)
    with db:
        db.execute("BEGIN IMMEDIATE")
        clear(db)
    if removed:
        log.warning(f"An interrupted `cluster import` into this node was rolled back: its "
                    f"{plural(removed, 'data key')} {'was' if removed == 1 else 'were'} "
                    "removed (their rows had not been stored); "
                    "importing that file again completes it.",
                    extra={"event": "import_rolled_back", "keys": removed})
    return int(removed)
