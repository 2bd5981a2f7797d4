"""The topics screen: activity per topic, trend per day, turns and refinement cycles."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Sparkline, Static

from appliance.errors import SemtraceError
from appliance.tui.context import context
from appliance.tui.data import TopicsView
from appliance.tui.format import sparkline
from appliance.tui.messages import ShowThreads

DAYS = 14


class TopicsScreen(Screen[None]):
    """What the topics module has found so far (aggregates of the tenants in scope)."""

    BINDINGS = [
        Binding("m", "order", "Most threads/refinements"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.by_refinements = False
        self.view: TopicsView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"Threads started per day, all topics, last {DAYS} days", id="trend-label")
        yield Sparkline([], id="trend")
        yield DataTable(id="topics", cursor_type="row", zebra_stripes=True)
        yield Static("Loading topics…", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#topics", DataTable)
        for key, label, width in (("tenant", "tenant", 7), ("topic", "topic", 30),
                                  ("threads", "threads", 7), ("avg", "avg turns", 9),
                                  ("users", "users", 5), ("refine", "refined", 7),
                                  ("trend", f"trend {DAYS}d", DAYS)):
            table.add_column(label, key=key, width=width)
        table.focus()
        self.load()

    @work(thread=True, exclusive=True, group="topics")
    def load(self) -> None:
        try:
            view = context(self).reader.topics(context(self).clock(), days=DAYS)
        except SemtraceError as exc:
            self.app.call_from_thread(self._status, f"✖ {exc}")
            return
        self.app.call_from_thread(self.show, view)

    def show(self, view: TopicsView) -> None:
        """Fill the table, busiest (or most refined) topics first."""
        self.view = view
        table = self.query_one("#topics", DataTable)
        table.clear()
        key = (lambda t: (-t.refinements, -t.threads)) if self.by_refinements else \
            (lambda t: (-t.threads, -t.refinements))
        topics = sorted(view.topics, key=key)
        for t in topics:
            name = f"{t.label} ({t.topic_id})" if t.label else f"{t.topic_id} · unlabelled"
            table.add_row(Text(t.tenant), Text(name),
                          Text(str(t.threads), justify="right"),
                          Text(f"{t.turns / max(t.threads, 1):.1f}", justify="right"),
                          Text(str(t.users), justify="right"),
                          Text(str(t.refinements), justify="right"), sparkline(list(t.daily)),
                          key=f"{t.tenant}\0{t.topic_id}")
        totals = [sum(t.daily[i] for t in view.topics) for i in range(DAYS)]
        self.query_one("#trend", Sparkline).data = totals
        order = "most refinements" if self.by_refinements else "most threads"
        self._status(view.note or f"{len(topics)} topic(s), {order} first · refined: turns "
                                  "that correct or re-ask · enter: its threads")

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(text))

    @on(DataTable.RowSelected, "#topics")
    def _open(self, event: DataTable.RowSelected) -> None:
        tenant, _, topic = str(event.row_key.value).partition("\0")
        self.post_message(ShowThreads(f"tenant:{tenant} topic:{topic}"))

    def action_order(self) -> None:
        self.by_refinements = not self.by_refinements
        if self.view is not None:
            self.show(self.view)

    def action_reload(self) -> None:
        self.load()
