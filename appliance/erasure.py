"""Erasing a user (GDPR art. 17): `erase_user` in one tenant, with its tombstone, and in
every tenant: a user id is pseudonymised per tenant, so a request
that names only the person (a data subject's request) has to search each tenant, and has
to leave a tombstone in each tenant a prompt of theirs may still be on its way to, even
where nothing of theirs (or of anyone) is stored yet."""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance import failpoints
from appliance.config import Policies, RetentionSettings
from appliance.errors import InputError, SemtraceError
from appliance.keys import Keyring
from appliance.retention import Bucket, Shredder, held_pairs, is_held, live_buckets
from appliance.store import Store

APPLIED_PREFIX = "erasure_request_applied:"  # meta keys: requests another node made, applied
# tables whose `tenant` column names a tenant the store holds, has held, or has erased in
_STORED = ("buckets", "threads", "erasures")


@dataclass
class EraseReport:
    """What an erasure request did."""

    tenant: str
    user: str
    held: bool
    buckets: int = 0
    records: int = 0
    requested_at: str = ""
    completed_at: str | None = None
    # live buckets of the tenant under an earlier pseudonym key (cannot be attributed)
    unattributable_buckets: int = 0
    pseudonyms_changed_at: str | None = None

    @property
    def complete(self) -> bool:
        """False when records of this user may remain where no pseudonym reaches them."""
        return not self.held and self.unattributable_buckets == 0


def erase_user(shredder: Shredder, settings: RetentionSettings, keyring: Keyring, *,
               tenant: str, user_id: str, reason: str) -> EraseReport:
    """GDPR art. 17: shred every bucket of one user now, unless on legal hold, and leave
    a tombstone so that prompts of the user sent before it completed are not stored.

    The report says how many records were removed, and is not `complete` when the
    tenant still holds buckets written under an earlier pseudonym key (a rotation
    made by an older version), which may hold this user's records.
    """
    return erase_pseudonym(shredder, settings, keyring, tenant=tenant,
                           user=keyring.pseudonym(tenant, user_id), reason=reason)


def erase_pseudonym(shredder: Shredder, settings: RetentionSettings, keyring: Keyring, *,
                    tenant: str, user: str, reason: str,
                    requested_on: str | None = None, request_id: str | None = None,
                    attempts: int = 1) -> EraseReport:
    """`erase_user` of a user named by pseudonym: an erasure another node of a cluster asked
    for (the bus never carries the raw id); the audit entry names that node
    (`requested_on`), the request (`request_id`, as the asking node's `erase_forwarded`
    entries name it) and how many attempts applying it took (the failed ones and this)."""
    started = datetime.now(UTC).isoformat()
    report = EraseReport(tenant=tenant, user=user, held=False, requested_at=started)
    if is_held(Bucket(0, tenant, user, ""), held_pairs(settings, keyring)):
        report.held = True
        shredder.audit.append("legal_hold_skip", {"tenant": tenant, "user": user,
                                                  "request": "erase", "reason": reason})
        return report
    # the tombstone first: from here no prompt of the user is written (store/erasures.py)
    shredder.store.begin_erasure(tenant, user, datetime.fromisoformat(started).timestamp())
    failpoints.point("erase.tombstoned")  # the tombstone is in, nothing shredded yet
    buckets = live_buckets(shredder.store, tenant=tenant, user=user)
    report.records, _ = shredder.shred_buckets(buckets, reason="erasure")
    report.buckets = len(buckets)
    shredder.store.compact()
    done = datetime.now(UTC)
    shredder.store.complete_erasure(tenant, user, done.timestamp())
    report.completed_at = done.isoformat()
    earlier, since = shredder.store.earlier_pseudonym_buckets(tenant)
    report.unattributable_buckets = earlier
    if since is not None and earlier:
        report.pseudonyms_changed_at = datetime.fromtimestamp(since, UTC).isoformat()
    details = {"tenant": tenant, "user": user, "buckets": report.buckets,
               "records": report.records, "reason": reason, "requested_at": started,
               "completed_at": report.completed_at, "unattributable_buckets": earlier}
    asked: dict[str, Any] = {"requested_on": requested_on} if requested_on else {}
    if request_id is not None:
        asked |= {"request_id": request_id, "attempts": attempts}
    shredder.audit.append("erase", details | asked)
    return report


# a user as the product shows them (threads list, the audit log, the TUI's `u_` and 8 hex
# digits): shorter starts are left to be user ids, which they may well be ('u_1017')
PSEUDONYM_SHOWN = re.compile(r"u_[0-9a-f]{8,20}")
PSEUDONYM_WHOLE = re.compile(r"u_[0-9a-f]{20}")  # a whole one, as Keyring.pseudonym makes it


def live_users(store: Store, tenant: str, start: str, *, limit: int = 2) -> list[str]:
    """Pseudonyms of `tenant`'s users with live data (an erasure shreds it) that begin with
    `start`."""
    return [r[0] for r in store.db.execute(
        "SELECT DISTINCT user FROM buckets WHERE tenant = ? AND destroyed_at IS NULL AND "
        "user IS NOT NULL AND substr(user, 1, ?) = ? ORDER BY 1 LIMIT ?",
        (tenant, len(start), start, int(limit)))]


def alike_user(store: Store, keyring: Keyring, tenant: str, user_id: str) -> str | None:
    """How `user_id` differs from a user id of `tenant` with live data that it is not: its
    leading or trailing spaces, its case (None: no such user). An erasure of a user id with
    a stray space or the wrong case finds nobody and says 'No records' while the user's
    records stay; user ids are taken exactly as the gateway sends them, so it is only noted.
    """
    bare = user_id.strip()
    forms = [(bare, "without its leading or trailing spaces")] if bare != user_id else []
    forms += [(f, f"in {case}") for f, case in ((bare.lower(), "lower case"),
                                                (bare.upper(), "upper case"),
                                                (bare.capitalize(), "capitalised"))
              if f != bare]
    for form, how in forms:
        if live_users(store, tenant, keyring.pseudonym(tenant, form), limit=1):
            return how
    return None


def shown_user(store: Store, keyring: Keyring, tenant: str, value: str) -> str | None:
    """The pseudonym of the user of `tenant` that `--user VALUE` names when VALUE is that user
    as the product shows them (the whole pseudonym, as `threads list` prints it) rather than a
    user id as the gateway sends it (None: VALUE is a user id).

    Erasing the pseudonym taken for a user id erased nobody, said 'No records' and exited 0
    while the user's records stayed. InputError (nothing erased) where VALUE is only the start
    of a pseudonym (an erasure cannot be undone: the whole one names the user for sure), or
    is both a user id with data and another user's pseudonym."""
    if PSEUDONYM_SHOWN.fullmatch(value) is None:
        return None
    own = live_users(store, tenant, keyring.pseudonym(tenant, value), limit=1)
    whole = len(value) == len("u_") + 20
    if own and not whole:  # a user id with records: what --user means
        return None
    named = [u for u in live_users(store, tenant, value) if u not in own]
    if not named:  # erased before: asked again, the same user is named (and audited)
        return value if whole and not own and store.tombstone(tenant, value) else None
    if own:
        raise InputError(f"That --user is both a user id of {tenant} with records and the "
                         "pseudonym of another user; nothing was erased.")
    if not whole:
        raise InputError(f"That --user is the start of the pseudonym of "
                         f"{'a user' if len(named) == 1 else 'several users'} of {tenant}, not "
                         "a user id: give the whole pseudonym (u_ and 20 hex digits, as "
                         "`semtrace threads list` prints it) or the user id as the gateway "
                         "sends it; nothing was erased.")
    return value


def configured_tenants(policies: Policies) -> set[str]:
    """Tenants the policies name: roles bound to tenants (access.toml), per-tenant
    retention and legal holds (retention.toml), pinned link thresholds (correlation.toml)."""
    names = {t for role in policies.access.roles.values() for t in role.tenants}
    names |= set(policies.retention.tenants) | {h.tenant for h in policies.retention.legal_holds}
    return names | set(policies.correlation.calibration.pinned)


def stored_tenants(store: Store) -> set[str]:
    """Tenants with any row in the store: live or shredded data, threads, tombstones."""
    return {r[0] for table in _STORED
            for r in store.db.execute(f"SELECT DISTINCT tenant FROM {table}")}  # noqa: S608


def known_tenants(store: Store, policies: Policies) -> list[str]:
    """Every tenant this data dir knows of, in name order (what `--all-tenants` covers)."""
    return sorted(stored_tenants(store) | configured_tenants(policies))


def erase_everywhere(shredder: Shredder, policies: Policies, keyring: Keyring, *,
                     user_id: str, reason: str,
                     tenants: Iterable[str] | None = None) -> list[EraseReport]:
    """`erase_user` in every tenant the data dir knows of (`known_tenants`; of `tenants`,
    when the role is bound to some), in name order. Each gets a tombstone, those where the
    user held nothing too (a prompt of theirs may be on its way there), and its erasure is
    audited, with 0 records where there was nothing, so the log shows where the request
    searched. A tenant under a legal hold where the user holds nothing is left out: the
    hold keeps nothing of theirs there, and reporting it would read as if it did."""
    bound = None if tenants is None else set(tenants)
    names = [t for t in known_tenants(shredder.store, policies)
             if bound is None or t in bound]
    settings = policies.retention
    holds = held_pairs(settings, keyring)
    reports = []
    for t in names:
        user = keyring.pseudonym(t, user_id)
        if is_held(Bucket(0, t, user, ""), holds) and not live_buckets(
                shredder.store, tenant=t, user=user):
            continue
        reports.append(erase_user(shredder, settings, keyring, tenant=t, user_id=user_id,
                                  reason=reason))
    return reports


def erase_requested(shredder: Shredder, service: Any, keyring: Keyring,
                    request: Any, attempt: int = 1) -> EraseReport | str:
    """Apply an erasure another node of the cluster asked for (`cluster/erasures.py`), with
    the service's policies, on its worker thread (`attempt`: 1 the first try, more after
    failed ones); a sentence instead when the asking node's pseudonyms are not this
    node's (its pseudonym names another user here)."""
    if request.pseudonyms != keyring.pseudonym_id():
        return (f"Node '{request.requested_on}' pseudonymises user ids with another key than "
                "the owner (its data dir was not initialised with the cluster's key file); "
                "nothing was erased: run erase on the owner's data dir.")
    if not hmac.compare_digest(keyring.erasure_tag(request.signed()), request.tag):
        return ("The erasure request does not carry the tag of a node of this cluster; "
                "nothing was erased.")
    try:
        reason = keyring.open_from_cluster(request.reason, request.key.encode()).decode()
    except (SemtraceError, UnicodeDecodeError):
        return ("The erasure request's reason cannot be read with this node's key; nothing "
                "was erased.")
    db, seen = shredder.store.db, f"{APPLIED_PREFIX}{request.request_id}"
    if db.execute("SELECT 1 FROM meta WHERE key = ?", (seen,)).fetchone():
        # applied already (its answer lost, or an old request put back): once is enough, a
        # second run would shred what the user sent since
        return EraseReport(tenant=request.tenant, user=request.user, held=False)
    report = erase_pseudonym(shredder, service.policies.retention, keyring,
                             tenant=request.tenant, user=request.user, reason=reason,
                             requested_on=request.requested_on,
                             request_id=request.request_id, attempts=attempt)
    with db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   (seen, report.completed_at or ""))
    return report
