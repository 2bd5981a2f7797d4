"""The service's daily releases: each tenant's default cross-user figures, made before anyone asks.

`semtrace serve` runs `make_daily` on `release_cron` (`policies/privacy.toml`,
UTC) and once at start, so that the first `stats topics|models` of a day and
the TUI's topics and models screens read a release that is already there and
spend nothing. A release is exactly the one those commands would make for the
default window (same kind, window and cache key: `analytics.group_key`), spent
once per tenant and UTC day through the privacy gate; a tenant whose release of
the day exists already is left alone. A tenant whose window holds no thread is
released as any other (and spends as any other): its trend then reads that day
as released with no topic shown, not as a missing day, and its ledger does not
tell an idle week from a busy one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance import analytics
from appliance.config import Policies
from appliance.privacy import BudgetSpent, PrivacyGate
from appliance.query import tenants
from appliance.store import Store

log = logging.getLogger("semtrace.releases")

DAILY_KINDS = ("topics", "models")  # what the topics and models screens show


@dataclass(frozen=True)
class DailyOutcome:
    """What the daily job did for one tenant and kind."""

    tenant: str
    kind: str
    outcome: str  # "released", "cached" (made earlier today), "budget spent"
    epsilon: float = 0.0


def make_daily(store: Store, policies: Policies, *, now: datetime | None = None,
               kinds: Sequence[str] = DAILY_KINDS) -> list[DailyOutcome]:
    """Make today's default-window releases of `kinds` for every tenant that lacks one."""
    now = now if now is not None else datetime.now(UTC)
    start, end = analytics.default_window(now)
    bound = policies.pricing.thread_cost_bound
    gate = PrivacyGate(store.db, policies.privacy, clock=now.timestamp)
    day = gate.ledger.day()
    out = []
    for tenant in tenants(store):
        threads: list[analytics.ThreadRow] | None = None
        for kind in kinds:
            key = analytics.group_key(kind, start, end, cost_bound=bound)
            if gate.cache.get(tenant, key, day) is not None:
                out.append(DailyOutcome(tenant, kind, "cached"))
                continue
            if threads is None:
                threads = analytics.load_threads(store, tenant, start, end)
            try:
                # topics of fewer than k_min_users people: one group (analytics.small_topics)
                shared = analytics.shared_topics(store, tenant, policies.privacy.k_min_users)
                report = _release(kind, threads, gate, tenant, start, end, bound, shared)
            except BudgetSpent:
                out.append(DailyOutcome(tenant, kind, "budget spent"))
                continue
            out.append(DailyOutcome(tenant, kind, "released", report.epsilon))
    made = [o for o in out if o.outcome == "released"]
    log.info("daily releases", extra={"event": "daily_releases", "released": len(made),
                                      "tenants": len({o.tenant for o in out}),
                                      "refused": sum(o.outcome == "budget spent" for o in out)})
    return out


def _release(kind: str, threads: list[analytics.ThreadRow], gate: PrivacyGate, tenant: str,
             start: datetime, end: datetime, bound: float, shared: frozenset[str]
             ) -> analytics.Report[analytics.GroupStats]:
    if kind == "topics":
        return analytics.topic_stats(threads, gate, tenant=tenant, start=start, end=end,
                                     labels={}, cost_bound=bound, shared=shared)
    if kind == "models":
        return analytics.model_stats(threads, gate, tenant=tenant, start=start, end=end,
                                     labels={}, cost_bound=bound)
    raise ValueError(f"no daily release of kind {kind!r}")
