"""Erasing one user in every tenant: a user id is pseudonymised per tenant, so a request
that names only the person (a data subject's request) has to search each tenant, and has
to leave a tombstone in each tenant a prompt of theirs may still be on its way to, even
where nothing of theirs (or of anyone) is stored yet."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from appliance.config import Policies
from appliance.errors import SemtraceError
from appliance.keys import Keyring
from appliance.retention import (
    Bucket,
    EraseReport,
    Shredder,
    erase_pseudonym,
    erase_user,
    held_pairs,
    is_held,
    live_buckets,
)
from appliance.store import Store

APPLIED_PREFIX = "erasure_request_applied:"  # meta keys: requests another node made, applied
# tables whose `tenant` column names a tenant the store holds, has held, or has erased in
_STORED = ("buckets", "threads", "erasures")


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
                    request: Any) -> EraseReport | str:
    """Apply an erasure another node of the cluster asked for (`cluster/erasures.py`), with
    the service's policies, on its worker thread; a sentence instead when the asking node's
    pseudonyms are not this node's (its pseudonym names another user here)."""
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
                             requested_on=request.requested_on)
    with db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   (seen, report.completed_at or ""))
    return report
