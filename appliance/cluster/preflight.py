"""What a node checks on NATS before it loads its models and opens its store.

A node that cannot join (no server at the URL, credentials refused, the server
without the mappings, a stream made for another partition count, a partition
that a live node owns, or whose claim it cannot read) says so in one sentence
within seconds, and changes nothing: not after a minute of loading models, a
retention run on its store and its socket served. The real start repeats the checks
that can race (the claims are taken then).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from appliance.cluster.bus import connect, node_name
from appliance.cluster.owners import (
    Claim,
    owned_elsewhere,
    owners_bucket,
    read_claims,
    refuse_unreadable,
    watch_copies,
)
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
        await refuse_unreadable(kv, [p for p in settings.owned() if p not in claims],
                                settings.owner_ttl_s)
    finally:
        await nc.close()
    me = node_name(settings.node)
    for p in settings.owned():
        claim = claims.get(p)
        if claim is not None and claim.node != me:
            raise SemtraceError(owned_elsewhere(p, claim.node, time.time() - claim.refreshed))
    return Joining(last, claims)


async def consumers_of(settings: ClusterSettings, partitions: list[int]) -> dict[int,
                                                                              LastConsumer]:
    """The node that last consumed each of `partitions` (where the stream knows it), for a
    command run while the node is stopped (`cluster import`)."""
    nc = await connect(settings.url, settings.security, name="semtrace-import",
                       reconnect=False)
    try:
        js = nc.jetstream()
        if not await check_stream(js, settings):
            return {}  # no stream yet: no node ever consumed anything
        return await _last_consumers(js, settings, partitions)
    finally:
        await nc.close()


async def _last_consumers(js: Any, settings: ClusterSettings,
                          partitions: list[int] | None = None) -> dict[int, LastConsumer]:
    from nats.js.errors import NotFoundError

    from appliance.cluster.partition import consumer_name
    from appliance.cluster.stream import last_consumer

    found: dict[int, LastConsumer] = {}
    for p in settings.owned() if partitions is None else partitions:
        try:
            info = await js.consumer_info(settings.stream, consumer_name(settings.stream, p))
        except NotFoundError:
            continue
        node = last_consumer(info.config.description)
        if node is not None:
            found[p] = node
    return found


async def refuse_live_copy(settings: ClusterSettings, claims: dict[int, Claim],
                           data_dir: str, lock: str = "") -> None:
    """SemtraceError if another process of this data dir (`data_dir`: its id) runs: a copy
    of it (restored from a backup, say) or its original (`owners.watch_copies`, `lock` the
    data dir's lock this process holds); checked again when the node claims its
    partitions, after its models loaded."""
    from nats.js.errors import BucketNotFoundError

    if not any(data_dir and c.data_dir == data_dir and not (lock and c.lock == lock)
               for c in claims.values()):
        return
    nc = await connect(settings.url, settings.security, name="semtrace-preflight",
                       reconnect=False)
    try:
        try:
            kv = await owners_bucket(nc.jetstream(), ttl_s=settings.owner_ttl_s,
                                     replicas=settings.replicas, create=False)
        except BucketNotFoundError:
            return
        await watch_copies(kv, claims, data_dir, settings.owner_ttl_s, lock)
    finally:
        await nc.close()
