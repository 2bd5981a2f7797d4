"""The rows of each `stats` report and the `Report` that carries them with their privacy cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from appliance.privacy import Figure, Release


@dataclass(frozen=True)
class TrendPoint:
    """A topic's noisy thread count in one day's release (`trend.py`)."""

    day: str  # the UTC day of the release (YYYY-MM-DD)
    threads: float | None  # None: no release that day, or the topic not shown in it
    ci: float | None  # 95% half-width of `threads`
    # whether that day has a release: with `threads` None, the topic's noisy count of
    # people was under k_min_users (none at all, or withheld); without one, nothing is known
    released: bool = False


@dataclass(frozen=True)
class GroupStats:
    """Figures for one topic or model."""

    key: str
    label: str | None
    threads: Figure
    mean_turns: Figure
    refinement_share: Figure
    abandonment_share: Figure
    blocked_share: Figure  # threads with a guardrail-blocked prompt
    tokens: Figure
    mean_tokens: Figure
    cost: Figure = Figure(0.0)  # of the threads whose cost is known
    mean_cost: Figure = Figure(0.0)  # per thread whose cost is known
    costed: Figure = Figure(0.0)  # threads whose cost is known
    error_share: Figure = Figure(0.0)  # threads with a prompt that ended in an error
    users: Figure | None = None  # distinct people (noisy across users)
    # topics: ids the release counted that a refinement merged into this topic since; the
    # row sums their figures, and `users` is then the largest part's count (a floor)
    merged: tuple[str, ...] = ()
    trend: tuple[TrendPoint, ...] = ()  # topics: one point per stored daily release


@dataclass(frozen=True)
class PositionShare:
    """How often prompts of one period took one position."""

    period: str
    position: str
    prompts: Figure
    share: Figure


@dataclass(frozen=True)
class BlockStats:
    """Threads that led into guardrail blocks, per topic."""

    key: str
    label: str | None
    threads: Figure
    mean_turns_before: Figure
    first_turn_share: Figure  # blocked on the first prompt: direct attempts
    retried_share: Figure  # the user went on after the block: a false positive?
    repeated_share: Figure  # blocked more than once: persistent attempts
    thread_ids: tuple[str, ...] = ()  # single-user views only


@dataclass(frozen=True)
class Lift:
    """A topic, position or model's share in the incident window vs the baseline."""

    dimension: str
    key: str
    label: str | None
    window: Figure
    baseline: Figure
    window_share: float
    baseline_share: float
    lift: float | None  # None: nothing (or noise only) in the baseline
    significant: bool  # the share grew by more than twice the noise's standard deviation


R = TypeVar("R")


@dataclass(frozen=True)
class Report(Generic[R]):
    """A stats answer with its privacy accounting."""

    kind: str
    tenant: str
    start: datetime
    end: datetime
    exact: bool
    epsilon: float
    budget_remaining: float | None
    k_min_users: int
    rows: tuple[R, ...]
    released_at: datetime | None = None  # when the cross-user release was computed
    cached: bool = False  # read from today's release: this query spent nothing
    # topics, blocks and incident across users: the tenant's topics are per user
    # (`cross_user_topics` off), so each holds one person's threads and all are counted in
    # the other-topics row (`small_topics`)
    per_user_topics: bool = False
    # models on one topic: ids a refinement merged into the topic since today's release
    # of it, with no release of their own that day: their threads are in no figure here
    # (every count is a floor)
    uncounted: tuple[str, ...] = ()
    # models on one topic: the topic the figures are of (its id now) and its label
    topic: str | None = None
    topic_label: str | None = None
    # incident: the window its figures are compared against
    baseline_start: datetime | None = None
    baseline_end: datetime | None = None
    # across users: the window (and an incident's baseline) holds no thread of the tenant,
    # told without a release (nothing spent) to a role that may list the tenant's threads,
    # which know it exactly already (`reads.run_stats`, docs/topics.md)
    empty: bool = False


def _report(kind: str, tenant: str, start: datetime, end: datetime, rel: Release,
            rows: Sequence[R]) -> Report[R]:
    released = (datetime.fromtimestamp(rel.released_at, UTC)
                if rel.released_at is not None else None)
    return Report(kind=kind, tenant=tenant, start=start, end=end, exact=rel.exact,
                  epsilon=0.0 if rel.cached else rel.epsilon, budget_remaining=rel.remaining,
                  k_min_users=rel.k_min_users, rows=tuple(rows), released_at=released,
                  cached=rel.cached)
