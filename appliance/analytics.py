"""Conversation analytics: per topic, per model, position mix, guardrail blocks, incidents.

`load_threads` reads thread metadata (never text) from the store; the other
functions are pure: they turn those rows into report dataclasses, and every
figure that spans users comes out of `privacy.PrivacyGate` (exact only when the
view is scoped to one user).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from appliance.privacy import Figure, Measure, PrivacyGate, Release, Unit, ratio
from appliance.store import Store

REFINEMENT_INTENTS = frozenset({"error_recovery", "refinement"})
FAILED = frozenset({"error", "blocked"})
IDLE_END = timedelta(minutes=30)  # a thread quiet this long before the window ends has ended
NO_TOPIC = "(none)"
NO_MODEL = "(unknown)"


@dataclass(frozen=True)
class Turn:
    """Metadata of one prompt of a thread."""

    ts: datetime
    position: str
    intent: str | None
    status: str | None
    model: str | None
    tokens: int
    topic_id: str | None
    abandoned_flag: bool = False
    cost: float | None = None  # None: unknown (no reported cost, model not priced)


@dataclass(frozen=True)
class ThreadRow:
    """One thread's turns inside a window (metadata only)."""

    thread_id: str
    user: str
    turns: tuple[Turn, ...]

    @property
    def topic(self) -> str:
        return next((t.topic_id for t in self.turns if t.topic_id), NO_TOPIC)

    @property
    def models(self) -> tuple[str, ...]:
        seen = dict.fromkeys(t.model or NO_MODEL for t in self.turns)
        return tuple(seen)

    @property
    def blocks(self) -> int:
        return sum(t.status == "blocked" for t in self.turns)

    @property
    def errors(self) -> int:
        return sum(t.status == "error" for t in self.turns)

    @property
    def refinement(self) -> bool:
        return any(t.intent in REFINEMENT_INTENTS for t in self.turns)

    @property
    def cost(self) -> float | None:
        """What the thread's turns of known cost cost; None when no turn's cost is known."""
        known = [t.cost for t in self.turns if t.cost is not None]
        return sum(known) if known else None

    def abandoned(self, end: datetime) -> bool:
        """Reported abandoned, or ended (idle) right after a failed or corrective turn."""
        last = self.turns[-1]
        if any(t.abandoned_flag for t in self.turns):
            return True
        ended = last.ts <= end - IDLE_END
        return ended and (last.status in FAILED or last.intent in REFINEMENT_INTENTS)


@dataclass(frozen=True)
class TrendPoint:
    """A topic's noisy thread count in one day's release (`trend.py`)."""

    day: str  # the UTC day of the release (YYYY-MM-DD)
    threads: float | None  # None: no release that day, or the topic was withheld in it
    ci: float | None  # 95% half-width of `threads`


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


def _parse_feedback(raw: str | None) -> bool:
    try:
        fb = json.loads(raw) if raw else {}
    except ValueError:
        return False
    return isinstance(fb, dict) and bool(fb.get("abandoned"))


def load_threads(store: Store, tenant: str, start: datetime, end: datetime, *,
                 user: str | None = None) -> list[ThreadRow]:
    """Threads with prompts in [start, end) of one tenant (one user when given), no text.

    Topic ids are resolved to the live topic they were merged into; synthetic
    prompts are left out.
    """
    alias = dict(store.db.execute(
        "SELECT topic_id, merged_into FROM topics WHERE tenant=? AND merged_into IS NOT NULL",
        (tenant,)).fetchall())

    def live(tid: str | None) -> str | None:
        for _ in range(64):
            if tid not in alias:
                break
            tid = alias[tid]
        return tid

    sql = ("SELECT thread_id, user, ts, position, intent, status, model, "
           "coalesce(input_tokens, 0) + coalesce(output_tokens, 0), topic_id, feedback, cost "
           "FROM records WHERE tenant=? AND synthetic=0 AND ts>=? AND ts<?")
    params: list[object] = [tenant, start.timestamp(), end.timestamp()]
    if user is not None:
        sql += " AND user=?"
        params.append(user)
    turns: dict[str, tuple[str, list[Turn]]] = {}
    for tid, who, ts, pos, intent, status, model, tokens, topic, fb, cost in store.db.execute(
            sql + " ORDER BY thread_id, ts, id", params):
        turn = Turn(datetime.fromtimestamp(ts, UTC), pos, intent, status, model, int(tokens),
                    live(topic), _parse_feedback(fb), cost)
        turns.setdefault(tid, (who, []))[1].append(turn)
    return [ThreadRow(tid, who, tuple(ts)) for tid, (who, ts) in turns.items()]


def topic_labels(store: Store, tenant: str) -> dict[str, str]:
    """Keyword labels of the tenant's topics (only topics with enough contributors have one)."""
    return dict(store.db.execute(
        "SELECT topic_id, label FROM topics WHERE tenant=? AND label IS NOT NULL", (tenant,)))


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


def _report(kind: str, tenant: str, start: datetime, end: datetime, rel: Release,
            rows: Sequence[R]) -> Report[R]:
    released = (datetime.fromtimestamp(rel.released_at, UTC)
                if rel.released_at is not None else None)
    return Report(kind=kind, tenant=tenant, start=start, end=end, exact=rel.exact,
                  epsilon=0.0 if rel.cached else rel.epsilon, budget_remaining=rel.remaining,
                  k_min_users=rel.k_min_users, rows=tuple(rows), released_at=released,
                  cached=rel.cached)


def release_key(kind: str, start: datetime, end: datetime, *extra: str) -> str:
    """What a cached release is filed under: its kind, window and any filter."""
    return "|".join((kind, start.isoformat(), end.isoformat(), *extra))


def group_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, kind: str,
                keys: Callable[[ThreadRow], Iterable[str]], labels: dict[str, str],
                single_user: str | None = None, extra: tuple[str, ...] = (),
                cost_bound: float = 1.0) -> Report[GroupStats]:
    """Threads, mean turns, refinement/abandonment/blocked shares, tokens, cost per key."""
    units = [Unit(t.user, key, {"turns": len(t.turns), "refinement": float(t.refinement),
                                "abandoned": float(t.abandoned(end)),
                                "blocked": float(t.blocks > 0), "errors": float(t.errors > 0),
                                "tokens": sum(x.tokens for x in t.turns),
                                "cost": t.cost or 0.0, "costed": float(t.cost is not None)})
             for t in threads for key in keys(t)]
    rel = gate.release(tenant, units, measures=GROUP_MEASURES + cost_measures(cost_bound),
                       single_user=single_user, kind=kind,
                       key=group_key(kind, start, end, cost_bound=cost_bound, extra=extra))
    return _report(kind, tenant, start, end, rel, group_rows(rel, labels))


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


DEFAULT_DAYS = 7


def default_window(now: datetime, days: int = DEFAULT_DAYS) -> tuple[datetime, datetime]:
    """The `days` UTC days ending tonight: every default query of a day shares its release."""
    tonight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = tonight + timedelta(days=1)
    return end - timedelta(days=days), end


def group_key(kind: str, start: datetime, end: datetime, *, cost_bound: float,
              extra: tuple[str, ...] = ()) -> str:
    """The cache key of a `group_stats` release (what `stats topics|models` file it under)."""
    return release_key(kind, start, end, *extra, f"cost_bound={cost_bound:g}")


def topic_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, labels: dict[str, str],
                single_user: str | None = None, cost_bound: float = 1.0) -> Report[GroupStats]:
    """Per-topic figures."""
    return group_stats(threads, gate, tenant=tenant, start=start, end=end, kind="topics",
                       keys=lambda t: (t.topic,), labels=labels, single_user=single_user,
                       cost_bound=cost_bound)


def model_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, labels: dict[str, str],
                topic: str | None = None, single_user: str | None = None,
                cost_bound: float = 1.0) -> Report[GroupStats]:
    """Per-model figures (optionally on one topic only, to compare models like for like)."""
    rows = [t for t in threads if topic is None or t.topic == topic]
    return group_stats(rows, gate, tenant=tenant, start=start, end=end, kind="models",
                       keys=lambda t: t.models, labels={}, single_user=single_user,
                       extra=(f"topic={topic}",) if topic is not None else (),
                       cost_bound=cost_bound)


LENGTHS = ((1, "1 turn"), (3, "2-3 turns"), (7, "4-7 turns"))


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

    return group_stats(threads, gate, tenant=tenant, start=start, end=end, kind="cost",
                       keys=keys, labels={}, single_user=single_user, cost_bound=cost_bound)


def period_of(ts: datetime, bucket: str) -> str:
    """The UTC day ("2024-03-04") or hour ("2024-03-04T07") a time falls in."""
    return ts.strftime("%Y-%m-%dT%H" if bucket == "hour" else "%Y-%m-%d")


def position_mix(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                 start: datetime, end: datetime, bucket: str = "day",
                 single_user: str | None = None) -> Report[PositionShare]:
    """Prompts per (period, position) and each position's share of its period."""
    units = [Unit(t.user, f"{period_of(x.ts, bucket)}|{x.position}")
             for t in threads for x in t.turns]
    rel = gate.release(tenant, units, single_user=single_user, kind="positions",
                       key=release_key("positions", start, end, bucket))
    totals: dict[str, float] = {}
    for g in rel.groups:
        period = g.group.split("|", 1)[0]
        totals[period] = totals.get(period, 0.0) + g.count.value
    rows = []
    for g in rel.groups:
        period, position = g.group.split("|", 1)
        total = Figure(totals[period], 0.0, g.count.exact)
        rows.append(PositionShare(period, position, g.count, ratio(g.count, total, cap=1.0)))
    return _report("positions", tenant, start, end, rel, rows)


def _block_values(t: ThreadRow) -> dict[str, float]:
    first = next(i for i, x in enumerate(t.turns) if x.status == "blocked")
    return {"before": float(first), "first_turn": float(first == 0),
            "retried": float(first < len(t.turns) - 1), "repeated": float(t.blocks > 1)}


BLOCK_MEASURES = (Measure("before", 20, 0.5), Measure("first_turn", 1, 0.5),
                  Measure("retried", 1, 0.5), Measure("repeated", 1, 0.5))


def block_stats(threads: Iterable[ThreadRow], gate: PrivacyGate, *, tenant: str,
                start: datetime, end: datetime, labels: dict[str, str],
                single_user: str | None = None) -> Report[BlockStats]:
    """Per topic: threads that hit a guardrail block and what preceded or followed it."""
    blocked = [t for t in threads if t.blocks]
    units = [Unit(t.user, t.topic, _block_values(t)) for t in blocked]
    rel = gate.release(tenant, units, measures=BLOCK_MEASURES, single_user=single_user,
                       kind="blocks", key=release_key("blocks", start, end))
    rows = []
    for g in rel.groups:
        ids = tuple(t.thread_id for t in blocked if t.topic == g.group) if rel.exact else ()
        s = g.sums
        rows.append(BlockStats(
            key=g.group, label=labels.get(g.group), threads=g.count,
            mean_turns_before=ratio(s["before"], g.count),
            first_turn_share=ratio(s["first_turn"], g.count, cap=1.0),
            retried_share=ratio(s["retried"], g.count, cap=1.0),
            repeated_share=ratio(s["repeated"], g.count, cap=1.0), thread_ids=ids))
    rows.sort(key=lambda r: -r.threads.value)
    return _report("blocks", tenant, start, end, rel, rows)


def incident_lifts(window: Iterable[ThreadRow], baseline: Iterable[ThreadRow],
                   gate: PrivacyGate, *, tenant: str, start: datetime, end: datetime,
                   labels: dict[str, str], single_user: str | None = None,
                   baseline_window: tuple[datetime, datetime] | None = None) -> Report[Lift]:
    """Topics, positions and models over-represented among prompts of the window.

    One release covers both windows (one charge); a user's prompts count once per
    dimension, so the contribution bound covers all of them.
    """
    units = []
    for side, threads in (("w", window), ("b", baseline)):
        for t in threads:
            for x in t.turns:
                units += [Unit(t.user, f"{side}|topic|{t.topic}"),
                          Unit(t.user, f"{side}|position|{x.position}"),
                          Unit(t.user, f"{side}|model|{x.model or NO_MODEL}")]
    key = release_key("incident", start, end, *(
        x.isoformat() for x in baseline_window or ()))
    rel = gate.release(tenant, units, single_user=single_user, key=key, kind="incident")
    figs = {g.group: g.count for g in rel.groups}
    totals: dict[tuple[str, str], float] = {}
    for key, fig in figs.items():
        side, dim, _ = key.split("|", 2)
        totals[(side, dim)] = totals.get((side, dim), 0.0) + fig.value
    rows = []
    for key, fig in figs.items():
        side, dim, value = key.split("|", 2)
        if side != "w":
            continue
        base = figs.get(f"b|{dim}|{value}", Figure(0.0, 0.0, rel.exact))
        w_total = max(totals.get(("w", dim), 0.0), 1.0)
        b_total = max(totals.get(("b", dim), 0.0), 1.0)
        ws, bs = fig.value / w_total, base.value / b_total
        # a Laplace(b) count has standard deviation b * sqrt(2)
        sd = math.hypot(fig.noise_scale / w_total, base.noise_scale / b_total) * math.sqrt(2)
        rows.append(Lift(dim, value, labels.get(value) if dim == "topic" else None, fig, base,
                         round(ws, 4), round(bs, 4), round(ws / bs, 3) if bs > 0 else None,
                         significant=ws - bs > 2 * sd))
    rows.sort(key=lambda r: (not r.significant, r.lift is not None, -(r.lift or 0.0),
                             -r.window.value))
    return _report("incident", tenant, start, end, rel, rows)
