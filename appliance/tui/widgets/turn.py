"""What one turn of a thread reads as in the thread view (drawn by `turns.TurnList`)."""

from __future__ import annotations

from datetime import UTC

from rich.text import Text

from appliance.tui.format import (
    compact,
    duration,
    intent_label,
    money,
    position_label,
    redacted_text,
    sim_bar,
    status_label,
)
from appliance.tui.tree import Turn

STATUS_STYLES = {"error": "bold red", "blocked": "bold yellow"}


def turn_text(turn: Turn) -> Text:
    """The card's content: header, metrics and the redacted text."""
    r = turn.record
    head = Text()
    head.append(f"#{turn.number}", style="bold")
    # the date too once the thread has run past midnight (UTC, as the heading's day)
    when = r.ts.astimezone(UTC).strftime("%m-%d %H:%M:%S" if turn.later_day else "%H:%M:%S")
    head.append(f" {when} {duration(turn.gap_seconds)}  ")
    head.append(_nb(position_label(r.position)), style="bold")
    head.append(f"  {_nb(intent_label(r.intent))}")
    # without a parent the similarity is to the best candidate that was not taken
    metrics = Text(f"{'sim' if r.parent_id is not None else 'best'} "
                   f"{_nb(sim_bar(r.similarity, 5))}  ")
    metrics.append(r.model or "model ?")
    tokens = (f"{compact(r.input_tokens)}→{compact(r.output_tokens)}\u00a0tok"
              if r.input_tokens is not None or r.output_tokens is not None else "tok\u00a0?")
    latency = f"{r.latency_ms:.0f}\u00a0ms" if r.latency_ms is not None else "–\u00a0ms"
    cost = f"cost\u00a0{money(r.cost)}  " if r.cost is not None else ""
    metrics.append(f"  {tokens}  {latency}  {cost}")
    metrics.append(_nb(status_label(r.status)), style=STATUS_STYLES.get(r.status or "", ""))
    for part in (metrics, redacted_text(r.text)):  # appended: Text.join costs more
        head.append("\n")
        head.append_text(part)
    return head


def _nb(label: str) -> str:
    """Keep a label on one line when the card wraps."""
    return label.replace(" ", "\u00a0")
