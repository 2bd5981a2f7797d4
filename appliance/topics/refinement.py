"""One refinement of one scope: the snapshot it works on, its re-clustering by exact
average linkage (outside the ingest lock), and installing the result in the tenant's state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.config import PrivacySettings
from appliance.topics.cluster import (
    average_linkage,
    carry_ids,
    lexical_vectors,
    self_similarity,
    with_words,
)
from appliance.topics.model import ScopeTopics, new_topic_id
from appliance.topics.tenant import TenantTopics, share


@dataclass(frozen=True)
class Snapshot:
    """What one refinement of one scope works on (copied under the lock)."""

    tenant: str
    scope: str
    threads: list[str]
    vectors: np.ndarray  # per thread: the weighted sum of its prompts' vectors
    previous: list[str | None]
    weights: np.ndarray  # per thread: the sum of its prompts' weights
    weights2: np.ndarray  # ... and of their squares
    words: list[dict[str, int]]  # per thread: its content words (prompts using each)


def snapshot(tenant: str, state: TenantTopics, scope: str, dims: int) -> Snapshot:
    """Copy what the refinement of `scope` works on (call under the lock)."""
    units = [u for u in state.units.values() if u.scope == scope and u.prompts]
    vecs = (np.vstack([u.total for u in units]) if units
            else np.zeros((0, dims), np.float32))
    return Snapshot(tenant, scope, [u.thread_id for u in units], vecs,
                    [u.topic for u in units],
                    np.array([u.weight for u in units], dtype=np.float64),
                    np.array([u.weight2 for u in units], dtype=np.float64),
                    [{p: n for p, n in u.phrases.items() if " " not in p} for u in units])


def recluster(snap: Snapshot, settings: PrivacySettings) -> tuple[list[str], dict[str, str]]:
    """Re-cluster a snapshot's threads: each one's topic, and merged id -> id it went into.

    New clusters keep the ids most of their threads had (`cluster.carry_ids`).
    """
    weight = settings.topic_lexical_weight
    lexical = lexical_vectors(snap.words)
    labels = average_linkage(
        with_words(snap.vectors, snap.weights, lexical, weight=weight), snap.weights,
        threshold=settings.topic_merge_threshold,
        selfsim=self_similarity(snap.weights2, lexical, weight=weight),
        selfweight=snap.weights2,
        cohesion_ratio=settings.topic_cohesion_ratio,
        seed_ratio=settings.topic_seed_ratio,
        absorb_threshold=settings.topic_absorb_threshold,
        support=settings.topic_support,
        merge_ratio=settings.topic_merge_ratio)
    ids, gone = carry_ids(labels, snap.previous, snap.weights, new_topic_id)
    return [ids[i] for i in labels], gone


def install(state: TenantTopics, snap: Snapshot, topics: list[str], gone: dict[str, str],
            sc: ScopeTopics, *, weight: float) -> dict[str, str]:
    """Install a refinement's clusters in `state` and in `sc`, the topics of its scope
    (under the lock); returns thread -> new topic. `weight`: `topic_lexical_weight`."""
    changed = {}
    state.alias.update(gone)
    for old, new in list(state.alias.items()):
        state.alias[old] = gone.get(new, new)
    for thread, topic in zip(snap.threads, topics, strict=True):
        unit = state.units.get(thread)
        if unit is not None and unit.topic != topic:
            unit.topic = topic
            changed[thread] = topic
    members = []
    for unit in state.units.values():
        if unit.scope == snap.scope and unit.prompts:
            resolved = state.resolve(unit.topic)
            if resolved != unit.topic:
                unit.topic = resolved
                changed[unit.thread_id] = resolved or ""
            unit.lexical = state.lexical(unit, weight)
            members.append((unit.topic or "", *share(unit, weight)))
            state.created.setdefault(unit.topic or "", unit.last_ts)
    sc.rebuild(members)
    return changed
