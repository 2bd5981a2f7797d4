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
