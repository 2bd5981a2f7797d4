"""`semtrace erase`: a user's right to be forgotten (GDPR art. 17), unless on legal hold."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import (
    FiniteFloatRange,
    credential_options,
    data_dir_option,
    emit_json,
    role_option_as,
)
from appliance.cli.compliance import _audit, _opened, _reason
from appliance.constants import WAIT_MAX_S
from appliance.errors import InputError, SemtraceError
from appliance.words import plural

if TYPE_CHECKING:
    from appliance.cli.erasure_cluster import Known
    from appliance.cli.erasure_said import Asked
    from appliance.cluster.erasures import Applied
    from appliance.cluster.locate import Home
    from appliance.erasure import EraseReport
    from appliance.retention import Shredder
    from appliance.runtime import Runtime


def _as_json(report: EraseReport) -> dict[str, Any]:
    return {**dataclasses.asdict(report), "complete": report.complete}


@click.command()
@data_dir_option
@credential_options
@role_option_as("compliance")
@click.option("--tenant", default=None, help="The tenant the user id belongs to.")
@click.option("--all-tenants", is_flag=True, help="Every tenant the data dir knows (stored "
              "data, tombstones, tenants named in the policies; those the role sees): a user "
              "id is pseudonymised per tenant, so each is searched and gets a tombstone.")
@click.option("--user", "user_id", required=True,
              help="The user id as the gateway sends it, or (with --tenant) the user's whole "
                   "pseudonym as `threads list` prints it.")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@click.option("--wait", "wait_s", type=FiniteFloatRange(0, WAIT_MAX_S), default=60,
              show_default=True,
              help="On a node of a cluster that does not own the tenant: seconds to wait for "
              "the owner to apply the erasure (it applies it later if it is down).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def erase(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
          role: str | None, tenant: str | None, all_tenants: bool, user_id: str, reason: str,
          wait_s: float, as_json: bool) -> None:
    """Erase every record of one user now (GDPR art. 17), unless on legal hold. On a node
    of a cluster, the node that owns the tenant applies it."""
    from appliance.cli.erasure_cluster import (
        ask_owners,
        cluster_away,
        cluster_known,
        erase_on_owner,
        erase_stale_copies,
        exit_code,
        this_node,
    )
    from appliance.cli.erasure_said import applied_of
    from appliance.erasure import erase_everywhere, known_tenants
    from appliance.retention import Shredder
    from appliance.roles import bound_tenants

    reason = _reason(reason, user_id=user_id)
    if (tenant is None) == (not all_tenants):
        raise InputError("Give --tenant T or --all-tenants" + (", not both." if all_tenants
                                                                else "."))
    for option, value in (("--tenant", tenant), ("--user", user_id)):
        if value is not None and not value.strip():  # the service never stores one
            raise InputError(f"{option} must not be empty.")
    asked: list[Asked] = []  # erasures asked of the tenants' owners on a cluster
    stale: list[EraseReport] = []  # this node's copies of tenants another node owns now
    known = None  # on a cluster, what --all-tenants learnt of the other nodes' tenants
    with _opened(data_dir, passphrase_file, key_file) as rt:
        name = _permitted(rt, role or "compliance", tenant)
        shredder = Shredder(rt.store, _audit(rt))
        node = this_node(rt)  # this node's name on a cluster, said with the outcome
        home = cluster_away(rt, [tenant]).get(tenant) if tenant is not None else None
        if tenant is not None:
            heard = _heard_of(rt)
            unheard = _unheard_of(tenant, heard if tenant in heard else heard + _noted(rt),
                                  bound_tenants(rt.policies.access, name),
                                  cluster=node is not None, away=home is not None)
        if home is not None:  # another node owns the tenant: it erases, this one waits
            sys.exit(erase_on_owner(rt, shredder, home, user_id=user_id, reason=reason,
                                    wait_s=wait_s, as_json=as_json, unheard=unheard,
                                    pseudonym=_forwarded_as_is(rt, home, user_id, reason)))
        if tenant is not None:
            reports = [_erase_in(rt, shredder, tenant, user_id, reason)]
            alike = _alike(rt, reports[0], user_id)
        else:
            bound = bound_tenants(rt.policies.access, name)
            known = cluster_known(rt)
            names = [t for t in sorted(set(known_tenants(rt.store, rt.policies))
                                       | known.tenants) if bound is None or t in bound]
            away = cluster_away(rt, names)  # on other nodes of a cluster: asked of them
            _no_pseudonym(rt, [t for t in names if t not in away], user_id, away=len(away))
            reports = erase_everywhere(shredder, rt.policies, rt.keyring, user_id=user_id,
                                       reason=reason,
                                       tenants=[t for t in names if t not in away])
            asked = ask_owners(rt, shredder, list(away.values()), user_id=user_id,
                               reason=reason, wait_s=wait_s, quiet=as_json) if away else []
            stale = erase_stale_copies(rt, shredder, list(away.values()), user_id=user_id,
                                       reason=reason)
    if tenant is not None:
        _one(reports[0], as_json, node=node, known=unheard is None, alike=alike)
        if unheard is not None:  # after the outcome, as the idle legal hold's warning is
            click.echo(unheard, err=True)
        if alike is not None:
            click.echo(_alike_note(reports[0].tenant, alike), err=True)
    else:
        done = [(x.home, x.user, a) for x in asked if (a := applied_of(x.answer)) is not None]
        for _, _, a in done:
            if a.refused:
                click.echo(f"semtrace: {a.refused}", err=True)
        reports += [_report_of(home, user, a) for home, user, a in done if not a.refused]
        _every(reports, as_json, bound=bound is not None, elsewhere=asked, wait_s=wait_s,
               here=node, stale=stale, unsearched=known)
        reports += stale
    for r in reports:
        if not r.complete and not r.held:
            one = r.unattributable_buckets == 1
            click.echo(f"Erasure NOT complete: {plural(r.unattributable_buckets, 'bucket')} "
                       f"of {r.tenant} {'was' if one else 'were'} written before a key "
                       f"rotation ({r.pseudonyms_changed_at}) that changed pseudonyms (older "
                       f"versions did); {'it' if one else 'they'} may hold this user's "
                       "records and cannot be attributed. Retention shreds "
                       f"{'it when it expires' if one else 'them when they expire'}.",
                       err=True)
    for sentence in known.sentences() if known is not None else []:
        click.echo(sentence, err=True)
    if any(r.held for r in reports):
        sys.exit(5)
    if not all(r.complete for r in reports) or known is not None and known.sentences():
        sys.exit(7)
    if any((a := applied_of(x.answer)) is not None and a.refused for x in asked):
        sys.exit(1)
    if code := exit_code([x for x in asked if applied_of(x.answer) is None]):
        sys.exit(code)  # NATS did not take one (1), an owner failed (9), pending (8)


def _permitted(rt: Runtime, acting: str, tenant: str | None) -> str:
    """The role `acting` if it may erase in `tenant` (None: every tenant it sees); a refusal
    (wrong role, no 'erase' permission, a tenant outside the role's) is audited as
    `erase_denied`, as reveal's are: tenant, role and the refusal's kind, never the user
    id or the reason."""
    from appliance.roles import require

    try:
        return require(rt.policies.access, acting, "erase", tenant=tenant)
    except SemtraceError as exc:
        _audit(rt).append("erase_denied", {"tenant": tenant, "role": acting,
                                           "why": type(exc).__name__})
        raise


def _erase_in(rt: Runtime, shredder: Shredder, tenant: str, user_id: str,
              reason: str) -> EraseReport:
    """Erase the user `--user` names in `tenant` on this data dir: the user id as the gateway
    sends it, or the user's whole pseudonym as `threads list`, the audit log and the TUI show
    it (`shown_user`)."""
    from appliance.cli.compliance import _names_pseudonym
    from appliance.erasure import erase_pseudonym, shown_user

    user = shown_user(rt.store, rt.keyring, tenant, user_id)
    if user is None:
        user = rt.keyring.pseudonym(tenant, user_id)
    elif _names_pseudonym(reason, lambda text: rt.keyring.pseudonym(tenant, text) == user):
        raise InputError("--reason must not hold the user id or an e-mail address: the audit "
                         "log keeps it for good; give a ticket number instead.")
    return erase_pseudonym(shredder, rt.policies.retention, rt.keyring, tenant=tenant,
                           user=user, reason=reason)


def _alike(rt: Runtime, report: EraseReport, user_id: str) -> str | None:
    """For an erasure that found nobody: how the same id written otherwise (a stray space,
    another case) names a user with records (`user_alike` in JSON), else None. It said only
    'No records', exit 0, while that user's records stayed."""
    from appliance.erasure import alike_user

    if report.buckets or report.held:
        return None
    return alike_user(rt.store, rt.keyring, report.tenant, user_id)


def _alike_note(tenant: str, how: str) -> str:
    return (f"Note: that --user has no records in {tenant}, but the same id {how} has: user "
            "ids are taken exactly as the gateway sends them; if that is the user, erase "
            "again with the id so written (their records were not erased).")


def _forwarded_as_is(rt: Runtime, home: Home, user_id: str, reason: str) -> bool:
    """Whether `--user` is the user's whole pseudonym (u_ and 20 hex digits, as `threads
    list` prints it), sent to the tenant's owner as it is: the request carries a pseudonym,
    and this node, which holds none of the tenant's users, pseudonymised it again and the
    owner erased nobody. Its reason is checked as `_erase_in` checks it (InputError, nothing
    asked or audited). The start of a pseudonym (the TUI's u_ and 8 hex digits), which
    the owner refuses and this node cannot look up, is refused too (it was taken for a
    user id: the owner erased nobody, exit 0)."""
    from appliance.cli.compliance import _names_pseudonym
    from appliance.erasure import PSEUDONYM_SHOWN, PSEUDONYM_WHOLE

    if PSEUDONYM_WHOLE.fullmatch(user_id) is None:
        if PSEUDONYM_SHOWN.fullmatch(user_id) is not None:
            owner = f"node '{home.owner}'" if home.owner else "the node that owns it"
            raise InputError(
                "That --user is spelt as the start of a pseudonym (u_ and 8 to 19 hex "
                f"digits, as the TUI shows users), which only {owner}, holding the users of "
                f"{home.tenant}, can look up: give the whole pseudonym (u_ and 20 hex digits, "
                "as `semtrace threads list` prints it), or erase on that node's data dir, "
                "where a user id spelt so is taken for one; nothing was asked or erased.")
        return False
    if _names_pseudonym(reason, lambda text: rt.keyring.pseudonym(home.tenant, text) == user_id):
        raise InputError("--reason must not hold the user id or an e-mail address: the audit "
                         "log keeps it for good; give a ticket number instead.")
    return True


def _no_pseudonym(rt: Runtime, tenants: list[str], user_id: str, *, away: int = 0) -> None:
    """`--all-tenants` takes a user id: a pseudonym names a user of one tenant only, and
    taken for a user id it erased nobody anywhere (InputError, nothing erased). On a node
    of a cluster, `away` tenants are owned by other nodes, whose users this node cannot
    look up: there a value spelt as a pseudonym (or its start) is refused as well (it was
    pseudonymised again and forwarded, and the owners erased nobody, exit 0)."""
    from appliance.erasure import PSEUDONYM_SHOWN, shown_user

    for t in tenants:
        try:
            named = shown_user(rt.store, rt.keyring, t, user_id)
        except InputError:
            named = user_id
        if named is not None:
            raise InputError(f"That --user is a user of {t} as Semtrace shows them (a "
                             "pseudonym, or its start), not a user id as the gateway sends "
                             f"it: a pseudonym is per tenant, so erase with --tenant {t} and "
                             "the whole pseudonym; nothing was erased.")
    if away and PSEUDONYM_SHOWN.fullmatch(user_id) is not None:
        raise InputError(f"That --user is spelt as a pseudonym (u_ and hex digits, as Semtrace "
                         "shows users), which names a user of one tenant only, and the users "
                         f"of the {plural(away, 'tenant')} other nodes own cannot be looked "
                         "up here: "
                         "erase with --tenant T and the whole pseudonym (or, a user id spelt "
                         "so, with --tenant T on each tenant's owner); nothing was erased.")


def _heard_of(rt: Runtime) -> list[str]:
    """The tenants this data dir holds or held data of, or a policy names (an earlier
    erasure's tombstone alone does not count: a mistyped tenant erased twice gets one)."""
    from appliance.erasure import configured_tenants, known_tenants
    from appliance.query import has_held

    named = configured_tenants(rt.policies)
    return [t for t in known_tenants(rt.store, rt.policies)
            if t in named or has_held(rt.store, t)]


def _noted(rt: Runtime) -> list[str]:
    """On a cluster, the tenants its nodes noted in NATS (`tenants_known.py`); none on a
    single host, or when NATS does not say (the note then rests on this data dir)."""
    import contextlib

    from appliance.cluster import bus
    from appliance.cluster.tenants_known import cluster_tenants

    if not rt.policies.cluster.url:
        return []
    with contextlib.suppress(Exception):
        return sorted(bus.run(cluster_tenants(rt.policies.cluster)))
    return []


def _unheard_of(tenant: str, known: list[str], bound: list[str] | None, *,
                cluster: bool = False, away: bool = False) -> str | None:
    """Pure: the note for an erasure in a tenant the data dir has never heard of (`known`:
    those it has heard of, with, on a `cluster`, those its nodes noted), else None. It is
    erased all the same (a tombstone for a tenant the gateway is about to send; by its
    owner when `away`), but a mistyped tenant ('Acme') would otherwise read as 'the user has
    no records' while their records stay in 'acme'; a tenant-bound role is told only of its
    own tenants."""
    if tenant in known:
        return None
    alike = sorted({t for t in known if t.lower() == tenant.lower()
                    and (bound is None or t in bound)})
    who = "this data dir nor the cluster's nodes" if cluster else "this data dir"
    hint = f" ({'they know' if cluster else 'it knows'} {', '.join(map(repr, alike))})" \
        if alike else ""
    return (f"Note: {'neither ' if cluster else ''}{who} ha{'ve' if cluster else 's'} "
            f"{'ever' if cluster else 'never'} heard of tenant {tenant!r}{hint}: no data of it "
            "is stored and no policy names it. Tenant names are case-sensitive, as the gateway "
            "sends them: if this one is mistyped, the user's records were not searched where "
            "they are (a tombstone was " + ("asked of its owner" if away else "left in it")
            + " all the same).")


def _one(report: EraseReport, as_json: bool, *, node: str | None,
         known: bool = True, alike: str | None = None) -> None:
    """`node`: this node's name on a cluster (it owns the tenant), said with the outcome;
    `known`: whether the data dir had heard of the tenant (`tenant_known` in JSON)."""
    here = f" on this node ('{node}'), which owns {report.tenant}," if node else ""
    if as_json:
        emit_json(_as_json(report) | {"tenant_known": known, "user_alike": alike}
                  | ({"node": node} if node else {}))
    elif report.held:
        click.echo(f"User {report.user} of {report.tenant} is on legal hold{here.rstrip(',')}; "
                   "nothing was erased.")
    elif not report.buckets and report.complete:  # a mistyped id reads as done otherwise
        click.echo(f"No records of {report.user} in {report.tenant}{here} (none written, or "
                   "all already shredded); nothing was erased. The request is in the audit "
                   "log.")
    else:
        # the tenant named, as in the sentences above: a pseudonym is per tenant
        where = here.rstrip(",") or f" in {report.tenant}"
        click.echo(f"Erased {plural(report.records, 'record')} in "
                   f"{plural(report.buckets, 'bucket')} of {report.user}{where}; the erasure "
                   "is in the audit log.")


def _tombstone_only(reports: list[EraseReport]) -> list[str]:
    """Tenants where the user held nothing: only a tombstone was left there."""
    return [r.tenant for r in reports if not r.held and not r.buckets]


def _report_of(home: Home, user: str, applied: Applied) -> EraseReport:
    """The owner's answer as the report of a local erasure."""
    from appliance.erasure import EraseReport

    return EraseReport(tenant=home.tenant, user=user, held=applied.held,
                       buckets=applied.buckets, records=applied.records,
                       completed_at=applied.completed_at,
                       unattributable_buckets=applied.unattributable_buckets,
                       pseudonyms_changed_at=applied.pseudonyms_changed_at)


def _every(reports: list[EraseReport], as_json: bool, *, bound: bool,
           elsewhere: list[Asked], wait_s: float, here: str | None,
           stale: list[EraseReport], unsearched: Known | None) -> None:
    """Print what `--all-tenants` did (`unsearched`: on a cluster, whose tenants it could
    not learn; their sentences follow on stderr)."""
    from appliance.cli.erasure_said import (
        applied_of,
        as_json_of,
        not_sent,
        sentence,
        stale_sentence,
        superseded_sentence,
        unreadable_of,
    )

    records = sum(r.records for r in reports)
    empty = _tombstone_only(reports)
    nodes = {r.tenant: here for r in reports if here} | {
        x.home.tenant: a.node for x in elsewhere if (a := applied_of(x.answer)) is not None}
    waiting = [x for x in elsewhere if applied_of(x.answer) is None]
    unsent = [x for x in waiting if not_sent(x)]
    if as_json:
        emit_json({"tenants": [{**_as_json(r), "tombstone": not r.held,
                                "node": nodes.get(r.tenant)} for r in reports],
                   "records": records, "tombstone_only": empty,
                   "pending": [as_json_of(x) for x in waiting if not not_sent(x)
                               and unreadable_of(x.answer) is None],
                   "not_sent": [as_json_of(x) for x in unsent],
                   "unreadable_answers": [as_json_of(x) for x in waiting
                                          if unreadable_of(x.answer) is not None],
                   "superseded": [as_json_of(x) for x in elsewhere if x.superseded],
                   "stale_here": [_as_json(r) for r in stale],
                   **(unsearched.as_json() if unsearched is not None else {}),
                   "complete": all(r.complete for r in reports) and not waiting
                   and not (unsearched is not None and unsearched.sentences())})
        return
    for r in reports:
        on = f" on node '{nodes[r.tenant]}'" if r.tenant in nodes else ""
        if r.held:
            click.echo(f"{r.tenant}: user {r.user} is on legal hold{on}; nothing was erased "
                       "there.")
        elif r.buckets:
            click.echo(f"{r.tenant}: erased {plural(r.records, 'record')} in "
                       f"{plural(r.buckets, 'bucket')} of {r.user}{on}.")
    for x in waiting:
        click.echo(f"{x.home.tenant}: {sentence(x, wait_s)}")
    for x in elsewhere:
        if x.superseded is not None:
            click.echo(f"{x.home.tenant}: {superseded_sentence(x, here)}")
    for r in stale:
        click.echo(stale_sentence(r, here))
    scope = " the role sees" if bound else ""
    if not reports and waiting:
        return
    if not reports:
        click.echo(f"No tenant{scope} is known to this data dir (no data, none named in the "
                   "policies); nothing was erased.")
        return
    # the tenants whose owners did not (or not yet) erase are not in the count: said so
    later = (f"; {len(waiting)} more NOT (yet) erased by its owner: "
             f"{', '.join(x.home.tenant for x in waiting)} (see above)" if waiting else "")
    if not records and not any(r.held for r in reports):
        among = "the 1 tenant" if len(reports) == 1 else f"any of the {len(reports)} tenants"
        click.echo(f"No records of this user in {among}{scope} (none written, or all already "
                   f"shredded); nothing was erased{later}. The request is in the audit log.")
    else:
        found = sum(1 for r in reports if r.buckets)
        click.echo(f"Searched {plural(len(reports), 'tenant')}{scope}: erased "
                   f"{plural(records, 'record')} in {found} of them{later}.")
    if empty:
        click.echo(f"Tombstone with 0 records in {plural(len(empty), 'tenant')}: "
                   f"{', '.join(empty)} "
                   "(prompts of this user sent before now are refused there).")


COMMANDS = [erase]
