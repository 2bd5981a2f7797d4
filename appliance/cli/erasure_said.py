"""What an erasure asked of a tenant's owner on a cluster says (`erasure_cluster.py`): the
kinds of answer, one sentence each, and their `--json`."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from appliance.words import plural

if TYPE_CHECKING:
    from appliance.cluster.erasures import (
        Answer,
        Applied,
        Failed,
        Superseded,
        Unreached,
        Unreadable,
    )
    from appliance.cluster.locate import Home
    from appliance.erasure import EraseReport


@dataclasses.dataclass(frozen=True)
class Asked:
    """An erasure asked of a tenant's owner: where, the user's pseudonym, the answer (None
    while pending, `Failed` when the owner failed, `Unreached` when NATS failed this
    command), and the earlier unapplied request of the same erasure it replaced."""

    home: Home
    user: str
    answer: Answer
    superseded: Superseded | None = None


def applied_of(answer: Answer) -> Applied | None:
    """The owner's outcome, None while it is not applied (pending, failed, not reached)."""
    from appliance.cluster.erasures import Applied

    return answer if isinstance(answer, Applied) else None


def failed_of(answer: Answer) -> Failed | None:
    """The owner's last failed attempt, None when it applied the request or has not tried."""
    from appliance.cluster.erasures import Failed

    return answer if isinstance(answer, Failed) else None


def unreached_of(answer: Answer) -> Unreached | None:
    """How NATS failed the asking command, None when it did not."""
    from appliance.cluster.erasures import Unreached

    return answer if isinstance(answer, Unreached) else None


def unreadable_of(answer: Answer) -> Unreadable | None:
    """The wire version of an answer a later version wrote, None when this node read it."""
    from appliance.cluster.erasures import Unreadable

    return answer if isinstance(answer, Unreadable) else None


def not_sent(asked: Asked) -> bool:
    """NATS did not take the request: the owner never sees it."""
    return (u := unreached_of(asked.answer)) is not None and not u.sent


def confirmed(asked: Asked) -> bool:
    """NATS said it took the request (or the owner's answer shows it did): False when it
    was not sent, and when it was but NATS's acknowledgement never came."""
    return (u := unreached_of(asked.answer)) is None or (u.sent and u.confirmed)


def sentence(asked: Asked, wait_s: float) -> str:
    """What came of an erasure asked of a tenant's owner, in one sentence."""
    home, user, answer, tenant = asked.home, asked.user, asked.answer, asked.home.tenant
    applied, failed, unreached = applied_of(answer), failed_of(answer), unreached_of(answer)
    who = (f"node '{home.owner}', which owns {tenant}" if home.owner else
           f"the node whose claim on its partition {home.partition} this node cannot read"
           if home.unreadable_claim else f"the node that takes its partition {home.partition}")
    if unreached is not None and not unreached.sent:
        return (f"{unreached.why}; the request did not reach {who}, and nothing was erased "
                "there (this node's audit log records the attempt; run this command again "
                "when NATS takes it).")
    if unreached is not None and not unreached.confirmed:
        return (f"The erasure of {user} in {tenant} is pending, NOT confirmed: "
                f"{unreached.why}, so it may or may not be in NATS: if it is, {who}"
                f"{',' if home.owner else ''} applies it when it reads it, before it "
                "consumes any prompt, and may have already; nothing says it was not erased "
                "(run this command again to know: it asks again).")
    if unreached is not None:
        return (f"The erasure of {user} in {tenant} is pending: the request is in NATS, but "
                f"{unreached.why} while this command waited for {who} to apply it; that node "
                "applies it when it reads it, before it consumes any prompt (run this command "
                "again to see it applied).")
    if failed is not None:
        return _failed_sentence(home, user, failed)
    if (later := unreadable_of(answer)) is not None:
        from appliance.cluster.wire import WIRE_VERSION

        return (f"The erasure of {user} in {tenant} is NOT known applied: {who}"
                f"{',' if home.owner else ''} answered in "
                f"wire version {later.version}, which this node (wire version {WIRE_VERSION}) "
                "cannot read: upgrade this node and run this command again to see what it "
                "did.")
    if applied is None and home.unreadable_claim:
        return (f"The erasure of {user} in {tenant} is pending: its partition {home.partition} "
                "has a claim in NATS this node cannot read (a later version's, or corrupt), "
                f"so which node holds it is not known here and none applied it within "
                f"{wait_s:g} s; the request waits in NATS for a node that reads it (run this "
                "command again to see it applied, or upgrade this node: `cluster status`).")
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
    return (f"Erased {plural(applied.records, 'record')} in "
            f"{plural(applied.buckets, 'bucket')} of {user} {where} (audited there).")


def superseded_sentence(asked: Asked, here: str | None) -> str:
    """That this request replaced an earlier one not applied, and what had come of it;
    `here`: this node's name (the earlier request's own audit entry is on the node that
    asked it: said "both are in this node's audit log" when another node had)."""
    earlier = asked.superseded
    assert earlier is not None
    failed = earlier.failed
    what = ("no node had tried to apply it yet" if failed is None else
            f"node '{failed.node}' had failed to apply it ({plural(failed.attempts, 'attempt')}, "
            f"last at {utc(failed.at)}: {failed.error})")
    return (f"This request replaces the earlier one of this erasure in {asked.home.tenant}, "
            f"asked on node '{earlier.requested_on}' at {utc(earlier.requested_at)}, which "
            f"was not applied: {what}; "
            + ("both are in this node's audit log (erase_forwarded)." if
               earlier.requested_on == here else "this node's audit log names it in this "
               "request's entry (erase_forwarded, superseded), and node "
               f"'{earlier.requested_on}''s audit log has its own."))


def _failed_sentence(home: Home, user: str, failed: Failed) -> str:
    again = (f"it tries again in {failed.retry_in_s:g} s while it runs, and at its next start"
             if failed.retry_in_s is not None else "it tries again at its next start")
    return (f"The erasure of {user} in {home.tenant} is NOT applied yet: node '{failed.node}', "
            f"which owns the tenant, failed to apply it ({plural(failed.attempts, 'attempt')}, "
            "last: "
            f"{failed.error}); the request waits in NATS and {again} (run this command again "
            "to see it applied).")


def as_json_of(asked: Asked) -> dict[str, Any]:
    home, answer = asked.home, asked.answer
    applied, failed, unreached = applied_of(answer), failed_of(answer), unreached_of(answer)
    done = applied is not None
    return {"tenant": home.tenant, "user": asked.user,
            "node": applied.node if applied else home.owner,
            "partition": home.partition, "unreadable_claim": home.unreadable_claim,
            "applied": done,
            "pending": not done and not not_sent(asked) and unreadable_of(answer) is None,
            "sent": not not_sent(asked),
            "confirmed": confirmed(asked),
            "failed": None if failed is None else {
                "attempts": failed.attempts, "error": failed.error,
                "retry_in_s": failed.retry_in_s},
            "error": unreached.why if unreached is not None else None,
            "unreadable_answer": None if (later := unreadable_of(answer)) is None
            else {"wire_version": later.version},
            "superseded": None if asked.superseded is None
            else superseded_json(asked.superseded),
            "held": bool(applied and applied.held),
            "buckets": applied.buckets if applied else 0,
            "records": applied.records if applied else 0,
            "completed_at": applied.completed_at if applied else None,
            "unattributable_buckets": applied.unattributable_buckets if applied else 0,
            "complete": applied is not None and not applied.held
            and not applied.unattributable_buckets}


def superseded_json(earlier: Superseded) -> dict[str, Any]:
    return {"request_id": earlier.request_id, "requested_on": earlier.requested_on,
            "requested_at": utc(earlier.requested_at),
            "failed": None if earlier.failed is None else {
                "node": earlier.failed.node, "attempts": earlier.failed.attempts,
                "error": earlier.failed.error, "at": utc(earlier.failed.at)}}


def utc(at: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def stale_sentence(report: EraseReport, here: str | None) -> str:
    """What an erasure of a stale copy on this node did."""
    node = f"this node ('{here}')" if here else "this node"
    if report.held:
        return (f"{report.tenant}: user {report.user} is on legal hold on {node}, which still "
                "holds a copy of the tenant from before its partition moved; nothing was "
                "erased there.")
    return (f"{report.tenant}: also erased {plural(report.records, 'record')} in "
            f"{plural(report.buckets, 'bucket')} of {report.user} on {node}, a copy of the "
            "tenant from before its "
            "partition moved.")
