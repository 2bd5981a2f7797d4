"""The retention screen (compliance): policy, holdings vs limits, schedule, audit state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Header, Input, Label, Static

from appliance.errors import SemtraceError
from appliance.tui.context import context
from appliance.tui.views import RetentionView
from appliance.words import plural


def _days(v: float | None) -> str:
    return "–" if v is None else f"{v:g}"


# What an officer looks for in an event comes first: the column is cut at its width, and
# in alphabetical order an erasure's tenant and user came after its timestamps, out of view.
FIRST = ("tenant", "user", "record", "buckets_shredded", "records", "buckets", "bucket", "class",
         "day", "reason", "found", "role", "why")


def _first(item: tuple[str, object]) -> tuple[int, str]:
    key = item[0]
    return (FIRST.index(key) if key in FIRST else len(FIRST), key)


def _value(v: object) -> str:
    """An audit detail as `semtrace audit log` prints it (JSON: null, true, {"a": 1}), not as
    Python writes it (None, True, {'a': 1})."""
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def _held_past(h: dict[str, Any], now: datetime) -> bool:
    """Whether a legal hold keeps data of this row older than its limit (not a breach)."""
    held = h.get("held_oldest")
    return held is not None and now - datetime.fromisoformat(held) \
        > timedelta(days=h["limit_days"] + 1)


def policy_text(view: RetentionView) -> Text:
    """Limits per data class, schedule, holds, audit chain and self-check, as lines."""
    out = Text("Policy in force (days)\n", style="bold")
    for name, r in view.rules:
        out.append(f"  {name:<10} prompts, vectors, threads {_days(r.prompts_days)} · vault "
                   f"{_days(r.vault_days)} · aggregates {_days(r.aggregates_days)}\n")
    nxt = f"{view.next_shred:%Y-%m-%d %H:%M} UTC" if view.next_shred else "invalid schedule"
    out.append(f"Next scheduled shred: {nxt} (cron '{view.schedule_cron}') · legal holds: "
               f"{view.legal_holds}")
    if view.idle_holds:  # a hold on a misspelt tenant or user keeps nothing from the shred
        out.append(f" ✖ {view.idle_holds} match no stored data (check each hold's tenant "
                   "and user_id or pseudonym)",
                   style="bold red")
    out.append("\n")
    # A run covers every tenant: its bucket count is not one tenant's to read.
    shredded = ("" if view.tenant or view.last_run is None else
                f", {plural(view.last_run.details.get('buckets_shredded', 0), 'bucket')}")
    last = (f"{datetime.fromtimestamp(view.last_run.ts, UTC):%Y-%m-%d %H:%M} UTC{shredded}"
            if view.last_run else "never")
    out.append(f"Last retention run: {last}\n")
    chain = view.chain
    if chain["ok"]:
        out.append("✔ Audit chain intact", style="bold green")
        if not view.tenant:  # the store's entry count is every tenant's activity
            out.append(f": {chain['entries']} entries, {chain['checkpoints']} signed "
                       "checkpoints")
    else:
        out.append("✖ Audit chain BROKEN", style="bold red")
        out.append(f": {chain['problem']}")
    out.append(f" (verified {view.checked_at:%Y-%m-%d %H:%M} UTC)\n")
    sc = view.self_check
    if sc["passed"] and not sc["sampled_buckets"] and not view.tenant:
        # nothing shredded yet: a ✔ certified a check that had nothing to check
        out.append("– Shredded buckets: none yet, nothing to check (0 sampled)")
        return out
    out.append("✔ Shredded buckets undecryptable" if sc["passed"] else
               f"✖ Shredded buckets still decryptable: {sc['still_decryptable']}",
               style="" if sc["passed"] else "bold red")
    if not view.tenant:
        out.append(f" ({sc['sampled_buckets']} sampled)")
    return out


class ReportDialog(ModalScreen[Path | None]):
    """Asks where to write the signed report; says that it is audited."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: Path, shown_tenant: str | None = None) -> None:
        """`shown_tenant`: the one tenant this session shows; the report covers them all."""
        super().__init__()
        self.default = default
        self.shown_tenant = shown_tenant

    def compose(self) -> ComposeResult:
        scope = "It covers every tenant of the store" + (
            f", not only {self.shown_tenant} shown here" if self.shown_tenant else "")
        with Vertical(id="dialog"):
            yield Label("Write the signed retention report (Markdown) to:")
            yield Input(str(self.default), id="report-path")
            yield Label(Text(f"{scope}. This adds a 'report' entry to the audit log."),
                        classes="note", id="report-scope")
            with Horizontal(id="dialog-buttons"):
                yield Button("Write report", id="write", variant="primary")
                yield Button("Cancel", id="cancel")

    @on(Input.Submitted, "#report-path")
    @on(Button.Pressed, "#write")
    def _write(self) -> None:
        value = self.query_one("#report-path", Input).value.strip()
        self.dismiss(Path(value).expanduser() if value else None)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class RetentionScreen(Screen[None]):
    """What is held, how old it is against the limits, and what the audit log says."""

    BINDINGS = [
        Binding("g", "report", "Signed report"),
        Binding("r", "reload", "Refresh"),
    ]

    note = ""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="retention"):
            yield Static("Loading retention state…", id="policy")
            yield Static(Text("Oldest data held vs limit", style="bold"), classes="heading",
                         id="holdings-head")
            yield DataTable(id="holdings", cursor_type="row", zebra_stripes=True)
            yield Static(Text("Recent audit events", style="bold"), classes="heading")
            yield DataTable(id="events", cursor_type="row", zebra_stripes=True)
        yield Static(id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        holdings = self.query_one("#holdings", DataTable)
        for label, width in (("tenant", 10), ("class", 8), ("oldest UTC", 16), ("age d", 7),
                             ("limit d", 7), ("within", 8)):
            holdings.add_column(label, width=width)
        events = self.query_one("#events", DataTable)
        for label, width in (("seq", 5), ("time UTC", 16), ("event", 15), ("details", 50)):
            events.add_column(label, width=width)
        self.load()

    @work(thread=True, exclusive=True, group="retention")
    def load(self) -> None:
        ctx = context(self)
        assert ctx.compliance is not None
        try:
            view = ctx.compliance.view(ctx.clock())
        except SemtraceError as exc:
            self.app.call_from_thread(self._status, f"✖ {exc}")
            return
        self.app.call_from_thread(self.show, view)

    def show(self, view: RetentionView) -> None:
        """Fill the sections."""
        self.query_one("#policy", Static).update(policy_text(view))
        holdings = self.query_one("#holdings", DataTable)
        holdings.clear()
        for h in view.holdings:
            ok = Text("✖ NO", style="bold red") if not h["within_policy"] else \
                Text("✔ held") if _held_past(h, view.checked_at) else Text("✔ yes")
            oldest = (h["oldest"] or "–")[:16].replace("T", " ")
            holdings.add_row(Text(h["tenant"]), h["class"], oldest,
                             "–" if h["age_days"] is None else f"{h['age_days']:.1f}",
                             _days(h["limit_days"]), ok)
        head = Text("Oldest data held vs limit", style="bold")
        if any(h["within_policy"] and h["age_days"] is not None
               and h["age_days"] > h["limit_days"] for h in view.holdings):
            # `age 7.3  limit 7  ✔ yes` read as a contradiction (report._holdings)
            head.append(" · a day's data is shredded once that whole UTC day is past the "
                        "limit: its oldest may be up to a day older, within policy",
                        style="not bold")
        if not view.holdings:  # an empty table, said: not a failed read
            head.append(" · nothing held yet: no prompt has been stored in scope",
                        style="not bold")
        self.query_one("#holdings-head", Static).update(head)
        events = self.query_one("#events", DataTable)
        events.clear()
        for e in view.recent:
            details = ", ".join(f"{k}={_value(v)}"
                                for k, v in sorted(e.details.items(), key=_first))
            events.add_row(str(e.seq), f"{datetime.fromtimestamp(e.ts, UTC):%Y-%m-%d %H:%M}",
                           Text(e.event), Text(details))
        self._status(self.note or "g: write the signed retention report · r: refresh")

    def _status(self, text: str, *, keep: bool = False) -> None:
        """Show a line under the sections; `keep` holds it across refreshes."""
        if keep:
            self.note = text
        self.query_one("#status", Static).update(Text(text))

    def action_reload(self) -> None:
        self.load()

    def action_report(self) -> None:
        ctx = context(self)
        try:  # a role that may not issue it is told at once, not after choosing a file
            if ctx.compliance is not None:
                ctx.compliance.may_report(ctx.role)
        except SemtraceError as exc:
            self._status(f"✖ {exc}")
            return
        name = f"semtrace-retention-report-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
        self.app.push_screen(ReportDialog(ctx.report_dir / name, ctx.reader.tenant),
                             self._report_to)

    def _report_to(self, out: Path | None) -> None:
        if out is None:
            self._status("Report cancelled; nothing was written.")
            return
        self._status(f"Writing the signed report to {out}…")
        self._write(out)

    @work(thread=True, exclusive=True, group="report")
    def _write(self, out: Path) -> None:
        ctx = context(self)
        assert ctx.compliance is not None
        try:
            problem = ctx.compliance.write_report(out, role=ctx.role)
        except (SemtraceError, OSError) as exc:
            self.app.call_from_thread(self._status, f"✖ {exc}")
            return
        said = (f"✖ Signed report written to {out}, but {problem}." if problem
                else f"✔ Signed report written to {out}.")  # not a tick over a broken log
        self.app.call_from_thread(self._status, said, keep=True)
        self.app.call_from_thread(self.app.notify, said[2:],
                                  severity="error" if problem else "information")
        self.load()
