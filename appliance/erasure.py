"""Erasing one user in every tenant: a user id is pseudonymised per tenant, so a request
that names only the person (a data subject's request) has to search each tenant."""

from __future__ import annotations

from appliance.config import RetentionSettings
from appliance.keys import Keyring
from appliance.retention import (
    Bucket,
    EraseReport,
    Shredder,
    erase_user,
    held_pairs,
    is_held,
    live_buckets,
)


def erase_everywhere(shredder: Shredder, settings: RetentionSettings, keyring: Keyring, *,
                     user_id: str, reason: str,
                     tenants: list[str] | None = None) -> list[EraseReport]:
    """`erase_user` in every tenant that holds live data (of `tenants`, when the role is
    bound to some), in name order; each tenant's erasure is audited, those where the user
    held nothing with 0 records, so the log shows where the request searched. A tenant
    under a legal hold where the user holds nothing is left out: the hold keeps nothing of
    theirs there, and reporting it would read as if it did."""
    rows = shredder.store.db.execute(
        "SELECT DISTINCT tenant FROM buckets WHERE destroyed_at IS NULL ORDER BY tenant")
    names = [r[0] for r in rows if tenants is None or r[0] in tenants]
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
