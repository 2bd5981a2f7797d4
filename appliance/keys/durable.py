"""Private JSON files in the data dir, read with one clear error and written crash-safely."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from appliance.errors import SemtraceError


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
    """A key file's JSON object; SemtraceError naming the file if it is missing or damaged."""
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise SemtraceError(
            f"{path.parent} is not a Semtrace data dir (run `semtrace init`).") from None
    except (OSError, ValueError):
        raise SemtraceError(f"{path} is unreadable or damaged.") from None
    if not isinstance(meta, dict):
        raise SemtraceError(f"{path} is unreadable or damaged.")
    return meta
