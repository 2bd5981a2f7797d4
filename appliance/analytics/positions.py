"""How often prompts of each day or hour took each position (`stats positions`)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from appliance.analytics.reports import PositionShare, Report, _report
from appliance.analytics.threads import ThreadRow
from appliance.analytics.windows import release_key
from appliance.privacy import Figure, PrivacyGate, Unit, ratio


def period_of(ts: datetime, bucket: str) -> str:
    """The UTC day ("2024-03-04") or hour ("2024-03-04T07") a time falls in."""
    return ts.strftime("%Y-%m-%dT%H" if bucket == "hour" else "%Y-%m-%d")


def position_mix(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                 start: datetime, end: datetime, bucket: str = "day",
                 single_user: str | None = None) -> Report[PositionShare]:
    """Prompts per (period, position) and each position's share of its period."""
    units = [Unit(t.user, f"{period_of(x.ts, bucket)}|{x.position}")
             for t in threads for x in t.turns]
    rel = gate.release(tenant, units, single_user=single_user, kind="positions",
                       key=release_key("positions", start, end, bucket))
    totals: dict[str, float] = {}
    for g in rel.groups:
        period = g.group.split("|", 1)[0]
        totals[period] = totals.get(period, 0.0) + g.count.value
    rows = []
    for g in rel.groups:
        period, position = g.group.split("|", 1)
        total = Figure(totals[period], 0.0, g.count.exact)
        rows.append(PositionShare(period, position, g.count, ratio(g.count, total, cap=1.0)))
    return _report("positions", tenant, start, end, rel, rows)
