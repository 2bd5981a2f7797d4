"""The search screen: a natural-language query -> prompts ranked by similarity, in scope."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static
from textual.worker import get_current_worker

from appliance.errors import SemtraceError
from appliance.tui.context import context
from appliance.tui.filters import FilterError, Filters, parse_search
from appliance.tui.format import plural, redacted_text, short_user, sim_bar, when
from appliance.tui.messages import OpenThread
from appliance.tui.searcher import SearchResult

HINT = "search prompts, e.g. reset my password   (narrow with tenant: user:<id> since:)"
COLUMNS = (("sim", "similarity", 13), ("thread", "thread", 19), ("who", "tenant/user", 18),
           ("ts", "time UTC", 11))
TEXT_WIDTH = 60  # the redacted prompt's column at least; wider where the screen is


class SearchScreen(Screen[None]):
    """Type a query, press enter, open a hit's thread."""

    ENTER = "Open the thread at this prompt"  # what enter on its table does (the help says it)

    BINDINGS = [
        Binding("escape", "escape", "Edit query / back"),
    ]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Input(placeholder=HINT, id="query", compact=True)
        yield DataTable(id="hits", cursor_type="row", zebra_stripes=True)
        yield Static("Type a query and press enter.", id="status")
        yield Footer(compact=True)

    result: SearchResult | None = None  # the hits shown
    text_width = 0  # the prompt column's, as laid out

    def on_mount(self) -> None:
        self._columns()
        self.query_one("#query", Input).focus()

    def _columns(self) -> None:
        """The hits' columns, the prompt's taking the width the others leave (a prompt was
        cut at 60 characters beside an empty half of a wide terminal); the hits again."""
        # each column is padded by a cell on either side (the prompt's too); the table's
        # own edge and a vertical scrollbar take 3 more
        width = max(TEXT_WIDTH, self.size.width - sum(w + 2 for _, _, w in COLUMNS) - 5)
        if width == self.text_width:
            return
        self.text_width = width
        table = self.query_one("#hits", DataTable)
        table.clear(columns=True)
        for key, label, w in (*COLUMNS, ("text", "redacted prompt", width)):
            table.add_column(label, key=key, width=w)
        if self.result is not None:
            self._rows(self.result)

    def on_resize(self) -> None:
        self._columns()

    def on_screen_resume(self) -> None:
        if not self.query_one("#hits", DataTable).row_count:
            self.query_one("#query", Input).focus()

    @on(Input.Submitted, "#query")
    def _submit(self, event: Input.Submitted) -> None:
        self.run_search(event.value)

    def run_search(self, line: str) -> None:
        """Parse the line and search in a worker (the first search loads the model)."""
        try:
            text, filters = parse_search(line, context(self).clock())
        except FilterError as exc:
            self._status(f"✖ {exc}")
            return
        self._status("Searching…")
        self._search(text, filters)

    @work(thread=True, exclusive=True, group="search")
    def _search(self, text: str, filters: Filters) -> None:
        searcher = context(self).searcher
        if searcher is None:
            self.app.call_from_thread(self._status, "✖ This role may not search.")
            return
        try:
            result = searcher.run(text, filters, progress=lambda m: self.app.call_from_thread(
                self._status, m))
        except (FilterError, SemtraceError) as exc:
            self.app.call_from_thread(self._status, f"✖ {exc}")
            return
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show, result)

    def show(self, result: SearchResult) -> None:
        """Fill the hits table and say what was searched."""
        self.result = result
        table = self._rows(result)
        if result.hits:
            note = f"{plural(len(result.hits), 'hit')}, best first, in {', '.join(result.searched)}"
        elif result.searched:
            note = f"No prompt in {', '.join(result.searched)} matches the filters"
        elif result.skipped:
            note = "Nothing searched"
        else:  # was "0 hit(s), best first, in –"
            where = context(self).reader.tenant
            note = (f"No prompts stored yet{f' in tenant {where}' if where else ''}: "
                    "nothing to search")
        if result.skipped:
            note += (f" · skipped {', '.join(result.skipped)}: cross-user search is off there, "
                     "add user: (the user's id, or pseudonym)")
        self._status(note)
        if result.hits:
            table.focus()

    def _rows(self, result: SearchResult) -> DataTable[object]:
        table = self.query_one("#hits", DataTable)
        table.clear()
        for h in result.hits:
            # one line: a row shows a cell's first line only ("Fix this code:" of a prompt
            # with a pasted code block); the thread view shows the text as it is
            text = " ".join(h.text.split()) if h.text is not None else None
            table.add_row(sim_bar(h.similarity, 6), h.thread_id,
                          Text(f"{h.tenant}/{short_user(h.user)}"), when(h.ts),
                          redacted_text(text), key=f"{h.thread_id}#{h.record_id}")
        return table

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(text))

    @on(DataTable.RowSelected, "#hits")
    def _open(self, event: DataTable.RowSelected) -> None:
        thread_id, _, record = str(event.row_key.value).partition("#")
        self.post_message(OpenThread(thread_id, int(record) if record else None))

    async def action_escape(self) -> None:
        """From the hits, back to the query line; from the query line, to the hits, or
        (none yet) back to the threads. The query line takes every other key as text,
        so esc is the way out of it (it only re-focused the line: no key left search)."""
        query = self.query_one("#query", Input)
        hits = self.query_one("#hits", DataTable)
        if not query.has_focus:
            query.focus()
        elif hits.row_count:
            hits.focus()
        else:
            await self.app.run_action("mode('threads')")
