"""The connections of a blocking channel (`channel.SyncChannel`), each used by one request at
a time.

A lane (`channel.lane`) of one sender is a `Lane`: `main` has one connection, on which the
sender's registrations and updates go one after another, in order; `loop` has several
(`channel.LOOP_LINES`), one for each tool loop call in flight. The service may hold such a
call up to 2 s (its turn's update is still on its way from another gateway process) and
answers a connection's requests in order: a second call on the same connection would wait
behind the held one, past its own timeout. A connection is opened when first needed and
kept for the next request; an idle one already connected is taken first.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any


class Line:
    """One connection of a SyncChannel and the lock held while a thread uses it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Any = None
        self.taken = False  # a request has it (`Lane.take`)

    def drop(self, deadline: float | None = None) -> None:
        """Close the connection; by `deadline` (time.monotonic()) when given: a call's
        budget covers closing the connection it gave up on (a NATS client would otherwise
        ask a hung server for a PING first, a second more)."""
        if self.client is not None:
            within = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            with contextlib.suppress(Exception):
                self.client.close(within=within)
            self.client = None


class Lane:
    """The connections of one lane (and shard) of a SyncChannel, each used by one request at
    a time: one for `main` (its requests go one after another, in order), `LOOP_LINES` for
    `loop` (each tool loop call in flight on its own, connected when first needed)."""

    def __init__(self, size: int) -> None:
        self.lines = [Line() for _ in range(size)]
        self._slots = threading.Semaphore(size)
        self._lock = threading.Lock()

    def take(self, timeout: float) -> Line | None:
        """A line no other request uses until it is given back (one already connected
        first); None when all stayed in use for `timeout` seconds."""
        if not self._slots.acquire(timeout=max(timeout, 0.0)):
            return None
        with self._lock:
            line = next(line for line in self.lines if not line.taken)
            line.taken = True
        line.lock.acquire()  # only `close` may wait for it
        return line

    def give(self, line: Line) -> None:
        line.lock.release()
        with self._lock:
            line.taken = False
        self._slots.release()
