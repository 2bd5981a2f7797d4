"""Topics of fewer than `k_min_users` people, counted and shown as one row.

On a small tenant most topics are one or two threads of one or two people. Each was a
group of the topics release, shown whenever the noise on its count of people reached
`k_min_users` (scale 16 against 5 at the shipped epsilon: about four in ten such topics a
day), drawn at up to ±37 threads, so that a topic of two threads could rank above one of
28 people (docs/topics.md). Now a topic has a group of its own in a topics release only
when the last refinement counted at least `k_min_users` people in it (`topics.contributors`,
the count that already decides whether it gets a label, `topics/rows.py`); the threads of
every other topic are one group, `OTHER_TOPICS`, with one noisy thread count and one noisy
count of people (drawn once for the group, in the same histograms, nothing spent beyond
the release's epsilon). A topic that reaches `k_min_users` people has a group of its own
from the next release on; a topic that falls below it is counted under `OTHER_TOPICS`
again.

Which topics have a group depends on exact counts of people, as a label does: it tells a
reader nothing a label does not already say (the set of groups is outside the epsilon
guarantee, docs/topics.md, *Known limits*). The row does not say how many topics it holds:
that exact count would count one person's one-off subjects exactly. The releases of
`stats blocks` and `stats incident` count their topics the same way (their rows were one
per topic, let through by the same noise). One user's own view is exact and has no noise
to promote anything: it keeps a row per topic.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Protocol, TypeVar

from appliance.analytics.merges import merge_topics
from appliance.analytics.threads import NO_TOPIC
from appliance.privacy import Release

OTHER_TOPICS = "(other topics)"  # the key of the row (never a topic id: those are tp_...)



class Keyed(Protocol):
    """A report row named by a topic id (topics' GroupStats, BlockStats, an incident's Lift)."""

    @property
    def key(self) -> str: ...


Row = TypeVar("Row", bound=Keyed)


def other_label(k_min_users: int) -> str:
    """The row's name: `other topics (each under 5 people)` (how many: see the module)."""
    return f"other topics (each under {k_min_users} people)"


def release_topic(topic: str, shared: Collection[str]) -> str:
    """The group a thread of `topic` is counted under in a topics release (`shared`: the
    topics of at least `k_min_users` people, `threads.shared_topics`)."""
    return topic if topic in shared or topic == NO_TOPIC else OTHER_TOPICS


def small_topics(topics: Iterable[str], shared: Collection[str]) -> dict[str, str]:
    """`{topic: OTHER_TOPICS}` for each of `topics` that has no group of its own (the map
    `merges.merge_topics` folds a release made before with). Pure."""
    return {t: OTHER_TOPICS for t in topics if release_topic(t, shared) != t}


def fold_small(rel: Release, shared: Collection[str] | None) -> Release:
    """`rel` (topic ids as they are now) with every group of a topic outside `shared`
    summed into `OTHER_TOPICS` (`merges.merge_topics`: values add, people a floor).

    A release made since counts them so already; this folds a release made before (by an
    older version, or before a topic fell under `k_min_users` people). `shared` None: as
    it is. Pure."""
    if shared is None:
        return rel
    small = small_topics((g.group for g in rel.groups), shared)
    return merge_topics(rel, small) if small else rel


def other_last(rows: Iterable[Row]) -> list[Row]:
    """`rows` in their order, the other-topics row last: it is not one topic, and its sum
    of many small ones would otherwise top the list."""
    rows = list(rows)
    return [r for r in rows if r.key != OTHER_TOPICS] + [
        r for r in rows if r.key == OTHER_TOPICS]
