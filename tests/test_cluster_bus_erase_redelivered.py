"""A request delivered twice (its ack_wait ran out while the node worked on it: a held tool
loop call, a busy node, a partition moving) is answered twice; the first answer's secure
delete erased it from JetStream, so the second's delete finds no such message. That is
no failure: the old code logged `bus_erase_failed` (naming the node's NATS permissions)
and then erased no request for a minute, leaving the next prompts on NATS's disk.

A real nats-server and the node's own settle path (`ClusterNode._settle`: the answer, the
secure delete, the ack); the node is built without a service, which settling never uses.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_cluster import PARTITIONS, nats_server

WITHIN = 60.0  # a bound on a wait for the server, never reached when things work


def test_a_request_answered_twice_does_not_stop_the_secure_delete_of_the_next(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import nats
    from nats.js.errors import NotFoundError

    from appliance.cluster import partition as part
    from appliance.cluster.node import ClusterNode
    from appliance.cluster.stream import consumer_config, ensure_stream
    from appliance.config import ClusterSettings

    settings = ClusterSettings(url="nats://127.0.0.1:1", partitions=PARTITIONS, node="n1",
                               ack_wait_s=1.0, security={"plain_bus": True})
    p = part.partition_of("acme", PARTITIONS)
    service = SimpleNamespace(policies=SimpleNamespace(
        service=SimpleNamespace(max_frame_bytes=1 << 20)))
    node = ClusterNode(service, settings)  # type: ignore[arg-type]

    async def settle(msg: Any, rid: str) -> None:
        await node._settle(msg, "acme", None, {"ok": True, "request_id": rid})

    async def run(url: str) -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        node._nc, node._js = nc, js
        await ensure_stream(js, settings, max_msg_size=1 << 20)
        await js.add_consumer(settings.stream, consumer_config(settings, p))
        pull = await js.pull_subscribe_bind(durable=part.consumer_name(settings.stream, p),
                                            stream=settings.stream)
        await nc.publish(part.part_subject(p, "acme"), b"r1")
        await nc.flush()
        first = (await pull.fetch(1, timeout=WITHIN))[0]
        again = (await pull.fetch(1, timeout=WITHIN))[0]  # after ack_wait: delivered again
        assert again.metadata.sequence.stream == first.metadata.sequence.stream
        assert again.metadata.num_delivered == 2
        await settle(first, "r1")  # erased and acked
        await settle(again, "r1")  # answered again: nothing left to erase
        await nc.publish(part.part_subject(p, "acme"), b"r2")
        (second,) = await pull.fetch(1, timeout=WITHIN)
        await settle(second, "r2")
        with pytest.raises(NotFoundError):  # erased, not only acked
            await js.get_msg(settings.stream, second.metadata.sequence.stream)
        await nc.close()

    with nats_server(tmp_path / "nats") as url, caplog.at_level(logging.WARNING,
                                                                 logger="semtrace.cluster"):
        asyncio.run(asyncio.wait_for(run(url), WITHIN))
    assert not [r for r in caplog.records if getattr(r, "event", None) == "bus_erase_failed"]
