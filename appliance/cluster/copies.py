"""Tenants a node's store holds although other nodes own their partitions: said at start.

Such a copy is what a move leaves until `cluster forget`, what a node down while its
partition went elsewhere keeps, and what a node's socket made of other nodes' tenants
before it forwarded them to their owner (cluster/forward.py). Other nodes' queries and
erasures never see it, so the node says so once at each start rather than not at all.
"""

from __future__ import annotations

import logging
from typing import Any

from appliance.cluster.partition import format_ranges, partition_of
from appliance.words import plural, ranges

log = logging.getLogger("semtrace.cluster")


def foreign(tenants: set[str], partitions: int, owned: list[int]) -> dict[int, list[str]]:
    """The tenants of partitions not in `owned`, by partition. Pure."""
    mine = set(owned)
    out: dict[int, list[str]] = {}
    for tenant in sorted(tenants):
        p = partition_of(tenant, partitions)
        if p not in mine:
            out.setdefault(p, []).append(tenant)
    return out


def say_copies(store: Any, partitions: int, owned: list[int]) -> dict[int, list[str]]:
    """Log one warning when the store holds conversations of tenants of partitions this
    node does not own (on the service's worker: it reads the store); what it found."""
    tenants = {r[0] for r in store.db.execute("SELECT DISTINCT tenant FROM threads")}
    found = foreign(tenants, partitions, owned)
    if found:
        parts = format_ranges(list(found))
        log.warning(f"This node's store holds conversations of "
                    f"{plural(sum(len(t) for t in found.values()), 'tenant')} of "
                    f"{ranges('partition', parts)}, which it does not own, so other nodes' "
                    "queries and erasures do not see them: if they were exported and imported "
                    "on their owner, "
                    f"remove them here with `semtrace cluster forget --partitions {parts} "
                    "--yes`; otherwise see \"Two copies of a tenant\" in docs/scale-out.md.",
                    extra={"event": "tenants_elsewhere", "partitions": parts,
                           "tenants": sum(len(t) for t in found.values())})
    return found
