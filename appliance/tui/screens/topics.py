"""The topics screen: per topic, today's privacy-protected figures, sortable by struggle."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Footer, Header, Static

from appliance.analytics import NO_TOPIC, OTHER_TOPICS, GroupStats
from appliance.privacy import Figure, released_people_scale, shown_odds
from appliance.trend import NOT_SHOWN, sparkline
from appliance.tui.aggregates import AggregateView
from appliance.tui.context import context
from appliance.tui.format import (
    NO_TOPIC_NAME,
    TOO_NOISY,
    cost_shown,
    count_text,
    figure_count,
    money,
    plural,
    says_nothing,
    topic_title,
    unlabelled_note,
)
from appliance.tui.messages import ShowThreads
from appliance.tui.screens.released import NO_TENANT, ReleasedScreen

# sort name -> (column key, row order); a figure shown as `noisy` sorts last, not by the
# number it hides (a `100%±5243` refined share topped "most refined first")
ORDERS = {
    "threads": ("threads", lambda r: (False, -r.threads.value)),
    "refined": ("refine", lambda r: (says_nothing(r.refinement_share, share=True),
                                     -r.refinement_share.value)),
    "abandoned": ("abandon", lambda r: (says_nothing(r.abandonment_share, share=True),
                                        -r.abandonment_share.value)),
    "cost": ("cost", lambda r: (cost_shown(r.costed, r.mean_cost) is not None,
                                -r.mean_cost.value)),
}
# "people", as `stats topics`, the models screen and this screen's own head call them;
# "turns/thread": a mean, which a column headed "turns" beside "threads" read as a total.
# Each is at least this wide, and as wide as its widest cell (a topic's name, a count's
# `~L–H`: never cut); the topic's 20 (was 24) keeps a 100-column screen's table whole.
COLUMNS = (("tenant", "tenant", 7), ("topic", "topic", 20), ("threads", "threads", 8),
           ("turns", "turns/thread", 12), ("users", "people", 6), ("refine", "refined", 8),
           ("abandon", "abandoned", 9), ("cost", "cost/thread", 11))
def trend_line(row: GroupStats, k_min_users: int) -> Text:
    """The highlighted topic's trend: `│▂▃ ▅  █│`, its days and its latest point."""
    name = topic_name(row)
    if not row.trend:
        return Text.assemble("Trend of ", name, ": none")
    shown = [p for p in row.trend if p.threads is not None]
    point = shown[-1] if shown else None
    last = (f"latest {count_text(point.threads or 0.0, point.ci or 0.0)} on {point.day}"
            if point is not None else "no release shows it")
    first, end = row.trend[0].day[5:], row.trend[-1].day[5:]
    return Text.assemble("Trend of ", name, f", {first} to {end}: │{sparkline(row.trend)}│ "
                         f"threads in each day's release ({NOT_SHOWN} not shown that day: "
                         f"its noisy count of people under {k_min_users}, blank: no "
                         f"release) · {last}")


def count(f: Figure | None, *, floor: bool = False) -> Text:
    """A count and, when noisy, its 95% half-width: `12±4` (`<N` where the interval
    reaches zero, `~L–H` where it is ± half the value or wider, as `stats` prints it:
    `format.count_text`)."""
    if f is None:
        return Text("–", justify="right")
    return Text(figure_count(f, floor=floor), justify="right")


def share(f: Figure) -> Text:
    """A share in percent and its 95% half-width: `40%±9` (`noisy` when it says nothing)."""
    if says_nothing(f, share=True):
        return Text(TOO_NOISY, style="dim", justify="right")
    return Text(f"{100 * f.value:.0f}%" + ("" if f.exact else f"±{100 * f.ci95:.0f}"),
                justify="right")


def mean(f: Figure, fmt: Callable[[float], str] = lambda v: f"{v:.1f}") -> Text:
    """A mean per thread and its 95% half-width: `3.2±0.4` (`noisy` when it says nothing)."""
    if says_nothing(f):
        return Text(TOO_NOISY, style="dim", justify="right")
    return Text(fmt(f.value) + ("" if f.exact else f"±{fmt(f.ci95)}"), justify="right")


def cost_cell(r: GroupStats) -> Text:
    """Cost per thread: `–` where no thread has a known cost, `noisy` where the release
    cannot tell that or the cost (`format.cost_shown`: never by the noise's sign)."""
    hidden = cost_shown(r.costed, r.mean_cost)
    if hidden is not None:
        return Text(hidden, style="dim" if hidden == TOO_NOISY else "", justify="right")
    return mean(r.mean_cost, money)


def drill_down(tenant: str, row: GroupStats, view: AggregateView) -> tuple[str, str]:
    """The threads screen's filter line for a topic's threads active in the screen's
    window (the `topic:` and `since:`/`until:` filters), and the heading that says so."""
    first, last = f"{view.start:%Y-%m-%d}", f"{view.last_day:%Y-%m-%d}"
    heading = (f"Threads of {topic_name(row).plain} ({tenant}) active {first} to {last} UTC, "
               f"the topics screen's window, whose count ({count(row.threads).plain}) is a noisy "
               "release capping each person's threads: the exact count may differ")
    # `until:DAY` ends at the midnight after DAY, as the release's window [start, end) does
    return f"tenant:{tenant} topic:{row.key} since:{first} until:{last}", heading


def topic_name(row: GroupStats) -> Text:
    """The topic's label, else its id marked unlabelled."""
    name = topic_title(row.key, row.label, no_topic=NO_TOPIC)
    return Text(name, style="" if row.label and name != NO_TOPIC_NAME else "italic")


class TopicsScreen(ReleasedScreen):
    """Per topic: threads, turns per thread, people, refinement and abandonment shares, cost,
    trend."""

    ENTER = "The topic's threads in the window"  # what enter on its table does (the help says it)

    KIND = "topics"

    BINDINGS = [
        Binding("s", "sort", "Sort", tooltip="Most threads / refined / abandoned / cost first"),
        Binding("n", "release", "Release today", tooltip="Make today's release (spends budget)"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.order = "threads"
        self.rows: dict[str, GroupStats] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading topics…", id="topics-head")
        yield DataTable(id="topics", cursor_type="row", zebra_stripes=True)
        yield Static("", id="trend")
        yield Static("", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._columns()
        self.query_one("#topics", DataTable).focus()
        self.load()

    def _columns(self, widest: tuple[int, ...] = ()) -> None:
        """The table's columns; `widest`: each column's widest cell, shown whole (a
        label, 'tp_… · unlabelled', '· with tp_… merged since' were cut at 24)."""
        table = self.query_one("#topics", DataTable)
        table.clear(columns=True)
        sorted_by = ORDERS[self.order][0]
        for n, (key, header, width) in enumerate(COLUMNS):
            label = header + (" ▼" if key == sorted_by else "")
            wide = max(width, widest[n] if n < len(widest) else 0)
            table.add_column(label, key=key, width=max(wide, len(label)))

    def show(self, view: AggregateView) -> None:
        """Fill the table in the chosen order."""
        self.view = view
        table = self.query_one("#topics", DataTable)
        table.clear()
        rows = [(t.tenant, r) for t in view.tenants for r in t.rows]
        cells: list[tuple[Text, ...]] = []
        # the other-topics row last whatever the order: it is many small topics, not one
        rows.sort(key=lambda tr: (tr[1].key == OTHER_TOPICS, ORDERS[self.order][1](tr[1]),
                                  -tr[1].threads.value, tr[0], tr[1].key))
        joined: dict[str, list[str]] = {}  # live topic -> ids the release counted apart
        for old, live in view.aliases:
            joined.setdefault(live, []).append(old)
        for tenant, r in rows:
            cost = cost_cell(r)
            name, users = topic_name(r), count(r.users)
            if r.key in joined:  # summed over the ids the release counted apart
                name.append(f" · with {', '.join(sorted(joined[r.key]))} merged since",
                            style="dim")
                # a person may be in both parts: a floor
                users = Text("≥", justify="right") + count(r.users, floor=True)
            cells.append((Text(tenant), name, count(r.threads), mean(r.mean_turns), users,
                          share(r.refinement_share), share(r.abandonment_share), cost))
        self._columns(tuple(max((c[n].cell_len for c in cells), default=0)
                            for n in range(len(COLUMNS))))  # names and figures shown whole
        for (tenant, r), cells_of_row in zip(rows, cells, strict=True):
            table.add_row(*cells_of_row, key=f"{tenant}\0{r.key}")
        self.rows = {f"{tenant}\0{r.key}": r for tenant, r in rows}
        self.query_one("#topics-head", Static).update(Text(self._head(view)))
        self._status(self._note(view, len(rows)))
        self._show_trend(table)

    def _head(self, view: AggregateView) -> str:
        made = [t.released_at for t in view.tenants if t.released_at is not None]
        when = (f"released {min(made):%H:%M} UTC" if made else "no release yet today")
        return (f"Topics, {view.start:%Y-%m-%d} to {view.last_day:%Y-%m-%d} UTC · {when} · "
                f"differentially private: ± is a 95% interval ({TOO_NOISY}: too wide to "
                f"read; <N: a count whose interval reaches 0, N its top; ~L–H: a count too "
                f"noisy to read as one number, its interval); {self._odds(view)}"
                " · cost in "
                f"{view.currency}, {TOO_NOISY} also where the release cannot tell whether "
                "any thread has one")

    @staticmethod
    def _odds(view: AggregateView) -> str:
        """The k-suppression as it is: the noisy count of people decides, with the chances
        read off the release's people figures (`privacy.shown_odds`)."""
        scale = released_people_scale(r.users for t in view.tenants for r in t.rows)
        return shown_odds(view.k_min_users, scale)

    def _note(self, view: AggregateView, shown: int) -> str:
        if not view.tenants:
            return NO_TENANT
        notes = []
        if view.missing:
            eps = context(self).reader.release_epsilon[self.KIND]
            notes.append(f"No release today for {', '.join(view.missing)}: n makes it "
                         f"(spends epsilon {eps:g} once a day; `semtrace stats topics` "
                         "shares it)")
        if view.spent:  # `n` would be refused after its dialog
            notes.append(view.spent_note())
        per_user = [t.tenant for t in view.tenants if t.per_user_topics and not t.empty]
        if per_user:
            notes.append(f"Topics of {', '.join(per_user)} are per user (cross_user_topics "
                         "is off in privacy.toml): each holds one person's threads, so they "
                         "are all counted in the other-topics row")
        if not notes and not shown and len(view.empty) < len(view.tenants):
            # was "0 topic(s), most threads first (s: sort) ..."
            notes.append(f"Today's release shows no topic ({self._odds(view)}): there may "
                         "be none, or too few people to show")
        elif not notes and shown:
            notes.append(f"{plural(shown, 'topic')}, most {self.order} first (s: sort) · refined: "
                         "threads where the user corrected or re-asked · enter: its threads")
        if view.empty:  # not "n makes it" nor "there may be none": there is none
            notes.append(view.empty_note())
        if any(not r.label and r.key != NO_TOPIC for t in view.tenants for r in t.rows):
            notes.append(unlabelled_note(view.k_min_users))  # as `stats topics` says it
        return " · ".join(notes)

    @on(DataTable.RowSelected, "#topics")
    def _open(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value)
        tenant, _, topic = key.partition("\0")
        row, view = self.rows.get(key), self.view
        if topic not in (NO_TOPIC, OTHER_TOPICS) and row is not None and view is not None:
            self.post_message(ShowThreads(*drill_down(tenant, row, view)))

    @on(DataTable.RowHighlighted, "#topics")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_trend(event.data_table)

    def _show_trend(self, table: DataTable[object]) -> None:
        """The highlighted topic's 14-day trend under the table (read with the release)."""
        row = None
        if table.row_count:
            key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
            row = self.rows.get(str(key))
        k = self.view.k_min_users if self.view is not None else 0
        self.query_one("#trend", Static).update(trend_line(row, k) if row else Text(""))

    @on(DataTable.HeaderSelected, "#topics")
    def _sort_by(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        order = next((name for name, (col, _) in ORDERS.items() if col == key), None)
        if order is not None:
            self._set_order(order)

    def _set_order(self, order: str) -> None:
        self.order = order
        self._columns()
        if self.view is not None:
            self.show(self.view)

    def action_sort(self) -> None:
        names = list(ORDERS)
        self._set_order(names[(names.index(self.order) + 1) % len(names)])

