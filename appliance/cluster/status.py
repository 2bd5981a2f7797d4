"""`semtrace cluster status`: partitions, their owners and their consumers' lag, from NATS."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from appliance.cluster.bus import connect
from appliance.cluster.owners import all_claims, owners_bucket
from appliance.cluster.partition import consumer_name, partition_of
from appliance.cluster.stream import STREAM_DESCRIPTION, consumer_lag
from appliance.config import ClusterSettings
from appliance.errors import SemtraceError


@dataclass(frozen=True)
class PartitionState:
    """One partition: who consumes it and how far behind it is."""

    partition: int
    owner: str | None  # None: no live node claims it (its messages queue)
    owner_seen_s: float | None  # seconds since the owner last refreshed its claim
    consumer: str
    pending: int
    ack_pending: int
    redelivered: int
    lag: int
    unreadable_claim: str | None = None  # why this node cannot read its claim (a node, of
    # a later version perhaps, holds it: not "no owner")


@dataclass(frozen=True)
class ClusterStatus:
    """The stream and every partition."""

    stream: str
    partitions: int
    replicas: int
    messages: int
    bytes: int
    nodes: dict[str, list[int]]
    states: list[PartitionState]
    versions: dict[str, str | None]  # each live node's semtrace version

    def mixed_versions(self) -> bool:
        """Whether the live nodes run more than one version (a rolling upgrade)."""
        return len(set(self.versions.values())) > 1


@dataclass(frozen=True)
class TenantHome:
    """Where one tenant's prompts go: its partition and the node that owns it now."""

    tenant: str
    partition: int
    owner: str | None
    owner_seen_s: float | None
    lag: int
    unreadable_claim: str | None = None  # as `PartitionState`

def tenant_homes(status: ClusterStatus, tenants: list[str]) -> list[TenantHome]:
    """Each tenant's partition (as the server maps it) and that partition's owner."""
    out = []
    for tenant in tenants:
        state = status.states[partition_of(tenant, status.partitions)]
        out.append(TenantHome(tenant, state.partition, state.owner, state.owner_seen_s,
                              state.lag, state.unreadable_claim))
    return out


def _partition_count(description: str | None) -> int | None:
    pattern = re.escape(STREAM_DESCRIPTION).replace(r"\{n\}", r"(\d+)")
    m = re.fullmatch(pattern, description or "")
    return int(m.group(1)) if m else None


async def cluster_status(settings: ClusterSettings) -> ClusterStatus:
    """Read the stream, the owner claims and each partition's consumer."""
    from nats.js.errors import NotFoundError

    nc = await connect(settings.url, settings.security, name="semtrace-status",
                       reconnect=False)
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(settings.stream)
        except NotFoundError:
            raise SemtraceError(f"The stream {settings.stream} does not exist yet: no node has "
                                "started with --nats.") from None
        count = _partition_count(info.config.description) or settings.partitions
        kv = await owners_bucket(js, ttl_s=settings.owner_ttl_s, replicas=settings.replicas)
        claims, unreadable = await all_claims(kv)
        lags = await consumer_lag(js, settings, list(range(count)))
    finally:
        await nc.close()
    now = time.time()
    states = []
    nodes: dict[str, list[int]] = {}
    versions: dict[str, str | None] = {}
    for p in range(count):
        claim, lag = claims.get(p), lags[p]
        if claim is not None:
            nodes.setdefault(claim.node, []).append(p)
            versions[claim.node] = claim.version
        states.append(PartitionState(
            partition=p, owner=claim.node if claim else None,
            owner_seen_s=round(now - claim.refreshed, 1) if claim else None,
            consumer=consumer_name(settings.stream, p), pending=lag.pending,
            ack_pending=lag.ack_pending, redelivered=lag.redelivered, lag=lag.lag,
            unreadable_claim=unreadable.get(p)))
    return ClusterStatus(stream=settings.stream, partitions=count,
                         replicas=int(info.config.num_replicas or 1),
                         messages=int(info.state.messages), bytes=int(info.state.bytes),
                         nodes=nodes, states=states, versions=versions)
