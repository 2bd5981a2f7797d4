"""Each topic's trend over the last `TREND_DAYS` days, read from the stored daily releases.

A point is the topic's noisy thread count in the release of one UTC day: the
default-window release (`analytics.default_window`, the 7 days ending that day)
that `semtrace serve` makes each day (idle tenants included) and `stats topics`
shares. Nothing is computed from the records and no budget is spent. A day whose
release does not show the topic (its noisy count of people under `k_min_users`: none
at all, as in an idle week, or withheld) is `released` with no count, drawn `·`; a day
without a release (the service was not running) is a gap, drawn blank. Neither
is a zero: a noisy release never says exactly how many.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from appliance.analytics import (
    GroupStats,
    TrendPoint,
    default_window,
    group_key,
    release_topic,
)
from appliance.releases import TREND_DAYS, ReleaseCache


def trend_days(last_day: date, days: int = TREND_DAYS) -> list[date]:
    """The `days` UTC days ending with `last_day`, oldest first."""
    return [last_day - timedelta(days=n) for n in range(days - 1, -1, -1)]


def topic_trends(db: Any, tenant: str, keys: Iterable[str], last_day: date, *,
                 cost_bound: float, days: int = TREND_DAYS,
                 aliases: Mapping[str, str] | None = None,
                 shared: Collection[str] | None = None
                 ) -> dict[str, tuple[TrendPoint, ...]]:
    """Per topic id in `keys`, one point per day ending with `last_day` (reads only).

    `aliases` (merged id -> the live id it resolves to): a day's release counted a topic
    under the ids it had then, so a topic's point sums the groups of that release that
    are now the same topic (values add; the 95% half-widths add in quadrature).
    `shared` (the topics of `k_min_users` people now): the groups of every other topic
    are the other-topics row's (`analytics.fold_small`), so a topic of a few people has
    no trend of its own, and one that has reached `k_min_users` people shows the days
    whose release counted it apart (before, it was in the other-topics row's).
    """
    live = aliases or {}
    wanted = []
    for d in trend_days(last_day, days):
        start, end = default_window(datetime(d.year, d.month, d.day, tzinfo=UTC))
        wanted.append((d.isoformat(), group_key("topics", start, end, cost_bound=cost_bound)))
    releases = ReleaseCache(db).by_day(tenant, wanted)
    counts: dict[str, dict[str, tuple[float, float]]] = {}
    for day, rel in releases.items():
        per = counts.setdefault(day, {})
        for g in rel.groups:
            topic = live.get(g.group, g.group)
            topic = topic if shared is None else release_topic(topic, shared)
            value, ci2 = per.get(topic, (0.0, 0.0))
            per[topic] = (value + g.count.value, ci2 + g.count.ci95 ** 2)
    out = {}
    for key in keys:
        points = []
        for day, _ in wanted:
            f = counts.get(day, {}).get(live.get(key, key))
            points.append(TrendPoint(day, None, None, day in counts) if f is None else
                          TrendPoint(day, round(f[0], 1), round(math.sqrt(f[1]), 1), True))
        out[key] = tuple(points)
    return out


def with_trends(db: Any, tenant: str, rows: Iterable[GroupStats], last_day: date, *,
                cost_bound: float, aliases: Mapping[str, str] | None = None,
                shared: Collection[str] | None = None) -> tuple[GroupStats, ...]:
    """`rows` (topics) with their trends attached (`aliases`, `shared`: see
    `topic_trends`)."""
    rows = tuple(rows)
    trends = topic_trends(db, tenant, [r.key for r in rows], last_day, cost_bound=cost_bound,
                          aliases=aliases, shared=shared)
    return tuple(replace(r, trend=trends[r.key]) for r in rows)


BARS = "▁▂▃▄▅▆▇█"
NOT_SHOWN = "·"  # released that day, the topic not in it: its noisy count of people under k
NO_RELEASE = " "  # no release that day


def sparkline(points: Iterable[TrendPoint]) -> str:
    """One character per day's release, scaled to the topic's highest count; `·` where
    the day's release does not show the topic (its noisy people count under k), a
    space where there is no release that day."""
    points = list(points)
    top = max((p.threads for p in points if p.threads is not None), default=0.0)
    return "".join((NOT_SHOWN if p.released else NO_RELEASE) if p.threads is None else
                   BARS[0 if top <= 0 else round(max(p.threads, 0.0) / top * (len(BARS) - 1))]
                   for p in points)


def last_day_of(end: datetime) -> date:
    """The last UTC day a window ending (exclusive) at `end` covers."""
    return (end.astimezone(UTC) - timedelta(microseconds=1)).date()
