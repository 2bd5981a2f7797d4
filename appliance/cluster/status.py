"""`semtrace cluster status`: partitions, their owners and their consumers' lag, from NATS."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from appliance.cluster.bus import connect
from appliance.cluster.owners import all_claims, owners_bucket
from appliance.cluster.partition import consumer_name, format_ranges, partition_of
from appliance.cluster.stream import STREAM_DESCRIPTION, consumer_lag
from appliance.config import ClusterSettings
from appliance.errors import SemtraceError
from appliance.words import plural, ranges


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
    owner_late: bool = False  # its owner missed two refreshes: stopped, killed or cut off


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
    owner_ttl_s: float = 15.0  # a claim not refreshed for this long expires (the bucket's)
    # the nodes not heard from for longer than two refreshes (2 x owner_ttl_s / 3): seconds
    # since their last refresh. Their claims still stand until they expire, so the table
    # alone showed them as owners, a growing number beside them the only sign.
    late: dict[str, float] = field(default_factory=dict)

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
    owner_late: bool = False  # as `PartitionState`


def tenant_homes(status: ClusterStatus, tenants: list[str]) -> list[TenantHome]:
    """Each tenant's partition (as the server maps it) and that partition's owner."""
    out = []
    for tenant in tenants:
        state = status.states[partition_of(tenant, status.partitions)]
        out.append(TenantHome(tenant, state.partition, state.owner, state.owner_seen_s,
                              state.lag, state.unreadable_claim, state.owner_late))
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
        ttl_s = float((await kv.status()).ttl or settings.owner_ttl_s)
        claims, unreadable = await all_claims(kv)
        lags = await consumer_lag(js, settings, list(range(count)))
    finally:
        await nc.close()
    now = time.time()
    states = []
    nodes: dict[str, list[int]] = {}
    versions: dict[str, str | None] = {}
    late: dict[str, float] = {}
    for p in range(count):
        claim, lag = claims.get(p), lags[p]
        silent = round(now - claim.refreshed, 1) if claim else 0.0
        if claim is not None:
            nodes.setdefault(claim.node, []).append(p)
            versions[claim.node] = claim.version
            if silent > 2 * ttl_s / 3:
                late[claim.node] = min(silent, late.get(claim.node, silent))
        states.append(PartitionState(
            partition=p, owner=claim.node if claim else None,
            owner_seen_s=round(now - claim.refreshed, 1) if claim else None,
            consumer=consumer_name(settings.stream, p), pending=lag.pending,
            ack_pending=lag.ack_pending, redelivered=lag.redelivered, lag=lag.lag,
            unreadable_claim=unreadable.get(p),
            owner_late=claim is not None and silent > 2 * ttl_s / 3))
    return ClusterStatus(stream=settings.stream, partitions=count,
                         replicas=int(info.config.num_replicas or 1),
                         messages=int(info.state.messages), bytes=int(info.state.bytes),
                         nodes=nodes, states=states, versions=versions, owner_ttl_s=ttl_s,
                         late=late)


def late_sentence(node: str, silent_s: float, ttl_s: float, partitions: int = 2) -> str:
    """What `cluster status` says of a node that missed two refreshes of its claims
    (`partitions`: how many it claims, for the sentence to agree)."""
    left = max(ttl_s - silent_s, 0)
    one = partitions == 1
    claims, expire = ("claim", "expires") if one else ("claims", "expire")
    return (f"Node {node} has not refreshed its {claims} for {silent_s:.0f} s (it does every "
            f"{ttl_s / 3:g} s while it runs): it is stopped, killed, hung or cut off from NATS; "
            f"its {claims} {expire} in {left:.0f} s (owner_ttl_s {ttl_s:g}), and "
            + ("its partition then queues until a node takes it." if one else
               "its partitions then queue until a node takes them."))


def status_lines(report: ClusterStatus) -> list[str]:
    """What `cluster status` prints without --json: the stream, each node, then a row per
    partition; counts said as words ('1 replica', 'node b: partition 3')."""
    lines = [f"stream {report.stream}: {plural(report.partitions, 'partition')}, "
             f"{plural(report.replicas, 'replica')}, {plural(report.messages, 'message')} "
             f"queued, {plural(report.bytes, 'byte')}"]
    for node, parts in sorted(report.nodes.items()):
        version = report.versions.get(node)
        lines.append(f"node {node}: {ranges('partition', format_ranges(parts))}, "
                     + (f"semtrace {version}" if version else "version unknown (earlier build)")
                     + (", LATE" if node in report.late else ""))
    lines += [late_sentence(node, silent, report.owner_ttl_s, len(report.nodes.get(node, [])))
              for node, silent in sorted(report.late.items())]
    if report.mixed_versions():
        lines.append("The nodes run different versions: fine during a rolling upgrade, but "
                     "`cluster export` and `import` move partitions only between nodes of one "
                     "version.")
    lines.append(f"{'part':>4}  {'owner':<20} {'heard from':>10} {'lag':>8} {'pending':>8} "
                 f"{'in work':>8} {'redelivered':>11}")
    for s in report.states:  # a node killed stays owner until its claim expires: "heard from"
        owner = (f"{s.owner} (late)" if s.owner and s.owner_late else s.owner
                 or ("(unreadable claim)" if s.unreadable_claim else "(none: queueing)"))
        seen = f"{s.owner_seen_s:.0f} s ago" if s.owner_seen_s is not None else "-"
        lines.append(f"{s.partition:>4}  {owner:<20} {seen:>10} {s.lag:>8} {s.pending:>8} "
                     f"{s.ack_pending:>8} {s.redelivered:>11}")
    lines += [f"Partition {s.partition}: unreadable claim ({s.unreadable_claim}): a node holds "
              "it that this version cannot name (upgrade this node if a later version wrote "
              "the claim), so it is not queueing for want of one."
              for s in report.states if s.unreadable_claim]
    return lines
