"""`semtrace erase` on a node of a cluster: here if this data dir owns the tenant, else
asked of the node that does, waiting for its answer (`appliance/cluster/erasures.py`)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import emit_json
from appliance.errors import SemtraceError

if TYPE_CHECKING:
    from appliance.cluster.erasures import Applied, Home
    from appliance.retention import Shredder
    from appliance.runtime import Runtime

PENDING_EXIT = 8  # asked of the owner, not applied yet (it applies it when it runs)


def _consumed(rt: Runtime) -> dict[int, str]:
    from appliance.cluster import given_away

    return given_away.consumed_here(rt.store.db, rt.policies.cluster.partitions)


def cluster_home(rt: Runtime, tenant: str) -> Home | None:
    """Where `tenant` lives when it is on another node of the cluster; None on a single host
    or when this data dir owns it. SemtraceError (nothing done) when NATS cannot say and
    this data dir does not hold the tenant."""
    from appliance.cluster.erasures import locate
    from appliance.cluster.partition import partition_of

    settings = rt.policies.cluster
    if not settings.url:
        return None
    here = _consumed(rt)
    try:
        home = asyncio.run(locate(settings, tenant, here))
    except SemtraceError as exc:
        p = partition_of(tenant, settings.partitions)
        if p in here:  # this data dir consumed the partition last: erase it here
            return None
        raise SemtraceError(
            f"{str(exc).rstrip('.')}, so this erasure cannot reach the node that owns "
            f"{tenant} (its partition {p} is not consumed by this data dir): run it again "
            "when NATS answers, or on the owner's data dir; nothing was erased.") from None
    return None if home.here else home


def _asking_node(rt: Runtime) -> str:
    from appliance.cluster.bus import node_name

    names = sorted(set(_consumed(rt).values()))
    return names[0] if names else node_name(rt.policies.cluster.node)


def erase_on_owner(rt: Runtime, shredder: Shredder, home: Home, *, user_id: str, reason: str,
                   wait_s: float, as_json: bool) -> int:
    """Ask the owner to erase, wait up to `wait_s` for its answer, print it; the exit code
    (0 done, 5 legal hold there, 7 incomplete there, 8 pending)."""
    from appliance.cluster.erasures import ErasureRequest, forward

    tenant = home.tenant
    user = rt.keyring.pseudonym(tenant, user_id)
    request = ErasureRequest(tenant, user, reason, secrets.token_hex(8), _asking_node(rt),
                             time.time(), rt.keyring.pseudonym_id())
    who = f"node '{home.owner}'" if home.owner else "the partition's next owner"

    def sent() -> None:
        if not as_json:
            click.echo(f"Waiting up to {wait_s:g} s for {who}, which owns {tenant}, to apply "
                       "the erasure ...", err=True)

    applied = asyncio.run(forward(rt.policies.cluster, request, wait_s=wait_s, on_sent=sent))
    outcome = ("pending" if applied is None else "refused" if applied.refused
               else "held" if applied.held else "applied")
    shredder.audit.append("erase_forwarded", {
        "tenant": tenant, "user": user, "node": home.owner, "reason": reason,
        "outcome": outcome, "records": 0 if applied is None else applied.records})
    if applied is not None and applied.refused:
        raise SemtraceError(applied.refused)
    if as_json:
        emit_json(_as_json(home, user, applied))
    else:
        click.echo(_sentence(home, user, applied, wait_s))
    if applied is None:
        return PENDING_EXIT
    if applied.held:
        return 5
    if applied.unattributable_buckets:
        click.echo(f"Erasure NOT complete: {applied.unattributable_buckets} bucket(s) of "
                   f"{tenant} on node '{applied.node}' were written before a key rotation "
                   f"({applied.pseudonyms_changed_at}) that changed pseudonyms; they may hold "
                   "this user's records and cannot be attributed.", err=True)
        return 7
    return 0


def _sentence(home: Home, user: str, applied: Applied | None, wait_s: float) -> str:
    tenant = home.tenant
    if applied is None and home.owner is None:
        return (f"The erasure of {user} in {tenant} is pending: no node has consumed its "
                f"partition {home.partition} yet; the request waits in NATS and the node that "
                "takes the partition applies it before it consumes any prompt.")
    if applied is None:
        state = "runs but" if home.live else "is not running and"
        return (f"The erasure of {user} in {tenant} is pending: node '{home.owner}', which "
                f"owns the tenant, {state} did not apply it within {wait_s:g} s; the request "
                "waits in NATS and the node applies it as soon as it runs, before it consumes "
                "any prompt (run this command again to see it applied).")
    where = f"on node '{applied.node}', which owns {tenant}"
    if applied.held:
        return f"User {user} of {tenant} is on legal hold {where}; nothing was erased."
    if not applied.buckets:
        return (f"No records of {user} in {tenant} {where} (none written, or all already "
                "shredded); nothing was erased. The request is in that node's audit log.")
    return (f"Erased {applied.records} record(s) in {applied.buckets} bucket(s) of {user} "
            f"{where} (audited there).")


def _as_json(home: Home, user: str, applied: Applied | None) -> dict[str, Any]:
    done = applied is not None
    return {"tenant": home.tenant, "user": user, "node": applied.node if applied else home.owner,
            "partition": home.partition, "applied": done, "pending": not done,
            "held": bool(applied and applied.held),
            "buckets": applied.buckets if applied else 0,
            "records": applied.records if applied else 0,
            "completed_at": applied.completed_at if applied else None,
            "unattributable_buckets": applied.unattributable_buckets if applied else 0,
            "complete": applied is not None and not applied.held
            and not applied.unattributable_buckets}
