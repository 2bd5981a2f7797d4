"""The retention screen's signed report (`g`), written where the officer says: a folder it
cannot write to is refused before the report is issued, as `audit retention --out` does."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from test_tui import replayed, report_from_retention_screen  # noqa: F401  (replayed: a fixture)


def test_a_report_to_a_folder_it_cannot_write_is_refused_before_it_is_issued(
        runtime: Any, replayed: Any, tmp_path: Path) -> None:  # noqa: F811
    """The screen issued the report (a 'report' entry in the audit log) and only then
    failed to write it, and said just the OS's words ('✖ [Errno 30] Read-only file system:
    ...'): the audit log recorded a report that exists nowhere. It now says, before
    anything is issued, that the folder is not writable."""
    from appliance.query import audit_entries

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    out = locked / "report.md" if not os.access(locked, os.W_OK) \
        else Path("/proc/sys/semtrace-report.md")  # root writes anywhere but there
    issued = len(audit_entries(runtime.store, events=("report",)))
    status = report_from_retention_screen(runtime, out)
    assert status == f"✖ The folder {out.parent} is not writable; no report was issued."
    assert len(audit_entries(runtime.store, events=("report",))) == issued
    assert not out.exists()


def test_a_role_bound_to_tenants_is_told_at_g_that_it_cannot_write_the_report(
        runtime: Any, replayed: Any) -> None:  # noqa: F811
    """A tenant-bound compliance role pressed `g`, was offered the dialog ('It covers every
    tenant of the store, not only globex shown here'), chose a file, and only then read that
    the role may not issue it. It is told at once now, and no dialog opens."""
    from test_tui import app_for, run, settle

    from appliance.config import RoleSettings
    from appliance.query import audit_entries
    from appliance.tui.screens.retention import RetentionScreen

    roles = runtime.policies.access.roles
    access = runtime.policies.access.model_copy(update={"roles": {
        **roles, "compliance-acme": RoleSettings(
            permissions=roles["compliance"].permissions, tenants=["acme"])}})
    runtime.policies = runtime.policies.model_copy(update={"access": access})
    issued = len(audit_entries(runtime.store, events=("report",)))
    said: list[str] = []

    async def scenario(pilot: Any) -> None:
        await pilot.press("R")
        await settle(pilot)
        await pilot.press("g")
        await settle(pilot)
        assert isinstance(pilot.app.screen, RetentionScreen)  # no dialog
        said.append(str(pilot.app.screen.query_one("#status").render()))

    run(app_for(runtime, role="compliance-acme"), scenario)
    assert said == ["✖ The compliance-acme role is limited to tenant acme, and the "
                    "retention report covers every tenant; use --role with a role that is not "
                    "limited."]
    assert len(audit_entries(runtime.store, events=("report",))) == issued


def test_a_report_over_a_tampered_audit_log_is_not_ticked_as_written(
        runtime: Any, replayed: Any, tmp_path: Path) -> None:  # noqa: F811
    """The screen said '✔ Signed report written' over a log that does not verify, as
    `audit retention` exited 0: the report is written (it says BROKEN), and the status
    line says what is wrong."""
    with runtime.store.db:
        runtime.store.db.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 1")
    out = tmp_path / "report.md"
    status = report_from_retention_screen(runtime, out)
    assert status.startswith(f"✖ Signed report written to {out}, but the audit log does not "
                             "verify (entry 1 was altered)"), status
    assert "Audit chain: **BROKEN**" in out.read_text()
