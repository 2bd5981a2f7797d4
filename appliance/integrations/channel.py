"""The adapters' line to the appliance: it fails open, fast and quietly.

A model call must never fail, nor wait long, because of Semtrace. Each request
is bounded by `timeout` in all (waiting for the shared connection, connecting,
the reply). When the appliance does not answer (no socket, permission denied,
timed out, connection closed, a reply that is not a JSON object) the channel
logs one warning and then sends nothing for a pause (`RETRY_FIRST` seconds,
doubling up to `RETRY_MAX` while it stays down): calls pass without even trying
and are counted as not recorded, silently. After the pause one request tries
again, the others still passing untried until it is answered or times out (a
hung service does not hold a burst of calls each time); when it is answered,
one line says the appliance is back and how many requests went unrecorded. A
`busy` reply pauses sending for its `retry_after_ms`, with one warning a minute
at most. A request on a connection
that the service closed meanwhile (it restarted) is sent again at once on a new
connection: requests are idempotent by request id.

Over NATS, a request the bus took that no node answered in time (`NoAnswerYet`: a node
down or restarting) starts the pause too, but the bus keeps what it is given: during that
pause requests are published without waiting for an answer (`Breaker.bus_keeps`), and the
node records them once it is back, instead of the pause losing them.

A tool loop's call (an `update` naming a `previous_response_id`) goes on a connection of
its own (`lane`): the service may hold it up to 2 s while its turn's update is on its way
from another gateway process, and replies come in request order, so on the shared
connection it would delay every registration and update behind it (the asyncio client
pipelines a worker's concurrent requests; the blocking one sends one at a time).

A process forked from the one that made a channel (a pre-forking server) connects anew:
the parent's connection, and a lock its threads may have held as it forked, are not the
child's (`_after_fork`).

Log lines carry the event, the request id, the operation and the error's type:
never a prompt, a user id or an exception message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
import zlib
from pathlib import Path
from typing import Any

from appliance.client import ConnectionClosed, open_async_client, open_client

RETRY_FIRST = 1.0  # seconds without sending after the appliance stopped answering
RETRY_MAX = 30.0
QUIET = 60.0  # a refusal's warning is repeated at most this often (seconds)


class Breaker:
    """Whether to try the appliance now, and the log lines about its state (thread-safe)."""

    def __init__(self, log: logging.Logger, clock: Any = time.monotonic, *,
                 probe: float = 5.0) -> None:
        """`probe`: how long the one request trying a down appliance again has (the
        adapter's timeout); others are not sent meanwhile."""
        self.log, self.clock, self.probe = log, clock, probe
        self._lock = threading.Lock()
        self._until = 0.0  # no request is sent before this time
        self._probing = 0.0  # while down: until when a request is trying it again
        self._pause = RETRY_FIRST
        self._down = False
        self.missed = 0  # requests not sent or not answered since it went down
        self._queued = False  # the bus took the request no node answered (`bus_keeps`)
        self._warned: dict[str, float] = {}  # refusal code -> when last logged
        self._quieted: dict[str, int] = {}  # refusal code -> lines held back since

    def ready(self) -> bool:
        """Whether a request may be sent now; one not sent counts as missed. While the
        appliance is down, one request at a time tries it again once the pause is over:
        the others do not all wait for a service that may still hang."""
        with self._lock:
            now = self.clock()
            if now >= self._until and not (self._down and now < self._probing):
                if self._down:
                    self._probing = now + self.probe
                return True
            self.missed += 1
            return False

    def paused(self) -> bool:
        """Whether a pause began while this request waited to be sent (it then is not)."""
        with self._lock:
            if self.clock() < self._until:
                self.missed += 1
                return True
            return False

    def skipped(self) -> None:
        """A request not sent (the line stayed busy for the whole timeout)."""
        with self._lock:
            self.missed += 1

    def bus_keeps(self) -> bool:
        """Whether, while paused, a request may still be handed to the bus without waiting
        for an answer: the last one was queued there (JetStream keeps it for its node) and
        no node answered in time. The node answers what the bus kept once it is back."""
        with self._lock:
            return self._down and self._queued

    def kept(self) -> None:
        """A request not sent for an answer (`ready` counted it missed) that the bus took."""
        with self._lock:
            self.missed = max(self.missed - 1, 0)

    def failed(self, req: dict[str, Any], exc: BaseException) -> None:
        """The appliance did not answer `req`: warn once, then pause sending."""
        queued = bool(getattr(exc, "queued", False))  # `NoAnswerYet`: the bus kept it
        with self._lock:
            first, now = not self._down, self.clock()
            self._down, self.missed, self._probing = True, self.missed + 1, 0.0
            self._queued = queued
            if now < self._until and not first:  # in flight when another failed: paused
                return
            self._until = now + self._pause
            pause, self._pause = self._pause, min(self._pause * 2, RETRY_MAX)
        if first:
            self.log.warning("semtrace did not answer; calls go on unrecorded until it does"
                             if not queued else "no semtrace node answered; calls go on, "
                             "queued on the bus unanswered until one does",
                             extra={"event": "semtrace_unavailable",
                                    "request_id": req.get("request_id"), "op": req.get("op"),
                                    "error": type(exc).__name__, "retry_in_s": pause})

    def answered(self, req: dict[str, Any], reply: dict[str, Any]) -> None:
        """A reply came: say once that the appliance is back; pause on `busy`."""
        code = None if reply.get("ok") else str((reply.get("error") or {}).get("code"))
        with self._lock:
            back, missed = self._down, self.missed
            self._down, self.missed, self._pause = False, 0, RETRY_FIRST
            self._probing, self._queued = 0.0, False
            if code == "busy":
                retry = (reply.get("error") or {}).get("retry_after_ms")
                wait = retry / 1000 if isinstance(retry, int | float) and retry > 0 else 0.05
                self._until = self.clock() + min(wait, RETRY_MAX)
        if back:
            self.log.info("semtrace answers again", extra={
                "event": "semtrace_available", "unrecorded": missed})
        if code is not None:
            self.quiet_warning("semtrace refused a request", "semtrace_refused", req,
                               code=code)

    def quiet_warning(self, msg: str, event: str, req: dict[str, Any] | None,
                      **fields: Any) -> None:
        """One warning a minute per (event, fields), with how many were held back."""
        key = repr((event, sorted(fields.items())))
        now = self.clock()
        with self._lock:
            last = self._warned.get(key)
            if last is not None and now - last < QUIET:
                self._quieted[key] = self._quieted.get(key, 0) + 1
                return
            self._warned[key] = now
            held = self._quieted.pop(key, 0)
        self.log.warning(msg, extra={
            "event": event, "request_id": (req or {}).get("request_id"),
            "op": (req or {}).get("op"), **fields, "similar_not_logged": held})


_CHANNELS: weakref.WeakSet[SyncChannel] = weakref.WeakSet()


def _after_fork() -> None:
    for channel in list(_CHANNELS):
        channel._forked()


os.register_at_fork(after_in_child=_after_fork)


def _stale(exc: BaseException) -> bool:
    """Whether `exc` says the connection was closed under us (not that the service hangs)."""
    return isinstance(exc, ConnectionClosed | BrokenPipeError | ConnectionResetError)


def lane(req: dict[str, Any]) -> str:
    """The connection a request goes on: `loop` for a tool loop's call, which the service
    may hold while its turn may still come; `main` for the others."""
    return "loop" if req.get("op") == "update" and req.get("previous_response_id") \
        else "main"


def _failed(breaker: Breaker, req: dict[str, Any], exc: BaseException) -> None:
    """Tell the breaker a request was not answered. A tool loop's call that timed out was
    held by the service (its turn may still come) past the adapter's `timeout` (one under
    the 2 s hold): not a sign that the appliance hangs, which the other requests tell. It
    is counted as missed, without the warning and the pause that would leave the other
    calls unrecorded; the service still attaches it when its turn lands. Over NATS that is
    a request queued on the bus and not answered in time (`NoAnswerYet`, a TimeoutError);
    one that nothing queued, or that the connection lost, is an outage on any lane."""
    if lane(req) == "loop" and isinstance(exc, TimeoutError):
        breaker.skipped()
    else:
        breaker.failed(req, exc)


class _Line:
    """One connection of a SyncChannel and the lock that lets one thread use it at a time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.client: Any = None

    def drop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
            self.client = None


def shard_of(key: str, shards: int) -> int:
    """Which of `shards` senders a key (a user id) goes to: the same one every time, in
    every process (not Python's salted hash)."""
    return zlib.crc32(key.encode()) % shards if shards > 1 else 0


class SyncChannel:
    """Connections shared by threads, one per `lane` (and `shard`, for senders that each
    keep their own); `send` never raises and never blocks past the timeout."""

    def __init__(self, target: str | Path, *, timeout: float, log: logging.Logger,
                 bus_keys: Any = None, plain_bus: bool = False) -> None:
        self.target, self.timeout = target, timeout
        self.breaker = Breaker(log, probe=timeout)
        self._opts = {"bus_keys": bus_keys, "plain_bus": plain_bus}
        self._lines = {"main": _Line(), "loop": _Line()}
        self._lines_lock = threading.Lock()
        _CHANNELS.add(self)

    def _forked(self) -> None:
        """In a forked child: locks of its own, and no connection (the parent's sockets are
        left alone: closing one here could cut the parent's buffered request)."""
        self._lines = {"main": _Line(), "loop": _Line()}
        self._lines_lock = threading.Lock()
        self.breaker._lock = threading.Lock()

    def _line(self, req: dict[str, Any], shard: int) -> _Line:
        name = lane(req) if shard == 0 else f"{lane(req)}-{shard}"
        with self._lines_lock:
            return self._lines.setdefault(name, _Line())

    def send(self, req: dict[str, Any], shard: int = 0) -> dict[str, Any] | None:
        """The reply to `req`, or None when the appliance did not answer in time. `shard`:
        a sender of its own (`Outbox`), on connections no other shard waits for."""
        deadline = time.monotonic() + self.timeout
        if not self.breaker.ready():
            self._hand_to_bus(req, shard, deadline)
            return None
        line = self._line(req, shard)
        if not line.lock.acquire(timeout=self.timeout):
            self.breaker.skipped()  # another request held the line the whole time
            return None
        try:
            if self.breaker.paused():  # it failed while this request waited
                return None
            reply = self._exchange(line, req, deadline)
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            line.drop()
            _failed(self.breaker, req, exc)
            return None
        finally:
            line.lock.release()
        self.breaker.answered(req, reply)
        return reply

    def _hand_to_bus(self, req: dict[str, Any], shard: int, deadline: float) -> None:
        """While no node answers but the bus keeps what it is given (`Breaker.bus_keeps`):
        publish `req` without waiting for its answer, so the node records it once it is
        back instead of the pause losing it. A failure here is an outage."""
        if not self.breaker.bus_keeps():
            return
        line = self._line(req, shard)
        if not line.lock.acquire(timeout=self.timeout):
            return
        try:
            if line.client is None:
                line.client = open_client(self.target, timeout=max(
                    deadline - time.monotonic(), 0.001), **self._opts)
            line.client.publish(req)
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            line.drop()
            self.breaker.failed(req, exc)
            return
        finally:
            line.lock.release()
        self.breaker.kept()

    def _exchange(self, line: _Line, req: dict[str, Any], deadline: float) -> dict[str, Any]:
        for attempt in (0, 1):
            fresh = line.client is None
            left = max(deadline - time.monotonic(), 0.001)
            try:
                if fresh:
                    line.client = open_client(self.target, timeout=left, **self._opts)
                elif hasattr(line.client, "settimeout"):
                    line.client.settimeout(left)
                reply: dict[str, Any] = line.client.request(req)
                return reply
            except Exception as exc:
                if fresh or attempt or not _stale(exc):
                    raise
                line.drop()  # the service restarted: once more on a new connection
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lines_lock:
            lines = list(self._lines.values())
        for line in lines:
            with line.lock:
                line.drop()


class AsyncChannel:
    """Connections per event loop, one per `lane`; `send` never raises and returns within
    the timeout."""

    def __init__(self, target: str | Path, *, timeout: float, breaker: Breaker,
                 bus_keys: Any = None, plain_bus: bool = False) -> None:
        self.target, self.timeout, self.breaker = target, timeout, breaker
        self._opts = {"bus_keys": bus_keys, "plain_bus": plain_bus}
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = \
            weakref.WeakKeyDictionary()

    async def send(self, req: dict[str, Any]) -> dict[str, Any] | None:
        """The reply to `req`, or None when the appliance did not answer in time."""
        loop, on = asyncio.get_running_loop(), lane(req)
        if not self.breaker.ready():
            if self.breaker.bus_keeps():  # no node answers, the bus keeps: as SyncChannel
                await self._hand_to_bus(loop, on, req)
            return None
        try:
            reply = await asyncio.wait_for(self._exchange(loop, on, req), self.timeout)
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            await self._drop(loop, on)
            _failed(self.breaker, req, exc)
            return None
        self.breaker.answered(req, reply)
        return reply

    async def _exchange(self, loop: asyncio.AbstractEventLoop, on: str,
                        req: dict[str, Any]) -> dict[str, Any]:
        for attempt in (0, 1):
            clients = self._clients.setdefault(loop, {})
            client = clients.get(on)
            fresh = client is None
            if client is None:
                client = await open_async_client(self.target, timeout=self.timeout,
                                                 **self._opts)
                if clients.setdefault(on, client) is not client:
                    await client.close()  # another request connected first
                    client = clients[on]
            try:
                reply: dict[str, Any] = await client.request(req)
                return reply
            except Exception as exc:
                if fresh or attempt or not _stale(exc):
                    raise
                await self._drop(loop, on)  # the service restarted: once more on a new one
        raise AssertionError("unreachable")  # pragma: no cover

    async def _hand_to_bus(self, loop: asyncio.AbstractEventLoop, on: str,
                           req: dict[str, Any]) -> None:
        """`SyncChannel._hand_to_bus` for asyncio code."""
        try:
            clients = self._clients.setdefault(loop, {})
            client: Any = clients.get(on)
            if client is None:
                fresh = await asyncio.wait_for(open_async_client(
                    self.target, timeout=self.timeout, **self._opts), self.timeout)
                client = clients.setdefault(on, fresh)
                if client is not fresh:  # another request connected first
                    await fresh.close()
            await asyncio.wait_for(client.publish(req), self.timeout)
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            await self._drop(loop, on)
            self.breaker.failed(req, exc)
            return
        self.breaker.kept()

    async def _drop(self, loop: asyncio.AbstractEventLoop, on: str) -> None:
        stale = self._clients.get(loop, {}).pop(on, None)
        if stale is not None:
            await asyncio.gather(stale.close(), return_exceptions=True)
