"""`semtrace erase` on a node of a cluster: here if this data dir owns the tenant, else
asked of the node that does, waiting for its answer (`appliance/cluster/erasures.py`)."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import emit_json
from appliance.cli.erasure_said import (
    Asked,
    applied_of,
    as_json_of,
    confirmed,
    failed_of,
    not_sent,
    sentence,
    stale_sentence,
    superseded_json,
    superseded_sentence,
    unreached_of,
    unreadable_of,
)
from appliance.errors import SemtraceError
from appliance.words import named, plural

if TYPE_CHECKING:
    from appliance.cluster.erasures import Answer, ErasureRequest, Superseded
    from appliance.cluster.locate import Home
    from appliance.erasure import EraseReport
    from appliance.retention import Shredder
    from appliance.runtime import Runtime

PENDING_EXIT = 8  # asked of the owner, not applied yet (it applies it when it runs)
FAILED_EXIT = 9  # the owner tried and failed (its store raised); it tries again
NOT_SENT_EXIT = 1  # NATS did not take the request: nothing happens unless run again


def _consumed(rt: Runtime) -> dict[int, str]:
    from appliance.cluster import given_away

    return given_away.consumed_here(rt.store.db, rt.policies.cluster.partitions)


def cluster_away(rt: Runtime, tenants: list[str]) -> dict[str, Home]:
    """The tenants of `tenants` that live on another node of the cluster, with their home;
    none on a single host. SemtraceError (nothing done) when NATS cannot say and this data
    dir does not hold one of them."""
    from appliance.cluster import bus
    from appliance.cluster.locate import locate
    from appliance.cluster.partition import partition_of

    settings = rt.policies.cluster
    if not settings.url or not tenants:
        return {}
    here = _consumed(rt)
    try:
        homes = bus.run(locate(settings, tenants, here))
    except SemtraceError as exc:
        away = [t for t in tenants if partition_of(t, settings.partitions) not in here]
        if not away:  # this data dir consumed their partitions last: erase them here
            return {}
        what = (f"the node that owns {away[0]} (its partition "
                f"{partition_of(away[0], settings.partitions)} is" if len(away) == 1 else
                f"the nodes that own {len(away)} of the tenants ({', '.join(away)}; their "
                "partitions are")
        raise SemtraceError(
            f"{str(exc).rstrip('.')}, so this erasure cannot reach {what} not consumed by "
            "this data dir): run it again when NATS answers, or on the owner's data dir; "
            "nothing was erased.") from None
    return {h.tenant: h for h in homes if not h.here}


@dataclasses.dataclass(frozen=True)
class Known:
    """What `erase --all-tenants` learnt of the other nodes' tenants: their names, the
    nodes that own partitions but never noted theirs (`tenants_known.py`), the nodes whose
    note cannot be read, and why NATS could not say (None when it did)."""

    tenants: frozenset[str] = frozenset()
    unlisted: tuple[tuple[str, tuple[int, ...]], ...] = ()
    error: str | None = None
    unnamed: tuple[int, ...] = ()  # partitions an earlier build's node consumed last
    unreadable: tuple[str, ...] = ()  # nodes whose note this version cannot read

    def sentences(self) -> list[str]:
        """One sentence per node (or NATS) whose tenants were not searched."""
        if self.error is not None:
            return [f"Erasure NOT complete: {self.error.rstrip('.')}, so the tenants only "
                    "other nodes of the cluster know were not searched: run this command "
                    "again when NATS answers, or on each node's data dir."]
        from appliance.cluster.tenants_known import notable

        def why(node: str) -> str:
            return ("it has not run since an upgrade to a version that does, or NATS refused "
                    "its note: see its log's tenants_note_failed" if notable(node)
                    else "its name cannot be a NATS key: rename it with letters, digits and "
                    "-_=./ only")

        were = "was" if len(self.unnamed) == 1 else "were"
        earlier = [f"Erasure NOT complete: {named('partition', list(map(str, self.unnamed)))} "
                   f"{were} consumed last by a node of an earlier version, which has not noted "
                   "its tenants in NATS, so tenants only it knows were not searched: start "
                   "that node once and run this command again, or run it on that node's data "
                   "dir too."] if self.unnamed else []
        corrupt = [f"Erasure NOT complete: node '{node}' noted its tenants in NATS, but this "
                   "version cannot read its note (it is corrupt, or a later version wrote it "
                   "in a form this one does not know), so tenants only it knows were not "
                   "searched: restart that node (it notes its tenants again at start) and "
                   "run this command again, or run it on that node's data dir too."
                   for node in self.unreadable]
        return [f"Erasure NOT complete: node '{node}' ("
                f"{named('partition', list(map(str, ps)))}) has not noted its tenants in "
                f"NATS ({why(node)}), "
                "so tenants only it knows were not searched: start it once and run this "
                "command again, or run it on that node's data dir too." for node, ps
                in self.unlisted] + corrupt + earlier

    def as_json(self) -> dict[str, Any]:
        return {"unlisted_nodes": [{"node": n, "partitions": list(ps)}
                                   for n, ps in self.unlisted],
                "unreadable_notes": list(self.unreadable),
                "unnamed_partitions": list(self.unnamed), "nats_error": self.error}


def cluster_known(rt: Runtime) -> Known:
    """The tenants the other nodes of the cluster noted (`cluster/tenants_known.py`), and
    whose tenants are unknown; nothing on a single host."""
    from appliance.cluster import bus
    from appliance.cluster.tenants_known import cluster_notes

    if not rt.policies.cluster.url:
        return Known()
    consumed = _consumed(rt)
    try:
        notes = bus.run(cluster_notes(rt.policies.cluster,
                                          here={*consumed.values(), _asking_node(rt)},
                                          here_partitions=set(consumed)))
    except SemtraceError as exc:  # NATS away: this node's tenants only, and it says so
        return Known(error=str(exc))
    except Exception as exc:  # a NATS error mid-way, the nats extra missing
        return Known(error=f"NATS did not list the other nodes' tenants ({type(exc).__name__})")
    return Known(notes.tenants, notes.unlisted, unnamed=notes.unnamed,
                 unreadable=notes.unreadable)


def this_node(rt: Runtime) -> str | None:
    """This data dir's node name on a cluster (None on a single host)."""
    return _asking_node(rt) if rt.policies.cluster.url else None


def _asking_node(rt: Runtime) -> str:
    from appliance.cluster.bus import node_name

    names = sorted(set(_consumed(rt).values()))
    return names[0] if names else node_name(rt.policies.cluster.node)


def ask_owners(rt: Runtime, shredder: Shredder, homes: list[Home], *, user_id: str,
               reason: str, wait_s: float, quiet: bool,
               pseudonym: bool = False) -> list[Asked]:
    """Ask each tenant's owner to erase the user and wait up to `wait_s` for the answers
    (None: pending; `Failed`: the owner failed and retries; `Unreached`: NATS failed this
    command); each request is audited here as `erase_forwarded`, with the failure and the
    earlier request it replaced. With `pseudonym`, `user_id` is the user's pseudonym in the
    tenant already (`--user` as Semtrace shows them), forwarded as it is."""
    import asyncio

    from appliance.cluster import bus
    from appliance.cluster.erasures import ErasureRequest, forward

    me, fingerprint = _asking_node(rt), rt.keyring.pseudonym_id()
    def request(home: Home) -> ErasureRequest:
        user = user_id if pseudonym else rt.keyring.pseudonym(home.tenant, user_id)
        sealed = rt.keyring.seal_for_cluster(reason.encode(), f"{home.tenant}.{user}".encode())
        return ErasureRequest(home.tenant, user, sealed, secrets.token_hex(8), me, time.time(),
                              fingerprint)

    unsigned = [request(h) for h in homes]
    requests = [dataclasses.replace(r, tag=rt.keyring.erasure_tag(r.signed()))
                for r in unsigned]

    def sent(home: Home) -> Callable[[], None]:
        def say() -> None:
            if not quiet:
                who = (f"node '{home.owner}'" if home.owner else "the node whose claim this "
                       "node cannot read" if home.unreadable_claim else
                       "the partition's next owner")
                click.echo(f"Waiting up to {wait_s:g} s for {who}, which owns {home.tenant}, "
                           "to apply the erasure ...", err=True)
        return say

    async def all_of() -> list[tuple[Answer, Superseded | None]]:
        return list(await asyncio.gather(*(
            forward(rt.policies.cluster, r, wait_s=wait_s, on_sent=sent(h))
            for r, h in zip(requests, homes, strict=True))))

    asked = [Asked(h, r.user, answer, earlier) for r, h, (answer, earlier)
             in zip(requests, homes, bus.run(all_of()), strict=True)]
    seen = [r.request_id for r, a in zip(requests, asked, strict=True)
            if applied_of(a.answer) is not None]
    if seen:  # read: their requests leave NATS's disk now (`erasure_sweep.py`)
        from appliance.cluster.erasure_sweep import forget_answers

        with contextlib.suppress(Exception):  # else the running nodes sweep them later
            bus.run(forget_answers(rt.policies.cluster, seen))
    for r, a in zip(requests, asked, strict=True):
        shredder.audit.append("erase_forwarded", _audited(r, a, reason))
    return asked


def _audited(request: ErasureRequest, asked: Asked, reason: str) -> dict[str, Any]:
    """The `erase_forwarded` entry: what was asked, what came of it, what it replaced."""
    answer, failed, unreached = asked.answer, failed_of(asked.answer), unreached_of(asked.answer)
    entry: dict[str, Any] = {
        "tenant": asked.home.tenant, "user": asked.user, "node": asked.home.owner,
        "reason": reason, "request_id": request.request_id, "outcome": _outcome(answer),
        "records": a.records if (a := applied_of(answer)) else 0,
        "confirmed": confirmed(asked)}
    if failed is not None:
        entry |= {"attempts": failed.attempts, "error": failed.error}
    if unreached is not None:
        entry["error"] = unreached.why
    if (later := unreadable_of(answer)) is not None:
        entry["wire_version"] = later.version
    if (earlier := asked.superseded) is not None:
        entry["superseded"] = superseded_json(earlier)
    return entry


def _outcome(answer: Answer) -> str:
    applied, unreached = applied_of(answer), unreached_of(answer)
    if unreached is not None:
        return "pending" if unreached.sent else "not_sent"
    if unreadable_of(answer) is not None:
        return "unreadable_answer"
    return ("failed" if failed_of(answer) else "pending" if applied is None
            else "refused" if applied.refused else "held" if applied.held else "applied")


def erase_stale_copies(rt: Runtime, shredder: Shredder, homes: list[Home], *, user_id: str,
                       reason: str, pseudonym: bool = False) -> list[EraseReport]:
    """Erase here the user's records this data dir still holds of tenants another node owns
    now (its copy from before that node took the partition over, not yet forgotten); with
    `pseudonym`, `user_id` is the user's pseudonym already."""
    from appliance.erasure import erase_pseudonym
    from appliance.retention import live_buckets

    def user(tenant: str) -> str:
        return user_id if pseudonym else rt.keyring.pseudonym(tenant, user_id)

    return [erase_pseudonym(shredder, rt.policies.retention, rt.keyring, tenant=h.tenant,
                            user=user(h.tenant), reason=reason) for h in homes
            if live_buckets(rt.store, tenant=h.tenant, user=user(h.tenant))]


def erase_on_owner(rt: Runtime, shredder: Shredder, home: Home, *, user_id: str, reason: str,
                   wait_s: float, as_json: bool, unheard: str | None = None,
                   pseudonym: bool = False) -> int:
    """`erase --tenant` of a tenant on another node: ask, wait, print the answer (and
    `unheard`, the note on a tenant no one heard of, on stderr after it); the exit
    code (0 done, 5 legal hold there, 7 incomplete there, 8 pending, 9 the owner failed;
    SemtraceError, exit 1, when NATS did not take the request: nothing was erased)."""
    (asked,) = ask_owners(rt, shredder, [home], user_id=user_id, reason=reason,
                          wait_s=wait_s, quiet=as_json, pseudonym=pseudonym)
    if (done := applied_of(asked.answer)) is not None and done.refused:
        raise SemtraceError(done.refused)
    if not_sent(asked):
        raise SemtraceError(sentence(asked, wait_s))
    stale = erase_stale_copies(rt, shredder, [home], user_id=user_id, reason=reason,
                               pseudonym=pseudonym)
    if as_json:
        emit_json(as_json_of(asked) | {"stale_here": [dataclasses.asdict(r) for r in stale],
                                       "tenant_known": unheard is None})
    else:
        click.echo(sentence(asked, wait_s))
        if asked.superseded is not None:
            click.echo(superseded_sentence(asked, this_node(rt)))
        for r in stale:
            click.echo(stale_sentence(r, this_node(rt)))
        if unheard is not None:
            click.echo(unheard, err=True)
    code = exit_code([asked])
    return 5 if any(r.held for r in stale) else code


def exit_code(asked: list[Asked]) -> int:
    """5 if a legal hold kept the user somewhere, 7 if an erasure is incomplete (or its
    answer is of a wire version this node cannot read), 1 if NATS
    did not take a request, 9 if an owner failed to apply one, 8 if one is pending, else 0
    (an incomplete one is also said on stderr)."""
    code = 0
    for a in asked:
        applied = applied_of(a.answer)
        if unreadable_of(a.answer) is not None:  # not known applied: this node must upgrade
            code = 5 if code == 5 else 7
        elif applied is None:
            waiting = (NOT_SENT_EXIT if not_sent(a) else
                       FAILED_EXIT if failed_of(a.answer) else PENDING_EXIT)
            order = (0, PENDING_EXIT, FAILED_EXIT, NOT_SENT_EXIT)  # the worst last
            if code in order:
                code = max(code, waiting, key=order.index)
        elif applied.held:
            code = 5
        elif applied.unattributable_buckets:
            n = applied.unattributable_buckets
            click.echo(f"Erasure NOT complete: {plural(n, 'bucket')} of {a.home.tenant} on "
                       f"node '{applied.node}' {'was' if n == 1 else 'were'} written before a "
                       f"key rotation ({applied.pseudonyms_changed_at}) that changed "
                       f"pseudonyms; {'it' if n == 1 else 'they'} may hold this user's records "
                       "and cannot be attributed.", err=True)
            code = 5 if code == 5 else 7
    return code
