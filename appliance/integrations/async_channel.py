"""The asyncio channel (`AsyncChannel`): the adapters' line to the appliance for asyncio
code, as `channel.SyncChannel` for threads. What it does when the appliance does not
answer, its lanes and connections: `channel.py`."""

from __future__ import annotations

import asyncio
import weakref
from pathlib import Path
from typing import Any

from appliance.client import is_nats_url, open_async_client
from appliance.integrations.async_lines import LoopLines
from appliance.integrations.breaker import Breaker
from appliance.integrations.channel import (
    IDLE_S,
    LOOP_LINES,
    Delivery,
    _failed,
    _stale,
    _unanswered,
    lane,
    unencodable,
)

BACKSTOP = 0.5  # seconds past its timeout an async request is cut off if its client hangs


class AsyncChannel:
    """Connections per event loop (`async_lines.LoopLines`). Over a socket: one for `main`,
    whose requests are pipelined, and up to `LOOP_LINES` for `loop`, each tool loop call in
    flight on its own (the service answers a connection's requests in order, so one it holds
    would keep the next ones waiting), each closed, `main` too, once idle `IDLE_S`. Over
    NATS, replies come in any order: every request on one connection, kept when a request
    goes unanswered in time (`NoAnswerYet`), as `SyncChannel`'s shared one. `send` never
    raises and returns within the timeout."""

    def __init__(self, target: str | Path, *, timeout: float, breaker: Breaker,
                 bus_keys: Any = None, plain_bus: bool = False) -> None:
        self.target, self.timeout, self.breaker = target, timeout, breaker
        self._opts = {"bus_keys": bus_keys, "plain_bus": plain_bus}
        self._own = not is_nats_url(target)  # a loop call on a connection of its own
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopLines] = \
            weakref.WeakKeyDictionary()

    def _lines(self, loop: asyncio.AbstractEventLoop) -> LoopLines:
        """The event loop's connections (a socket's are the service's to count, and close
        once idle)."""
        lines = self._loops.get(loop)
        if lines is None:
            lines = self._loops[loop] = LoopLines(
                loop_lines=LOOP_LINES if self._own else 0,
                idle_s=IDLE_S if self._own else None)
        return lines

    def _on(self, req: dict[str, Any]) -> str:
        """The connection a request goes on: its lane's over a socket; over NATS, where each
        reply finds its own request, the one all the event loop's requests share."""
        return lane(req) if self._own else "bus"

    async def send(self, req: dict[str, Any]) -> dict[str, Any] | None:
        """The reply to `req`, or None when the appliance did not answer in time."""
        return (await self.deliver(req)).reply

    async def deliver(self, req: dict[str, Any]) -> Delivery:
        """`SyncChannel.deliver` for asyncio code."""
        if unencodable(self.breaker, req):
            return Delivery(None)
        loop = asyncio.get_running_loop()
        lines = self._lines(loop)
        if not self.breaker.ready():
            # no node answers, the bus keeps: as SyncChannel
            return Delivery(None, self.breaker.bus_keeps()
                            and await self._hand_to_bus(loop, lines, self._on(req), req))
        deadline = loop.time() + self.timeout
        name = await lines.take(self._on(req), deadline)
        if name is None:
            self.breaker.skipped()  # other loop calls held the lines the whole time
            return Delivery(None)
        used: list[Any] = []  # the client the request went on
        try:  # the client's own timeout decides (over NATS: `NoAnswerYet`, the bus kept it)
            reply = await asyncio.wait_for(
                self._exchange(loop, lines, name, req, deadline, used),
                max(deadline - loop.time(), 0.0) + BACKSTOP)
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            if used and not self._own and _unanswered(exc):
                used[-1].probe()  # up all along, and other requests wait on it: kept
            elif used:
                await lines.drop(name, max(deadline - loop.time(), 0.0), used[-1])
            return _failed(self.breaker, req, exc)
        finally:
            lines.give(name)
        self.breaker.answered(req, reply)
        return Delivery(reply)

    async def _exchange(self, loop: asyncio.AbstractEventLoop, lines: LoopLines, on: str,
                        req: dict[str, Any], deadline: float,
                        used: list[Any]) -> dict[str, Any]:
        clients = lines.clients
        for attempt in (0, 1):
            client = clients.get(on)
            if client is not None and getattr(client, "dead", False):
                await lines.drop(on, 0.0, client)  # hung: closed at once
                client = None
            fresh = client is None
            if client is None:
                client = await open_async_client(
                    self.target, timeout=max(deadline - loop.time(), 0.001), **self._opts)
                if clients.setdefault(on, client) is not client:
                    await client.close()  # another request connected first
                    client = clients[on]
            used.append(client)
            try:
                reply: dict[str, Any] = await client.request(
                    req, timeout=max(deadline - loop.time(), 0.001))
                return reply
            except Exception as exc:
                if fresh or attempt or not _stale(exc):
                    raise
                await lines.drop(on, max(deadline - loop.time(), 0.0), client)  # restarted
        raise AssertionError("unreachable")  # pragma: no cover

    async def _hand_to_bus(self, loop: asyncio.AbstractEventLoop, lines: LoopLines, on: str,
                           req: dict[str, Any]) -> bool:
        """`SyncChannel._hand_to_bus` for asyncio code (within the call's `timeout`)."""
        deadline = loop.time() + self.timeout
        client: Any = None
        name = await lines.take(on, deadline)
        if name is None:
            return False
        try:
            clients = lines.clients
            client = clients.get(name)
            if client is None:
                fresh = await asyncio.wait_for(open_async_client(
                    self.target, timeout=self.timeout, **self._opts), self.timeout)
                client = clients.setdefault(name, fresh)
                if client is not fresh:  # another request connected first
                    await fresh.close()
            await asyncio.wait_for(client.publish(req), max(deadline - loop.time(), 0.001))
        except Exception as exc:  # noqa: BLE001 - the call goes on whatever happened here
            if client is not None:
                await lines.drop(name, max(deadline - loop.time(), 0.0), client)
            self.breaker.failed(req, exc, counted=True)  # `ready` counted it missed
            return False
        finally:
            lines.give(name)
        self.breaker.kept()
        return True
