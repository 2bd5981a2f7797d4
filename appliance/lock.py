"""The data dir's lock: one service (or one key rotation, one import) at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from appliance.errors import SemtraceError

LOCK_FILE = "semtrace.lock"


class DataDirLock:
    """An exclusive lock so that two services never share a data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SemtraceError("Another semtrace service is already running on this data dir.")\
                from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
