"""Restore a copy made by `semtrace backup` into a new data dir.

The copy holds every data key that was live when it was taken; the store it came from
may have destroyed some since (retention, erasure). So a restore does not end with the
files in place: it runs retention at once (everything past its retention period by the
current policy is shredded again), and re-applies the erasures recorded in the old
store's audit log after the copy was taken, when that store is given (`erasures_from`).
Without it, the report warns that erasures made after the copy are not applied.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.backup import (
    MANIFEST,
    MANIFEST_FORMAT,
    _inside,
    newer_migrations,
)
from appliance.checksum import file_digest
from appliance.config import Policies
from appliance.errors import InputError, SemtraceError, WrongKey
from appliance.keys import KEYRING_FILE, Credential, Keyring, fsync_dir, open_keyring
from appliance.keys.durable import fsync_path
from appliance.store import DB_FILE, KEYS_FILE

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RestoreReport:
    """What `restore` put in place and what it destroyed again."""

    data_dir: str
    taken_at: str
    records: int
    buckets_shredded: int
    records_shredded: int
    erasures_reapplied: int
    audit_ok: bool
    warnings: tuple[str, ...] = ()
    # a copy an earlier version took: the migrations applied to it, `file:name` in order
    migrated: tuple[str, ...] = ()


def read_manifest(backup: Path) -> dict[str, Any]:
    """The backup's manifest, its files checked against their sizes and checksums."""
    if not backup.is_dir():
        raise InputError(f"{backup} is not a folder; give the folder `semtrace backup` "
                         "wrote.")
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError
    except FileNotFoundError:
        raise InputError(f"{backup} holds no {MANIFEST}: it is not a complete backup made by "
                         "`semtrace backup`.") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{backup / MANIFEST} is damaged or of an unknown format.") from None
    for name in (KEYRING_FILE, DB_FILE, KEYS_FILE):
        if name not in files:
            raise InputError(f"The backup {backup} lacks {name}; it cannot be restored.")
    for name, meta in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise InputError(f"{backup / MANIFEST} names a file outside the backup; it is "
                             "damaged. Nothing was restored.")
        path = backup / name
        if not path.is_file() or path.stat().st_size != meta.get("bytes") \
                or file_digest(path).hex() != meta.get("sha256"):
            raise InputError(f"{path} does not match the backup's checksum: the copy is "
                             "damaged. Nothing was restored.")
    return dict(manifest)




def folder_of(target: Path) -> Path:
    """The folder whose disk `target` is on (itself once made, else its parent)."""
    return target if target.is_dir() else target.parent


def _check_target(backup: Path, target: Path, manifest: dict[str, Any]) -> None:
    from appliance.runtime import check_new_data_dir

    if _inside(target, backup) or _inside(backup, target):
        raise InputError(f"The data dir {target} and the backup {backup} overlap; restore "
                         "into a folder of its own.")
    try:
        check_new_data_dir(target)
    except SemtraceError as exc:
        raise InputError(f"{exc} Nothing was restored.") from None
    folder = folder_of(target)
    if not folder.is_dir():
        raise InputError(f"The folder {folder} of {target} does not exist; nothing was "
                         "restored.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{target} is not writable for this user; nothing was restored.")
    need = sum(int(f.get("bytes") or 0) for name, f in manifest["files"].items()
               if "/" not in name and isinstance(f, dict))
    free = shutil.disk_usage(folder).free
    if free < need:
        raise InputError(f"{target} is on a disk with {free // 2**20} MiB free; the restore "
                         f"needs about {-(-need // 2**20)} MiB. Nothing was restored.")


def _policy_change(backup: Path, ring: Keyring) -> str | None:
    """One sentence when the retention policy in use does not decide as the one saved with
    the backup (its periods and legal holds decide what a restore shreds; a hold by user id
    and the copy's by pseudonym of the same user decide alike), else None."""
    from appliance.backup import POLICIES
    from appliance.config import policy_dir
    from appliance.policy_copy import same_retention

    saved = backup / POLICIES / "retention.toml"
    current = policy_dir() / "retention.toml"
    if not saved.exists():
        return None
    try:
        same = same_retention(saved.read_text(), current.read_text(), ring)
    except OSError:
        same = False
    if same:
        return None
    return (f"The retention policy in use ({current}) differs from the one saved with the "
            f"backup ({saved}): its periods and legal holds decide what restore shreds. Put "
            "the backup's policies/ in place first, or give --current-policies to shred by "
            "the ones in use; nothing was restored.")


def _erasures_since(old_dir: Path, cred: Credential, backup: Path,
                    seq: int) -> list[tuple[int, dict[str, Any]]]:
    """The `erase` entries of the old store's audit log after entry `seq`, once its entry
    `seq` is shown to be the backup's last one (the same store)."""
    from appliance.runtime import is_initialised
    from appliance.store.core import connect

    if not is_initialised(old_dir) or not (old_dir / DB_FILE).exists():
        raise InputError(f"--erasures-from {old_dir} is not a Semtrace data dir.")
    ring = open_keyring(old_dir, cred)
    copy_ring = open_keyring(backup, cred)
    old = connect(old_dir / DB_FILE, ring, readonly=True)
    copy = connect(backup / DB_FILE, copy_ring, readonly=True)
    try:
        q = "SELECT hash FROM audit WHERE seq = ?"
        mine, theirs = copy.execute(q, (seq,)).fetchone(), old.execute(q, (seq,)).fetchone()
        if seq and (mine is None or theirs is None or mine[0] != theirs[0]):
            raise InputError(f"--erasures-from {old_dir} is not the store this backup was "
                             "taken from (their audit logs differ); nothing was restored.")
        rows = old.execute("SELECT seq, details FROM audit WHERE seq > ? AND event = 'erase' "
                           "ORDER BY seq", (seq,)).fetchall()
    finally:
        old.close()
        copy.close()
    return [(int(s), json.loads(d)) for s, d in rows]


def restore_backup(backup: Path, target: Path, cred: Credential, policies: Policies, *,
                   erasures_from: Path | None = None, current_policies: bool = False,
                   progress: Progress | None = None) -> RestoreReport:
    """Put the backup in `target` (new or empty), shred again what the live store had
    destroyed since, and open it; InputError / WrongKey in one sentence, nothing kept."""
    from appliance.runtime import prepare_dir, remove_made

    step = progress or (lambda _s, _d, _t: None)
    manifest = read_manifest(backup)
    _check_target(backup, target, manifest)
    try:
        ring = open_keyring(backup, cred)  # the credential that was current when it was taken
    except WrongKey:
        raise WrongKey(f"The passphrase or key does not open the backup {backup}: it opens "
                       "with the one that was current when it was taken. Nothing was "
                       "restored.") from None
    if not current_policies and (changed := _policy_change(backup, ring)):
        raise InputError(changed)
    if unknown := newer_migrations(backup, ring):
        raise SemtraceError(f"The backup {backup} holds a data dir a newer version of Semtrace "
                            f"had migrated (its migration {unknown[0]} is unknown to this "
                            "one); restore it with that version or a newer one. Nothing was "
                            "restored.")
    seq = int(manifest.get("audit_seq") or 0)
    erasures = _erasures_since(erasures_from, cred, backup, seq) \
        if erasures_from is not None else None
    names = sorted(n for n in manifest["files"] if "/" not in n)  # policies/ stay there
    created = not target.exists()
    found = set() if created else {p.name for p in target.iterdir()}
    try:
        prepare_dir(target)
        for i, name in enumerate(names):
            step(f"copying {name}", i, len(names))
            tmp = target / (name + ".restoring")
            shutil.copyfile(backup / name, tmp)
            os.chmod(tmp, 0o600)
            fsync_path(tmp)
            tmp.replace(target / name)
        fsync_dir(target)
        step("shredding what expired since", len(names), len(names))
        report = _settle(target, cred, policies, manifest, erasures or [])
    except BaseException as exc:
        remove_made(target, found, created=created)
        from appliance.runtime import _no_space

        # the copy's OSError names the backup's file it read: the target's disk is what
        # filled up
        full = _no_space(exc, folder_of(target)) if isinstance(exc, Exception) else None
        if full is not None:
            raise SemtraceError(f"The restore into {target} failed: {full}; nothing was "
                                "left of it.") from None
        raise
    warnings: list[str] = []
    if erasures is None:
        warnings.append(f"This copy was taken at {manifest['taken_at']}: erasures made after "
                        "that are not applied to it; give the old data dir with "
                        "--erasures-from to re-apply them, or erase those users again.")
    if not report.audit_ok:
        warnings.append("The restored audit log does not verify: run `semtrace audit "
                        "verify` on it.")
    return RestoreReport(**{**report.__dict__, "warnings": tuple(warnings)})


def _settle(target: Path, cred: Credential, policies: Policies, manifest: dict[str, Any],
            erasures: list[tuple[int, dict[str, Any]]]) -> RestoreReport:
    """Open the restored store: audit check, erasures again, retention, a `restore` entry."""
    from appliance.audit import AuditLog, verify_chain
    from appliance.lock import DataDirLock
    from appliance.retention import Shredder, live_buckets, run_retention
    from appliance.runtime import open_runtime
    from appliance.store.erasures import Tombstone

    rt = open_runtime(target, cred, policies=policies)
    migrated = tuple(f"{name}:{m}" for name, ran in rt.store.migrated.items() for m in ran)
    lock = DataDirLock(target)
    lock.acquire()
    try:
        store = rt.store
        ok = verify_chain(store.db, store.keys_db).ok
        audit = AuditLog(store.db, rt.keyring.audit_signer(), anchor=store.keys_db)
        shredder = Shredder(store, audit)
        for seq, details in erasures:
            tenant, user = str(details.get("tenant")), str(details.get("user"))
            buckets = live_buckets(store, tenant=tenant, user=user)
            records, _ = shredder.shred_buckets(buckets, reason="erasure")
            now = datetime.now(UTC).isoformat()
            # its tombstone too: prompts sent before that erasure are not stored here
            done = datetime.fromisoformat(str(details.get("completed_at") or now)).timestamp()
            store.keep_tombstones([Tombstone(tenant, user, done, done)])
            audit.append("erase", {
                "tenant": tenant, "user": user, "buckets": len(buckets), "records": records,
                "reason": f"re-applied at restore: entry {seq} of the earlier store's log",
                "requested_at": details.get("requested_at"), "completed_at": now,
                "unattributable_buckets": 0})
        if erasures:
            store.compact()
        run = run_retention(shredder, policies.retention, rt.keyring)
        records = int(store.db.execute("SELECT count(*) FROM records").fetchone()[0])
        from appliance.cluster.given_away import note_restored

        with store.db:  # a cluster node's original may have consumed after the backup
            note_restored(store.db, str(manifest["taken_at"]))
        audit.append("restore", {"taken_at": manifest["taken_at"],
                                 "backup_audit_seq": manifest.get("audit_seq"),
                                 "erasures_reapplied": len(erasures)})
    finally:
        lock.release()
        rt.close()
    return RestoreReport(data_dir=str(target), taken_at=str(manifest["taken_at"]),
                         records=records, buckets_shredded=run.shredded,
                         records_shredded=run.records, erasures_reapplied=len(erasures),
                         audit_ok=ok, migrated=migrated)
