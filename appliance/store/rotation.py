"""Key rotation, journalled so that a crash at any point is completed on the next open.

    1. journal    `rotation.json`: both keyring descriptions, each master key wrapped
                  under the other (keys.begin_rotation). Before it is durable nothing
                  has changed; after it, the rotation only ever moves forward.
    2. rewrap     every DEK re-wrapped under the new wrapping key, one transaction in
                  keys.db (a DEK that already opens under the new key is left as is).
    3. keys       keys.db exported under its new SQLCipher key to a side file, which
                  then replaces it (rename: the file is under one key or the other).
    4. data       the same for semtrace.db.
    5. install    keyring.json replaced by the new description (rename).
    6. audit      a `key_rotation` entry, once per journal id.
    7. finish     the journal removed.

Each step looks at what is on disk (which key opens a file) before acting, so
running the sequence again after a crash at any point finishes the rotation.
Pseudonyms never change: the pseudonym key is carried (appliance.keys).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import failpoints
from appliance.errors import SemtraceError, WrongKey
from appliance.keys import (
    Credential,
    Keyring,
    Rotation,
    begin_rotation,
    discard_unbegun_rotation,
    end_rotation,
    fsync_dir,
    install_rotated_keyring,
)
from appliance.store.core import DB_FILE, KEYS_FILE, Store, connect
from appliance.store.maintenance import _bucket_aad

SIDE_SUFFIX = ".rotating"
Progress = Callable[[str, int, int], None]  # (step, done, total): pages re-encrypted


def _quiet(_step: str, _done: int, _total: int) -> None:
    """No progress shown (a rotation completed on open, the tests)."""


def _no_fault(step: str) -> None:
    """Called after each step; fault-injection tests replace it (tests/faults/)."""


after_step: Callable[[str], None] = _no_fault


def _step(name: str) -> None:
    after_step(name)
    failpoints.point("rotation")  # SEMTRACE_FAILPOINT=rotation:n kills after the n-th step


def _open_either(path: Path, purpose: str, rot: Rotation, *,
                 readonly: bool = False) -> tuple[Any, str]:
    """Open a database file under whichever of the two keys it is under now."""
    for name, ring in (("new", rot.new), ("old", rot.old)):
        try:
            return connect(path, ring, purpose=purpose, readonly=readonly,
                           synchronous="FULL"), name
        except WrongKey:
            continue
    raise SemtraceError(f"{path.name} opens with neither the old nor the new key; "
                        "restore it from a backup.")


def _rewrap(data_dir: Path, rot: Rotation) -> int:
    """Re-wrap every DEK under the new key (idempotent); returns the DEKs held."""
    kconn, which = _open_either(data_dir / KEYS_FILE, "keys", rot)
    try:
        rows = kconn.execute("SELECT bucket_id, wrapped FROM deks").fetchall()
        if which == "new":
            return len(rows)
        dconn, _ = _open_either(data_dir / DB_FILE, "data", rot, readonly=True)
        try:
            meta = {r[0]: (r[1], r[2], r[3], r[4]) for r in dconn.execute(
                "SELECT id, tenant, user, day, kind FROM buckets WHERE destroyed_at IS NULL")}
        finally:
            dconn.close()
        kconn.execute("BEGIN IMMEDIATE")
        try:
            for bid, wrapped in rows:
                if bid not in meta or None in meta[bid]:
                    # a key whose bucket never committed (or is closed) decrypts nothing
                    kconn.execute("DELETE FROM deks WHERE bucket_id=?", (bid,))
                    continue
                aad = _bucket_aad(*meta[bid])
                with contextlib.suppress(SemtraceError):
                    rot.new.unwrap(wrapped, aad)
                    continue  # already under the new key
                kconn.execute("UPDATE deks SET wrapped=? WHERE bucket_id=?",
                              (rot.old.rewrap(wrapped, aad, rot.new), bid))
            kconn.execute("COMMIT")
        except BaseException:
            kconn.execute("ROLLBACK")
            raise
        return int(kconn.execute("SELECT count(*) FROM deks").fetchone()[0])
    finally:
        kconn.close()


def _pages(path: Path, purpose: str, rot: Rotation) -> int:
    """The pages of a database file still under the old key (0 once re-encrypted)."""
    conn, which = _open_either(path, purpose, rot, readonly=True)
    try:
        return 0 if which == "new" else int(conn.execute("PRAGMA page_count").fetchone()[0])
    finally:
        conn.close()


def _reencrypt(path: Path, purpose: str, rot: Rotation, step: Progress = _quiet,
               done: int = 0, total: int = 0) -> None:
    """Put a database file under its new SQLCipher key: export to a side file, rename.
    `step` is told before the export (of `total` pages, `done` so far)."""
    side = path.with_name(path.name + SIDE_SUFFIX)
    conn, which = _open_either(path, purpose, rot)
    if which == "new":
        conn.close()
        side.unlink(missing_ok=True)
        return
    try:
        side.unlink(missing_ok=True)  # a partial export from a killed attempt
        step(f"re-encrypting {path.name}", done, total)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        quoted = str(side).replace("'", "''")
        conn.execute(f"ATTACH DATABASE '{quoted}' AS rotated "
                     f"KEY \"{rot.new.sqlcipher_key(purpose)}\"")
        conn.execute("PRAGMA rotated.auto_vacuum = INCREMENTAL")
        conn.execute("SELECT sqlcipher_export('rotated')")
        conn.execute("DETACH DATABASE rotated")
    finally:
        conn.close()
    fd = os.open(side, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _step(f"{purpose}-exported")
    # The old file's log is checkpointed and empty: it must never meet the new file.
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    os.chmod(side, 0o600)
    side.replace(path)
    fsync_dir(path.parent)


def _audit_once(data_dir: Path, rot: Rotation, deks: int, *, resumed: bool) -> None:
    from appliance.audit import AuditLog

    store = Store.open(data_dir, rot.new)
    try:
        done = store.db.execute(
            "SELECT 1 FROM audit WHERE event='key_rotation' AND "
            "json_extract(details, '$.journal') = ?", (rot.journal_id,)).fetchone()
        if done is None:
            AuditLog(store.db, rot.new.audit_signer(), anchor=store.keys_db).append(
                "key_rotation", {"deks_rewrapped": deks, "credential": rot.credential,
                                 "journal": rot.journal_id, "completed_on_open": resumed,
                                 "pseudonyms": "kept",
                                 # the signing key changes with the master key: a report
                                 # checked with the key saved before names the old one
                                 "audit_key": {"from": rot.old.audit_signer().key_id(),
                                               "to": rot.new.audit_signer().key_id()}})
    finally:
        store.close()


def complete_rotation(data_dir: Path, rot: Rotation, *, resumed: bool = False,
                      progress: Progress = _quiet) -> int:
    """Run (or finish) the steps after the journal; returns the DEKs now wrapped.
    `progress` hears of each file's export, by pages (the whole store is rewritten)."""
    progress("re-wrapping the data keys", 0, 0)
    deks = _rewrap(data_dir, rot)
    _step("rewrap")
    keys_pages = _pages(data_dir / KEYS_FILE, "keys", rot)
    total = keys_pages + _pages(data_dir / DB_FILE, "data", rot)
    _reencrypt(data_dir / KEYS_FILE, "keys", rot, progress, 0, total)
    _step("keys")
    _reencrypt(data_dir / DB_FILE, "data", rot, progress, keys_pages, total)
    _step("data")
    progress("re-encrypted", total, total)
    install_rotated_keyring(data_dir)
    _step("install")
    _audit_once(data_dir, rot, deks, resumed=resumed)
    _step("audit")
    end_rotation(data_dir)
    _step("finish")
    return deks


def rotate(data_dir: Path, old: Keyring, new_cred: Credential, *,
           progress: Progress = _quiet) -> int:
    """Rotate the master key of `data_dir` (the caller holds the data dir's lock)."""
    discard_unbegun_rotation(data_dir)
    rot = begin_rotation(data_dir, old, new_cred)
    _step("journal")
    return complete_rotation(data_dir, rot, progress=progress)


STEPS = ("journal", "rewrap", "keys-exported", "keys", "data-exported", "data", "install",
         "audit", "finish")
