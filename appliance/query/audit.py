"""Audit entries as readers see them (filtered by event and tenant), read without writing."""

from __future__ import annotations

import json

from appliance.audit import Entry as AuditEntry
from appliance.store import Store

# An entry is about a tenant when its details name it; a reveal names a record, whose
# tenant is looked up (entries from before reveals named their tenant).
_ABOUT_TENANT = ("(json_extract(details, '$.tenant') = ? OR (event IN ('reveal', "
                 "'reveal_denied') AND json_extract(details, '$.tenant') IS NULL AND "
                 "(SELECT r.tenant FROM records r WHERE r.id = "
                 "json_extract(details, '$.record')) = ?))")


def audit_entries(store: Store, *, events: tuple[str, ...] | None = None,
                  last: int | None = None, tenant: str | None = None,
                  tenants: tuple[str, ...] | None = None) -> list[AuditEntry]:
    """Audit entries in order (only the `last` ones when given), without writing anything.

    Args:
        tenant: only entries about this tenant (a shred, an erasure, a reveal of one of
            its records...); store-wide ones (start, stop, retention runs) are left out.
        tenants: the same for several tenants (a role bound to them).
    """
    if tenant is not None:
        tenants = (tenant,)
    sql = "SELECT seq, ts, event, actor, details, prev_hash, hash FROM audit"
    clauses: list[str] = []
    params: list[str] = []
    if events:
        clauses.append(f"event IN ({','.join('?' * len(events))})")
        params += list(events)
    if tenants is not None:
        clauses.append("(" + " OR ".join([_ABOUT_TENANT] * len(tenants) or ["0"]) + ")")
        params += [t for t in tenants for _ in (0, 1)]
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq DESC" + (f" LIMIT {int(last)}" if last else "")
    rows = store.db.execute(sql, params).fetchall()
    return [AuditEntry(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6])
            for r in reversed(rows)]
