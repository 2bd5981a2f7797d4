"""The order a node's socket puts other nodes' tenants' requests on the bus: as they came.

The socket reads a connection's requests in order and answers them in order, but handles
them side by side (a reply waits for the replies before it, the work does not wait). A
forwarded sync ingest reads its partition's claim from NATS before it is sent
(cluster/forward.py), which an async one does not: an async ingest pipelined right after a
sync one went onto the bus first, and the owner, which takes a partition's messages in bus
order, stored the later prompt first (its history named a turn not stored yet, so it
started a conversation of its own). So each forwarded request takes its turn in its
partition's line (`Line.take`) when it arrives, before anything can wait, and goes onto
the bus only once every earlier request of that partition is on it, or was refused
(`Turn.ready`, `Turn.done`). Only the sending waits its turn: the owner's answers are
waited for side by side.

A sync request is sent as a request with a reply inbox of its own (`ask`), so that it is on
the bus when `ask` returns and its answer is waited for after (`Asked.reply`); nats-py's
`request` does both in one call.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

STATUS, NO_RESPONDERS = "Status", "503"  # the server's answer when nothing takes a subject


@dataclass
class Turn:
    """One request's place in its partition's line."""

    before: asyncio.Future[None] | None  # the request ahead of it: on the bus, or given up
    mine: asyncio.Future[None]

    async def ready(self) -> None:
        """Until every earlier request of the partition is on the bus, or given up."""
        if self.before is not None and not self.before.done():
            await asyncio.wait([self.before])  # never cancels it, if this one is cancelled

    def done(self) -> None:
        """This request is on the bus (or will never be): the next may go. Idempotent."""
        if not self.mine.done():
            self.mine.set_result(None)
        self.before = None


class Line:
    """Each partition's line of requests, in the order they arrived."""

    def __init__(self) -> None:
        self._last: dict[int, asyncio.Future[None]] = {}

    def take(self, partition: int) -> Turn:
        """A turn after every request of `partition` taken before: call it as the request
        arrives, before anything awaits."""
        before = self._last.get(partition)
        mine = asyncio.get_running_loop().create_future()
        self._last[partition] = mine
        return Turn(None if before is None or before.done() else before, mine)


@dataclass(frozen=True)
class Asked:
    """A request on the bus, its answer still to come."""

    nc: Any
    sub: Any
    answer: asyncio.Future[Any]

    async def reply(self, timeout: float) -> Any:
        """The answer (a nats-py message). Raises nats-py's TimeoutError when none came in
        `timeout` s, NoRespondersError when nothing on the server takes the subject."""
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        try:
            msg = await asyncio.wait_for(self.answer, timeout)
        except TimeoutError:
            with contextlib.suppress(Exception):  # the connection may be gone
                await self.sub.unsubscribe()
            raise NatsTimeout from None
        if msg.headers and msg.headers.get(STATUS) == NO_RESPONDERS:
            raise NoRespondersError
        return msg


async def ask(nc: Any, subject: str, payload: bytes) -> Asked:
    """`payload` sent to `subject` with a reply inbox of its own, subscribed first: on
    the bus (in the connection's outgoing buffer, in order) when this returns."""
    inbox = nc.new_inbox()
    answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    sub = await nc.subscribe(inbox, future=answer, max_msgs=1)
    await sub.unsubscribe(limit=1)  # the server drops the subscription after the answer
    await nc.publish(subject, payload, reply=inbox)
    return Asked(nc, sub, answer)
