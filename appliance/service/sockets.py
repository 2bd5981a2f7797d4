"""Claiming a socket path before listening on it (I/O)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

from appliance.errors import SemtraceError


def free_socket_path(path: Path) -> None:
    """Make `path` free for a new listening socket, or refuse in one sentence.

    A socket file no one answers on (left by a service that was killed) is removed. A
    socket that answers belongs to a running service: taking it over would send that
    service's gateways to this one, and its stop would delete the file. Any other file
    is never deleted.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SemtraceError(f"{path} exists and is not a socket; nothing was changed "
                            "(choose another socket path).")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # stale: nobody listens there any more
        return
    except OSError:
        raise SemtraceError(f"{path} is a socket this user cannot reach, so it may belong to "
                            "a running service; nothing was changed (remove it if none "
                            "does).") from None
    finally:
        probe.close()
    raise SemtraceError(f"Another service is already listening on {path}; nothing was "
                        "changed.")
