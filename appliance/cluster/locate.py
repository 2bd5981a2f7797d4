"""Where a tenant lives in a cluster: its partition, the node that owns it now (the live
claim, else the partition's last consumer) and whether that is this data dir. `semtrace
erase` asks it first (`erasures.py`): here, the erasure runs as on a single host; elsewhere,
it is asked of the owner."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from appliance.cluster.bus import connect
from appliance.cluster.partition import consumer_name, partition_of
from appliance.config import ClusterSettings
from appliance.config.cluster import shown_url
from appliance.errors import SemtraceError


@dataclass(frozen=True)
class Home:
    """Where a tenant lives: its partition, the node that owns it, whether that is here."""

    tenant: str
    partition: int
    owner: str | None  # the live claim's node, else the partition's last consumer
    live: bool  # the owner holds a live claim (it runs)
    here: bool  # this data dir is the owner
    unreadable_claim: bool = False  # a node holds it whose claim this node cannot read


def home_of(tenant: str, partitions: int, *, claimed_by: str | None, last_consumer: str | None,
            consumed_here: dict[int, str], unreadable_claim: bool = False) -> Home:
    """Pure: the tenant's home from the live claim, the partition's last consumer and the
    partitions this data dir consumed (under which node name); a live claim this node
    cannot read (`unreadable_claim`) is a node's it cannot name, not here."""
    p = partition_of(tenant, partitions)
    owner = claimed_by or (None if unreadable_claim else last_consumer)
    mine = consumed_here.get(p)
    return Home(tenant, p, owner, claimed_by is not None or unreadable_claim,
                mine is not None and not unreadable_claim and (owner is None or owner == mine),
                unreadable_claim and claimed_by is None)


async def locate(settings: ClusterSettings, tenants: list[str],
                 consumed_here: dict[int, str]) -> list[Home]:
    """Ask NATS which node owns each tenant now; SemtraceError if NATS does not answer (or
    the `nats` extra is not installed)."""
    nc = await connect(settings.url, settings.security, name="semtrace-erase", reconnect=False)
    from nats.errors import Error as NatsError

    try:
        return await _locate(nc, settings, tenants, consumed_here)
    except (NatsError, OSError) as exc:  # no JetStream there, a permission denied, gone
        raise SemtraceError(
            f"NATS at {shown_url(settings.url)} did not answer its JetStream API "
            f"({type(exc).__name__}; is JetStream enabled there, and may this node's NATS "
            "user publish to $JS.API.>?)"
            ) from None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _locate(nc: Any, settings: ClusterSettings, tenants: list[str],
                  consumed_here: dict[int, str]) -> list[Home]:
    from nats.js.errors import BucketNotFoundError, NotFoundError

    from appliance.cluster.owners import all_claims, owners_bucket
    from appliance.cluster.stream import last_consumer

    js = nc.jetstream()
    try:
        claims, unreadable = await all_claims(await owners_bucket(
            js, ttl_s=settings.owner_ttl_s, replicas=settings.replicas, create=False))
    except BucketNotFoundError:
        claims, unreadable = {}, {}
    last: dict[int, str | None] = {}
    for p in sorted({partition_of(t, settings.partitions) for t in tenants}):
        try:
            info = await js.consumer_info(settings.stream, consumer_name(settings.stream, p))
            named = last_consumer(info.config.description)  # or the reclaiming node
            last[p] = named.node if named else None
        except NotFoundError:
            last[p] = None
    homes = []
    for t in tenants:
        p = partition_of(t, settings.partitions)
        claim = claims.get(p)
        homes.append(home_of(t, settings.partitions, claimed_by=claim.node if claim else None,
                             last_consumer=last[p], consumed_here=consumed_here,
                             unreadable_claim=p in unreadable))
    return homes
