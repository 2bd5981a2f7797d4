"""What the topics and models screens share: they show today's differentially private release
of one kind of figures, and make it (after asking) when a tenant has none yet."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.screen import Screen
from textual.widgets import Static

from appliance.errors import SemtraceError
from appliance.tui.aggregates import AggregateView
from appliance.tui.context import context
from appliance.tui.widgets.release import ReleaseDialog

# no tenant in scope has a thread: nothing was released, and `n` has nothing to release
NO_TENANT = "No tenant has threads yet: there is nothing to release."


class ReleasedScreen(Screen[None]):
    """A screen over today's release of `KIND` (on `topic` where the kind is per topic)."""

    KIND = ""

    def __init__(self) -> None:
        super().__init__()
        self.view: AggregateView | None = None
        self.topic: str | None = None

    def show(self, view: AggregateView) -> None:
        raise NotImplementedError

    def loaded(self, view: AggregateView) -> None:
        """Hook for a screen that reads more than its own kind (runs in the worker)."""

    def release_what(self) -> str:
        """What the confirmation dialog says is released."""
        return self.KIND

    @work(thread=True, exclusive=True, group="release")
    def load(self) -> None:
        ctx = context(self)
        try:
            view = ctx.aggregates.view(self.KIND, ctx.clock(), topic=self.topic)
            self.loaded(view)
        except SemtraceError as exc:
            self.app.call_from_thread(self._status, f"✖ {exc}")
            return
        self.app.call_from_thread(self.show, view)

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(Text(text))  # names are never markup

    def action_release(self) -> None:
        view = self.view
        if view is not None and not view.tenants:  # not "Today's release is already made"
            self._status(NO_TENANT)
            return
        if view is not None and not view.missing and view.spent:  # no dialog, then a refusal
            self._status(view.spent_note())
            return
        if view is not None and not view.missing and any(
                t.empty and t.released_at is None for t in view.tenants):
            self._status(view.empty_note())  # not "already made": none is, nor needed
            return
        if view is None or not view.missing:
            self._status("Today's release is already made: it refreshes tomorrow (UTC).")
            return
        eps = context(self).reader.release_epsilon[self.KIND]
        self.app.push_screen(ReleaseDialog(self.release_what(), view.missing, eps),
                             self._confirmed)

    def _confirmed(self, yes: bool | None) -> None:
        if yes:
            self._status("Releasing…")
            self.make_release()

    @work(thread=True, exclusive=True, group="release")
    def make_release(self) -> None:
        ctx = context(self)
        try:
            ctx.aggregates.release(self.KIND, ctx.clock(), role=ctx.role, topic=self.topic)
            view = ctx.aggregates.view(self.KIND, ctx.clock(), topic=self.topic)
        except SemtraceError as exc:
            self.app.call_from_thread(self._status, f"✖ {exc}")
            return
        self.app.call_from_thread(self.show, view)

    def action_reload(self) -> None:
        self.load()
