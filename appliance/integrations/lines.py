"""The connections of a blocking channel (`channel.SyncChannel`).

Over a socket, a lane (`channel.lane`) of one sender is a `Lane` of connections each used by
one request at a time: `main` has one, on which the sender's registrations and updates go
one after another, in order; `loop` has several (`channel.LOOP_LINES`), one for each tool
loop call in flight. The service may hold such a call up to 2 s (its turn's update is still
on its way from another gateway process) and answers a connection's requests in order: a
second call on the same connection would wait behind the held one, past its own timeout. A
connection is opened when first needed and kept for the next request (the one used last is
taken first); one left idle `channel.IDLE_S` is closed, so that a burst of held calls
does not keep the service's connections (`max_connections`, shared by every gateway
process) taken once it is over.

Over NATS, each reply finds its own request (by its inbox), so the requests of a channel
share one connection (`Shared`), however many are in flight and whichever their lane or
sender: a tool loop call held keeps no other waiting, and neither a burst nor a sender
opens a connection (nor a client thread) of its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any


class Line:
    """One connection of a SyncChannel and the lock held while a thread uses it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Any = None
        self.taken = False  # a request has it (`Lane.take`)
        self.idle_since = 0.0  # time.monotonic() when it was last given back

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
    `loop` (each tool loop call in flight on its own), connected when first needed, closed
    once idle `idle_s` (when given: over a socket)."""

    def __init__(self, size: int, *, idle_s: float | None = None) -> None:
        self.lines = [Line() for _ in range(size)]
        self.idle_s = idle_s
        self._slots = threading.Semaphore(size)
        self._lock = threading.Lock()
        self._reaper: threading.Timer | None = None

    def take(self, timeout: float) -> Line | None:
        """A line no other request uses until it is given back (the connected one used
        last first, so that the others go idle); None when all stayed in use for `timeout`
        seconds."""
        if not self._slots.acquire(timeout=max(timeout, 0.0)):
            return None
        with self._lock:
            line = max((line for line in self.lines if not line.taken),
                       key=lambda line: (line.client is not None, line.idle_since))
            line.taken = True
        line.lock.acquire()  # only `close` may wait for it
        return line

    def give(self, line: Line) -> None:
        line.idle_since = time.monotonic()
        line.lock.release()
        with self._lock:
            line.taken = False
            self._arm()
        self._slots.release()

    def _arm(self) -> None:
        """(Under the lock.) Close the lines left idle `idle_s` when the first one is."""
        if self.idle_s is None or self._reaper is not None:
            return
        idle = [line.idle_since for line in self.lines
                if line.client is not None and not line.taken]
        if idle:
            due = min(idle) + self.idle_s - time.monotonic()
            self._reaper = threading.Timer(max(due, 0.0) + 0.01, self._reap)
            self._reaper.daemon = True
            self._reaper.name = "semtrace-idle"
            self._reaper.start()

    def _reap(self) -> None:
        """Close the connections idle `idle_s` or more (none a request holds)."""
        stale = []
        with self._lock:
            self._reaper = None
            now = time.monotonic()
            for line in self.lines:
                if line.taken or line.client is None or now - line.idle_since < (
                        self.idle_s or 0.0) or not line.lock.acquire(blocking=False):
                    continue  # in use, or `close` has it
                stale.append(line.client)
                line.client = None
                line.lock.release()
            self._arm()
        for client in stale:
            with contextlib.suppress(Exception):
                client.close(within=0.0)

    def close(self) -> None:
        """Close every connection (waiting for a request using one to end)."""
        with self._lock:
            if self._reaper is not None:
                self._reaper.cancel()
                self._reaper = None
        for line in self.lines:
            with line.lock:
                line.drop()


class Shared:
    """One connection that every request of a lane uses at once: over NATS, where each
    reply finds its own request. It is opened by the first request that needs it (others
    wait for that, within their own time), kept when a request goes unanswered in time
    (`channel.SyncChannel` asks the server for a PING then, and a connection that gives no
    answer is `dead`: the next request replaces it), and closed by a failure of its own."""

    def __init__(self) -> None:
        self.client: Any = None
        self._connecting = threading.Lock()
        self._swap = threading.Lock()

    def connected(self, connect: Callable[[float], Any], deadline: float) -> Any:
        """The connection (one made by `connect`, given the time left, if there is none or
        it is dead); None when another request's attempt to connect outlasted `deadline`."""
        client = self.client
        if client is not None and not client.dead:
            return client
        if not self._connecting.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            return None
        try:
            if self.client is not None and self.client.dead:
                self.drop(self.client, time.monotonic())  # hung: closed at once
            if self.client is None:
                self.client = connect(max(deadline - time.monotonic(), 0.001))
            return self.client
        finally:
            self._connecting.release()

    def drop(self, client: Any, deadline: float | None = None) -> None:
        """Close `client`, by `deadline` when given (`Line.drop`), unless another request
        has replaced it already."""
        with self._swap:
            if self.client is not client:
                return
            self.client = None
        within = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        with contextlib.suppress(Exception):
            client.close(within=within)

    def close(self) -> None:
        with self._connecting:
            if self.client is not None:
                self.drop(self.client)
