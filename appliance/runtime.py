"""Open a data dir: credential -> keyring -> store (+ index and pipeline on demand).

Shared by the CLI, the service and the TUI so that every entry point opens a
store the same way and fails with the same sentences.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import constants
from appliance.config import Policies, load_policies
from appliance.data_dir import default_data_dir, is_initialised
from appliance.errors import InputError, SemtraceError
from appliance.keys import (
    Credential,
    Keyring,
    create_keyring,
    open_keyring,
    resume_rotation,
    rotation_pending,
)
from appliance.lock import keep_owner
from appliance.store import DB_FILE, KEYS_FILE, Store

if TYPE_CHECKING:
    from appliance.pipeline import Pipeline

DATA_DIR_ENV = constants.DATA_DIR_ENV


def _missing_hint(data_dir: Path) -> str:
    """What to do about a missing data dir: on a host where install.sh installed the service,
    root's own default folder is not the store (`sudo semtrace audit verify` was told to
    run `semtrace init`, which would make an empty one there)."""
    from appliance.config.paths import installed_service

    service = installed_service().get("data_dir")
    if (service is not None and not os.environ.get(DATA_DIR_ENV)
            and data_dir == default_data_dir() and service != data_dir):
        return (f"the default of this user; this host's service keeps its data in {service}: "
                f"give --data-dir {service}")
    return "run `semtrace init`"


def require_data_dir(data_dir: Path) -> None:
    """Refuse, as bad input (exit 2), a data dir that is missing, not a folder, holds no
    keyring or is closed to this user: the same sentence from every command."""
    from appliance.data_dir_access import closed_to_caller

    if closed := closed_to_caller(data_dir):
        raise InputError(closed)
    if not data_dir.exists():
        raise InputError(f"The data dir {data_dir} does not exist ({_missing_hint(data_dir)}).")
    if not data_dir.is_dir():
        raise InputError(f"The data dir {data_dir} is a file, not a folder.")
    if not is_initialised(data_dir):
        raise InputError(f"{data_dir} is not a Semtrace data dir (run `semtrace init`).")
    from appliance.backup import MANIFEST

    if (data_dir / MANIFEST).exists():
        # opening it would change it (its checksums, its -wal) and serve records shredded
        # or erased since it was taken without shredding them again
        raise InputError(f"{data_dir} is a backup made by `semtrace backup`; restore it "
                         f"(`semtrace restore {data_dir} --data-dir NEW`) instead of opening "
                         "it. Nothing was changed.")


def remove_made(directory: Path, found: set[str], *, created: bool) -> None:
    """Undo a half-made data dir: remove what is in `directory` but not in `found` (the
    names it held before), and the folder itself when it was `created`."""
    for p in directory.iterdir() if directory.exists() else []:
        if p.name in found:
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if created:
        with contextlib.suppress(OSError):
            directory.rmdir()


def prepare_dir(data_dir: Path) -> None:
    """Create the data dir with mode 0700 (or tighten an empty one)."""
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file, closed to this user, read-only
        raise InputError(f"The data dir {data_dir} cannot be created "
                         f"({(exc.strerror or type(exc).__name__).lower()}); nothing was "
                         "written.") from None
    os.chmod(data_dir, 0o700)
    (data_dir / "cache").mkdir(mode=0o700, exist_ok=True)


def check_new_data_dir(data_dir: Path) -> None:
    """Refuse, in one sentence, a data dir that `init` may not create or fill."""
    if data_dir.exists() and not data_dir.is_dir():
        raise InputError(f"{data_dir} is a file, not a directory; choose an empty or new "
                         "directory.")
    if is_initialised(data_dir):
        raise InputError(f"{data_dir} is already initialised (it holds a store); choose an "
                         "empty or new directory.")
    if data_dir.exists() and any(p.name != "cache" for p in data_dir.iterdir()):
        raise InputError(f"{data_dir} is not empty; choose an empty or new directory.")


def init_data_dir(data_dir: Path, cred: Credential, *,
                  compliance: Credential | None = None) -> Keyring:
    """Initialise a new data dir: keyring file, migrated empty store, first audit entry."""
    check_new_data_dir(data_dir)
    from appliance.audit import AuditLog
    from appliance.keys import create_reveal_key, require_distinct

    if compliance is not None:
        require_distinct(cred, compliance)  # before anything is written
    created = not data_dir.exists()
    found = set() if created else {p.name for p in data_dir.iterdir()}
    prepare_dir(data_dir)
    keep_owner(data_dir)  # root initialising the service user's (empty) folder
    try:
        ring = create_keyring(data_dir, cred)
        if compliance is not None:
            create_reveal_key(data_dir, compliance, ring)
        store = Store.open(data_dir, ring)
        try:
            AuditLog(store.db, ring.audit_signer(), anchor=store.keys_db).append(
                "init", {"credential": cred.kind, "compliance_key": compliance is not None})
        finally:
            store.close()
    except BaseException as exc:
        # a half-made data dir (a keyring, no store) is refused by every command and by
        # init itself: leave the folder as it was found, empty or absent
        full = _no_space(exc, data_dir) if isinstance(exc, Exception) else None
        remove_made(data_dir, found, created=created)
        if full is not None:
            raise SemtraceError(f"{data_dir} could not be initialised: {full}; nothing was "
                                "left in it.") from None
        raise
    return ring


def _no_space(exc: Exception, data_dir: Path) -> str | None:
    """Why the disk refused a write, if it did (a full disk, quota, I/O error), else None."""
    text = str(exc).lower()
    code = getattr(exc, "errno", None)
    if "disk is full" in text or code in (errno.ENOSPC, errno.EDQUOT):
        return "its disk is full"
    if code == errno.EFBIG:
        return "a file reached this process's file size limit (ulimit -f, LimitFSIZE=)"
    if "disk i/o error" in text or code == errno.EIO:
        try:
            free = shutil.disk_usage(data_dir).free
        except OSError:
            return "a disk I/O error"
        return f"a disk I/O error ({free // 1024} KiB free on its disk)"
    return None


@dataclass
class Runtime:
    """An opened data dir."""

    data_dir: Path
    keyring: Keyring
    store: Store
    policies: Policies
    extras: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        self.store.close()

    def migration_note(self) -> str | None:
        """One sentence naming the migrations this open applied to a data dir an earlier
        version wrote (None when it applied none): what an upgrade changed, said once."""
        done = self.store.migrated
        if not done:
            return None
        from appliance import __version__

        parts = "; ".join(f"{name} {', '.join(ran)}" for name, ran in done.items())
        return (f"{self.data_dir} was written by an earlier version and is now migrated to "
                f"this one's ({__version__}): {parts}.")


def store_damage(data_dir: Path, *, empty_too: bool = True) -> str | None:
    """One sentence when an initialised data dir's store is missing or emptied, else None."""
    if not (data_dir / DB_FILE).exists():
        return f"{data_dir} has a keyring but no store; it is damaged."
    if not (data_dir / KEYS_FILE).exists():
        # opening would make a new, empty key store: every record written so far would
        # read as shredded, and new keys would be mixed with the restored ones later
        return (f"{data_dir / KEYS_FILE} is missing: it holds the data key of every record "
                f"in {DB_FILE}; restore it from the same backup. Nothing was changed.")
    if empty_too and (data_dir / DB_FILE).stat().st_size == 0:
        # init writes the store's schema, so an empty file is one emptied or cut short:
        # opening it for writing would quietly make a new, empty store in its place
        return (f"{data_dir / DB_FILE} is empty; it is damaged (restore it from a backup). "
                "Nothing was changed.")
    return None


@dataclass(frozen=True)
class DataDirCheck:
    """What `serve --check` found in a data dir."""

    at_start: list[str]  # what `serve` will do to it at start
    keyring: Keyring | None  # the unlocked keyring; None while a key rotation is pending
    warnings: tuple[str, ...] = ()  # what is wrong that does not stop it (doctor: problems)


def inspect_data_dir(data_dir: Path, cred: Credential) -> DataDirCheck:
    """What `serve --check` and doctor say of a data dir, changing nothing in it: the
    credential opens it and both database files open under its keys, are no newer
    version's and are of one moment (a keys.db older than its semtrace.db is refused, one
    newer is a warning). Returns what `serve` will do at start (migrations to apply, a key
    rotation to complete) and the keyring it unlocked (a passphrase's Argon2id runs once
    for every check made on the store); SemtraceError / WrongKey in one sentence
    otherwise."""
    from appliance import migrations
    from appliance.errors import DamagedFile
    from appliance.store import KEYS_FILE, connect
    from appliance.store.pairing import data_older_sentence, keys_older_sentence

    require_data_dir(data_dir)
    damage = store_damage(data_dir)
    if damage:
        raise SemtraceError(damage)
    if rotation_pending(data_dir):
        resume_rotation(data_dir, cred)  # either credential of the rotation fits
        return DataDirCheck(["complete the interrupted key rotation"], None)
    ring = open_keyring(data_dir, cred)
    todo: list[str] = []
    conns: list[Any] = []
    try:
        for name, purpose, known in ((DB_FILE, "data", migrations.MIGRATIONS),
                                     (KEYS_FILE, "keys", migrations.KEY_MIGRATIONS)):
            conns.append(connect(data_dir / name, ring, readonly=True, purpose=purpose))
            migrations.refuse_newer(conns[-1], known, name=str(data_dir / name))
            todo += [f"apply migration {m} to {name}"
                     for m in migrations.pending(conns[-1], known)]
        if mismatch := keys_older_sentence(conns[0], conns[1], data_dir):
            raise DamagedFile(mismatch)  # what Store.open refuses
        behind = data_older_sentence(conns[0], conns[1], data_dir)
    finally:
        for conn in conns:
            conn.close()
    return DataDirCheck(todo, ring, (behind,) if behind else ())


def open_runtime(data_dir: Path, cred: Credential | None = None, *, keyring: Keyring | None = None,
                 readonly: bool = False, policies: Policies | None = None) -> Runtime:
    """Open an initialised data dir; WrongKey/SemtraceError with one sentence otherwise."""
    if keyring is None:
        require_data_dir(data_dir)
    damage = store_damage(data_dir, empty_too=keyring is None)
    if damage:
        raise SemtraceError(damage)
    keep_owner(data_dir)
    pol = policies or load_policies()
    if keyring is None:
        if cred is None:
            raise SemtraceError("No credential given.")
        keyring = finish_rotation(data_dir, cred) if rotation_pending(data_dir) \
            else open_keyring(data_dir, cred)
    store = Store.open(data_dir, keyring, readonly=readonly,
                       synchronous=pol.service.synchronous)
    return Runtime(data_dir=data_dir, keyring=keyring, store=store, policies=pol)


def finish_rotation(data_dir: Path, cred: Credential) -> Keyring:
    """Complete a key rotation that was interrupted; returns the new keyring.

    Either credential (the old or the new) completes it. Refused while another
    process holds the data dir (the rotation may still be running).
    """
    from appliance.lock import DataDirLock
    from appliance.store.rotation import complete_rotation

    rot = resume_rotation(data_dir, cred)
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except SemtraceError:
        raise SemtraceError("A key rotation is in progress on this data dir; try again when "
                            "it has finished.") from None
    try:
        if rotation_pending(data_dir):
            complete_rotation(data_dir, rot, resumed=True)
    finally:
        lock.release()
    return rot.new


def check_bundled_files(policies: Policies) -> None:
    """What `serve` loads besides the policies and the embedding model, checked without
    building the pipeline: the linker weights and the bundled name and city lists.
    ConfigError / ModelError naming the file (`serve --check`, `doctor`)."""
    from appliance.link.model import load_model
    from appliance.redact.gazetteer import load_names
    from appliance.redact.places import load_places

    load_model(policies.correlation)
    if policies.redaction.name_list_rank > 0:
        load_names(policies.redaction.name_list_rank)
    load_places()


def make_pipeline(rt: Runtime, *, rebuild_index: bool = True) -> Pipeline:
    """Build the full pipeline (Presidio, llama.cpp, linker, index) over an opened store."""
    from appliance.embed import LlamaEmbedder
    from appliance.index import VectorIndex
    from appliance.link import make_linker
    from appliance.pipeline import Pipeline
    from appliance.redact import Redactor
    from appliance.topics import TopicAssigner

    embedder = LlamaEmbedder(rt.policies.correlation.embedding)
    redactor = Redactor(rt.policies.redaction, cache_dir=rt.data_dir / "cache")
    pipe = Pipeline(store=rt.store, index=VectorIndex(embedder.dims), keyring=rt.keyring,
                    redactor=redactor, embedder=embedder,
                    linker=make_linker(rt.policies.correlation), policies=rt.policies,
                    topics=TopicAssigner(rt.store, rt.policies.privacy, dims=embedder.dims,
                                         retention=rt.policies.retention))
    if rebuild_index:
        pipe.rebuild_index()
    return pipe


def settle_heap() -> int:
    """Move everything loaded so far (models, lexicons, gazetteers, policies) out of the
    garbage collector's reach, so that a full collection while serving does not walk it.

    A long-lived `semtrace serve` process calls this once, after its pipeline is built:
    a full collection over the loaded redactor alone takes tens of milliseconds, which
    would otherwise land on whichever prompt happens to trigger it. Returns the number of
    objects frozen. Not for processes that build pipelines repeatedly (tests): frozen
    objects are never collected.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()

