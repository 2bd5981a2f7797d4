"""A cluster bucket read key by key (cluster/kv_read.py), on a real nats-server: every live
key with its last value, deleted and purged keys (before or during the read) left out, and
the keys' gets asked side by side, not one round trip after another (a bucket of 10,000
erasure requests, which each `erase` command's sweep reads, took 2.6-5.5 s one by one on
this host's loopback, 1.0-3.0 s now; over a network each round trip costs more)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_cluster import nats_server

from appliance.cluster.kv_read import GETS_AT_ONCE, bucket_entries

KEYS = 300


class Counted:
    """A bucket whose gets are counted while they are under way (the most at once); the
    key `gone` is deleted just before it is asked for, as another node may."""

    def __init__(self, kv: Any, gone: str) -> None:
        self._kv, self._gone = kv, gone
        self._js, self._stream, self._pre = kv._js, kv._stream, kv._pre
        self.now = self.most = 0

    async def get(self, key: str) -> Any:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            if key == self._gone:
                await self._kv.delete(key)
            return await self._kv.get(key)
        finally:
            self.now -= 1


async def _read(url: str) -> tuple[dict[str, bytes], int]:
    import nats
    from nats.js.api import KeyValueConfig

    nc = await nats.connect(url)
    try:
        kv = await nc.jetstream().create_key_value(KeyValueConfig(bucket="b", history=1))
        for i in range(KEYS):
            await kv.put(f"k{i:03}", f"v{i}".encode())
        for i in range(0, KEYS, 10):
            await kv.delete(f"k{i:03}")
        for i in range(5, KEYS, 10):
            await kv.purge(f"k{i:03}")
        await kv.put("k010", b"again")  # deleted, then written again: live
        counted = Counted(kv, gone="k001")
        entries = await bucket_entries(counted)
        return {e.key: e.value for e in entries}, counted.most
    finally:
        await nc.close()


def test_a_bucket_is_read_whole_without_deleted_keys_its_gets_side_by_side(
        tmp_path: Path) -> None:
    with nats_server(tmp_path / "nats", jetstream=True) as url:
        read, most = asyncio.run(_read(url))
    live = {f"k{i:03}": f"v{i}".encode() for i in range(KEYS) if i % 5 and i != 1}
    assert read == {**live, "k010": b"again"}
    assert most == GETS_AT_ONCE  # one at a time before: 1
