"""The connections of an asyncio channel (`async_channel.AsyncChannel`) on one event loop.

By name: `main`, on which the event loop's registrations and updates are pipelined (each is
written at once, the replies come in request order), and over a socket `loop-0` ..
`loop-{n-1}`, each used by one tool loop call at a time (the service may hold one up to
2 s, and would keep the requests after it on its connection waiting). Each counts the
requests on it now. Over a socket a connection that no request has used for `idle_s` is
closed, `main` included, so that a burst does not keep the service's connections
(`max_connections`, shared by every gateway process) once it is over; the next request
connects anew. A request counts from `take`, before it looks for its connection, to `give`,
after its reply: everything here runs on the event loop's thread, so the timer closing idle
connections runs between two steps of a request, never inside one, and never closes one
that a request has taken (a call starting as it fires either took it first, and the
connection stays, or finds it gone and connects).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class LoopLines:
    """One event loop's connections of an AsyncChannel, by name (`clients`); `loop_lines`
    tool loop connections (0: all tool loop calls on `loop`, as over NATS), closed once idle
    `idle_s` (None: kept)."""

    def __init__(self, *, loop_lines: int, idle_s: float | None) -> None:
        self.clients: dict[str, Any] = {}
        self._loop_lines = loop_lines
        self._slots = asyncio.Semaphore(loop_lines) if loop_lines else None
        self._using: dict[str, int] = {}  # requests between `take` and `give`, by name
        self._idle: dict[str, float] = {}  # loop.time() each was last given back
        self._idle_s = idle_s
        self._reaping: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[Any]] = set()

    async def take(self, on: str, deadline: float) -> str | None:
        """The connection (its name) a request on lane `on` goes on, counted as used until
        `give`: `on` itself, or for a tool loop's call one of the loop connections that no
        other request uses (one already connected first); None when all stayed in use until
        `deadline` (loop.time())."""
        name = on
        if on == "loop" and self._slots is not None:
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(self._slots.acquire(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                return None
            name = next(f"loop-{k}" for k in range(self._loop_lines)
                        if f"loop-{k}" not in self._using)
        self._using[name] = self._using.get(name, 0) + 1
        return name

    def give(self, name: str) -> None:
        """A request `take` counted is over; its connection idles from now if none other
        uses it."""
        self._using[name] -= 1
        if name.startswith("loop-"):
            assert self._slots is not None
            self._slots.release()
        if not self._using[name]:
            del self._using[name]
            self._idle[name] = asyncio.get_running_loop().time()
            self._arm()

    def _arm(self) -> None:
        """Close the connections left idle `idle_s` when the first one is."""
        if self._idle_s is None or self._reaping is not None:
            return
        idle = [since for name, since in self._idle.items()
                if name in self.clients and name not in self._using]
        if idle:
            loop = asyncio.get_running_loop()
            self._reaping = loop.call_later(
                max(min(idle) + self._idle_s - loop.time(), 0.0) + 0.01, self._reap, loop)

    def _reap(self, loop: asyncio.AbstractEventLoop) -> None:
        self._reaping = None
        for name, since in list(self._idle.items()):
            if name in self.clients and name not in self._using \
                    and loop.time() - since >= (self._idle_s or 0.0):
                closing = loop.create_task(self.clients.pop(name).close(within=0.0))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        self._arm()

    async def drop(self, name: str, within: float | None, client: Any) -> None:
        """Close `client`, the connection `name`, unless another request has replaced it
        meanwhile; within `within` seconds when given (`lines.Line.drop`)."""
        stale = self.clients.pop(name) if self.clients.get(name) is client else None
        if stale is not None:
            with contextlib.suppress(Exception):
                await stale.close(within=within)
