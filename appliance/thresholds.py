"""Each tenant's link threshold: the policy's, until the tenant's own history-linked
traffic calibrates it (appliance/link/calibrate.py decides; this keeps the tallies), or
the one the operator pinned for it (`[calibration.pinned]`).

The pipeline asks `choice(tenant)` before a content decision, `learn`s from every
prompt whose thread the gateway's history decided, writes `pending()` with the
batch's records (one transaction) and then calls `committed()`, or `discard()`
when the batch fails.
"""

from __future__ import annotations

from collections.abc import Mapping

from appliance.config import CorrelationSettings
from appliance.link.calibrate import Choice, Rule, Tally, choose


class TenantThresholds:
    """Tallies per tenant (as stored, plus this batch's) and the threshold they support."""

    def __init__(self, settings: CorrelationSettings, stored: Mapping[str, Tally]) -> None:
        self._s = settings
        self._stored = dict(stored)
        self._pending: dict[str, Tally] = {}
        self._choices: dict[str, Choice] = {}

    @property
    def learning(self) -> bool:
        """Whether calibration is on (policy `[calibration] enabled`)."""
        return self._s.calibration.enabled

    def tally(self, tenant: str) -> Tally:
        return self._pending.get(tenant) or self._stored.get(tenant) or Tally()

    def choice(self, tenant: str) -> Choice:
        """The threshold for the tenant's next content decision: the operator's pin, else the
        calibrated one, else the policy's."""
        pinned = self._s.calibration.pinned.get(tenant)
        if pinned is not None:
            return Choice(pinned, "pinned", int(self.tally(tenant).decisions), 0,
                          "pinned by the operator ([calibration.pinned])")
        if not self.learning:
            return Choice(self._s.link_threshold, "policy", 0, 0,
                          "calibration is off ([calibration] enabled = false)")
        c = self._choices.get(tenant)
        if c is None:
            cal = self._s.calibration
            c = choose(self.tally(tenant), self._s.link_threshold, cal.min_decisions,
                       rule=Rule(min_side=cal.min_each_side, shrink=cal.shrink_continuations,
                                 shrink_new=cal.shrink_new))
            self._choices[tenant] = c
        return c

    def learn(self, tenant: str, score: float, outcome: str) -> None:
        """One history-decided prompt's lesson (calibrate.outcome)."""
        self._pending[tenant] = self.tally(tenant).add(score, outcome)
        self._choices.pop(tenant, None)

    def pending(self) -> dict[str, Tally]:
        """The tallies this batch changed, to store with its records."""
        return dict(self._pending)

    def committed(self) -> None:
        self._stored.update(self._pending)
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()
        self._choices.clear()
