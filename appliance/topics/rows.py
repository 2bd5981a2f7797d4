"""The counts and readable labels of a tenant's live topics, as refinement publishes them."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.topics import tables
from appliance.topics.model import Unit
from appliance.topics.tenant import TenantTopics
from appliance.topics.terms import LABEL_MIN_USERS, phrase_label


@dataclass(frozen=True)
class LabelInput:
    """What a live topic's label is made from (`terms.phrase_label`)."""

    topic_id: str
    scope: str
    members: tuple[Unit, ...]
    users: int
    counts: dict[str, tuple[int, int]]  # phrase -> (its threads here, its people here)
    background: Counter[str]  # phrase -> threads of the scope using it


def label_inputs(state: TenantTopics) -> Iterator[LabelInput]:
    """Every live topic with its threads and phrase counts (phrases of 2+ people)."""
    members: dict[str, list[Unit]] = defaultdict(list)
    for unit in state.units.values():
        if unit.topic and unit.prompts:
            members[unit.topic].append(unit)
    for scope in {u.scope for u in state.units.values()}:
        ids = [t for t, us in members.items() if us[0].scope == scope]
        background: Counter[str] = Counter()
        stats: dict[str, dict[str, tuple[int, int]]] = {}
        for tid in ids:
            users: dict[str, set[str]] = defaultdict(set)
            threads: Counter[str] = Counter()
            for u in members[tid]:
                for p in u.phrases:
                    threads[p] += 1
                    users[p].add(u.user)
            stats[tid] = {p: (n, len(users[p])) for p, n in threads.items()
                          if len(users[p]) >= LABEL_MIN_USERS}
            background.update(threads)
        for tid in ids:
            us = members[tid]
            yield LabelInput(tid, scope, tuple(us), len({u.user for u in us}), stats[tid],
                             background)


def topic_rows(state: TenantTopics, k_min_users: int) -> list[tables.TopicRow]:
    """Counts and labels of every live topic (labels only with `k_min_users` users)."""
    rows = []
    for t in label_inputs(state):
        big = t.users >= k_min_users
        label = phrase_label(t.counts, t.background, units=len(t.members)) if big else None
        terms = tuple(sorted(((p, n) for p, (n, _) in t.counts.items()),
                             key=lambda x: (-x[1], x[0]))[:40]) if big else ()
        rows.append(tables.TopicRow(t.topic_id, t.scope, len(t.members), t.users, label, terms,
                                    state.created.get(t.topic_id, time.time())))
    return rows
