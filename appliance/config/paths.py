"""Where policies and the bundled model live: env, source tree or install prefix."""

from __future__ import annotations

import os
import sys
from pathlib import Path

POLICY_DIR_ENV = "SEMTRACE_POLICY_DIR"
MODEL_DIR_ENV = "SEMTRACE_MODEL_DIR"
# appliance/config/paths.py -> the source tree (its policies/ and models/), if any.
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent


# Where install.sh puts the service's policies: an upgrade replaces the install prefix
# (pip removes and rewrites share/semtrace/policies), never this folder.
ETC_POLICY_DIR = Path("/etc/semtrace/policies")
# install.sh's record of the service's folders (--config-dir, --data-dir) in the venv, which
# pip never touches: the commands of that venv read the policies the service reads.
SERVICE_RECORD = Path(sys.prefix) / "share" / "semtrace-installer" / "service.conf"
SERVICE_DATA_DIR = Path("/var/lib/semtrace")
SERVICE_PASSPHRASE = Path("/etc/semtrace/passphrase")
# The query socket the unit's ExecStart= names (records of earlier installs do not say it).
SERVICE_QUERY_SOCKET = Path("/run/semtrace/query.sock")
SERVICE_SOCKET = Path("/run/semtrace/semtrace.sock")


def installed_service() -> dict[str, Path]:
    """The folders of the service this venv was installed for (policy_dir, data_dir,
    passphrase_file), from install.sh's record; {} without one."""
    try:
        text = SERVICE_RECORD.read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#") and value.startswith("/"):
            out[key.strip()] = Path(value.strip())
    return out


def _share_dir(name: str) -> Path:
    repo = _REPO_ROOT / name
    if repo.is_dir():
        return repo
    return Path(sys.prefix) / "share" / "semtrace" / name


def policy_dir() -> Path:
    """Where policies live: $SEMTRACE_POLICY_DIR, the source tree, the installed service's
    (its --config-dir's policies, else /etc/semtrace/policies: every command reads what the
    service reads), or the prefix."""
    env = os.environ.get(POLICY_DIR_ENV)
    if env:
        return Path(env)
    if not (_REPO_ROOT / "policies").is_dir():
        for etc in (installed_service().get("policy_dir"), ETC_POLICY_DIR):
            if etc is not None and _readable_dir(etc):
                return etc
    return _share_dir("policies")


def _readable_dir(path: Path) -> bool:
    """A folder this user may list (/etc/semtrace is root's and the service's only)."""
    try:
        return path.is_dir() and os.access(path, os.R_OK | os.X_OK)
    except OSError:
        return False


def model_dir() -> Path:
    """Where the bundled model lives: $SEMTRACE_MODEL_DIR, the source tree, or the prefix."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else _share_dir("models")
