"""Topics a refinement merged since a release was made: the release's groups summed into
the topic they joined (`stats topics|blocks|incident`, the TUI's topics screen).

A cached release keeps the topic ids of the moment it was made all day; once a refinement
has merged one of them into another topic, its figures belong to that topic's row.
Adding released figures is post-processing: it spends nothing and reveals nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
