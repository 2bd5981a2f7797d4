"""What a node checks on NATS before it loads its models and opens its store.

A node that cannot join (no server at the URL, credentials refused, the server
without the mappings, a stream made for another partition count, a partition
that a live node owns) says so in one sentence within seconds, and changes
nothing: not after a minute of loading models, a retention run on its store
and its socket served. The real start repeats the checks that can race (the
claims are taken then).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from appliance.cluster.bus import connect, node_name
from appliance.cluster.owners import Claim, owned_elsewhere, owners_bucket, read_claims
from appliance.cluster.stream import LastConsumer, check_mapping, check_stream
from appliance.config import ClusterSettings
from appliance.errors import SemtraceError


@dataclass(frozen=True)
class Joining:
    """What the cluster holds for a node about to start."""

    last: dict[int, LastConsumer]  # the node that last consumed each of its partitions
    claims: dict[int, Claim]  # every live claim (a node name in use, by which data dir)


async def preflight(settings: ClusterSettings) -> Joining:
    """SemtraceError with one sentence if this node could not start consuming now; else
    the node that last consumed each of its partitions (where the stream knows it) and
    the live claims."""
    from nats.js.errors import BucketNotFoundError

    nc = await connect(settings.url, settings.security, name="semtrace-preflight",
                       reconnect=False)
    try:
        js = nc.jetstream()
        await check_mapping(nc, settings.partitions)
        # no stream yet: no node ever consumed anything
        last = await _last_consumers(js, settings) if await check_stream(js, settings) else {}
        try:
            kv = await owners_bucket(js, ttl_s=settings.owner_ttl_s,
                                     replicas=settings.replicas, create=False)
        except BucketNotFoundError:
            return Joining(last, {})  # no node ever claimed a partition
        claims = await read_claims(kv)
    finally:
        await nc.close()
    me = node_name(settings.node)
    for p in settings.owned():
        claim = claims.get(p)
        if claim is not None and claim.node != me:
            raise SemtraceError(owned_elsewhere(p, claim.node, time.time() - claim.refreshed))
    return Joining(last, claims)


async def _last_consumers(js: Any, settings: ClusterSettings) -> dict[int, LastConsumer]:
    from nats.js.errors import NotFoundError

    from appliance.cluster.partition import consumer_name
    from appliance.cluster.stream import last_consumer

    found: dict[int, LastConsumer] = {}
    for p in settings.owned():
        try:
            info = await js.consumer_info(settings.stream, consumer_name(settings.stream, p))
        except NotFoundError:
            continue
        node = last_consumer(info.config.description)
        if node is not None:
            found[p] = node
    return found


async def refuse_live_copy(settings: ClusterSettings, claims: dict[int, Claim],
                           data_dir: str) -> None:
    """SemtraceError if another process of this data dir (`data_dir`: its id) runs: a copy
    of it (restored from a backup, say) or its original, which would consume into a store
    of its own and split its tenants' records.

    A claim carrying this data dir's id is either such a process's or that of this data
    dir's last run, killed before it released its claims: on one host the data dir's
    lock keeps a second serve of one path out before this check. The live one refreshes
    its claims every `owner_ttl_s / 3`, so the claims are watched for up to twice that
    (a beat late under load is still seen); a dead run's never change (the start waits
    that long only after a crash, while its claims have not expired)."""
    from nats.js.errors import BucketNotFoundError

    mine = {p: c for p, c in claims.items() if data_dir and c.data_dir == data_dir}
    if not mine:
        return
    nc = await connect(settings.url, settings.security, name="semtrace-preflight",
                       reconnect=False)
    try:
        try:
            kv = await owners_bucket(nc.jetstream(), ttl_s=settings.owner_ttl_s,
                                     replicas=settings.replicas, create=False)
        except BucketNotFoundError:
            return
        deadline = time.monotonic() + settings.owner_ttl_s * 2 / 3
        while mine and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            now = await read_claims(kv)
            for p, seen in list(mine.items()):
                claim = now.get(p)
                if claim is None or claim.data_dir != data_dir:
                    del mine[p]  # released, expired or taken: not a live copy's
                elif claim.refreshed != seen.refreshed:
                    raise SemtraceError(
                        f"A copy of this data dir runs as node '{claim.node}' (its original, "
                        "or one restored from a backup; its claim on partition "
                        f"{p} was refreshed {max(0.0, time.time() - claim.refreshed):.0f} s "
                        "ago): two copies of one data dir would each store prompts of its "
                        "tenants that the other lacks, so stop that one before starting this "
                        "one. Nothing was consumed.")
    finally:
        await nc.close()
