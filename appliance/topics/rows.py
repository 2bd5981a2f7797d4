"""The counts and readable labels of a tenant's live topics, as refinement publishes them."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from appliance.topics import tables
from appliance.topics.model import Unit
from appliance.topics.tenant import TenantTopics
from appliance.topics.terms import LABEL_COMMON_SHARE, LABEL_MIN_USERS, phrase_label


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


def tenant_words(inputs: Iterable[LabelInput], k_min_users: int, *,
                 share: float = LABEL_COMMON_SHARE) -> dict[str, frozenset[str]]:
    """Per scope, the words of the tenant rather than of a topic: used by two or more
    people in more than `share` of the scope's topics of `k_min_users` people (the ones
    labelled), and in three of them at least ("name", "time", "find" across subjects)."""
    spread: dict[str, Counter[str]] = defaultdict(Counter)
    topics: Counter[str] = Counter()
    for t in inputs:
        if t.users >= k_min_users:
            topics[t.scope] += 1
            spread[t.scope].update(p for p in t.counts if " " not in p)
    return {scope: frozenset(w for w, n in spread[scope].items()
                             if n >= 3 and n > share * topics[scope])
            for scope in topics if topics[scope] >= 3}


def topic_rows(state: TenantTopics, k_min_users: int) -> list[tables.TopicRow]:
    """Counts and labels of every live topic (labels only with `k_min_users` users)."""
    rows = []
    inputs = list(label_inputs(state))
    common = tenant_words(inputs, k_min_users)
    for t in inputs:
        big = t.users >= k_min_users
        label = phrase_label(t.counts, t.background, units=len(t.members),
                             common=common.get(t.scope, frozenset())) if big else None
        terms = tuple(sorted(((p, n) for p, (n, _) in t.counts.items()),
                             key=lambda x: (-x[1], x[0]))[:40]) if big else ()
        rows.append(tables.TopicRow(t.topic_id, t.scope, len(t.members), t.users, label, terms,
                                    state.created.get(t.topic_id, time.time())))
    return rows
