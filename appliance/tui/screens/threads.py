"""The threads screen: a paged, sortable, filtered table, refreshed while the service writes."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from appliance.errors import SemtraceError
from appliance.query import ThreadMarks
from appliance.titles import shorten
from appliance.tui.context import context
from appliance.tui.data import Reader, ThreadPage, ThreadRow
from appliance.tui.filters import FilterError, Filters, parse_filters
from appliance.tui.format import ago, compact, money, short_user, when
from appliance.tui.messages import OpenThread

# (column key, header, width): what a thread is about first; the rest scrolls at 100 columns
COLUMNS = (("title", "title", 26), ("user", "user", 10), ("last", "last seen", 10),
           ("turns", "turns", 5), ("topic", "topic", 13), ("tokens", "tokens", 6),
           ("cost", "cost", 6), ("marks", "marks", 7), ("tenant", "tenant", 7),
           ("models", "models", 12), ("started", "started UTC", 11))
SORT_NAMES = {key: header for key, header, _ in COLUMNS}
WIDTH = {key: width for key, _, width in COLUMNS}
UNSORTABLE = frozenset({"title"})  # titles are encrypted text: the store cannot order them
FILTER_HINT = "filter: tenant: user: since:7d until: topic: model: position:topic_shift"


def marks_text(m: ThreadMarks | None) -> Text:
    """Feedback and failures as words and symbols (colour only repeats them)."""
    out = Text()
    if m is None:
        return out
    if m.errors:
        out.append(f"✖{m.errors} ", style="bold red")
    if m.blocked:
        out.append(f"⛔{m.blocked} ", style="bold yellow")
    if m.abandoned:
        out.append("⊘ ", style="bold")
    if m.rating is not None:
        out.append(f"★{m.rating:g}")
    out.rstrip()
    return out


def anchored(reader: Reader, filters: Filters, sort: str, descending: bool, old: ThreadPage,
             step: int, size: int) -> int:
    """Where the page after (`step` 1) or before (-1) `old` starts in the listing as it is
    now. Threads that became active since it was read are listed above its rows, which moved
    down: `]` at the old page's end plus the page size showed again its last rows (3 new
    threads: 3 repeated). The new offset follows the old rows still in order (those not
    moved up by new activity of their own); unchanged data keeps the plain arithmetic."""
    plain = old.offset + step * size
    if reader.version() == old.version:
        return plain
    start = max(0, old.offset - size)
    fresh = reader.threads(filters, sort=sort, descending=descending, offset=start,
                           limit=3 * size)
    at = {r.thread.thread_id: start + i for i, r in enumerate(fresh.rows)}
    kept = [at[r.thread.thread_id] for i, r in enumerate(old.rows)
            if at.get(r.thread.thread_id, -1) >= old.offset + i]
    if not kept:
        return plain
    new = max(kept) + 1 if step > 0 else max(0, min(kept) - size)
    return new if new < fresh.total else plain


class ThreadsScreen(Screen[None]):
    """All threads in scope, newest activity first."""

    ENTER = "Open the thread"  # what enter on its table does (the help says it)

    BINDINGS = [
        Binding("f", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("d", "direction", "Ascending/descending", show=False),
        Binding("left_square_bracket", "page(-1)", "Prev", key_display="[",
                tooltip="Previous page"),
        Binding("right_square_bracket", "page(1)", "Next", key_display="]", tooltip="Next page"),
        Binding("r", "reload", "Refresh now", show=False),
        Binding("escape", "leave_filter", "Back to the table", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filters = Filters()
        self.applied = self.filters  # the filter of the page on screen
        self.sort, self.descending, self.first_row = "last", True, 0
        self.version: int | None = None
        self.note = ""
        self.page: ThreadPage | None = None
        self.drill: tuple[Filters, str] | None = None  # a drill-down's filter and heading
        self.step: tuple[ThreadPage, int] | None = None  # `[` or `]` from this page, to read

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="threads-head")
        yield Input(placeholder=FILTER_HINT, id="filter", compact=True)
        yield DataTable(id="threads", cursor_type="row", zebra_stripes=True)
        yield Static(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._columns()
        self.query_one("#threads", DataTable).focus()
        self.load(force=True)
        self.set_interval(context(self).refresh_seconds, self.load)

    def _columns(self) -> None:
        table = self.query_one("#threads", DataTable)
        table.clear(columns=True)
        currency = context(self).reader.currency
        for key, header, width in COLUMNS:
            # the cost's currency, as `threads list` and the thread view give it ("cost
            # 0.0040" said nothing of what it was counted in)
            header = f"{header} {currency}" if key == "cost" else header
            label = header + ((" ▼" if self.descending else " ▲") if key == self.sort else "")
            table.add_column(label, key=key, width=max(width, len(label)))
        table.cursor_foreground_priority = "renderable"  # keep marks' own styles on the cursor

    @work(thread=True, exclusive=True, group="threads")
    def load(self, force: bool = False) -> None:
        """Read the page in a worker; skip the read when nothing was committed since."""
        ctx, filters = context(self), self.filters
        try:
            if not force and self.version is not None and ctx.reader.version() == self.version:
                return
            offset, (step, self.step) = self.first_row, (self.step, None)
            if step is not None:
                offset = anchored(ctx.reader, filters, self.sort, self.descending, *step,
                                  ctx.page_size)
            page = ctx.reader.threads(filters, sort=self.sort, descending=self.descending,
                                      offset=offset, limit=ctx.page_size)
        except (FilterError, SemtraceError) as exc:
            self.app.call_from_thread(self._refused, filters, f"✖ {exc}")
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._shown, filters, page)

    def _shown(self, filters: Filters, page: ThreadPage) -> None:
        self.applied = filters
        self._heading()
        self.show_page(page)

    def _heading(self) -> None:
        """A drill-down's heading while its filter is the one applied (hidden otherwise)."""
        head = self.query_one("#threads-head", Static)
        shown = self.drill is not None and self.drill[0] is self.applied
        head.display = shown
        if shown and self.drill is not None:
            head.update(Text(self.drill[1]))

    def _refused(self, filters: Filters, note: str) -> None:
        """A filter the reader refused (a tenant the store never held: a typo) is not
        applied: the table and the status line stay with the filter shown before."""
        if filters is self.filters:
            self.filters = self.applied
        self._heading()
        self._status(note)

    def _row(self, row: ThreadRow) -> tuple[object, ...]:
        t, now = row.thread, context(self).clock()
        title = (Text(shorten(t.title, WIDTH["title"])) if t.title is not None
                 else Text("[shredded]", style="italic"))
        return (title, short_user(t.user), ago(t.last_ts, now),
                Text(str(t.turns), justify="right"),
                Text(shorten(row.topic, WIDTH["topic"]) if row.topic else "–"),
                Text(compact(t.input_tokens + t.output_tokens), justify="right"),
                Text(money(t.cost), justify="right"), marks_text(row.marks),
                Text(t.tenant), Text(", ".join(t.models) or "–"), when(t.first_ts))

    def show_page(self, page: ThreadPage) -> None:
        """Put a page in the table, keeping the cursor on the same thread when it is there."""
        table = self.query_one("#threads", DataTable)
        keep = None
        if table.row_count:
            keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        table.clear()
        for row in page.rows:
            table.add_row(*self._row(row), key=row.thread.thread_id)
        keys = [r.thread.thread_id for r in page.rows]
        if keep in keys:
            table.move_cursor(row=keys.index(keep), animate=False)
        self.version = page.version
        self.page, self.first_row = page, page.offset
        self._status()

    def _status(self, note: str | None = None) -> None:
        if note is not None:
            self.note = note
        page = self.page
        now = context(self).clock()
        if page is None:
            shown = "Loading threads…"
        elif page.total == 0:
            shown = self._empty()
        else:
            shown = (f"Threads {page.offset + 1:,}–{page.offset + len(page.rows):,} of "
                     f"{page.total:,}")
        arrow = "▼ desc" if self.descending else "▲ asc"
        parts = [shown, f"sort {SORT_NAMES[self.sort]} {arrow}",
                 f"filter {self.filters.describe() or 'none'}", f"live {now:%H:%M:%S} UTC"]
        if self.note:
            parts.append(self.note)
        self.query_one("#status", Static).update(Text(" · ".join(parts)))

    def _empty(self) -> str:
        """Why the table is empty: a filter that matches nothing, or nothing stored yet."""
        if self.filters.describe():
            return "No threads match the filter (f to change it; an empty filter shows all)"
        where = context(self).reader.tenant
        # not "nothing has been ingested": after an erasure or a retention run it had been
        return (f"No threads{f' in tenant {where}' if where else ''}: nothing ingested yet, "
                "or all of it erased or shredded by retention (gateways send prompts to "
                "`semtrace serve`; `semtrace replay` loads a file)")

    @on(DataTable.RowSelected, "#threads")
    def _open(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value:
            self.post_message(OpenThread(event.row_key.value))

    @on(DataTable.HeaderSelected, "#threads")
    def _sort_by(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key in UNSORTABLE:
            self._status("titles cannot be sorted: sort by another column")
            return
        self.descending = not self.descending if key == self.sort else key != "tenant"
        self.sort = key
        self._resort()

    def _resort(self) -> None:
        """Show the first page in the order now chosen; a note about the page before ("no
        more pages that way") or a refused filter no longer holds, and goes."""
        self.first_row, self.note = 0, ""
        self._columns()
        self.load(force=True)

    @on(Input.Submitted, "#filter")
    def _apply_filter(self, event: Input.Submitted) -> None:
        self.apply_filter(event.value)

    def apply_filter(self, text: str, heading: str = "") -> None:
        """Parse and apply a filter line; a bad one leaves the filters as they were.

        `heading`: what the list is (a topic's drill-down), shown above the table until
        another filter is applied."""
        try:
            self.filters = parse_filters(text, context(self).clock())
        except FilterError as exc:
            self._status(f"✖ {exc}")
            return
        if heading:
            self.drill = (self.filters, heading)
        self.query_one("#filter", Input).value = text
        self.first_row, self.note = 0, ""
        self.query_one("#threads", DataTable).focus()
        self.load(force=True)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_leave_filter(self) -> None:
        self.query_one("#threads", DataTable).focus()

    def action_sort(self) -> None:
        keys = [k for k, _, _ in COLUMNS if k not in UNSORTABLE]
        self.sort = keys[(keys.index(self.sort) + 1) % len(keys)]
        self._resort()

    def action_direction(self) -> None:
        self.descending = not self.descending
        self._resort()

    def action_page(self, step: int) -> None:
        page = self.page
        size = context(self).page_size
        new = self.first_row + step * size
        if page is None or new < 0 or new >= max(page.total, 1):
            self._status("no more pages that way")
            return
        self.first_row, self.note, self.step = new, "", (page, step)
        self.load(force=True)

    def action_reload(self) -> None:
        self.load(force=True)
