"""Private JSON files in the data dir, read with one clear error and written crash-safely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from appliance.errors import DamagedFile, SemtraceError


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a private JSON file so that a crash leaves the old file or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_path(path: Path) -> None:
    """Flush a file's (or a directory's) contents to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable."""
    fsync_path(directory)


def read_json(path: Path) -> dict[str, Any]:
    """A key file's JSON object; one sentence naming the file if it is missing, unreadable
    or damaged (DamagedFile, exit 2, as a damaged database file is)."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise SemtraceError(
            f"{path.parent} is not a Semtrace data dir (run `semtrace init`).") from None
    except PermissionError:
        raise DamagedFile(f"{path} cannot be read by this user: run this as the user who "
                          "owns the data dir; nothing was changed.") from None
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict):
        raise damaged(path)
    return meta


def damaged(path: Path) -> DamagedFile:
    """The sentence of a key file of the data dir that is not as Semtrace wrote it."""
    return DamagedFile(f"{path} is damaged (not as Semtrace wrote it): restore it from a "
                       "backup of the data dir, or give the right --data-dir; nothing was "
                       "changed.")
