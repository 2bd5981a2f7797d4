"""A thread's turns as analytics sees them: metadata read from the store, never text.

`load_threads` and `topic_labels` are the only reads of the store here; a
`ThreadRow` says what its turns add up to (topic, models, blocks, refinement,
cost, abandonment).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from appliance.store import Store

REFINEMENT_INTENTS = frozenset({"error_recovery", "refinement"})
FAILED = frozenset({"error", "blocked"})
IDLE_END = timedelta(minutes=30)  # a thread quiet this long before the window ends has ended
NO_TOPIC = "(none)"
NO_MODEL = "(unknown)"  # the key of calls whose gateway named no model (kept: releases hold it)
NO_MODEL_LABEL = "no model named"  # what `stats` and the TUI say beside it


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


def _parse_feedback(raw: str | None) -> bool:
    try:
        fb = json.loads(raw) if raw else {}
    except ValueError:
        return False
    return isinstance(fb, dict) and bool(fb.get("abandoned"))


def has_threads(store: Store, tenant: str, start: datetime, end: datetime) -> bool:
    """Whether `tenant` has a thread with a prompt in [start, end): what `load_threads`
    returns none for when not (synthetic prompts left out), read without loading them."""
    return store.db.execute(
        "SELECT 1 FROM records WHERE tenant=? AND synthetic=0 AND ts>=? AND ts<? LIMIT 1",
        (tenant, start.timestamp(), end.timestamp())).fetchone() is not None


def load_threads(store: Store, tenant: str, start: datetime, end: datetime, *,
                 user: str | None = None, aliases: Mapping[str, str] | None = None
                 ) -> list[ThreadRow]:
    """Threads with prompts in [start, end) of one tenant (one user when given), no text.

    Each turn carries its thread's topic as the last refinement left it (the threads
    table, what `threads list --topic` and the screens read; a prompt's own topic, handed
    out at ingest, only for a thread without one): a refinement moves threads between
    topics that both live on, which no merge records. Topic ids are resolved to the live
    topic they were merged into (by `aliases`, merged id -> id, when the caller read them
    already); synthetic prompts are left out.
    """
    alias = dict(aliases) if aliases is not None else dict(store.db.execute(
        "SELECT topic_id, merged_into FROM topics WHERE tenant=? AND merged_into IS NOT NULL",
        (tenant,)).fetchall())

    def live(tid: str | None) -> str | None:
        for _ in range(64):
            if tid not in alias:
                break
            tid = alias[tid]
        return tid

    sql = ("SELECT r.thread_id, r.user, r.ts, r.position, r.intent, r.status, r.model, "
           "coalesce(r.input_tokens, 0) + coalesce(r.output_tokens, 0), "
           "coalesce(t.topic_id, r.topic_id), r.feedback, r.cost FROM records r "
           "LEFT JOIN threads t ON t.thread_id = r.thread_id "
           "WHERE r.tenant=? AND r.synthetic=0 AND r.ts>=? AND r.ts<?")
    params: list[object] = [tenant, start.timestamp(), end.timestamp()]
    if user is not None:
        sql += " AND r.user=?"
        params.append(user)
    turns: dict[str, tuple[str, list[Turn]]] = {}
    for tid, who, ts, pos, intent, status, model, tokens, topic, fb, cost in store.db.execute(
            sql + " ORDER BY r.thread_id, r.ts, r.id", params):
        turn = Turn(datetime.fromtimestamp(ts, UTC), pos, intent, status, model, int(tokens),
                    live(topic), _parse_feedback(fb), cost)
        turns.setdefault(tid, (who, []))[1].append(turn)
    return [ThreadRow(tid, who, tuple(ts)) for tid, (who, ts) in turns.items()]


def topic_labels(store: Store, tenant: str) -> dict[str, str]:
    """Keyword labels of the tenant's topics (only topics with enough contributors have
    one), a merged id's being that of the live topic it resolves to: a release made
    before a refinement merged its topics keeps their old ids all day."""
    labels: dict[str, str] = {}
    alias: dict[str, str] = {}
    for tid, label, into in store.db.execute(
            "SELECT topic_id, label, merged_into FROM topics WHERE tenant=?", (tenant,)):
        if into is not None:
            alias[tid] = into
        elif label is not None:
            labels[tid] = label
    out = dict(labels)
    for tid in alias:
        live = tid
        for _ in range(64):
            if live not in alias:
                break
            live = alias[live]
        if live in labels:
            out[tid] = labels[live]
    return out


def shared_topics(store: Store, tenant: str, k_min_users: int) -> frozenset[str]:
    """The tenant's live topics in which the last refinement counted at least
    `k_min_users` people (those that get a label): each has a row of its own in a topics
    release, the others share one (`small_topics`)."""
    return frozenset(tid for tid, in store.db.execute(
        "SELECT topic_id FROM topics WHERE tenant=? AND merged_into IS NULL "
        "AND contributors>=?", (tenant, k_min_users)))
