"""Differential privacy for cross-user aggregates: the one gate every such figure passes.

A release is a set of groups (a topic, a model, a day and position, ...) built
from *units* (a thread, a prompt) that each belong to one user. Under user-level
adjacency (one person's data added or removed):

* each user keeps at most `contribution_bound` units per release (a random
  sample), so a unit count per group has L1 sensitivity L = contribution_bound;
  a sum clips each unit's value to [0, bound], so its sensitivity is L * bound;
* `epsilon_per_query` is split evenly over the released vectors (the counts and
  each sum) and each gets Laplace noise of scale sensitivity / epsilon_share;
* groups with fewer than `k_min_users` distinct users are withheld;
* the tenant's ledger (`privacy_budget`, per UTC day) is charged before anything
  is computed, and a release is refused once `epsilon_per_day` would be exceeded.

Views of one user's own data are exact and cost nothing. Ratios and means are
post-processing of noisy sums and counts, so they cost nothing more.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from appliance.config import PrivacySettings
from appliance.errors import SemtraceError

CI95 = math.log(20.0)  # P(|Laplace(b)| > b ln 20) = 5 %


class BudgetSpent(SemtraceError):
    """The tenant's privacy budget for the day is used up."""

    exit_code = 5


@dataclass(frozen=True)
class Unit:
    """One user's contribution (a thread, a prompt) to one group, with values to sum."""

    user: str
    group: str
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Measure:
    """A per-unit value to sum; each unit's value is clipped to [0, bound]."""

    name: str
    bound: float = 1.0


@dataclass(frozen=True)
class Figure:
    """A released number: exact, or noisy with its Laplace scale and 95 % half-width."""

    value: float
    noise_scale: float = 0.0
    exact: bool = True

    @property
    def ci95(self) -> float:
        return self.noise_scale * CI95


@dataclass(frozen=True)
class GroupFigures:
    """What is released for one group."""

    group: str
    count: Figure
    sums: Mapping[str, Figure] = field(default_factory=dict)


@dataclass(frozen=True)
class Release:
    """The released groups of one query and what it cost."""

    groups: tuple[GroupFigures, ...]
    exact: bool
    epsilon: float = 0.0
    remaining: float | None = None
    k_min_users: int = 1

    def by_group(self) -> dict[str, GroupFigures]:
        return {g.group: g for g in self.groups}


def ratio(num: Figure, den: Figure, *, cap: float | None = None) -> Figure:
    """num / den as a figure (post-processing; the scale is a first-order estimate)."""
    if den.value <= 0:
        return Figure(0.0, num.noise_scale + den.noise_scale, num.exact and den.exact)
    value = max(num.value, 0.0) / den.value
    if cap is not None:
        value = min(value, cap)
    scale = (num.noise_scale + value * den.noise_scale) / den.value
    return Figure(value, scale, num.exact and den.exact)


class Ledger:
    """The per-tenant, per-UTC-day epsilon ledger in the store (`privacy_budget`)."""

    def __init__(self, db: Any, *, per_day: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.per_day = per_day
        self.clock = clock

    def _day(self) -> str:
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")

    def spent(self, tenant: str) -> float:
        row = self.db.execute("SELECT spent FROM privacy_budget WHERE tenant=? AND day=?",
                              (tenant, self._day())).fetchone()
        return float(row[0]) if row else 0.0

    def remaining(self, tenant: str) -> float:
        return max(self.per_day - self.spent(tenant), 0.0)

    def charge(self, tenant: str, epsilon: float) -> float:
        """Spend `epsilon` of today's budget atomically; BudgetSpent if it does not fit."""
        day = self._day()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT spent FROM privacy_budget WHERE tenant=? AND day=?",
                                  (tenant, day)).fetchone()
            spent = float(row[0]) if row else 0.0
            if spent + epsilon > self.per_day + 1e-9:
                raise BudgetSpent(
                    f"Tenant {tenant}'s privacy budget for {day} is spent "
                    f"({spent:g} of {self.per_day:g}); cross-user figures resume tomorrow (UTC).")
            self.db.execute(
                "INSERT INTO privacy_budget (tenant, day, spent, queries) VALUES (?,?,?,1) "
                "ON CONFLICT(tenant, day) DO UPDATE SET spent=spent+excluded.spent, "
                "queries=queries+1", (tenant, day, epsilon))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return self.per_day - spent - epsilon


class PrivacyGate:
    """The only path from per-user rows to a cross-user figure."""

    def __init__(self, db: Any, settings: PrivacySettings, *,
                 rng: np.random.Generator | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.ledger = Ledger(db, per_day=settings.epsilon_per_day, clock=clock)
        self.rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))

    def release(self, tenant: str, units: Iterable[Unit], *, measures: Sequence[Measure] = (),
                single_user: str | None = None) -> Release:
        """Counts (and clipped sums) per group: exact for one user's own view, else DP.

        Args:
            single_user: the pseudonym the view is scoped to; every unit must be theirs.
        """
        units = list(units)
        if single_user is not None:
            if any(u.user != single_user for u in units):
                raise ValueError("a single-user view was handed another user's data")
            return self._exact(units, measures)
        eps = self.settings.epsilon_per_query
        remaining = self.ledger.charge(tenant, eps)
        return self._noisy(units, measures, eps, remaining)

    def _exact(self, units: list[Unit], measures: Sequence[Measure]) -> Release:
        counts: dict[str, int] = defaultdict(int)
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for u in units:
            counts[u.group] += 1
            for m in measures:
                sums[u.group][m.name] += float(u.values.get(m.name, 0.0))
        groups = tuple(GroupFigures(g, Figure(float(n)),
                                    {m.name: Figure(sums[g][m.name]) for m in measures})
                       for g, n in sorted(counts.items()))
        return Release(groups=groups, exact=True)

    def bound(self, units: list[Unit]) -> list[Unit]:
        """At most `contribution_bound` units per user (a uniform sample of the rest)."""
        limit = self.settings.contribution_bound
        per_user: dict[str, list[Unit]] = defaultdict(list)
        for u in units:
            per_user[u.user].append(u)
        kept: list[Unit] = []
        for mine in per_user.values():
            if len(mine) > limit:
                pick = self.rng.choice(len(mine), size=limit, replace=False)
                mine = [mine[int(i)] for i in sorted(pick)]
            kept.extend(mine)
        return kept

    def _noisy(self, units: list[Unit], measures: Sequence[Measure], eps: float,
               remaining: float) -> Release:
        k = self.settings.k_min_users
        users: dict[str, set[str]] = defaultdict(set)
        for u in units:
            users[u.group].add(u.user)
        kept = self.bound(units)
        share = eps / (1 + len(measures))
        count_scale = self.settings.contribution_bound / share
        counts: dict[str, float] = defaultdict(float)
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for u in kept:
            counts[u.group] += 1.0
            for m in measures:
                value = min(max(float(u.values.get(m.name, 0.0)), 0.0), m.bound)
                sums[u.group][m.name] += value
        out = []
        for g in sorted(users):
            if len(users[g]) < k:
                continue  # withheld: too few people to hide one of them
            figs = {m.name: self._noise(sums[g][m.name], count_scale * m.bound)
                    for m in measures}
            out.append(GroupFigures(g, self._noise(counts[g], count_scale), figs))
        return Release(groups=tuple(out), exact=False, epsilon=eps, remaining=remaining,
                       k_min_users=k)

    def _noise(self, value: float, scale: float) -> Figure:
        noisy = value + float(self.rng.laplace(0.0, scale))
        return Figure(max(noisy, 0.0), scale, exact=False)
