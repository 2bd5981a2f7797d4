"""Differential privacy for cross-user aggregates: the one gate every such figure passes.

A release is a set of groups (a topic, a model, a day and position, ...) built
from *units* (a thread, a prompt) that each belong to one user. Under user-level
adjacency (one person's data added or removed):

* each user keeps at most `contribution_bound` units per release (a random
  sample), and is counted among the people of at most `people_bound` groups (a
  random sample of theirs), so a unit count per group moves by at most
  L = contribution_bound in L1, the count of people by at most people_bound,
  L1, and a sum clipped to [0, bound] per unit by at most L * bound;
* a release's epsilon is split over the released vectors: most to the thread
  count (COUNT_SHARE), then the distinct-user count that decides suppression
  (USERS_SHARE), the rest (MEASURES_SHARE) over the measures' sums by weight;
  OpenDP adds the noise and reports the epsilon (`noise.py`). Each vector is one
  histogram over all groups: a user's units are bounded in total, not per group,
  so the epsilon is spent once for all groups (parallel composition), never per group;
* a group is withheld unless its *noisy* count of distinct users reaches
  `k_min_users`, so the exact user count never decides what is shown;
* the tenant's ledger (`privacy_budget`, per UTC day) is charged before anything
  is released, and a release is refused once `epsilon_per_day` would be exceeded;
* a release is cached for the UTC day (`releases.py`): repeated queries and
  screen refreshes read it and spend nothing.

Views of one user's own data are exact and cost nothing. Ratios and means are
post-processing of noisy sums and counts, so they cost nothing more.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from appliance.config import PrivacySettings
from appliance.errors import SemtraceError
from appliance.noise import CountMechanism, SumMechanism

CI95 = math.log(20.0)  # P(|Laplace(b)| > b ln 20) = 5 %


class BudgetSpent(SemtraceError):
    """The tenant's privacy budget for the day is used up."""

    exit_code = 5


class NoRelease(SemtraceError):
    """A read-only gate was asked for figures no stored release holds."""

    exit_code = 5


@dataclass(frozen=True)
class Unit:
    """One user's contribution (a thread, a prompt) to one group, with values to sum."""

    user: str
    group: str
    values: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Measure:
    """A per-unit value to sum; each unit's value is clipped to [0, bound].

    `weight` is the measure's part of MEASURES_SHARE, relative to the other
    measures of the release.
    """

    name: str
    bound: float = 1.0
    weight: float = 1.0


# Shares of a release's epsilon, chosen with bench/dp_accuracy.py (docs/topics.md):
# the thread count is what every screen sorts by and what the accuracy target is
# about; the noisy user count decides k-suppression (too little here withholds
# large topics at random); the measures' sums (means and shares of a topic) need
# far more than a release has below tens of thousands of threads, so they share
# what is left. A release without measures splits all of it over the two counts.
COUNT_SHARE = 0.6
USERS_SHARE = 0.25
MEASURES_SHARE = 0.15


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
    users: Figure | None = None


@dataclass(frozen=True)
class Release:
    """The released groups of one query and what it cost."""

    groups: tuple[GroupFigures, ...]
    exact: bool
    epsilon: float = 0.0
    remaining: float | None = None
    k_min_users: int = 1
    released_at: float | None = None  # when the (cached) release was computed
    cached: bool = False  # read from today's release: spent nothing now
    # a release filtered on one topic (`stats models --topic`): the topic ids whose threads
    # it counted, the topic and those merged into it when it was made (None: not recorded)
    covers: tuple[str, ...] | None = None

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

    def day(self) -> str:
        """Today's UTC date, the ledger's (and the release cache's) period."""
        return datetime.fromtimestamp(self.clock(), UTC).strftime("%Y-%m-%d")

    def spent(self, tenant: str) -> float:
        row = self.db.execute("SELECT spent FROM privacy_budget WHERE tenant=? AND day=?",
                              (tenant, self.day())).fetchone()
        return float(row[0]) if row else 0.0

    def remaining(self, tenant: str) -> float:
        return max(self.per_day - self.spent(tenant), 0.0)

    def charge(self, tenant: str, epsilon: float) -> float:
        """Spend `epsilon` of today's budget atomically; BudgetSpent if it does not fit."""
        day = self.day()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT spent FROM privacy_budget WHERE tenant=? AND day=?",
                                  (tenant, day)).fetchone()
            spent = float(row[0]) if row else 0.0
            if spent + epsilon > self.per_day + 1e-9:
                left = max(self.per_day - spent, 0.0)
                # "is spent (3.5 of 4)" read as a bug beside "0.5 left today": say what is
                # left and what this release needs
                raise BudgetSpent(
                    f"Tenant {tenant}'s privacy budget for {day} is spent ({spent:g} of "
                    f"{self.per_day:g}" + (f"; {left:g} left, this release needs {epsilon:g}"
                                           if left > 1e-9 else "")
                    + "); cross-user figures resume tomorrow (UTC).")
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
                 clock: Callable[[], float] = time.time, spend: bool = True,
                 today_only: bool = False) -> None:
        """A gate over one store's ledger and release cache.

        Args:
            spend: False for readers that never write (the TUI): they get the latest
                stored release under a key, and NoRelease when there is none.
            today_only: with `spend` False, only today's release under a key (NoRelease
                for an older day's: `reads.run_stats` of a window with no thread).
        """
        from appliance.releases import ReleaseCache

        self.settings = settings
        self.clock = clock
        self.spend = spend
        self.today_only = today_only
        self.ledger = Ledger(db, per_day=settings.epsilon_per_day, clock=clock)
        self.cache = ReleaseCache(db, clock=clock)
        self.rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))

    def release(self, tenant: str, units: Iterable[Unit], *, measures: Sequence[Measure] = (),
                single_user: str | None = None, key: str | None = None,
                kind: str | None = None, covers: Sequence[str] | None = None) -> Release:
        """Counts (and clipped sums) per group: exact for one user's own view, else DP.

        Args:
            single_user: the pseudonym the view is scoped to; every unit must be theirs.
            key: names what is released (kind and window); today's release under the
                same key is returned as it was, spending nothing.
            kind: the kind of figures (`config.RELEASE_KINDS`): a new release spends
                the policy's epsilon for it (`PrivacySettings.epsilon_for`).
            covers: recorded with a new release (`Release.covers`).
        """
        units = list(units)
        if single_user is not None:
            if any(u.user != single_user for u in units):
                raise ValueError("a single-user view was handed another user's data")
            return self._exact(units, measures)
        if key is not None:
            cached = self.cache.get(tenant, key, self.ledger.day())
            if cached is not None:
                return replace(cached, remaining=self.ledger.remaining(tenant), cached=True)
        if not self.spend:
            latest = (self.cache.latest(tenant, key) if key is not None
                      and not self.today_only else None)
            if latest is None:
                raise NoRelease(f"No cross-user release of these figures for tenant {tenant} "
                                "yet; `semtrace stats` makes today's.")
            return replace(latest, remaining=self.ledger.remaining(tenant))
        groups, spent = self._noisy(units, measures, self.settings.epsilon_for(kind))
        remaining = self.ledger.charge(tenant, spent)
        rel = Release(groups=groups, exact=False, epsilon=spent, remaining=remaining,
                      k_min_users=self.settings.k_min_users, released_at=self.clock(),
                      covers=None if covers is None else tuple(covers))
        if key is not None:
            self.cache.put(tenant, key, self.ledger.day(), rel)
        return rel

    def _exact(self, units: list[Unit], measures: Sequence[Measure]) -> Release:
        counts: dict[str, int] = defaultdict(int)
        users: dict[str, set[str]] = defaultdict(set)
        sums: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for u in units:
            counts[u.group] += 1
            users[u.group].add(u.user)
            for m in measures:
                sums[u.group][m.name] += float(u.values.get(m.name, 0.0))
        groups = tuple(GroupFigures(g, Figure(float(n)),
                                    {m.name: Figure(sums[g][m.name]) for m in measures},
                                    Figure(float(len(users[g]))))
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

    @staticmethod
    def shares(measures: Sequence[Measure], eps: float) -> tuple[float, float, list[float]]:
        """Epsilon of the count, of the user count and of each measure's sum."""
        if not measures:
            total = COUNT_SHARE + USERS_SHARE
            return eps * COUNT_SHARE / total, eps * USERS_SHARE / total, []
        weights = sum(m.weight for m in measures)
        return (eps * COUNT_SHARE, eps * USERS_SHARE,
                [eps * MEASURES_SHARE * m.weight / weights for m in measures])

    def people(self, kept: list[Unit]) -> list[str]:
        """One row per (user, group) a user is counted in: at most `people_bound` groups
        per user (a uniform sample of theirs), the sensitivity of the people count."""
        limit = self.settings.people_bound
        groups: dict[str, set[str]] = defaultdict(set)
        for u in kept:
            groups[u.user].add(u.group)
        rows: list[str] = []
        for mine in groups.values():
            names = sorted(mine)
            if len(names) > limit:
                pick = self.rng.choice(len(names), size=limit, replace=False)
                names = [names[int(i)] for i in sorted(pick)]
            rows.extend(names)
        return rows

    def _noisy(self, units: list[Unit], measures: Sequence[Measure], epsilon: float
               ) -> tuple[tuple[GroupFigures, ...], float]:
        """Noisy groups and the epsilon OpenDP accounts for them (nothing charged here).

        The set of groups is the data's (topic ids, models, ...): see docs/topics.md.
        """
        bound = self.settings.contribution_bound
        kept = self.bound(units)
        names = sorted({u.group for u in units})
        eps_count, eps_users, eps_sums = self.shares(measures, epsilon)
        count = CountMechanism(names, bound=bound, epsilon=eps_count)
        users = CountMechanism(names, bound=min(bound, self.settings.people_bound),
                               epsilon=eps_users)
        sum_ms = [SumMechanism(len(names), bound=bound, clip=m.bound, epsilon=e)
                  for m, e in zip(measures, eps_sums, strict=True)]
        spent = count.epsilon + users.epsilon + sum(m.epsilon for m in sum_ms)
        pos = {g: i for i, g in enumerate(names)}
        raw = [[0.0] * len(names) for _ in measures]
        for u in kept:
            for j, m in enumerate(measures):
                raw[j][pos[u.group]] += min(max(float(u.values.get(m.name, 0.0)), 0.0), m.bound)
        counts = count([u.group for u in kept])
        people = users(self.people(kept))
        noisy_sums = [sm(r) for sm, r in zip(sum_ms, raw, strict=True)]
        k = self.settings.k_min_users
        out = []
        for i, g in enumerate(names):
            if people.values[i] < k:
                continue  # withheld: the noisy count of people is too small to hide one
            figs = {m.name: _figure(s.values[i], s.scale)
                    for m, s in zip(measures, noisy_sums, strict=True)}
            out.append(GroupFigures(g, _figure(counts.values[i], counts.scale), figs,
                                    _figure(people.values[i], people.scale)))
        return tuple(out), spent


def _figure(value: float, scale: float) -> Figure:
    return Figure(max(value, 0.0), scale, exact=False)


# ------------------------------------------------------------ what k-suppression shows
# Pure arithmetic on the mechanism above, for the words and docs that describe it (it
# changes nothing of a release): the people count's noise is OpenDP's integer Laplace,
# P(Z = z) proportional to exp(-|z| / scale).

def people_scale(settings: PrivacySettings, kind: str, *, measures: bool = True) -> float:
    """The Laplace scale of a release's count of people (`_noisy`: at most `people_bound`
    groups per person, and `contribution_bound` units, over that count's epsilon share)."""
    share = USERS_SHARE if measures else USERS_SHARE / (COUNT_SHARE + USERS_SHARE)
    bound = min(settings.contribution_bound, settings.people_bound)
    return bound / (settings.epsilon_for(kind) * share)


def shown_chance(people: int, k_min_users: int, scale: float) -> float:
    """The chance that one release shows a group of `people` people (each counted in it):
    that people + integer Laplace(scale) noise reaches `k_min_users`."""
    if scale <= 0:
        return 1.0 if people >= k_min_users else 0.0
    a = math.exp(-1.0 / scale)
    d = k_min_users - people
    return a ** d / (1.0 + a) if d > 0 else 1.0 - a ** (1 - d) / (1.0 + a)


def released_people_scale(figures: Iterable[Figure | None]) -> float | None:
    """The people count's noise scale of a release, read off its shown groups' people
    figures (None: none shown, or an exact one-user view)."""
    return next((f.noise_scale for f in figures if f is not None and not f.exact
                 and f.noise_scale > 0), None)


def shown_odds(k_min_users: int, scale: float | None, *, what: str = "topic") -> str:
    """What a reader is told about k-suppression: the noisy count decides, with the
    chances of one release showing a group of 1 person, of k - 1 and of k people (`scale`
    None: the rule without the chances)."""
    rule = (f"a {what} is shown when its noisy count of people in the window reaches "
            f"{k_min_users}, not its true count")
    if scale is None:
        return rule
    parts = []
    if k_min_users > 1:
        parts.append(f"with 1 person it is still shown in "
                     f"{shown_chance(1, k_min_users, scale):.0%} of releases")
    if k_min_users > 2:
        parts.append(f"with {k_min_users - 1} in "
                     f"{shown_chance(k_min_users - 1, k_min_users, scale):.0%}")
    parts.append(f"with {k_min_users} in only "
                 f"{shown_chance(k_min_users, k_min_users, scale):.0%}")
    return f"{rule}: {', '.join(parts)}"
