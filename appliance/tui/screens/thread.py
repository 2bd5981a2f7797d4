"""The thread view: turns as a tree by parent pointers, and why each was linked."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Header, Static

from appliance.errors import SemtraceError
from appliance.records import Thread
from appliance.tui.context import context
from appliance.tui.data import ThreadDetail
from appliance.tui.format import compact, money, plural, redacted_text, short_user
from appliance.tui.tree import layout, utc_day
from appliance.tui.widgets.evidence import EvidencePanel
from appliance.tui.widgets.footer import KeysFooter
from appliance.tui.widgets.turns import TurnList


def summary(thread: Thread, topic: str | None = None, currency: str = "") -> Text:
    """The lines above the turns: the thread's title, then what and who."""
    tokens = thread.input_tokens + thread.output_tokens
    # whole seconds: a gateway's timestamps carry microseconds ("in 0:00:07.360000")
    span = timedelta(seconds=int((thread.last_ts - thread.first_ts).total_seconds()))
    # its days: a thread past midnight read as one day, its later turns' times before its start
    first, last = utc_day(thread.first_ts), utc_day(thread.last_ts)
    days = f"{first:%Y-%m-%d}" + (f" to {last:%Y-%m-%d}" if last != first else "")
    out = Text()
    out.append_text(redacted_text(thread.title) if thread.title is not None else
                    Text("[shredded: no readable prompt left]", style="italic"))
    out.stylize("bold")
    out.append(f"\n{thread.thread_id} · topic {topic or '–'} · "
               f"{thread.tenant}/{short_user(thread.user)} · "
               f"{plural(thread.turns, 'turn')} in {span} · {days} UTC · "
               f"{', '.join(thread.models) or 'model ?'} · {compact(tokens)} tok · "
               f"cost {money(thread.cost)}" + (f" {currency}" if thread.cost is not None else ""))
    return out


class ThreadScreen(Screen[None]):
    """One conversation as the appliance linked it."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        # priority: the scrolling list would otherwise take the arrows (to scroll by line)
        Binding("down,j", "step(1)", "Next turn", key_display="↓/j", priority=True),
        Binding("up,k", "step(-1)", "Prev turn", key_display="↑/k", priority=True),
        Binding("pagedown", "step(10)", "10 turns on", key_display="PgDn", show=False,
                priority=True),
        Binding("pageup", "step(-10)", "10 turns back", key_display="PgUp", show=False,
                priority=True),
        Binding("home,g", "edge(0)", "First turn", key_display="Home/g", show=False,
                priority=True),
        Binding("end,G", "edge(-1)", "Last turn", key_display="End/G", show=False,
                priority=True),
        Binding("w", "toggle_why", "Why panel"),
        # the panel's evidence runs past a small terminal: without these, only the mouse
        Binding("J", "scroll_why(5)", "Scroll why", key_display="J/K",
                tooltip="Scroll the why panel down (J) or up (K)"),
        Binding("K", "scroll_why(-5)", "Scroll why up", key_display="K", show=False),
        Binding("r", "reload", "Refresh now", show=False),
    ]

    def __init__(self, thread_id: str, record_id: int | None = None) -> None:
        super().__init__()
        self.thread_id = thread_id
        self.record_id = record_id
        self.thread: Thread | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading thread…", id="thread-head")
        with Horizontal(id="thread-body"):
            yield TurnList(id="turns")
            yield EvidencePanel(id="why")
        yield KeysFooter(compact=True)

    def on_mount(self) -> None:
        self.load()
        self.set_interval(context(self).refresh_seconds, self._poll)

    @work(exclusive=True, group="thread")
    async def load(self) -> None:
        """Read the thread in a thread (the store is blocking), then lay it out."""
        try:
            thread = await asyncio.to_thread(context(self).reader.thread, self.thread_id)
        except SemtraceError as exc:  # the service stopped, a refusal: one sentence
            self.query_one("#thread-head", Static).update(Text(f"✖ {exc}"))
            return
        await self.show(thread)

    def _poll(self) -> None:
        if self.thread is not None:
            self.load()

    async def show(self, detail: ThreadDetail | None) -> None:
        """Lay the turns out; a refresh with no new turns changes nothing."""
        head = self.query_one("#thread-head", Static)
        if detail is None:
            if self.thread is None:
                head.update(Text(f"✖ Thread {self.thread_id} is not in this store "
                                 "(or not in scope)."))
                return
            # gone while shown: its turns and their evidence go from the screen too
            self.thread = None
            self.query_one("#turns", TurnList).show([])
            self.query_one(EvidencePanel).clear()
            head.update(Text(f"✖ Thread {self.thread_id} is no longer in this store: "
                             "erased, or shredded by retention (esc: back to the threads)."))
            return
        thread = detail.thread
        if self.thread is not None and self.thread.records == thread.records:
            return
        turns = self.query_one("#turns", TurnList)
        selected = turns.turn
        wanted = selected.record.record_id if selected is not None else self.record_id
        self.thread = thread
        head.update(summary(thread, detail.topic, context(self).reader.currency))
        # one widget draws the visible lines only: a 400-turn thread opens at once
        turns.show(layout(thread.records), record_id=wanted)
        turns.focus()

    @on(TurnList.Selected)
    def _explain(self, event: TurnList.Selected) -> None:
        ctx = context(self)
        self.query_one(EvidencePanel).show(event.turn, can_reveal=ctx.can_reveal, role=ctx.role)

    def action_step(self, step: int) -> None:
        """Move `step` turns down (up when negative), in reading order, stopping at the ends."""
        turns = self.query_one("#turns", TurnList)
        turns.focus()
        turns.step(step)

    def action_edge(self, end: int) -> None:
        """The first (0) or the last (-1) turn of a long thread, in one key."""
        turns = self.query_one("#turns", TurnList)
        turns.focus()
        turns.select(0 if end == 0 else len(turns.turns) - 1)

    def action_scroll_why(self, lines: int) -> None:
        """Scroll the why panel (the focus stays on the turn it explains)."""
        panel = self.query_one(EvidencePanel)
        panel.scroll_to(y=panel.scroll_y + lines, animate=False)

    def action_toggle_why(self) -> None:
        panel = self.query_one(EvidencePanel)
        panel.display = not panel.display

    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self.load()
