"""Online backup of a live data dir, and its restore into a new one.

SQLCipher does not support SQLite's backup API for encrypted databases (its 4.0 changelog:
"disable backup API for encrypted databases"), so each database
file is copied with `sqlcipher_export` into a new file ATTACHed under the *same* raw
key: the copy is encrypted page by page as it is written, and no plaintext page, temp
file or journal is ever written (`temp_store = MEMORY`).

The two database files must agree (the data keys and the audit chain's head live in
`keys.db`, the records in `semtrace.db`). The copy takes both files' write locks for
an instant (a writer's transaction in progress finishes first: the service's group
commit, a shred, an audit entry), opens one read transaction on each file while it
holds them, and lets go: the service goes on writing (WAL) while the two snapshots,
taken at one moment at which no write was half done, are exported. What a copy holds is
thus a state the store could have been left in by a crash, which every command opens.

A backup holds every data key that was live when it was taken. Retention and erasure
later destroy those keys in the live store, not in the copy: `restore` runs retention at
once (what expired since is shredded again) and re-applies the erasures the old store's
audit log recorded after the copy (`erasures_from`); it warns when it cannot.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.checksum import file_digest
from appliance.errors import InputError, SemtraceError
from appliance.keys import (
    KEYRING_FILE,
    REVEAL_PRIVATE_FILE,
    REVEAL_PUBLIC_FILE,
    ROTATION_JOURNAL,
    Credential,
    Keyring,
    fsync_dir,
    open_keyring,
)
from appliance.keys.durable import fsync_path
from appliance.store import DB_FILE, KEYS_FILE
from appliance.store.core import connect
from appliance.words import plural

MANIFEST = "backup.json"
POLICIES = "policies"  # the policy files in use when the copy was taken
MANIFEST_FORMAT = 1
DATABASES = ((KEYS_FILE, "keys"), (DB_FILE, "data"))
PLAIN_FILES = (KEYRING_FILE, REVEAL_PRIVATE_FILE, REVEAL_PUBLIC_FILE)
Progress = Callable[[str, int, int], None]  # (step, done, total)


@dataclass(frozen=True)
class BackupReport:
    """What `backup` copied."""

    destination: str
    taken_at: str
    records: int
    live_buckets: int
    audit_seq: int
    bytes: int
    files: tuple[str, ...]
    # legal holds (positions in retention.toml, from 1) named by user_id, which the copy of
    # the policy names by pseudonym
    holds_by_pseudonym: tuple[int, ...] = ()


# ---------------------------------------------------------------- checks

def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except OSError:
        return False


def check_destination(data_dir: Path, dest: Path, *, what: str = "The backup folder") -> None:
    """Refuse, in one sentence and before anything is written, a destination that is
    inside the data dir, not empty, a file, missing its parent, or not writable."""
    if _inside(dest, data_dir):
        raise InputError(f"{what} {dest} is inside the data dir {data_dir}; a copy kept "
                         "there is lost with it. Choose a folder elsewhere; nothing was "
                         "written.")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{what} {dest} is a file; choose a new or empty folder. Nothing "
                         "was written.")
    if dest.is_dir() and any(dest.iterdir()):
        raise InputError(f"{what} {dest} is not empty; choose a new or empty folder (a "
                         "backup never overwrites). Nothing was written.")
    folder = dest if dest.is_dir() else dest.parent
    if not folder.is_dir():
        raise InputError(f"The folder {folder} of {dest} does not exist; nothing was written.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{what} {dest} is not writable for this user; nothing was "
                         "written.")
    need = sum((data_dir / name).stat().st_size for name, _ in DATABASES
               if (data_dir / name).exists())
    free = shutil.disk_usage(folder).free
    if free < need:
        raise InputError(f"{what} {dest} is on a disk with {free // 2**20} MiB free; the copy "
                         f"needs about {-(-need // 2**20)} MiB. Nothing was written.")


def _check_source(data_dir: Path) -> None:
    from appliance.runtime import require_data_dir, store_damage

    require_data_dir(data_dir)
    damage = store_damage(data_dir)
    if damage:
        raise SemtraceError(damage)
    if (data_dir / ROTATION_JOURNAL).exists():
        raise SemtraceError(f"A key rotation of {data_dir} is not complete; open the data dir "
                            "once (any command) to finish it, then back it up.")


# ---------------------------------------------------------------- backup

@contextlib.contextmanager
def _snapshots(data_dir: Path, ring: Keyring, dest: Path) -> Iterator[list[Any]]:
    """One connection per database file, its copy ATTACHed as `backup`, each inside a read
    transaction begun while both files' write locks were held (then released)."""
    readers: list[Any] = []
    locks: list[Any] = []
    try:
        for name, purpose in DATABASES:
            conn = connect(data_dir / name, ring, purpose=purpose)
            readers.append(conn)
            conn.execute("PRAGMA temp_store = MEMORY")  # no temp file holds a decrypted page
            quoted = str(dest / name).replace("'", "''")
            conn.execute(f"ATTACH DATABASE '{quoted}' AS backup "
                         f"KEY \"{ring.sqlcipher_key(purpose)}\"")
            conn.execute("PRAGMA backup.auto_vacuum = INCREMENTAL")
        try:
            # the data file first: the service writes a new bucket's key inside its data
            # transaction, so once this lock is ours no key insert is half done
            for name, purpose in reversed(DATABASES):
                lock = connect(data_dir / name, ring, purpose=purpose)
                locks.append(lock)
                lock.execute("BEGIN IMMEDIATE")
            for conn in readers:
                conn.execute("BEGIN")
                conn.execute("SELECT count(*) FROM main.sqlite_master").fetchone()
        finally:
            for lock in locks:
                with contextlib.suppress(Exception):
                    lock.execute("ROLLBACK")
                lock.close()
        yield readers
    finally:
        for conn in readers:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            with contextlib.suppress(Exception):
                conn.execute("DETACH DATABASE backup")
            conn.close()


def schema_gap(folder: Path, ring: Keyring) -> tuple[list[str], list[str]]:
    """(migrations recorded in the data dir or backup `folder` that this version does not
    know: a newer one wrote it; migrations this version would still apply to it: an
    earlier one wrote it), each as `file name`, read-only."""
    from appliance import migrations

    unknown: list[str] = []
    pending: list[str] = []
    for name, purpose in DATABASES:
        known = migrations.KEY_MIGRATIONS if purpose == "keys" else migrations.MIGRATIONS
        conn = connect(folder / name, ring, readonly=True, purpose=purpose)
        try:
            names = {fn.__name__ for fn in known}
            unknown += [f"{name} {m}" for m in migrations.applied(conn) if m not in names]
            pending += [f"{name} {m}" for m in migrations.pending(conn, known)]
        finally:
            conn.close()
    return unknown, pending


def newer_migrations(folder: Path, ring: Keyring) -> list[str]:
    """Migrations recorded in `folder`'s databases that this version does not know."""
    return schema_gap(folder, ring)[0]


def _busy(exc: Exception) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def take_backup(data_dir: Path, cred: Credential, dest: Path, *,
                progress: Progress | None = None) -> BackupReport:
    """Copy a (possibly live) data dir into the new or empty folder `dest`, still encrypted,
    and check the copy opens; the live store gets a `backup` audit entry."""
    import sqlcipher3

    from appliance.audit import verify_chain
    from appliance.lock import keep_owner
    from appliance.store.pairing import refuse_keys_older

    _check_source(data_dir)
    check_destination(data_dir, dest)
    ring = open_keyring(data_dir, cred)  # a wrong credential stops here, nothing written
    unknown, pending = schema_gap(data_dir, ring)  # its audit log must be of our schema
    if unknown:
        raise SemtraceError(f"{data_dir} was upgraded by a newer version of Semtrace (its "
                            f"migration {unknown[0]} is unknown to this one); back it up with "
                            "that version or a newer one. Nothing was written.")
    if pending:  # this code cannot check or extend an earlier schema's audit chain
        raise SemtraceError(f"{data_dir} was written by an earlier version of Semtrace and is "
                            f"not migrated yet ({plural(len(pending), 'migration')} pending, from "
                            f"{pending[0]}): back it up with that version, or start this "
                            "one's service once (it migrates at start) and back it up then. "
                            "Nothing was written.")
    refuse_keys_older(data_dir, ring)  # a copy of it would not restore
    keep_owner(data_dir)  # root backing up the service's dir: its -wal/-shm stay the service's
    step = progress or (lambda _s, _d, _t: None)
    created = not dest.exists()
    dest.mkdir(mode=0o700, exist_ok=True)
    os.chmod(dest, 0o700)
    made: list[Path] = []
    try:
        taken = datetime.now(UTC)
        try:
            with _snapshots(data_dir, ring, dest) as (keys_conn, data_conn):
                made += [dest / KEYS_FILE, dest / DB_FILE]
                records = int(data_conn.execute("SELECT count(*) FROM records").fetchone()[0])
                live = int(data_conn.execute("SELECT count(*) FROM buckets WHERE "
                                             "destroyed_at IS NULL").fetchone()[0])
                row = data_conn.execute("SELECT max(seq) FROM audit").fetchone()
                seq = int(row[0] or 0)
                pages = [int(c.execute("PRAGMA main.page_count").fetchone()[0])
                         for c in (keys_conn, data_conn)]
                done = 0
                for conn, n, name in zip((keys_conn, data_conn), pages, (KEYS_FILE, DB_FILE),
                                         strict=True):
                    step(f"copying {name}", done, sum(pages))
                    conn.execute("SELECT sqlcipher_export('backup')")
                    conn.execute("COMMIT")  # writes the copy; the live file was only read
                    done += n
                step("copied", done, sum(pages))
        except sqlcipher3.OperationalError as exc:
            if _busy(exc):
                raise SemtraceError("The store stayed busy for 30 s (a long shred or "
                                    "import?); try the backup again. Nothing was kept.") \
                    from None
            raise
        for name in PLAIN_FILES:
            if (data_dir / name).exists():
                made.append(dest / name)
                shutil.copyfile(data_dir / name, dest / name)
        copied_policies, by_pseudonym = _copy_policies(dest / POLICIES, ring)
        made += copied_policies
        for path in made:
            os.chmod(path, 0o600)
            fsync_path(path)
        step("checking the copy", 0, 1)
        copy_ring = open_keyring(dest, cred)
        db = connect(dest / DB_FILE, copy_ring, readonly=True)
        kdb = connect(dest / KEYS_FILE, copy_ring, readonly=True, purpose="keys")
        try:
            for conn, name in ((db, DB_FILE), (kdb, KEYS_FILE)):
                if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                    raise SemtraceError(f"The copy of {name} does not pass its check; the "
                                        "backup was removed.")
            copied = int(db.execute("SELECT count(*) FROM records").fetchone()[0])
            chain = verify_chain(db, kdb)
        finally:
            db.close()
            kdb.close()
        if copied != records or not chain.ok:
            raise SemtraceError("The copy does not match the store it was taken from "
                                f"({chain.problem or 'record count'}); the backup was removed.")
        sizes = {str(p.relative_to(dest)): p.stat().st_size for p in made}
        files = {name: {"bytes": n, "sha256": file_digest(dest / name).hex()}
                 for name, n in sizes.items()}
        manifest = {"format": MANIFEST_FORMAT, "semtrace": __version__,
                    "taken_at": taken.isoformat(), "audit_seq": seq, "records": records,
                    "files": files}
        tmp = dest / (MANIFEST + ".tmp")
        made += [tmp, dest / MANIFEST]
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        os.chmod(tmp, 0o600)
        fsync_path(tmp)
        tmp.replace(dest / MANIFEST)  # last: a folder without it is no backup
        fsync_dir(dest)
        step("checking the copy", 1, 1)
    except BaseException as exc:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        for name, _ in DATABASES:
            for suffix in ("-journal", "-wal", "-shm"):
                with contextlib.suppress(OSError):
                    (dest / (name + suffix)).unlink()
        with contextlib.suppress(OSError):
            (dest / POLICIES).rmdir()
        if created:
            with contextlib.suppress(OSError):
                dest.rmdir()
        from appliance.runtime import _no_space

        full = _no_space(exc, dest.parent) if isinstance(exc, Exception) else None
        if full is not None:
            raise SemtraceError(f"The backup into {dest} failed: {full}; the partial copy was "
                                "removed.") from None
        raise
    _record(data_dir, ring, "backup", {"audit_seq": seq, "records": records,
                                       "taken_at": taken.isoformat()})
    total = sum(sizes.values())
    return BackupReport(destination=str(dest), taken_at=taken.isoformat(), records=records,
                        live_buckets=live, audit_seq=seq, bytes=total,
                        files=tuple(sorted(files)), holds_by_pseudonym=tuple(by_pseudonym))


def _copy_policies(folder: Path, ring: Keyring) -> tuple[list[Path], list[int]]:
    """The policies in use (retention periods, legal holds, roles...), beside the store:
    what a restore shreds is decided by them. `retention.toml`'s holds by `user_id` are
    written by pseudonym (`policy_copy.py`): their positions (from 1) are returned."""
    from appliance.config import policy_dir
    from appliance.policy_copy import by_pseudonym

    folder.mkdir(mode=0o700)
    made, rewritten = [], []
    for src in sorted(policy_dir().iterdir()):
        if src.is_file() and src.suffix in (".toml", ".json"):
            copy = (by_pseudonym(src.read_text(), ring) if src.name == "retention.toml"
                    else None)
            if copy is None:
                shutil.copyfile(src, folder / src.name)
            else:
                (folder / src.name).write_text(copy[0])
                rewritten = copy[1]
            made.append(folder / src.name)
    return made, rewritten


def _record(data_dir: Path, ring: Keyring, event: str, details: dict[str, Any]) -> None:
    """An audit entry in the store of `data_dir` (its own short transaction)."""
    from appliance.audit import AuditLog

    db = connect(data_dir / DB_FILE, ring)
    kdb = connect(data_dir / KEYS_FILE, ring, purpose="keys", synchronous="FULL")
    try:
        AuditLog(db, ring.audit_signer(), anchor=kdb).append(event, details)
    finally:
        db.close()
        kdb.close()
