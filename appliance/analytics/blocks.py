"""Threads that led into guardrail blocks, per topic (`stats blocks`)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime

from appliance.analytics.merges import merge_topics
from appliance.analytics.reports import BlockStats, Report, _report
from appliance.analytics.small_topics import (
    OTHER_TOPICS,
    fold_small,
    other_label,
    other_last,
    release_topic,
)
from appliance.analytics.threads import ThreadRow
from appliance.analytics.windows import release_key
from appliance.privacy import Measure, PrivacyGate, Unit, ratio


def _block_values(t: ThreadRow) -> dict[str, float]:
    first = next(i for i, x in enumerate(t.turns) if x.status == "blocked")
    return {"before": float(first), "first_turn": float(first == 0),
            "retried": float(first < len(t.turns) - 1), "repeated": float(t.blocks > 1)}


BLOCK_MEASURES = (Measure("before", 20, 0.5), Measure("first_turn", 1, 0.5),
                  Measure("retried", 1, 0.5), Measure("repeated", 1, 0.5))


def block_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, labels: dict[str, str],
                single_user: str | None = None, aliases: Mapping[str, str] | None = None,
                shared: Collection[str] | None = None) -> Report[BlockStats]:
    """Per topic: threads that hit a guardrail block and what preceded or followed it.

    `aliases` (merged id -> the live id): a release made before a refinement merged some
    of its topics has them summed into the topic they joined, one row. `shared`: the
    topics of at least `k_min_users` people (`threads.shared_topics`); the blocked threads
    of every other topic are one group, last (`small_topics`, as `stats topics`). None,
    and one user's own view (exact): a row per topic.
    """
    fold = shared if single_user is None else None
    blocked = [t for t in threads if t.blocks]
    units = [Unit(t.user, t.topic if fold is None else release_topic(t.topic, fold),
                  _block_values(t)) for t in blocked]
    rel = gate.release(tenant, units, measures=BLOCK_MEASURES, single_user=single_user,
                       kind="blocks", key=release_key("blocks", start, end))
    if fold is not None:
        labels = {**labels, OTHER_TOPICS: other_label(gate.settings.k_min_users)}
    rows = []
    for g in fold_small(merge_topics(rel, aliases or {}), fold).groups:
        ids = tuple(t.thread_id for t in blocked if t.topic == g.group) if rel.exact else ()
        s = g.sums
        rows.append(BlockStats(
            key=g.group, label=labels.get(g.group), threads=g.count,
            mean_turns_before=ratio(s["before"], g.count),
            first_turn_share=ratio(s["first_turn"], g.count, cap=1.0),
            retried_share=ratio(s["retried"], g.count, cap=1.0),
            repeated_share=ratio(s["repeated"], g.count, cap=1.0), thread_ids=ids))
    rows.sort(key=lambda r: -r.threads.value)
    return _report("blocks", tenant, start, end, rel, other_last(rows))
