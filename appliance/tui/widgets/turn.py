"""One turn of a thread as a focusable card, and the box that holds a branch."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static

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
from appliance.tui.tree import Branch, Turn

STATUS_STYLES = {"error": "bold red", "blocked": "bold yellow"}


def turn_text(turn: Turn) -> Text:
    """The card's content: header, metrics and the redacted text."""
    r = turn.record
    head = Text()
    head.append(f"#{turn.number}", style="bold")
    head.append(f" {r.ts:%H:%M:%S} {duration(turn.gap_seconds)}  ")
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
    return Text("\n").join([head, metrics, redacted_text(r.text)])


def _nb(label: str) -> str:
    """Keep a label on one line when the card wraps."""
    return label.replace(" ", "\u00a0")


class TurnCard(Static, can_focus=True):
    """A turn: time, gap, position, intent, similarity, model, cost, status, text."""

    @dataclass
    class Selected(Message):
        """The card got focus: show why this turn was linked."""

        turn: Turn

    def __init__(self, turn: Turn) -> None:
        r = turn.record
        classes = "turn " + (f"-{r.status}" if r.status in STATUS_STYLES else "")
        super().__init__(turn_text(turn), id=f"turn-{r.record_id}", classes=classes.strip())
        self.turn = turn

    def on_focus(self) -> None:
        self.post_message(self.Selected(self.turn))


class BranchBox(Vertical):
    """The turns of one branch, indented under the turn the user went back to."""

    def __init__(self, branch: Branch) -> None:
        super().__init__(classes="branch")
        self.branch = branch

    def compose(self) -> ComposeResult:
        b = self.branch
        note = "the first reply" if b.index == 0 else "the user went back"
        yield Static(f"⑂ branch {b.index + 1} of {b.count} from #{b.from_number} ({note})",
                     classes="branch-label")
        for item in b.items:
            yield TurnCard(item) if isinstance(item, Turn) else BranchBox(item)
