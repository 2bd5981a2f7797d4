"""Applying the migrations: in order, each in its own transaction, recorded by name.

The lists are filled in order by `datastore.py` (MIGRATIONS) and `keystore.py`
(KEY_MIGRATIONS) when the package is imported.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from appliance import failpoints
from appliance.errors import SemtraceError

log = logging.getLogger("semtrace.store")

Migration = Callable[[Any], None]
MIGRATIONS: list[Migration] = []
migration = MIGRATIONS.append

# The key store (keys.db) is a separate SQLCipher file so that copies of the
# data store never hold a data key: shredding a key there makes every copy of
# semtrace.db unreadable for that bucket.
KEY_MIGRATIONS: list[Migration] = []


def applied(db: Any) -> list[str]:
    """Names of the migrations recorded in this database (it is not written: read-only
    connections ask too)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'"
                  ).fetchone() is None:
        return []
    return [r[0] for r in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def pending(db: Any, migrations: list[Migration] | None = None) -> list[str]:
    """Names of the migrations `migrate` would apply to this database."""
    done = set(applied(db))
    return [fn.__name__ for fn in (MIGRATIONS if migrations is None else migrations)
            if fn.__name__ not in done]


def refuse_newer(db: Any, migrations: list[Migration] | None = None, *,
                 name: str = "The store") -> None:
    """SemtraceError when `db` records a migration this code does not know: a newer
    version wrote it, and this one would misread or damage what that schema holds."""
    known = {fn.__name__ for fn in (MIGRATIONS if migrations is None else migrations)}
    unknown = [n for n in applied(db) if n not in known]
    if unknown:
        raise SemtraceError(
            f"{name} was upgraded by a newer version of Semtrace (its migration {unknown[0]} "
            "is unknown to this one); run that version or a newer one. Nothing was changed.")


def migrate(db: Any, migrations: list[Migration] | None = None, *,
            name: str = "The store") -> list[str]:
    """Apply every migration not yet recorded, each in its own transaction.

    Refused, before anything is applied, when a newer version has migrated `db`
    (`refuse_newer`). Foreign keys are off while a migration runs (SQLite's procedure
    for rebuilding a table) and checked before it commits.
    """
    refuse_newer(db, migrations, name=name)
    db.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
    )
    done = set(applied(db))
    ran: list[str] = []
    todo = [fn for fn in (MIGRATIONS if migrations is None else migrations)
            if fn.__name__ not in done]
    if not todo:
        return ran
    fks = db.execute("PRAGMA foreign_keys").fetchone()[0]
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        for n, fn in enumerate(todo, start=1):
            if done:  # an upgrade (a new store's first migrations are init's): one line
                # each, before it runs, so a long one on a big store is seen in progress
                log.info("applying migration %s (%d of %d) to %s", fn.__name__, n, len(todo),
                         name, extra={"event": "migration", "migration": fn.__name__,
                                      "step": n, "steps": len(todo)})
            db.execute("BEGIN IMMEDIATE")  # the migration and its record commit together
            try:
                fn(_InTransaction(db))
                if db.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise RuntimeError(f"migration {fn.__name__} broke a foreign key")
                failpoints.point("migration")
                db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)",
                           (fn.__name__, time.time()))
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            ran.append(fn.__name__)
    finally:
        db.execute(f"PRAGMA foreign_keys = {'ON' if fks else 'OFF'}")
    return ran


class _InTransaction:
    """The connection, with `executescript` run statement by statement: sqlite3's own
    commits first, so a crash mid-migration would leave half a schema unrecorded."""

    def __init__(self, db: Any) -> None:
        self._db = db

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().upper().startswith("BEGIN"):  # already in the migration's transaction
            return None
        return self._db.execute(sql, *args)

    def executescript(self, script: str) -> None:
        statement = ""
        for part in script.split(";"):
            statement += part + ";"
            if sqlite3.complete_statement(statement):  # not a ';' inside a literal/trigger
                if statement.strip(" \t\r\n;"):
                    self.execute(statement)
                statement = ""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def latest() -> str:
    """Name of the newest migration this code knows."""
    return MIGRATIONS[-1].__name__
