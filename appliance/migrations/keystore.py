"""The key store's (keys.db) migrations, in the order they run. Never edit one that has
shipped; append."""

from __future__ import annotations

from typing import Any

from appliance.migrations.runner import KEY_MIGRATIONS


@KEY_MIGRATIONS.append
def k001_deks(db: Any) -> None:
    db.executescript(
        """
        CREATE TABLE deks (
            bucket_id INTEGER PRIMARY KEY,
            wrapped BLOB NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE destroyed (
            bucket_id INTEGER PRIMARY KEY,
            destroyed_at REAL NOT NULL
        );
        """
    )


@KEY_MIGRATIONS.append
def k002_bucket_ids_never_reused(db: Any) -> None:
    # Bucket ids come from this table; AUTOINCREMENT so that the id of a destroyed
    # (deleted) key is never handed out again.
    db.execute("BEGIN")
    db.execute("CREATE TABLE deks_new (bucket_id INTEGER PRIMARY KEY AUTOINCREMENT, "
               "wrapped BLOB NOT NULL, created_at REAL NOT NULL)")
    db.execute("INSERT INTO deks_new SELECT bucket_id, wrapped, created_at FROM deks")
    db.execute("DROP TABLE deks")
    db.execute("ALTER TABLE deks_new RENAME TO deks")
    top = db.execute("SELECT max(coalesce((SELECT max(bucket_id) FROM deks), 0), "
                     "coalesce((SELECT max(bucket_id) FROM destroyed), 0))").fetchone()[0]
    db.execute("DELETE FROM sqlite_sequence WHERE name = 'deks'")
    db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('deks', ?)", (top,))


@KEY_MIGRATIONS.append
def k003_audit_head(db: Any) -> None:
    # The audit chain's newest (seq, hash), kept beside the keys: deleting the tail of
    # the audit table (or restoring an older data file) no longer goes unnoticed.
    db.execute("CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), "
               "seq INTEGER NOT NULL, hash TEXT NOT NULL, updated_at REAL NOT NULL)")
