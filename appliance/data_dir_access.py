"""Who may open a data dir: a folder (or a file in it) closed to this user is named with
its owner, in one sentence, before anything reads it."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.keys import KEYRING_FILE


def _who(uid: int) -> tuple[str, str]:
    """(the user with their uid, the name to run as: the user name, else the uid)."""
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}", f"uid {uid}"
    return f"{name} (uid {uid})", name


def _opens(path: Path) -> bool:
    """Whether this process may list the folder or read the file `path` (True where it is
    missing: other checks name that). Tried, not asked with access(2), which leaves out a
    capability such as CAP_DAC_READ_SEARCH that a reader may hold."""
    try:
        if path.is_dir():
            with os.scandir(path):
                return True
        with open(path, "rb"):
            return True
    except FileNotFoundError:
        return True
    except PermissionError:
        return False


def closed_to_caller(data_dir: Path) -> str | None:
    """The sentence for a data dir (or one of its files) this user may not read, naming
    who owns it, else None: such a folder read as "not a data dir", or "Permission denied:
    .../keyring.json"."""
    me = _who(os.getuid())[0]
    try:
        st = data_dir.stat()
    except FileNotFoundError:
        return None
    except PermissionError:
        return (f"The data dir {data_dir} cannot be reached by this user, {me}: a folder on "
                "its path is closed to it; run semtrace as the data dir's owner or as root. "
                "Nothing was changed.")
    if not data_dir.is_dir():
        return None
    if not _opens(data_dir):
        owner, run_as = _who(st.st_uid)
        return (f"The data dir {data_dir} belongs to {owner}, mode {st.st_mode & 0o777:o}, "
                f"and this user, {me}, may not read it: run semtrace as {run_as} or as root. "
                "Nothing was changed.")
    for name in (KEYRING_FILE, "semtrace.db", "keys.db"):
        p = data_dir / name
        if not _opens(p):
            uid = p.stat().st_uid
            fix = (f"run semtrace as {_who(uid)[1]} or as root" if uid == st.st_uid else
                   f"give the data dir's files back to its owner, {_who(st.st_uid)[0]} "
                   f"(`chown -R {st.st_uid}: {data_dir}`)")
            return (f"{p} belongs to {_who(uid)[0]} and this user, {me}, may not read it: "
                    f"{fix}. Nothing was changed.")
    return None


def loose_modes(data_dir: Path) -> list[str]:
    """A sentence for the data dir, and each key or database file in it, that other users
    may read (doctor's problems; `serve --check` and serve's log warn of them)."""
    said: list[str] = []
    try:
        mode = data_dir.stat().st_mode & 0o777
        if mode & 0o077:
            said.append(f"The data dir {data_dir} is mode {mode:o}; it should be 700.")
        # the key files: the master key's salt and check, the compliance key (its private
        # half under the compliance passphrase: readable, it can be attacked offline)
        for name in (KEYRING_FILE, "reveal-key.json", "rotation.json", "semtrace.db",
                     "keys.db"):
            p = data_dir / name
            if p.exists() and p.stat().st_mode & 0o077:
                said.append(f"{p} is readable by others; it should be 600.")
    except OSError:  # a folder closed to this user: named by the checks of access
        return []
    return said


def low_space(data_dir: Path) -> list[str]:
    """A sentence when the data dir's disk has less free space than its semtrace.db takes
    (`keys rotate` writes a copy of it; a full disk refuses every prompt), else none."""
    import shutil

    try:
        need = (data_dir / "semtrace.db").stat().st_size
        free = shutil.disk_usage(data_dir).free
    except OSError:  # missing, or closed to this user: named by the other checks
        return []
    if free >= need:
        return []
    return [f"The disk of {data_dir} has {free // 2**20} MiB free, less than its semtrace.db "
            f"takes ({-(-need // 2**20)} MiB): `semtrace keys rotate` needs room for a copy "
            "of it, and once the disk is full every prompt is refused (disk_full); free "
            "some space."]
