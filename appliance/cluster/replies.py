"""Where a node sends the answer to a message it consumed from the stream.

JetStream keeps a message, not its reply subject. A node therefore also listens
(core NATS) to its partitions' subjects and notes the reply subject of each
request as it passes; after commit the answer goes there, or, when nobody asked
(fire-and-forget, or the request came while the node was down), to
`semtrace.enriched.<tenant>`. Answers are kept briefly in case the request's
copy arrives after its commit. Bounded memory; no NATS in here.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

Key = tuple[str, str]  # (tenant, request_id)


class ReplyBook:
    """Reply subjects seen on the wire, and answers waiting for them."""

    def __init__(self, *, hold_s: float = 30.0, capacity: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s = hold_s
        self.capacity = capacity
        self._clock = clock
        self._asked: OrderedDict[Key, tuple[float, str]] = OrderedDict()
        self._answered: OrderedDict[Key, tuple[float, bytes]] = OrderedDict()

    def _put(self, table: OrderedDict[Key, tuple[float, object]], key: Key,
             value: object) -> None:
        table[key] = (self._clock(), value)
        table.move_to_end(key)
        now = self._clock()
        while table and (len(table) > self.capacity
                         or next(iter(table.values()))[0] < now - self.hold_s):
            table.popitem(last=False)

    def asked(self, key: Key, reply_subject: str) -> bytes | None:
        """A request with a reply subject passed; returns its answer if it is already known."""
        held = self._answered.pop(key, None)
        if held is not None and held[0] >= self._clock() - self.hold_s:
            return held[1]
        self._put(self._asked, key, reply_subject)  # type: ignore[arg-type]
        return None

    def answered(self, key: Key, answer: bytes) -> str | None:
        """The record committed: the reply subject to answer on, or None (publish enriched)."""
        asked = self._asked.pop(key, None)
        if asked is not None and asked[0] >= self._clock() - self.hold_s:
            return asked[1]
        self._put(self._answered, key, answer)  # type: ignore[arg-type]
        return None
