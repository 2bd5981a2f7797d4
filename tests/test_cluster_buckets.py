"""The cluster's key-value buckets (owners, erasures, tenants) made by several nodes at the
same moment on a fresh nats-server (a real one): every node gets each bucket and what it
puts there is kept, whoever's creation came first. Nodes of this build race one another
and a node of another build whose buckets have another description (a rolling upgrade):
the server refuses a creation that comes a moment after the other's."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_cluster import nats_server

from appliance.cluster.erasures import erasures_bucket
from appliance.cluster.owners import owners_bucket
from appliance.cluster.partition import ERASURES_BUCKET, OWNERS_BUCKET
from appliance.cluster.tenants_known import TENANTS_BUCKET, tenants_bucket

NODES = 12  # of this build, each on its own connection
ROUNDS = 3  # a fresh nats-server each


async def _race(url: str) -> tuple[list[str], dict[str, set[str]]]:
    """NODES nodes of this build and one of another build make the three buckets at once;
    each node of this build puts its name in each. What went wrong for the nodes of this
    build (one line each), and the keys each bucket holds after."""
    import nats
    from nats.js.api import KeyValueConfig

    ncs = [await nats.connect(url) for _ in range(NODES + 1)]
    gate = asyncio.Event()

    async def this_build(i: int) -> list[str]:
        js = ncs[i].jetstream()
        await gate.wait()
        made = await asyncio.gather(owners_bucket(js, ttl_s=30, replicas=1),
                                    erasures_bucket(js, replicas=1),
                                    tenants_bucket(js, replicas=1), return_exceptions=True)
        wrong = []
        for name, kv in zip((OWNERS_BUCKET, ERASURES_BUCKET, TENANTS_BUCKET), made,
                            strict=True):
            try:
                if isinstance(kv, BaseException):
                    raise kv
                await kv.put(f"node-{i}", b"1")
            except Exception as exc:
                wrong.append(f"node-{i}, {name}: {type(exc).__name__}: {exc}")
        return wrong

    async def other_build() -> None:
        js = ncs[NODES].jetstream()
        await gate.wait()
        await asyncio.gather(*(js.create_key_value(KeyValueConfig(
            bucket=name, history=1, ttl=ttl, description="another build's bucket"))
            for name, ttl in ((OWNERS_BUCKET, 30), (ERASURES_BUCKET, None),
                              (TENANTS_BUCKET, None))), return_exceptions=True)

    tasks = [asyncio.create_task(other_build())]
    tasks += [asyncio.create_task(this_build(i)) for i in range(NODES)]
    await asyncio.sleep(0.1)
    gate.set()
    await asyncio.gather(*tasks)
    wrong = [line for t in tasks[1:] for line in t.result()]
    keys = {}
    for name in (OWNERS_BUCKET, ERASURES_BUCKET, TENANTS_BUCKET):
        try:
            keys[name] = set(await (await ncs[0].jetstream().key_value(name)).keys())
        except Exception:  # no keys at all
            keys[name] = set()
    for nc in ncs:
        await nc.close()
    return wrong, keys


def test_nodes_making_the_buckets_at_once_on_a_fresh_server_all_get_them(tmp_path: Path) -> None:
    """Before: a node whose creation came a moment after another node's was refused
    (nats BadRequestError 'stream name already in use' or 'subjects overlap with an
    existing stream'), or found the bucket before its stream answered and had its put
    refused (NoStreamResponseError): a node failed to start, or an erase was not sent."""
    for r in range(ROUNDS):
        with nats_server(tmp_path / f"nats{r}") as url:
            wrong, keys = asyncio.run(_race(url))
        assert wrong == [], "\n".join(wrong)
        every = {f"node-{i}" for i in range(NODES)}
        assert keys == {OWNERS_BUCKET: every, ERASURES_BUCKET: every, TENANTS_BUCKET: every}
