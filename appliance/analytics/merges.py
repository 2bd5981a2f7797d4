"""Topics a refinement merged since a release was made: the release's groups summed into
the topic they joined (`stats topics|blocks|incident`, the TUI's topics screen), and a
topic's `stats models --topic` release summed with those of the topics merged into it since.

A cached release keeps the topic ids of the moment it was made all day; once a refinement
has merged one of them into another topic, its figures belong to that topic's row.
Adding released figures is post-processing: it spends nothing and reveals nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from appliance.privacy import Figure, GroupFigures, Release


def _add(parts: Sequence[Figure]) -> Figure:
    """The sum of released figures: values add, noise scales in quadrature (post-processing,
    as the trend adds a day's parts)."""
    return Figure(sum(f.value for f in parts), math.sqrt(sum(f.noise_scale ** 2 for f in parts)),
                  all(f.exact for f in parts))


def merge_topics(rel: Release, live: Mapping[str, str]) -> Release:
    """A topic release with the groups of ids merged since summed into the topic they joined.

    Threads and every per-thread sum (turns, refined, abandoned, cost …) add, so the row's
    means and shares are of all its threads. People do not add (one person may be in
    both parts): the merged row keeps its largest part's count, a floor. Pure."""
    parts: dict[str, list[GroupFigures]] = {}
    for g in rel.groups:
        parts.setdefault(live.get(g.group, g.group), []).append(g)
    groups = []
    for key, gs in parts.items():
        if len(gs) == 1 and gs[0].group == key:
            groups.append(gs[0])
            continue
        names = {n for g in gs for n in g.sums}
        users = [g.users for g in gs if g.users is not None]
        groups.append(GroupFigures(
            key, _add([g.count for g in gs]),
            {n: _add([g.sums[n] for g in gs if n in g.sums]) for n in sorted(names)},
            max(users, key=lambda f: f.value) if users else None))
    return replace(rel, groups=tuple(groups))


def merged_parts(rel: Release, live: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Per topic, the ids `rel` counted that a refinement has merged into it since (what
    `merge_topics` sums into its row), sorted. Pure."""
    out: dict[str, list[str]] = {}
    for g in rel.groups:
        if live.get(g.group, g.group) != g.group:
            out.setdefault(live[g.group], []).append(g.group)
    return {k: tuple(sorted(v)) for k, v in out.items()}


def topic_parts(rel: Release, topic: str, members: Sequence[str],
                released: Callable[[str], Release | None]
                ) -> tuple[Release, dict[str, tuple[str, ...]], tuple[str, ...]]:
    """A release filtered on `topic` (`stats models --topic`) with the releases of the topics
    merged into it since it was made summed in, group by group (post-processing).

    `rel` counted the threads of the ids it covers (`Release.covers`: the topic and those
    merged into it then). Each id of `members` (merged into `topic` now) it did not cover
    was a topic of its own then: its own release of that day (`released(id)`), if one was
    made, holds its threads and is added; one without is *uncounted*, its threads in no
    release of that day, so every count is a floor. A release that recorded no cover (made
    before covers were) is taken as it is, as before.

    Returns the release, per group the ids summed into it, and the uncounted ids. Pure.
    """
    if rel.exact or rel.covers is None:
        return rel, {}, ()
    covered = set(rel.covers)
    parts: list[tuple[str, Release]] = []
    for m in sorted(set(members) - covered):
        if m in covered:  # covered by a member's release added before
            continue
        own = released(m)
        cover = set(own.covers if own is not None and own.covers is not None else (m,))
        if own is None or cover & covered or not cover <= {topic, *members}:
            continue
        parts.append((m, own))
        covered |= cover
    uncounted = tuple(sorted(set(members) - covered))
    if not parts:
        return rel, {}, uncounted
    summed = merge_topics(replace(rel, groups=rel.groups + tuple(
        g for _, own in parts for g in own.groups)), {})
    by_group: dict[str, tuple[str, ...]] = {}
    for m, own in parts:
        for g in own.groups:
            by_group[g.group] = (*by_group.get(g.group, ()), m)
    return summed, by_group, uncounted
