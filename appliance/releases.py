"""Cached differentially private releases: computed once per tenant, key and UTC day.

A cross-user figure costs privacy budget only the first time it is released on
a day; later queries and screen refreshes read the stored release (table
`dp_releases`, migration `m007_dp_releases`) and say how old it is. A release
holds only noisy figures of groups (topic ids, model names, periods), never
words, so it is kept for `TREND_DAYS` days: the topics screen and
`stats topics` draw each topic's trend from the releases of those days without
spending anything (`trend`). Writing a release deletes the tenant's releases
older than that; retention (`retention.expire_releases`) deletes them sooner when
the tenant's `aggregates_days` is shorter.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.privacy import Figure, Release

TREND_DAYS = 14  # days of releases kept: the per-topic trend the topics screen draws


def days_before(day: str, n: int) -> str:
    """The UTC day `n` days before `day` (both YYYY-MM-DD)."""
    return (date.fromisoformat(day) - timedelta(days=n)).isoformat()


def delete_before(db: Any, tenant: str, day: str) -> int:
    """Delete the tenant's releases of days before `day`; how many went."""
    return int(db.execute("DELETE FROM dp_releases WHERE tenant=? AND day<?",
                          (tenant, day)).rowcount)


def _fig(f: Figure | None) -> list[float] | None:
    return None if f is None else [f.value, f.noise_scale]


def encode(rel: Release) -> str:
    """A release as JSON (noisy figures only; `c`: the topic ids it covers, when recorded)."""
    data: dict[str, Any] = {"epsilon": rel.epsilon, "k": rel.k_min_users,
                            "released_at": rel.released_at,
                            "groups": [{"g": g.group, "n": _fig(g.count), "u": _fig(g.users),
                                        "s": {k: _fig(v) for k, v in g.sums.items()}}
                                       for g in rel.groups]}
    if rel.covers is not None:
        data["c"] = list(rel.covers)
    return json.dumps(data, separators=(",", ":"))


def decode(raw: str) -> Release:
    """The release `encode` wrote."""
    from appliance.privacy import Figure, GroupFigures, Release

    data = json.loads(raw)

    def fig(x: list[float] | None) -> Figure | None:
        return None if x is None else Figure(float(x[0]), float(x[1]), exact=False)

    groups = []
    for g in data["groups"]:
        count = fig(g["n"])
        assert count is not None
        sums = {k: f for k, v in g["s"].items() if (f := fig(v)) is not None}
        groups.append(GroupFigures(g["g"], count, sums, fig(g["u"])))
    return Release(groups=tuple(groups), exact=False, epsilon=float(data["epsilon"]),
                   k_min_users=int(data["k"]), released_at=data["released_at"],
                   covers=tuple(data["c"]) if "c" in data else None)


class ReleaseCache:
    """Today's releases of one store, by (tenant, key)."""

    def __init__(self, db: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock

    def get(self, tenant: str, key: str, day: str) -> Release | None:
        """The release made under `key` on `day`, if any."""
        row = self.db.execute("SELECT payload FROM dp_releases WHERE tenant=? AND key=? AND day=?",
                              (tenant, key, day)).fetchone()
        return decode(row[0]) if row else None

    def put(self, tenant: str, key: str, day: str, rel: Release) -> None:
        """Store a release (the first one of the day under a key wins) and drop the
        tenant's releases older than `TREND_DAYS` days."""
        now = self.clock()
        own = not self.db.in_transaction
        if own:
            self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "INSERT INTO dp_releases (tenant, key, day, created_at, payload) "
                "VALUES (?,?,?,?,?) ON CONFLICT(tenant, key, day) DO NOTHING",
                (tenant, key, day, now, encode(rel)))
            delete_before(self.db, tenant, days_before(day, TREND_DAYS - 1))
            if own:
                self.db.execute("COMMIT")
        except BaseException:
            if own:
                self.db.execute("ROLLBACK")
            raise

    def latest(self, tenant: str, key: str) -> Release | None:
        """The most recent release under `key` (any day): what a read-only screen shows."""
        row = self.db.execute(
            "SELECT payload FROM dp_releases WHERE tenant=? AND key=? "
            "ORDER BY created_at DESC LIMIT 1", (tenant, key)).fetchone()
        if row is None:
            return None
        from dataclasses import replace

        return replace(decode(row[0]), cached=True)

    def by_day(self, tenant: str, keys: Iterable[tuple[str, str]]) -> dict[str, Release]:
        """The releases stored under each (day, key) pair, by day (absent days left out).

        A plain read: it spends nothing and makes nothing.
        """
        out = {}
        for day, key in keys:
            rel = self.get(tenant, key, day)
            if rel is not None:
                out[day] = rel
        return out
