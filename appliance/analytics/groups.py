"""Figures per topic, per model and per conversation outcome (`stats topics|models|cost`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime

from appliance.analytics.merges import merge_topics, merged_parts, topic_parts
from appliance.analytics.reports import GroupStats, Report, _report
from appliance.analytics.small_topics import (
    OTHER_TOPICS,
    fold_small,
    other_label,
    other_last,
    release_topic,
)
from appliance.analytics.threads import NO_MODEL, NO_MODEL_LABEL, ThreadRow
from appliance.analytics.windows import release_key
from appliance.privacy import Figure, Measure, PrivacyGate, Release, Unit, ratio

# Per-thread clip bounds: a sum's noise grows with its bound, so they sit just above
# what most threads reach (turns, tokens in and out). Weights split the measures'
# part of a release's epsilon (privacy.MEASURES_SHARE): the shares product teams
# sort by (refinement, abandonment) get more than blocks and tokens. A thread's
# cost is clipped to pricing.toml's `thread_cost_bound` (`cost_measures`).
GROUP_MEASURES = (Measure("turns", 20, 1.0), Measure("refinement", 1, 1.0),
                  Measure("abandoned", 1, 1.0), Measure("blocked", 1, 0.5),
                  Measure("tokens", 8_000, 0.5), Measure("errors", 1, 0.25))


def cost_measures(bound: float) -> tuple[Measure, ...]:
    """The cost sum (each thread clipped to `bound`) and the count of threads with a cost."""
    return Measure("cost", bound, 0.5), Measure("costed", 1, 0.25)


def group_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, kind: str,
                keys: Callable[[ThreadRow], Iterable[str]], labels: dict[str, str],
                single_user: str | None = None, extra: tuple[str, ...] = (),
                cost_bound: float = 1.0, aliases: Mapping[str, str] | None = None
                ) -> Report[GroupStats]:
    """Threads, mean turns, refinement/abandonment/blocked shares, tokens, cost per key.

    `aliases` (topics: merged id -> the live id): a release made before a refinement
    merged some of its topics has their groups summed into the topic they joined, one row.
    """
    rel = group_release(threads, gate, tenant=tenant, start=start, end=end, kind=kind,
                        keys=keys, single_user=single_user, extra=extra,
                        cost_bound=cost_bound)
    live = aliases or {}
    return _with_parts(kind, tenant, start, end, merge_topics(rel, live), labels,
                       merged_parts(rel, live))


def group_release(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                  start: datetime, end: datetime, kind: str,
                  keys: Callable[[ThreadRow], Iterable[str]], single_user: str | None = None,
                  extra: tuple[str, ...] = (), cost_bound: float = 1.0,
                  covers: Sequence[str] | None = None) -> Release:
    """The release behind `group_stats` (today's cached one, or a new one that spends)."""
    units = [Unit(t.user, key, {"turns": len(t.turns), "refinement": float(t.refinement),
                                "abandoned": float(t.abandoned(end)),
                                "blocked": float(t.blocks > 0), "errors": float(t.errors > 0),
                                "tokens": sum(x.tokens for x in t.turns),
                                "cost": t.cost or 0.0, "costed": float(t.cost is not None)})
             for t in threads for key in keys(t)]
    return gate.release(tenant, units, measures=GROUP_MEASURES + cost_measures(cost_bound),
                        single_user=single_user, kind=kind, covers=covers,
                        key=group_key(kind, start, end, cost_bound=cost_bound, extra=extra))


def _with_parts(kind: str, tenant: str, start: datetime, end: datetime, rel: Release,
                labels: dict[str, str], parts: Mapping[str, tuple[str, ...]],
                uncounted: tuple[str, ...] = ()) -> Report[GroupStats]:
    """The report of `rel`, each row marked with the merged ids summed into it."""
    rows = group_rows(rel, labels)
    return replace(_report(kind, tenant, start, end, rel,
                           [replace(r, merged=parts[r.key]) if r.key in parts else r
                            for r in rows]), uncounted=uncounted)


def group_rows(rel: Release, labels: dict[str, str]) -> list[GroupStats]:
    """The rows of a `group_stats` release (fresh or cached), busiest first.

    A measure a cached release does not hold (made by an older version) reads 0.
    """
    zero = Figure(0.0, 0.0, rel.exact)
    rows = []
    for g in rel.groups:
        s: dict[str, Figure] = {**{m.name: zero for m in GROUP_MEASURES + cost_measures(1.0)},
                                **g.sums}
        rows.append(GroupStats(
            key=g.group, label=labels.get(g.group), threads=g.count,
            mean_turns=ratio(s["turns"], g.count), refinement_share=ratio(
                s["refinement"], g.count, cap=1.0),
            abandonment_share=ratio(s["abandoned"], g.count, cap=1.0),
            blocked_share=ratio(s["blocked"], g.count, cap=1.0), tokens=s["tokens"],
            mean_tokens=ratio(s["tokens"], g.count), cost=s["cost"],
            mean_cost=ratio(s["cost"], s["costed"]), costed=s["costed"],
            error_share=ratio(s["errors"], g.count, cap=1.0), users=g.users))
    rows.sort(key=lambda r: -r.threads.value)
    return rows


def group_key(kind: str, start: datetime, end: datetime, *, cost_bound: float,
              extra: tuple[str, ...] = ()) -> str:
    """The cache key of a `group_stats` release (what `stats topics|models` file it under)."""
    return release_key(kind, start, end, *extra, f"cost_bound={cost_bound:g}")


def topic_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, labels: dict[str, str],
                single_user: str | None = None, cost_bound: float = 1.0,
                aliases: Mapping[str, str] | None = None,
                shared: Collection[str] | None = None) -> Report[GroupStats]:
    """Per-topic figures (`aliases`: merged id -> live id, see `group_stats`).

    `shared`: the topics of at least `k_min_users` people (`threads.shared_topics`); in
    a release the threads of every other topic are counted as one group, last
    (`small_topics`). None, and one user's own view (exact: no noise to promote a topic
    of one or two threads): every topic a row of its own.
    """
    fold = shared if single_user is None else None
    key: Callable[[ThreadRow], Iterable[str]] = (
        (lambda t: (t.topic,)) if fold is None else
        (lambda t: (release_topic(t.topic, fold),)))
    rel = group_release(threads, gate, tenant=tenant, start=start, end=end, kind="topics",
                        keys=key, single_user=single_user, cost_bound=cost_bound)
    live = aliases or {}
    if fold is not None:
        labels = {**labels, OTHER_TOPICS: other_label(gate.settings.k_min_users)}
    report = _with_parts("topics", tenant, start, end,
                         fold_small(merge_topics(rel, live), fold), labels,
                         merged_parts(rel, live))
    return replace(report, rows=tuple(other_last(report.rows)))


def model_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, labels: dict[str, str],
                topic: str | None = None, single_user: str | None = None,
                cost_bound: float = 1.0, members: Sequence[str] = ()) -> Report[GroupStats]:
    """Per-model figures (optionally on one topic only, to compare models like for like).

    `members`: the ids merged into `topic` (now resolving to it). A new release records
    them as covered; today's release made before a refinement merged more of them has their
    own releases of that day summed in (`merges.topic_parts`), the rest reported uncounted.
    """
    labels = {**labels, NO_MODEL: NO_MODEL_LABEL}  # "(unknown)" alone read as any model
    rows = [t for t in threads if topic is None or t.topic == topic]
    extra = (f"topic={topic}",) if topic is not None else ()
    rel = group_release(rows, gate, tenant=tenant, start=start, end=end, kind="models",
                        keys=lambda t: t.models, single_user=single_user, extra=extra,
                        cost_bound=cost_bound,
                        covers=None if topic is None else (topic, *sorted(members)))
    if topic is None:
        return _with_parts("models", tenant, start, end, rel, labels, {})
    day = (datetime.fromtimestamp(rel.released_at, UTC).strftime("%Y-%m-%d")
           if rel.released_at is not None else gate.ledger.day())

    def released(member: str) -> Release | None:
        return gate.cache.get(tenant, group_key("models", start, end, cost_bound=cost_bound,
                                                extra=(f"topic={member}",)), day)

    summed, parts, uncounted = topic_parts(rel, topic, members, released)
    return _with_parts("models", tenant, start, end, summed, labels, parts, uncounted)


LENGTHS = ((1, "1 turn"), (3, "2-3 turns"), (7, "4-7 turns"))
# the rows of `stats cost`, in the order they are read
COST_ORDER = {key: n for n, key in enumerate(
    [*(f"length {name}" for _, name in LENGTHS), "length 8+ turns", "refined",
     "not refined", "abandoned", "not abandoned"])}


def length_group(turns: int) -> str:
    """The conversation-length group of a thread: 1 turn, 2-3, 4-7 or 8+ turns."""
    return next((name for top, name in LENGTHS if turns <= top), "8+ turns")


def cost_outcomes(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                  start: datetime, end: datetime, single_user: str | None = None,
                  cost_bound: float = 1.0) -> Report[GroupStats]:
    """Cost beside how conversations went: per length group, refined or not, abandoned or not.

    Answers "which conversations cost most, and does a longer one resolve more?"
    (the abandonment share per length group). One release: each thread is a unit
    of three groups, which the contribution bound covers.
    """
    def keys(t: ThreadRow) -> tuple[str, ...]:
        return (f"length {length_group(len(t.turns))}",
                "refined" if t.refinement else "not refined",
                "abandoned" if t.abandoned(end) else "not abandoned")

    report = group_stats(threads, gate, tenant=tenant, start=start, end=end, kind="cost",
                         keys=keys, labels={}, single_user=single_user, cost_bound=cost_bound)
    # by length, then refined, then abandoned: busiest first interleaved the three
    # (`not refined`, `length 4-7 turns`, `not abandoned`, `length 2-3 turns`, ...)
    return replace(report, rows=tuple(sorted(report.rows, key=lambda r: COST_ORDER.get(
        r.key, len(COST_ORDER)))))
