"""Fail points for the fault-injection suite (tests/faults, bench/faults.py).

`SEMTRACE_FAILPOINT=name:n` makes the process kill itself with SIGKILL the n-th
time it reaches `point(name)` (n defaults to 1): a crash at a chosen step of a
batch, a shred, a migration, a key rotation or a cluster import, exactly as power
loss or the OOM killer would.
`SEMTRACE_FAILPOINT=name:full:n` makes `point(name)` raise, the first n times, the
error SQLite raises on a full disk (`database or disk is full`), then pass: a store
that fails for a while and recovers, as a disk that was full and was cleaned.
Without the variable every point is one dictionary lookup and does nothing.
"""

from __future__ import annotations

import os
import signal
import sqlite3

ENV = "SEMTRACE_FAILPOINT"


def _parse(spec: str | None) -> tuple[str, int, bool] | None:
    """(name, n, full): `full` raises the first n times instead of killing at the n-th."""
    if not spec:
        return None
    name, _, count = spec.partition(":")
    full = count.startswith("full")
    if full:
        count = count[len("full"):].lstrip(":")
    return name, int(count) if count.isdigit() and int(count) > 0 else 1, full


_ARMED = _parse(os.environ.get(ENV))
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """A step where the fault suite may kill the process, or fail like a full disk."""
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _ARMED[2]:
        if _hits[name] <= _ARMED[1]:
            raise sqlite3.OperationalError("database or disk is full")
    elif _hits[name] == _ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
