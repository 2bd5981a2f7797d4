"""The folders above a Unix socket that `serve` listens on (ingest, query, metrics): made
when missing, each with the mode the socket's users need, whatever the umask; and the
socket itself, which appears at its path only with its own mode (`listen_at`).

The installed unit runs with UMask=0077: a folder made with the umask's mode (0700) would
shut out the gateway's group from the ingest socket and the scrapers from the metrics
socket, and nothing would say why. So every folder `serve` makes on the way to a socket
gets the mode given (and the group, for the metrics' own); folders that exist are someone
else's and are left as they are.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from appliance.errors import SemtraceError

_SUN_PATH = 107  # the longest path a Unix socket can be bound at (sun_path, less its NUL)


def too_long(socket_path: str | Path) -> str | None:
    """A sentence fragment saying that `socket_path` is longer than a Unix socket's path may
    be (neither bound nor reached: Python says only "AF_UNIX path too long"), or None."""
    n = len(os.fsencode(socket_path))
    return (f"its path is {n} bytes long, and a Unix socket's may be at most {_SUN_PATH}"
            if n > _SUN_PATH else None)


def check_socket_folder(socket_path: Path) -> list[Path]:
    """The folders above `socket_path` that are missing, innermost first; ValueError, a
    sentence fragment, when the nearest that exists is a file (nothing can be made) or the
    path is too long for a socket."""
    if (said := too_long(socket_path)) is not None:
        raise ValueError(said)
    missing: list[Path] = []
    for folder in (socket_path.parent, *socket_path.parent.parents):
        if os.path.lexists(folder):
            if not folder.is_dir():
                raise ValueError(f"the folder {socket_path.parent} cannot be made: {folder} "
                                 "is a file, not a folder")
            break
        missing.append(folder)
    return missing


def refusal(socket_path: Path, option: str, why: ValueError) -> str:
    """The sentence that refuses to serve a socket whose folder cannot be made."""
    return (f"The socket {socket_path} ({option}) cannot be served: {why}; the service did "
            "not start.")


def make_socket_folder(socket_path: Path, *, mode: int, gid: int | None = None) -> list[Path]:
    """Make the missing folders above `socket_path`, outermost first, each with `mode` (and
    group `gid` when given); the folders made. ValueError, a sentence fragment naming the
    folder, when one cannot be made (those made before it are removed again)."""
    missing = check_socket_folder(socket_path)
    made: list[Path] = []
    folder = socket_path.parent
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
            except FileExistsError:  # made meanwhile by someone else: theirs
                if folder.is_dir():
                    continue
                raise
            made.append(folder)
            os.chmod(folder, mode)
            if gid is not None:
                os.chown(folder, -1, gid)
    except OSError as exc:
        for folder in reversed(made):
            try:
                folder.rmdir()
            except OSError:
                break
        why = (exc.strerror or type(exc).__name__).lower()
        raise ValueError(f"the folder {folder} cannot be made ({why})") from None
    return made


def listen_at(path: Path, mode: int, *, gid: int | None = None) -> socket.socket:
    """A Unix stream socket listening on `path`, which appears there only once it has
    `mode` (and group `gid`, when given) and listens.

    Bound at `path` itself, the socket is there with the umask's mode (0700 under the
    unit's UMask=0077) until its chmod: a gateway, reader or scraper that connects in
    between is refused (EACCES), or gets ECONNREFUSED before the listen(). So it is bound
    under a name of its own beside `path`, given its mode, set listening, and hard-linked
    to `path`, which fails rather than take over a path another service has claimed since
    `free_socket_path`. A path too long for that name is bound directly (as before)."""
    hidden = path.with_name(f".{path.name}.{os.getpid()}")
    if len(os.fsencode(hidden)) > _SUN_PATH:
        hidden = path
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if hidden != path:  # left by a killed process that had this pid
            hidden.unlink(missing_ok=True)
        sock.bind(str(hidden))
        try:
            if gid is not None:  # before the mode opens it to a group
                os.chown(hidden, -1, gid)
            os.chmod(hidden, mode)
            sock.listen(socket.SOMAXCONN)
            if hidden != path:
                try:
                    os.link(hidden, path)
                except FileExistsError:
                    raise SemtraceError(f"Another service is already listening on {path}; "
                                        "nothing was changed.") from None
        finally:
            if hidden != path:
                hidden.unlink(missing_ok=True)
    except BaseException:
        sock.close()
        raise
    return sock
