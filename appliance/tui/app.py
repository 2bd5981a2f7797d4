"""The Semtrace terminal UI: threads, thread view, search, topics, models, retention.

`make_app` builds the app over an opened (read-only) runtime, for operators who
hold the key; `make_remote_app` builds it over the service's query socket, for
everyone else. The CLI opens either first so that a wrong passphrase, a missing
data dir or a refused role is one sentence before any UI starts. Screens the role
may not use are never registered.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import App
from textual.binding import Binding

from appliance.embed import Embedder
from appliance.errors import AccessDenied
from appliance.reads import check_tenant
from appliance.roles import allowed, bound_tenants, require
from appliance.runtime import Runtime
from appliance.tui.aggregates import AggregateReader
from appliance.tui.context import TuiContext
from appliance.tui.crash import crash_report
from appliance.tui.data import StoreReader
from appliance.tui.messages import OpenThread, ShowThreads
from appliance.tui.screens.help import HelpScreen
from appliance.tui.screens.models import ModelsScreen
from appliance.tui.screens.retention import RetentionScreen
from appliance.tui.screens.search import SearchScreen
from appliance.tui.screens.thread import ThreadScreen
from appliance.tui.screens.threads import ThreadsScreen
from appliance.tui.screens.topics import TopicsScreen
from appliance.tui.searcher import Searcher
from appliance.tui.views import ComplianceReader

# mode -> (screen, permission needed)
SCREENS = {"threads": (ThreadsScreen, "threads:read"), "search": (SearchScreen, "search"),
           "topics": (TopicsScreen, "aggregates"), "models": (ModelsScreen, "aggregates"),
           "retention": (RetentionScreen, "retention")}


def shown_once(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Rows without a key another row already names: "J/K Scroll why" (the footer's) covers
    K's own binding, which help listed again as "K Scroll why up"."""
    named = {part for key, _ in rows if len(key) > 1 and "/" in key
             for part in key.split("/") if part}
    return [(key, what) for key, what in rows if "/" in key or key not in named]


class SemtraceApp(App[None]):
    """Read-only inspection of a Semtrace store."""

    TITLE = "Semtrace"
    CSS_PATH = "semtrace.tcss"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("t", "mode('threads')", "Threads"),  # also: back to the list
        Binding("slash", "mode('search')", "Search", key_display="/"),
        Binding("o", "mode('topics')", "Topics"),
        Binding("c", "mode('models')", "Compare models"),
        Binding("R", "mode('retention')", "Retention", key_display="R"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def _fatal_error(self) -> None:
        """Stop after an unexpected error with where it happened (`crash.crash_report`):
        Textual's own report prints every frame's locals, decrypted prompts included."""
        self.bell()
        self._exit_renderables.append(Text(crash_report(sys.exc_info()[1])))
        self._close_messages_no_wait()

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.sub_title = f"role {ctx.role}" + (f" · tenant {ctx.reader.tenant}"
                                               if ctx.reader.tenant else "")
        for mode in ctx.modes:
            self.add_mode(mode, SCREENS[mode][0])

    def on_mount(self) -> None:
        self.switch_mode("threads")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide the keys of screens this role may not open."""
        if action == "mode":
            if parameters[0] not in self.ctx.modes:
                return False
            # no key for the screen already shown (it still works: it focuses the screen)
            return not (self.current_mode == parameters[0] and len(self.screen_stack) == 1)
        return True

    def action_mode(self, mode: str) -> None:
        """Go to a screen; pressing its key again there focuses its main widget."""
        if mode not in self.ctx.modes:
            return
        if self.current_mode == mode:
            while len(self.screen_stack) > 1:
                self.pop_screen()
            if mode == "search":
                self.screen.query_one("#query").focus()
            return
        self.switch_mode(mode)

    def action_help(self) -> None:
        """Every key active where help was opened: this screen's, everywhere, the focused list."""
        if isinstance(self.screen, HelpScreen):
            return
        groups: dict[str, list[tuple[str, str]]] = {"This screen": [], "Everywhere": [],
                                                    "In the focused list": []}
        # a binding of several keys ("down,j") is active as one binding per key
        ours = {(key.strip(), b.action) for cls in (type(self), type(self.screen))
                for b in cls.BINDINGS if isinstance(b, Binding) for key in b.key.split(",")}
        for active in self.screen.active_bindings.values():
            b, node = active.binding, active.node
            if b.system or (node in (self, self.screen) and (b.key, b.action) not in ours):
                continue  # Textual's own tab/copy/ctrl+q keys
            group = ("Everywhere" if node is self else
                     "This screen" if node is self.screen else "In the focused list")
            what: str | None = b.tooltip or b.description or b.action
            if b.action == "select_cursor":  # a table's enter: "Select" said nothing, and on
                # the models screen, where it opens nothing, it promised something
                what = getattr(self.screen, "ENTER", None)
            if what is None:
                continue
            row = (self.get_key_display(b), what)
            if row not in groups[group]:  # "down" and "j" are one row, "↓/j"
                groups[group].append(row)
        self.push_screen(HelpScreen({title: shown_once(rows) for title, rows in groups.items()}))

    @on(OpenThread)
    def _open_thread(self, message: OpenThread) -> None:
        self.push_screen(ThreadScreen(message.thread_id, message.record_id))

    @on(ShowThreads)
    async def _show_threads(self, message: ShowThreads) -> None:
        await self.switch_mode("threads")
        screen = self.screen
        if isinstance(screen, ThreadsScreen):
            screen.apply_filter(message.filter_text, heading=message.heading)


def make_app(rt: Runtime, *, role: str | None = None, tenant: str | None = None,
             clock: Callable[[], datetime] | None = None,
             embedder_factory: Callable[[], Embedder] | None = None,
             refresh_seconds: float = 5.0, page_size: int = 100,
             report_dir: Path | None = None) -> SemtraceApp:
    """The app over an opened runtime.

    Args:
        role: a role of access.toml (default: its default role); decides the screens.
        tenant: show only this tenant.
        clock: "now" for relative times and retention ages (tests pass a fixed one).
        embedder_factory: builds the search model on first search (default: bundled GGUF).
        report_dir: where the signed report is proposed to be written (default: cwd).
    """
    name = require(rt.policies.access, role, "threads:read", tenant=tenant)
    check_tenant(rt.store, rt.policies, tenant)  # a typo would open on an empty store
    bound = bound_tenants(rt.policies.access, name)
    if bound is not None and tenant is None:
        if len(bound) > 1:
            raise AccessDenied(f"The {name} role sees tenants {', '.join(bound)}; "
                               "pick one with --tenant.")
        tenant = bound[0]
    modes = tuple(m for m, (_, perm) in SCREENS.items()
                  if allowed(rt.policies.access, name, perm))
    reader = StoreReader(rt, tenant=tenant)

    def bundled() -> Embedder:
        from appliance.embed import LlamaEmbedder

        return LlamaEmbedder(rt.policies.correlation.embedding)

    ctx = TuiContext(
        reader=reader, aggregates=AggregateReader(reader, name), role=name, modes=modes,
        clock=clock or (lambda: datetime.now(UTC)),
        refresh_seconds=refresh_seconds, page_size=page_size,
        searcher=(Searcher(reader, rt.policies, name, embedder_factory or bundled)
                  if "search" in modes else None),
        compliance=ComplianceReader(reader) if "retention" in modes else None,
        report_dir=report_dir or Path.cwd(),
        can_reveal=allowed(rt.policies.access, name, "reveal"))
    return SemtraceApp(ctx)


def make_remote_app(socket_path: Path, *, role: str | None = None, tenant: str | None = None,
                    clock: Callable[[], datetime] | None = None, refresh_seconds: float = 5.0,
                    page_size: int = 100) -> SemtraceApp:
    """The app over the service's query socket: no key here; the service checks each read
    against the role the caller's OS identity may take. The retention screen needs the
    store itself and is left to operators.

    Args:
        role: a role of access.toml (default: its default role); decides the screens.
        tenant: show only this tenant (a role bound to one tenant gets it by default).
    """
    from appliance.tui.remote import SocketAggregates, SocketReader, SocketSearcher

    reader = SocketReader(socket_path, role=role, tenant=tenant)
    modes = tuple(m for m, (_, perm) in SCREENS.items()
                  if perm in reader.permissions and m != "retention")
    ctx = TuiContext(
        reader=reader, aggregates=SocketAggregates(reader), role=reader.role, modes=modes,
        clock=clock or (lambda: datetime.now(UTC)), refresh_seconds=refresh_seconds,
        page_size=page_size, searcher=SocketSearcher(reader) if "search" in modes else None,
        can_reveal="reveal" in reader.permissions)
    return SemtraceApp(ctx)
