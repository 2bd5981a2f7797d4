"""More tenants waiting in the stream than NATS lists in one reply (100,000 subjects): every
page is read. `erase --all-tenants` asks the owner of each tenant with prompts waiting
(`tenants_known._waiting`), and `cluster status` counts the prompts of a partition no node
consumed yet (`stream.consumer_lag`); both read the stream's subjects, and before read the
first page only: tenants past it were not searched, and the lag was short. Real
nats-server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_cluster import nats_server

from appliance.cluster.partition import part_subject
from appliance.cluster.stream import consumer_lag, ensure_stream
from appliance.cluster.tenants_known import cluster_tenants
from appliance.config import ClusterSecurity, ClusterSettings

pytestmark = pytest.mark.slow
TENANTS = 100_050  # one page of subjects is 100,000


def test_every_tenant_waiting_in_the_stream_is_found_past_one_page(tmp_path: Path) -> None:
    with nats_server(tmp_path / "nats") as url:
        settings = ClusterSettings(url=url, partitions=4,
                                   security=ClusterSecurity(plain_bus=True))

        async def fill() -> int:
            import nats

            nc = await nats.connect(url)
            try:
                js = nc.jetstream()
                await ensure_stream(js, settings, max_msg_size=1 << 20)
                for i in range(TENANTS):  # as if routed to partition 0; no node consumes
                    await nc.publish(part_subject(0, f"t{i}"), b"{}")
                    if i % 5000 == 0:
                        await nc.flush()
                await nc.flush()
                while (stored := (await js.stream_info(settings.stream)).state.messages) \
                        < TENANTS:
                    await asyncio.sleep(0.2)
                return int(stored)
            finally:
                await nc.close()

        async def lag() -> int:
            import nats

            nc = await nats.connect(url)
            try:
                return (await consumer_lag(nc.jetstream(), settings, [0]))[0].pending
            finally:
                await nc.close()

        assert asyncio.run(fill()) == TENANTS
        waiting = asyncio.run(cluster_tenants(settings))
        pending = asyncio.run(lag())
    assert len(waiting) == TENANTS and "t100049" in waiting
    assert pending == TENANTS
