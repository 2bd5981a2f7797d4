"""Whether a data dir's two database files were copied at one moment.

`semtrace.db` (records, buckets, the audit log) and `keys.db` (every bucket's data key,
the audit chain's head) only make sense together. A copy taken file by file while the
service ran, or files put back from two backups, pairs a `keys.db` with a `semtrace.db`
of another moment:

- `keys.db` older: the buckets made since have no data key. Opened, their records read
  as shredded (`[shredded]` in `threads list`) and the next prompt of such a user and day
  closed the bucket as an interrupted shred, for good. Every bucket id comes from
  `keys.db`'s counter (its key committed before the bucket's row), so a live bucket above
  that counter, with no key and no record of its key's destruction, was never known to
  this `keys.db`: no crash, retention, erasure or `cluster forget` leaves one.
- `semtrace.db` older: the audit chain's head that `keys.db` keeps is past the log's end;
  the prompts stored since are missing, and `audit verify` says the tail was cut off.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.words import plural

if TYPE_CHECKING:
    from appliance.keys import Keyring


def _has(db: Any, *tables: str) -> bool:
    marks = ",".join("?" * len(tables))
    n = db.execute(f"SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ({marks})",
                   tables).fetchone()[0]
    return int(n) == len(tables)


def keyless_buckets(db: Any, kdb: Any) -> tuple[int, int]:
    """(live buckets of `db` that `kdb` never gave a key, their records)."""
    if not _has(db, "buckets", "records") or not _has(kdb, "deks", "destroyed"):
        return 0, 0
    row = kdb.execute("SELECT seq FROM sqlite_sequence WHERE name='deks'").fetchone() \
        if _has(kdb, "sqlite_sequence") else None
    counter = int(row[0]) if row else 0
    known = {int(r[0]) for r in kdb.execute(
        "SELECT bucket_id FROM deks WHERE bucket_id > ? UNION "
        "SELECT bucket_id FROM destroyed WHERE bucket_id > ?", (counter, counter))}
    ids = [int(r[0]) for r in db.execute(
        "SELECT id FROM buckets WHERE destroyed_at IS NULL AND id > ?", (counter,))
        if int(r[0]) not in known]
    if not ids:
        return 0, 0
    marks = ",".join("?" * len(ids))
    records = db.execute(f"SELECT count(*) FROM records WHERE bucket_id IN ({marks})",
                         ids).fetchone()[0]
    return len(ids), int(records)


def keys_older_sentence(db: Any, kdb: Any, data_dir: Any) -> str | None:
    """The refusal of a data dir whose keys.db is older than its semtrace.db, else None."""
    buckets, records = keyless_buckets(db, kdb)
    if not buckets:
        return None
    return (f"{data_dir}/keys.db is older than {data_dir}/semtrace.db (the two were copied "
            f"at different moments, or from two backups): {plural(buckets, 'bucket')} "
            f"holding {plural(records, 'record')} {'has' if buckets == 1 else 'have'} no data "
            "key in it, and would read as shredded; put "
            "back the keys.db copied with this semtrace.db, or restore both from one "
            "`semtrace backup`. Nothing was changed.")



def data_older_sentence(db: Any, kdb: Any, data_dir: Path) -> str | None:
    """The sentence for a semtrace.db behind its keys.db (the audit chain's head that
    keys.db keeps is past the log's end), else None. It opens: its newer prompts are not
    there, and `audit verify` says the log's tail was cut off."""
    if not _has(db, "audit") or not _has(kdb, "audit_head"):
        return None
    head = kdb.execute("SELECT seq FROM audit_head WHERE id=1").fetchone()
    end = int(db.execute("SELECT coalesce(max(seq), 0) FROM audit").fetchone()[0])
    if head is None or not isinstance(head[0], int) or head[0] <= end:
        return None
    return (f"{data_dir}/semtrace.db is behind {data_dir}/keys.db: its audit log ends at "
            f"entry {end}, keys.db had recorded entry {head[0]} (the two copied at "
            "different moments or from two backups, or semtrace.db's last commits lost in "
            "a power cut), so what was stored after it is missing; put back the semtrace.db "
            "copied with this keys.db if there is one (`semtrace audit verify` says the "
            "log's tail was cut off).")


def refuse_keys_older(folder: Path, ring: Keyring) -> None:
    """DamagedFile (exit 2) when `folder`'s keys.db is older than its semtrace.db; both
    files read only."""
    from appliance.errors import DamagedFile
    from appliance.store.core import DB_FILE, KEYS_FILE, connect

    db = connect(folder / DB_FILE, ring, readonly=True)
    try:
        kdb = connect(folder / KEYS_FILE, ring, readonly=True, purpose="keys")
        try:
            if mismatch := keys_older_sentence(db, kdb, folder):
                raise DamagedFile(mismatch)
        finally:
            kdb.close()
    finally:
        db.close()
