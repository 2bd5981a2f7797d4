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
one line says the appliance is back, how many requests went unrecorded, how many
were queued on the bus meanwhile (below), which its node records, and how many tool loop
calls the service held past the timeout (below), which it attaches when their turn
lands. A
`busy` reply pauses sending for its `retry_after_ms`, with one warning a minute
at most. A request on a connection
that the service closed meanwhile (it restarted) is sent again at once on a new
connection: requests are idempotent by request id.

Over NATS, a request the bus took that no node answered in time (`NoAnswerYet`: a node
down or restarting) starts the pause too, but the bus keeps what it is given: during that
pause requests are published without waiting for an answer (`Breaker.bus_keeps`), and the
node records them once it is back, instead of the pause losing them. Such requests are
counted as queued, not missed (`Delivery.queued`, `Breaker.queued`): nothing was lost.

A tool loop's call (an `update` naming a `previous_response_id`) goes on a connection of
its own (`lane`): the service may hold it up to 2 s while its turn's update is on its way
from another gateway process, and replies come in request order, so on the shared
connection it would delay every registration and update behind it (the asyncio client
pipelines a worker's concurrent requests; the blocking one sends one at a time). Nor does
it share that connection with another loop call: over a socket each one in flight has its
own, up to `LOOP_LINES` at once (`lines.Lane`), so a call held never keeps another user's
waiting past its timeout. A connection to the socket left idle `IDLE_S` is closed (every
one, the asyncio channel's pipelined `main` included: `async_lines`), so that a burst does
not keep the service's connections (`max_connections`, shared by every gateway process)
once it is over, and the next request connects anew. Over NATS, whose replies come in any
order, a channel's requests in flight share one connection, however many and whichever
lane or sender (`lines.Shared`; the asyncio channel's one per event loop): a user's
requests still go one after another from one sender (`outbox.Outbox`), and on one
connection the server gets them in that order. One that no node answered in time
(`NoAnswerYet`) keeps it open for the others: the server is asked for a PING instead, and a
connection left unanswered is replaced by the next request. One held past the timeout
is counted as held (`_failed`), over a socket and over NATS alike.

A process forked from the one that made a channel (a pre-forking server) connects anew:
the parent's connection, and a lock its threads may have held as it forked, are not the
child's (`_after_fork`).

Log lines carry the event, the request id, the operation and the error's type:
never a prompt, a user id or an exception message.

`SyncChannel` (for threads) is here, `AsyncChannel` (for asyncio code) in
`async_channel.py`; both share `Delivery`, `lane` and `_failed`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.client import ConnectionClosed, is_nats_url, open_client
from appliance.integrations.breaker import QUIET as QUIET
from appliance.integrations.breaker import RETRY_FIRST as RETRY_FIRST
from appliance.integrations.breaker import RETRY_MAX as RETRY_MAX
from appliance.integrations.breaker import Breaker
from appliance.integrations.lines import Lane, Line, Shared


@dataclass(frozen=True)
class Delivery:
    """What became of one request: its reply, or None; when None, whether the bus took it
    (`queued`: over NATS, no node answered in time; its node records it once back), the
    service held it past the timeout (`held`: a tool loop's call, attached when its turn
    lands; over NATS, kept by the bus as well), the service got it and its reply did not
    come in time (`unknown`: over a socket, sent whole, then the timeout; a slow service
    still records it, one that failed meanwhile does not, and nothing here tells which),
    or nothing took it (not sent, refused, or lost with its connection)."""

    reply: dict[str, Any] | None
    queued: bool = False
    held: bool = False
    unknown: bool = False


LOOP_LINES = 8  # tool loop calls in flight at once on connections of their own, per sender
IDLE_S = 5.0  # a connection to the service's socket left idle this long is closed
_CHANNELS: weakref.WeakSet[SyncChannel] = weakref.WeakSet()


def _after_fork() -> None:
    for channel in list(_CHANNELS):
        channel._forked()


os.register_at_fork(after_in_child=_after_fork)


def _stale(exc: BaseException) -> bool:
    """Whether `exc` says the connection was closed under us (not that the service hangs)."""
    return isinstance(exc, ConnectionClosed | BrokenPipeError | ConnectionResetError)


def _unanswered(exc: BaseException) -> bool:
    """Whether `exc` says only that no node answered in time, the NATS connection up all
    along (`NoAnswerYet`: the bus kept the request)."""
    return bool(getattr(exc, "queued", False))


def lane(req: dict[str, Any]) -> str:
    """The connection a request goes on: `loop` for a tool loop's call, which the service
    may hold while its turn may still come; `main` for the others."""
    return "loop" if req.get("op") == "update" and req.get("previous_response_id") \
        else "main"


def _failed(breaker: Breaker, req: dict[str, Any], exc: BaseException) -> Delivery:
    """Tell the breaker a request was not answered; what became of it. A tool loop's call
    that timed out was held by the service (its turn may still come) past the adapter's
    `timeout` (one under the 2 s hold): not a sign that the appliance hangs, which the
    other requests tell, nor lost: the service still attaches it when its turn lands. It
    is counted as held (`Breaker.held`, `Delivery.held`), without the warning and the pause
    that would leave the other calls unrecorded. Over NATS that is a request queued on the
    bus and not answered in time (`NoAnswerYet`, a TimeoutError): held as well, whether
    its node holds it or is down (the wire does not tell them apart; either way the node
    answers it). One that nothing queued, or that the connection lost, is an outage on
    any lane."""
    if lane(req) == "loop" and isinstance(exc, TimeoutError):
        breaker.loop_held()
        return Delivery(None, held=True)
    breaker.failed(req, exc)
    return Delivery(None, bool(getattr(exc, "queued", False)),
                    unknown=bool(getattr(exc, "sent", False)))


def unencodable(breaker: Breaker, req: Any) -> bool:
    """Whether `req` cannot be sent because it is no JSON object (a field the application
    gave as an Enum or another object): said once a minute, naming the fields, never their
    values. Not an outage: the breaker is left alone, so the other calls are still sent."""
    try:
        json.dumps(req)
        if isinstance(req, dict):
            return False
    except (TypeError, ValueError):
        pass
    fields = sorted(str(k) for k, v in req.items() if not _encodes(v)) \
        if isinstance(req, dict) else []
    breaker.quiet_warning(
        "a request to semtrace was not sent: " + (
            f"its {', '.join(repr(f) for f in fields)} cannot be written as JSON (give "
            "strings and numbers)" if fields else "it is not a JSON object"),
        "semtrace_unencodable", req if isinstance(req, dict) else None, fields=fields)
    return True


def _encodes(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def shard_of(key: str, shards: int) -> int:
    """Which of `shards` senders a key (a user id) goes to: the same one every time, in
    every process (not Python's salted hash)."""
    return zlib.crc32(key.encode()) % shards if shards > 1 else 0


class SyncChannel:
    """Connections shared by threads: over a socket per `lane` (and `shard`, for senders that
    each keep their own: `Lane`), over NATS one for all (`Shared`); `send` never raises and
    never blocks past the timeout."""

    def __init__(self, target: str | Path, *, timeout: float, log: logging.Logger,
                 bus_keys: Any = None, plain_bus: bool = False) -> None:
        self.target, self.timeout = target, timeout
        self.breaker = Breaker(log, probe=timeout)
        self._opts = {"bus_keys": bus_keys, "plain_bus": plain_bus}
        self._lines: dict[str, Lane] = {}
        self._lines_lock = threading.Lock()
        # over NATS, every request on one connection (each reply finds its request)
        self._shared = Shared() if is_nats_url(target) else None
        _CHANNELS.add(self)

    def _forked(self) -> None:
        """In a forked child: locks of its own, and no connection (the parent's sockets are
        left alone: closing one here could cut the parent's buffered request)."""
        self._lines = {}
        self._lines_lock = threading.Lock()
        self._shared = Shared() if self._shared is not None else None
        self.breaker._lock = threading.Lock()

    def _lane(self, req: dict[str, Any], shard: int) -> Lane:
        on = lane(req)
        name = on if shard == 0 else f"{on}-{shard}"
        with self._lines_lock:
            if name not in self._lines:
                # a socket's connections are the service's to count (`max_connections`)
                self._lines[name] = Lane(LOOP_LINES if on == "loop" else 1, idle_s=IDLE_S)
            return self._lines[name]

    def _connect(self, within: float) -> Any:
        return open_client(self.target, timeout=within, **self._opts)

    def send(self, req: dict[str, Any], shard: int = 0) -> dict[str, Any] | None:
        """The reply to `req`, or None when the appliance did not answer in time. `shard`:
        a sender of its own (`Outbox`), on connections no other shard waits for."""
        return self.deliver(req, shard).reply

    def deliver(self, req: dict[str, Any], shard: int = 0) -> Delivery:
        """`send`, telling a request queued on the bus unanswered from one nothing took."""
        # before the line's lock: `timeout` is the call's whole budget, its wait included
        deadline = time.monotonic() + self.timeout
        if unencodable(self.breaker, req):
            return Delivery(None)
        if not self.breaker.ready():
            return Delivery(None, self._hand_to_bus(req, deadline))
        if self._shared is not None:
            return self._deliver_shared(self._shared, req, deadline)
        on = self._lane(req, shard)
        line = on.take(deadline - time.monotonic())
        if line is None:
            self.breaker.skipped()  # other requests held the lines the whole time
            return Delivery(None)
        try:
            if self.breaker.paused():  # it failed while this request waited
                return Delivery(None)
            reply = self._exchange(line, req, deadline)
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            line.drop(deadline)
            return _failed(self.breaker, req, exc)
        finally:
            on.give(line)
        self.breaker.answered(req, reply)
        return Delivery(reply)

    def _deliver_shared(self, shared: Shared, req: dict[str, Any],
                        deadline: float) -> Delivery:
        """`deliver` on the connection shared by every request in flight (NATS). One that
        no node answered in time (`NoAnswerYet`: a held tool loop call, or a node down)
        keeps it: the connection was up all along and other requests wait on it; the server
        is asked for a PING instead (`probe`), and if it answers none the next request
        connects anew. Any other failure closes it."""
        client = None
        try:
            client = shared.connected(self._connect, deadline)
            if client is None:
                self.breaker.skipped()  # another request's connection attempt took the time
                return Delivery(None)
            reply: dict[str, Any] = client.request(
                req, timeout=max(deadline - time.monotonic(), 0.001))
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            if client is not None and _unanswered(exc):
                client.probe()
            elif client is not None:
                shared.drop(client, deadline)
            return _failed(self.breaker, req, exc)
        self.breaker.answered(req, reply)
        return Delivery(reply)

    def _hand_to_bus(self, req: dict[str, Any], deadline: float) -> bool:
        """While no node answers but the bus keeps what it is given (`Breaker.bus_keeps`,
        over NATS only): publish `req` on the shared connection without waiting for its
        answer, so the node records it once it is back instead of the pause losing it;
        whether the bus took it. A failure here is an outage."""
        if not self.breaker.bus_keeps() or self._shared is None:
            return False
        shared, client = self._shared, None
        try:
            client = shared.connected(self._connect, deadline)
            if client is None:
                return False
            client.publish(req, timeout=max(deadline - time.monotonic(), 0.001))
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            if client is not None:
                shared.drop(client, deadline)
            self.breaker.failed(req, exc, counted=True)  # `ready` counted it missed
            return False
        self.breaker.kept()
        return True

    def _exchange(self, line: Line, req: dict[str, Any], deadline: float) -> dict[str, Any]:
        for attempt in (0, 1):
            fresh = line.client is None
            try:
                if fresh:
                    line.client = open_client(self.target, **self._opts, timeout=max(
                        deadline - time.monotonic(), 0.001))
                line.client.settimeout(max(deadline - time.monotonic(), 0.001))  # connected
                reply: dict[str, Any] = line.client.request(req)
                return reply
            except Exception as exc:
                if fresh or attempt or not _stale(exc):
                    raise
                line.drop(deadline)  # the service restarted: once more on a new one
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        with self._lines_lock:
            lanes = list(self._lines.values())
        for on in lanes:
            on.close()
        if self._shared is not None:
            self._shared.close()
