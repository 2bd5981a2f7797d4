"""Where a user's data dir is and whether it holds a store: the standard library only, so
that a command that needs no more than the path (`semtrace send`, which only talks to the
service's socket) loads none of the store's libraries (tests/test_cli_start.py)."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.constants import DATA_DIR_ENV, KEYRING_FILE


def default_data_dir() -> Path:
    """$SEMTRACE_DATA_DIR, else a per-user directory."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "semtrace"


def is_initialised(data_dir: Path) -> bool:
    """Whether `data_dir` holds a keyring (False where this user may not look: the
    commands then name the folder closed to them, `require_data_dir`)."""
    try:
        return (data_dir / KEYRING_FILE).exists()
    except PermissionError:
        return False
