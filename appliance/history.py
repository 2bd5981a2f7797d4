"""Linking from what the gateway knows: message history and previous response ids. Pure.

The strongest signal comes first (docs/linking.md):

1. `history`: a prompt whose history ends with a turn the store holds continues
   that turn's thread, with that turn as parent, whatever the texts say. An
   edited-and-resent prompt (history cut back) branches from where its history
   ends. A history without user or assistant turns is a new conversation, unless
   the prompt explicitly refers back to an earlier one (then the content linker
   may attach it).
2. `previous_response_id`: the record that answered with that id is the parent.
3. Otherwise the content linker decides, as without any history; its link is
   credited to the session id when the parent shares the prompt's session.

The caller resolves digests against the store and hands in a `GatewayContext`;
this module decides, and records in the evidence which signal decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from appliance.config import CorrelationSettings
from appliance.cues import cue_names, intent_of, orphan_cues, refers_back
from appliance.link import ORPHAN_CUES, REFERRING_CUES, LinkInput
from appliance.records import Candidate, GatewayContext, HeldTurn, Link, Message

DIALOGUE = ("user", "assistant")
KIND_OF_ROLE = {"user": "prompt", "assistant": "answer"}


@dataclass(frozen=True)
class Match:
    """The stored turn a history ends at, and how it was found."""

    turn: HeldTurn
    via: str  # the role of the history message that matched
    skipped: int  # dialogue messages after it that the store does not hold
    chain: int  # earlier history messages confirmed along its parent links


def dialogue(history: Sequence[Message]) -> list[Message]:
    """The user and assistant messages of a history, oldest first."""
    return [m for m in history if m.role in DIALOGUE]


def _chain(turn: HeldTurn, earlier: Sequence[Message], prompts: dict[int, HeldTurn]) -> int:
    """How many of the user messages before `turn`, newest first, its ancestors repeat."""
    n, rec = 0, turn
    for m in reversed([m for m in earlier if m.role == "user"]):
        parent = prompts.get(rec.parent_id) if rec.parent_id is not None else None
        if parent is None or parent.digest != m.digest:
            break
        n, rec = n + 1, parent
    return n


def find_parent(ctx: GatewayContext) -> Match | None:
    """The held turn the history ends at: the newest dialogue message the store holds.

    Several records may share a digest ("Yes."): the one whose ancestors repeat
    the most of the history wins, then the one whose thread holds the most of
    it, then the newest.
    """
    if not ctx.history or not ctx.held:
        return None
    msgs = dialogue(ctx.history)
    by_key: dict[tuple[str, str], list[HeldTurn]] = {}
    for h in ctx.held:
        by_key.setdefault((h.kind, h.digest), []).append(h)
    prompts = {h.record_id: h for h in ctx.held if h.kind == "prompt"}
    support: dict[str, int] = {}
    for h in ctx.held:
        support[h.thread_id] = support.get(h.thread_id, 0) + 1
    for k in range(len(msgs) - 1, -1, -1):
        found = by_key.get((KIND_OF_ROLE[msgs[k].role], msgs[k].digest))
        if not found:
            continue
        own = k if msgs[k].role == "user" else max(
            (j for j in range(k) if msgs[j].role == "user"), default=0)
        scored = [(_chain(h, msgs[:own], prompts), support[h.thread_id], h.ts, h.record_id, h)
                  for h in found]
        chain, _, _, _, best = max(scored, key=lambda t: t[:4])
        return Match(turn=best, via=msgs[k].role, skipped=len(msgs) - 1 - k, chain=chain)
    return None


def _position(q: LinkInput, parent: HeldTurn, cands: Sequence[Candidate],
              s: CorrelationSettings) -> tuple[str, float | None]:
    """continuation, or topic_shift when the prompt is unlike the thread's recent turns
    and carries no follow-up cue; and the similarity to the parent (when in memory)."""
    thread = [c for c in cands if c.thread_id == parent.thread_id and c.ts <= q.ts]
    parent_c = next((c for c in reversed(thread) if c.record_id == parent.record_id), None)
    sim = float(np.dot(q.vector, parent_c.vector)) if parent_c is not None else None
    recent = [float(np.dot(q.vector, c.vector)) for c in thread[-3:]]
    if sim is not None:
        recent.append(sim)
    if not recent or cue_names(q.text) & REFERRING_CUES:
        return "continuation", sim
    if intent_of(q.text) == "conversation_management":
        return "continuation", sim
    return ("topic_shift" if max(recent) < s.topic_shift_similarity else "continuation"), sim


def _linked(q: LinkInput, parent: HeldTurn, cands: Sequence[Candidate], source: str,
            detail: dict[str, Any], s: CorrelationSettings) -> Link:
    position, sim = _position(q, parent, cands, s)
    detail["branch"] = any(c.parent_id == parent.record_id for c in cands)
    return Link(parent_id=parent.record_id, thread_id=parent.thread_id, position=position,
                intent=intent_of(q.text), similarity=sim, score=1.0,
                evidence={"link_source": source, source: detail,
                          "cues": sorted(cue_names(q.text))})


def _credited(link: Link, q: LinkInput, cands: Sequence[Candidate],
              extra: dict[str, Any] | None = None) -> Link:
    """A content link, credited to the session id when its parent shares the session."""
    source = "content"
    if link.parent_id is not None and q.session_key is not None:
        parent = next((c for c in reversed(cands) if c.record_id == link.parent_id), None)
        if parent is not None and parent.session_key == q.session_key:
            source = "session_id"
    return replace(link, evidence={**link.evidence, **(extra or {}), "link_source": source})


def decide(q: LinkInput, ctx: GatewayContext, cands: Sequence[Candidate],
           content: Callable[[], Link], s: CorrelationSettings) -> Link:
    """The link for one prompt from the gateway's signals, else from the content linker.

    Args:
        q: the prompt as the linker sees it (redacted text, vector, session key).
        ctx: its history and previous response id, matched against the store.
        cands: the user's recent turns, oldest first (for similarity and branches).
        content: the content linker for this prompt, called only when needed.
    """
    match = find_parent(ctx)
    if match is not None:
        detail = {"messages": len(dialogue(ctx.history or ())), "matched": match.via,
                  "skipped": match.skipped, "chain": match.chain}
        return _linked(q, match.turn, cands, "history", detail, s)
    if ctx.previous is not None:
        return _linked(q, ctx.previous, cands, "previous_response_id", {"held": True}, s)
    if ctx.history is not None and not dialogue(ctx.history) and not ctx.previous_response_id:
        return _fresh(q, cands, content)
    unmatched: dict[str, Any] = {}
    if ctx.history:
        unmatched["history"] = {"messages": len(dialogue(ctx.history)), "matched": None}
    if ctx.previous_response_id:
        unmatched["previous_response_id"] = {"held": False}
    return _credited(content(), q, cands, unmatched)


def _fresh(q: LinkInput, cands: Sequence[Candidate], content: Callable[[], Link]) -> Link:
    """A request with an empty history opens a new conversation, unless it explicitly
    refers back to an earlier one and the content linker finds it."""
    back = refers_back(q.text)
    if back and cands:
        link = content()
        if link.parent_id is not None:
            return _credited(link, q, cands, {"back_reference": True,
                                              "history": {"messages": 0}})
    cues = cue_names(q.text)
    position = "orphaned" if orphan_cues(q.text) & ORPHAN_CUES and not back else "new"
    return Link(parent_id=None, thread_id=None, position=position, intent=intent_of(q.text),
                similarity=None, score=0.0,
                evidence={"link_source": "history", "history": {"messages": 0},
                          "back_reference": back, "cues": sorted(cues)})


def unmatched_signals(evidence: dict[str, Any] | None) -> list[str]:
    """The gateway's signals a request carried that named no turn the store holds (so the
    content decided): `history`, `previous_response_id`; `threads show` and the TUI's Why
    panel name them, so a gateway whose digests or ids never match is seen to be one."""
    ev = evidence or {}
    if ev.get("link_source") not in ("content", "session_id"):
        return []
    hist, prev = ev.get("history"), ev.get("previous_response_id")
    out = []
    if isinstance(hist, dict) and "matched" in hist and hist["matched"] is None:
        out.append("history")
    if isinstance(prev, dict) and prev.get("held") is False:
        out.append("previous_response_id")
    return out
