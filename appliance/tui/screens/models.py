"""The model comparison screen: two models side by side, the figures of `semtrace stats models`."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from appliance.analytics import NO_TOPIC, GroupStats
from appliance.privacy import released_people_scale, shown_odds
from appliance.tui.aggregates import AggregateView
from appliance.tui.context import context
from appliance.tui.format import TOO_NOISY, compact, plural
from appliance.tui.screens.released import NO_TENANT, ReleasedScreen
from appliance.tui.screens.topics import cost_cell, count, mean, share

# (label, cell) per compared figure, in the order `semtrace stats models` prints them
MEASURES: tuple[tuple[str, Callable[[GroupStats], Text]], ...] = (
    ("threads", lambda r: count(r.threads)),
    ("people", lambda r: count(r.users)),
    ("turns per thread", lambda r: mean(r.mean_turns)),
    ("refined (corrected, re-asked)", lambda r: share(r.refinement_share)),
    ("abandoned", lambda r: share(r.abandonment_share)),
    ("with an error", lambda r: share(r.error_share)),
    ("with a guardrail block", lambda r: share(r.blocked_share)),
    ("tokens per thread", lambda r: mean(r.mean_tokens, lambda v: compact(round(v)))),
    ("cost per thread", cost_cell),
)


class ModelsScreen(ReleasedScreen):
    """Two models' figures side by side (today's differentially private release)."""

    KIND = "models"

    BINDINGS = [
        Binding("a", "pick(0)", "Next model A"),
        Binding("b", "pick(1)", "Next model B"),
        Binding("p", "topic", "Topic", tooltip="Compare on one topic (each has its release)"),
        Binding("n", "release", "Release today", tooltip="Make today's release (spends budget)"),
        Binding("r", "reload", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[tuple[str, GroupStats]] = []
        self.picked = [0, 1]
        # self.topic: compare on this topic only (None: all)
        self.topics: list[tuple[str, str]] = []  # (topic id, its name) of today's release
        self.topics_unreleased = True  # a tenant in scope has no topic release today

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Loading models…", id="models-head")
        yield DataTable(id="compare", cursor_type="row", zebra_stripes=True)
        yield Static("", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#compare", DataTable).focus()
        self.load()

    def loaded(self, view: AggregateView) -> None:
        """Also read the topics release, for the topic picker."""
        ctx = context(self)
        topics = ctx.aggregates.view("topics", ctx.clock())
        live = dict(topics.aliases)  # a topic merged since the release is the one it joined
        self.topics_unreleased = bool(topics.missing)
        self.topics = sorted({(live.get(r.key, r.key), r.label or live.get(r.key, r.key))
                              for t in topics.tenants for r in t.rows if r.key != NO_TOPIC},
                             key=lambda kn: kn[1])

    def _label(self, i: int) -> str:
        tenant, row = self.entries[i]
        many = self.view is not None and len(self.view.tenants) > 1
        name = f"{row.key} · {row.label}" if row.label else row.key  # (unknown) · no model named
        return f"{tenant} · {name}" if many else name

    def show(self, view: AggregateView) -> None:
        """Lay the two picked models side by side, busiest two by default."""
        self.view = view
        self.topic = view.topic  # the live topic, where the one picked was merged since
        self.entries = sorted(((t.tenant, r) for t in view.tenants for r in t.rows),
                              key=lambda tr: (-tr[1].threads.value, tr[0], tr[1].key))
        self.picked = [min(p, max(len(self.entries) - 1, 0)) for p in self.picked]
        table = self.query_one("#compare", DataTable)
        table.clear(columns=True)
        table.add_column("", key="measure", width=30)
        shown = list(dict.fromkeys(self.picked)) if self.entries else []
        for i in shown:
            table.add_column(Text(self._label(i), style="bold"), key=f"m{i}",
                             width=max(24, len(self._label(i))))
        for label, cell in MEASURES:
            table.add_row(label, *(cell(self.entries[i][1]) for i in shown), key=label)
        made = [t.released_at for t in view.tenants if t.released_at is not None]
        when = f"released {min(made):%H:%M} UTC" if made else "no release yet today"
        on = "all topics" if self.topic is None else f"topic {self._topic_name()}"
        self.query_one("#models-head", Static).update(
            f"Models on {on}, {view.start:%Y-%m-%d} to {view.last_day:%Y-%m-%d} UTC · {when} · "
            f"differentially private (± 95%; {TOO_NOISY}: too noisy to read; <N: a count "
            "whose interval reaches 0, N its top; ~L–H: a count too noisy to read as one "
            "number, its interval), as `semtrace "
            f"stats models` · cost in {view.currency}")
        self._status(self._note(view))

    def _note(self, view: AggregateView) -> str:
        if not view.tenants:  # "0 model(s) released" read as a release that showed none
            return NO_TENANT
        left = sorted({u for t in view.tenants for u in t.uncounted})
        floors = (f"not counted: {', '.join(left)}, merged into this topic since today's "
                  "release of it, with no release of its own today (threads ≥) · "
                  if left else "")
        spent = f" · {view.spent_note()}" if view.spent else ""  # `n` would be refused
        # not "n makes it" nor "0 models released": there is no thread to release
        empty = f" · {view.empty_note()}" if view.empty else ""
        if view.missing:
            eps = context(self).reader.release_epsilon[self.KIND]
            return (f"{floors}No release today for {', '.join(view.missing)}: n makes it "
                    f"(spends epsilon {eps:g} once a day){spent}{empty}")
        if view.spent:
            return f"{floors}{view.spent_note()}{empty}"
        if len(view.empty) == len(view.tenants):
            return view.empty_note()
        if len(self.entries) < 2:
            scale = released_people_scale(r.users for t in view.tenants for r in t.rows)
            return (f"{plural(len(self.entries), 'model')} released: "
                    f"{shown_odds(view.k_min_users, scale, what='model')}{empty}")
        return (f"{floors}{len(self.entries)} models released · a/b: the next model on each "
                f"side · p: compare on one topic (as semtrace stats models --topic){empty}")

    def _topic_name(self) -> str:
        return next((name for tid, name in self.topics if tid == self.topic), self.topic or "")

    def action_topic(self) -> None:
        """Step to the next topic of today's topic release, then back to all topics."""
        if not self.topics:  # said, not a silent reload of the same figures
            if self.view is not None and not self.view.tenants:  # not "shows none (odds)"
                self._status(NO_TENANT)
            elif self.view is not None and len(self.view.empty) == len(self.view.tenants):
                self._status(self.view.empty_note())  # no thread: no topic to make
            elif self.topics_unreleased:
                self._status("No topic to compare on: the topics come from today's topic "
                             "release, which has none yet (o, then n makes it)")
            else:  # made, but every topic under k_min_users people: n would not help
                why = (f" ({shown_odds(self.view.k_min_users, None)})"
                       if self.view is not None else "")
                self._status(f"No topic to compare on: today's topic release shows none{why}")
            return
        ids = [None, *(tid for tid, _ in self.topics)]
        self.topic = ids[(ids.index(self.topic) + 1) % len(ids)] if self.topic in ids else None
        self.picked = [0, 1]
        self.load()

    def action_pick(self, side: int) -> None:
        if len(self.entries) < 2 or self.view is None:
            return
        other = self.picked[1 - side]
        nxt = (self.picked[side] + 1) % len(self.entries)
        if nxt == other:
            nxt = (nxt + 1) % len(self.entries)
        self.picked[side] = nxt
        self.show(self.view)

    def release_what(self) -> str:
        return "models" if self.topic is None else f"models on {self._topic_name()}"
