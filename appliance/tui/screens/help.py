"""The help screen: every binding active where it was opened, and what the markers mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

LEGEND = (
    ("● new", "first turn of a conversation (thread)"),
    ("↳ continuation", "linked to an earlier turn"),
    ("⤷ topic shift", "same conversation, the subject changed"),
    ("? orphaned", "reads like a follow-up, no parent found"),
    ("⑂ branch", "the user went back to an earlier turn"),
    ("✔ ok / ✖ ERROR / ⛔ BLOCKED", "the model call's status"),
    ("· unknown", "no answer reported for the call (yet: the gateway may send it later)"),
    ("✖n ⛔n ⊘ ★n (threads)", "n errors, n blocked, abandoned, lowest rating"),
    ("▰▰▰▱▱ 0.62", "similarity to the parent (bar and value)"),
    ("best ▰▱▱▱▱ 0.12", "a thread's first turn: similarity to the closest earlier turn, "
                        "not taken (w: why)"),
    ("+39s", "time since the turn it continues"),
    ("66→396 tok", "the model call's input → output tokens"),
    ("info-seeking · task", "what the prompt asks: information, or a task done "
                            "(write, translate, book…)"),
    ("managing · error recovery", "handling the conversation (thanks, repeat that), "
                                  "or correcting it (I meant…)"),
    ("<PERSON_1>", "a placeholder for redacted personal data"),
)


def bindings_table(groups: dict[str, list[tuple[str, str]]]) -> Table:
    """Keys by where they work, as a two-column table."""
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column("key", min_width=10)
    table.add_column("does")
    for title, rows in groups.items():
        if not rows:
            continue
        table.add_row(Text(title, style="bold underline"), "")
        for key, what in rows:
            table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the bindings it is given and the legend."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def __init__(self, groups: dict[str, list[tuple[str, str]]]) -> None:
        super().__init__()
        self.groups = groups

    def compose(self) -> ComposeResult:
        legend = Table(box=None, show_header=True, header_style="bold", padding=(0, 2))
        legend.add_column("mark")
        legend.add_column("means")
        for mark, means in LEGEND:
            legend.add_row(mark, means)
        with VerticalScroll(id="help-box"):
            yield Static(Text("Keys (the mouse works too: click rows, headers to sort, "
                              "footer keys)", style="bold"))
            yield Static(bindings_table(self.groups))
            yield Static(Text("\nMarks", style="bold"))
            yield Static(legend)
            yield Static(Text("\nesc, ? or q closes this help.", style="italic"))

    def action_close(self) -> None:
        self.dismiss()
