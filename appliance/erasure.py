"""Erasing one user in every tenant: a user id is pseudonymised per tenant, so a request
that names only the person (a data subject's request) has to search each tenant."""

from __future__ import annotations

from appliance.config import RetentionSettings
from appliance.keys import Keyring
from appliance.retention import EraseReport, Shredder, erase_user


def erase_everywhere(shredder: Shredder, settings: RetentionSettings, keyring: Keyring, *,
                     user_id: str, reason: str,
                     tenants: list[str] | None = None) -> list[EraseReport]:
    """`erase_user` in every tenant that holds live data (of `tenants`, when the role is
    bound to some), in name order; each tenant's erasure is audited, those where the user
    held nothing with 0 records, so the log shows where the request searched."""
    rows = shredder.store.db.execute(
        "SELECT DISTINCT tenant FROM buckets WHERE destroyed_at IS NULL ORDER BY tenant")
    names = [r[0] for r in rows if tenants is None or r[0] in tenants]
    return [erase_user(shredder, settings, keyring, tenant=t, user_id=user_id, reason=reason)
            for t in names]
