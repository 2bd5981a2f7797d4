"""The order in which a node's socket puts other nodes' tenants' requests on the bus
(appliance/cluster/bus_order.py, used by cluster/forward.py), pure logic: a stand-in for
the NATS connection records what is sent, and events, not sleeps, decide when a claim
lookup or an owner's answer comes. Through a real nats-server and real nodes:
test_cluster_forward_wire.py."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from appliance.cluster.forward import Forwarder
from appliance.cluster.partition import partition_of
from appliance.protocol import parse_request

PARTITIONS = 4


def tenant_in(partition: int) -> str:
    return next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == partition)


class Connection:
    """What the forwarder uses of a nats-py client. A request's answer comes when the test
    sets `answer`."""

    def __init__(self) -> None:
        self.is_connected, self.is_closed = True, False
        self.stats = {"reconnects": 0}
        self.sent: list[str] = []  # request ids, in the order they went onto the bus
        self.answer = asyncio.Event()
        self._inboxes: dict[str, asyncio.Future[Any]] = {}

    def new_inbox(self) -> str:
        return f"_INBOX.{len(self._inboxes)}"

    async def subscribe(self, subject: str, *, future: asyncio.Future[Any],
                        max_msgs: int) -> Any:
        self._inboxes[subject] = future

        async def unsubscribe(limit: int = 0) -> None:
            return None
        return SimpleNamespace(unsubscribe=unsubscribe)

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        rid = json.loads(payload)["request_id"]
        self.sent.append(rid)
        if reply:
            asyncio.get_running_loop().create_task(self._reply(reply, rid))

    async def _reply(self, inbox: str, rid: str) -> None:
        await self.answer.wait()
        data = json.dumps({"request_id": rid, "ok": True}).encode()
        self._inboxes[inbox].set_result(SimpleNamespace(data=data, headers=None))

    async def flush(self, timeout: float) -> None:
        return None


def _ingest(tenant: str, rid: str, **more: Any) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": tenant, "request_id": rid, "user_id": "ana",
            "text": "Is the night train on time?", **more}


async def _claims_held_until(looked: asyncio.Event, told: asyncio.Event) -> Forwarder:
    """A forwarder whose first read of a partition's claim waits for `told`."""
    fwd = Forwarder(partitions=PARTITIONS, owns={0, 1}.__contains__, keys=None,
                    max_bytes=256 * 1024)

    async def claimed(p: int) -> bool:
        looked.set()
        await told.wait()
        return True
    fwd.claimed = claimed
    return fwd


def test_a_sync_ingest_waiting_for_its_claim_keeps_its_place_before_a_later_async_one() -> None:
    """Pipelined on a socket connection, a sync ingest then an async one of the same
    partition: the sync one reads its partition's claim from NATS first. Before, the async
    one went onto the bus meanwhile, and the owner stored the later prompt first. Another
    partition's request does not wait, and the async one waits for the sync one's sending
    only, not for its answer."""
    async def run() -> None:
        looked, told = asyncio.Event(), asyncio.Event()
        fwd = await _claims_held_until(looked, told)
        nc = fwd.nc = Connection()
        theirs, other = tenant_in(2), tenant_in(3)
        calls = [_ingest(theirs, "first"), _ingest(theirs, "second", mode="async"),
                 _ingest(other, "elsewhere", mode="async")]
        tasks = [asyncio.ensure_future(fwd(obj, parse_request(obj, max_text_chars=8000)))
                 for obj in calls]
        await looked.wait()  # the first waits for its claim
        elsewhere = await tasks[2]
        assert elsewhere["queued"] and nc.sent == ["elsewhere"]
        assert not tasks[1].done()  # not sent ahead of the first
        told.set()
        second = await tasks[1]  # sent once the first is on the bus, before its answer
        assert second["queued"] and nc.sent == ["elsewhere", "first", "second"]
        assert not tasks[0].done()
        nc.answer.set()
        assert (await tasks[0])["ok"]
    asyncio.run(run())


def test_a_request_cancelled_while_it_waits_for_its_claim_does_not_hold_the_next() -> None:
    async def run() -> None:
        looked, told = asyncio.Event(), asyncio.Event()
        fwd = await _claims_held_until(looked, told)
        nc = fwd.nc = Connection()
        first, second = _ingest(tenant_in(2), "first"), _ingest(tenant_in(2), "second",
                                                                 mode="async")
        gone = asyncio.ensure_future(fwd(first, parse_request(first, max_text_chars=8000)))
        after = asyncio.ensure_future(fwd(second, parse_request(second, max_text_chars=8000)))
        await looked.wait()
        gone.cancel()  # the socket's connection closed under it
        assert (await after)["queued"] and nc.sent == ["second"]
    asyncio.run(run())
