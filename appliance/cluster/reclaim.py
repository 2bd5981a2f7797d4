"""`cluster reclaim` on NATS: the partitions' consumers name the node that takes them back.

Reclaim runs on a stopped node whose partitions' last consumer is lost with its data.
Each partition's JetStream consumer names the node that last consumed it, and a
node refuses at start a partition that another node consumed since it last did
(`given_away.refuse_taken`). Left naming the lost node, the consumer would let
that node, should it come back (restored from a backup, its disk found), take the
partition again while this node, which reclaimed it, has not started yet: both
would then hold newer records of its tenants. So reclaim re-creates each consumer
naming this node ("reclaimed by node c"); nothing is consumed or acknowledged (a
fresh consumer of a work queue starts at its oldest unacknowledged message, as at
every start). A partition that a live node claims is refused: that node is not lost.
"""

from __future__ import annotations

import contextlib
import time

from appliance.cluster.bus import connect
from appliance.cluster.owners import owned_elsewhere, owners_bucket, read_claims
from appliance.cluster.partition import consumer_name
from appliance.cluster.stream import check_stream, consumer_config
from appliance.config import ClusterSettings
from appliance.errors import SemtraceError


async def name_consumers(settings: ClusterSettings, partitions: list[int], me: str,
                         data_dir: str = "") -> None:
    """Make each partition's consumer name `me` as its reclaimer, and this node's data dir
    (`data_dir`: its id); SemtraceError if a live node other than `me` claims one of them
    (nothing is changed then)."""
    from nats.js.errors import BucketNotFoundError, NotFoundError

    nc = await connect(settings.url, settings.security, name="semtrace-reclaim",
                       reconnect=False)
    try:
        js = nc.jetstream()
        if not await check_stream(js, settings):
            return  # no stream yet: no consumer names anyone
        with contextlib.suppress(BucketNotFoundError):
            kv = await owners_bucket(js, ttl_s=settings.owner_ttl_s,
                                     replicas=settings.replicas, create=False)
            claims = await read_claims(kv)
            for p in partitions:
                claim = claims.get(p)
                if claim is not None and claim.node != me:
                    raise SemtraceError(owned_elsewhere(p, claim.node,
                                                        time.time() - claim.refreshed))
        for p in partitions:
            with contextlib.suppress(NotFoundError):
                await js.delete_consumer(settings.stream, consumer_name(settings.stream, p))
            await js.add_consumer(settings.stream,
                                  consumer_config(settings, p, me, reclaimed=True,
                                                  data_dir=data_dir))
    finally:
        await nc.close()
