"""The data dir's lock: one service (or one key rotation, one import) at a time."""

from __future__ import annotations

import atexit
import errno
import fcntl
import os
from pathlib import Path

from appliance.errors import SemtraceError

LOCK_FILE = "semtrace.lock"


# Locks this process holds, by path: taking one again (replay opening a data dir
# whose interrupted key rotation must be completed) nests instead of failing.
_HELD: dict[str, int] = {}


# Data dirs whose files this process hands back to their owner at exit (keep_owner).
_KEPT: set[str] = set()


def keep_owner(data_dir: Path) -> None:
    """Run as root on a data dir another user owns (the service's, /var/lib/semtrace):
    every file this process makes or replaces there (the lock, -wal, a rotated store or
    keyring) is handed back to that user when the process exits. Left to root, the
    service could no longer open its own data dir ("keyring.json is unreadable")."""
    if os.geteuid() != 0:
        return
    try:
        st = data_dir.stat()
    except OSError:
        return
    key = str(data_dir.resolve())
    if st.st_uid == 0 or key in _KEPT:
        return
    _KEPT.add(key)
    atexit.register(_hand_back, data_dir, st.st_uid, st.st_gid)


def _hand_back(data_dir: Path, uid: int, gid: int) -> None:
    for p in [data_dir, *data_dir.rglob("*")]:
        try:
            if p.lstat().st_uid != uid:
                os.lchown(p, uid, gid)
        except OSError:
            continue


class DataDirLock:
    """An exclusive lock so that two services never share a data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None
        self._nested = False

    def acquire(self) -> None:
        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key] += 1
            self._nested = True
            return
        keep_owner(self.path.parent)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if isinstance(exc, PermissionError) or exc.errno == errno.EROFS:
                from appliance.store.core import read_only_refusal

                raise read_only_refusal(self.path.parent) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SemtraceError("Another semtrace service is already running on this data dir.")\
                from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        _HELD[key] = 1

    def identity(self) -> str:
        """Which lock this process holds, on this running kernel (its boot id, and the lock
        file's device and inode); "" when none is known (not held here, nested, or no boot
        id). While this lock is held no other process holds it, so a record another run
        wrote with the same identity is a dead process's: a copy of the data dir has lock
        files of its own, and another host (or a reboot) another boot id."""
        if self._fd is None:
            return ""
        try:
            boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
            st = os.fstat(self._fd)
        except OSError:
            return ""
        return f"{boot}:{st.st_dev}:{st.st_ino}" if boot else ""

    def release(self) -> None:
        key = str(self.path.resolve())
        if self._nested:
            self._nested = False
            _HELD[key] -= 1
            return
        if self._fd is not None:
            _HELD.pop(key, None)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
