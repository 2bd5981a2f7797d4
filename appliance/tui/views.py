"""The retention screen's data (read-only) and the signed report it can ask for.

The view reuses `report.build_report` over a read-only audit reader, so the
screen shows the same numbers the signed report would. Writing the report is
the one thing the TUI changes: it follows `semtrace audit retention --out`
step for step (role check, report built and signed, `report` audit entry) on a
short-lived connection of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.audit import Entry
from appliance.config import RetentionClass
from appliance.errors import SemtraceError
from appliance.query import audit_entries
from appliance.report import build_report, issue_signed
from appliance.retention import idle_holds
from appliance.roles import require
from appliance.runtime import open_runtime
from appliance.store import Store
from appliance.tui.data import StoreReader

AUDIT_EVENTS_SHOWN = 12


class _ReadAudit:
    """The part of AuditLog that `build_report` reads, over a read-only connection."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def entries(self, *, events: tuple[str, ...] | None = None) -> list[Entry]:
        return audit_entries(self.store, events=events)


@dataclass(frozen=True)
class RetentionView:
    """Policy in force, holdings against it, schedule and the audit log's state."""

    checked_at: datetime
    schedule_cron: str
    next_shred: datetime | None
    rules: tuple[tuple[str, RetentionClass], ...]  # ("default" or a tenant, its limits)
    legal_holds: int
    holdings: tuple[dict[str, Any], ...]
    chain: dict[str, Any]
    self_check: dict[str, Any]
    last_run: Entry | None
    recent: tuple[Entry, ...]
    tenant: str | None = None  # the one tenant a scoped session sees (None: all)
    idle_holds: int = 0  # legal holds that match no stored data (hold nothing)


def next_fire(cron: str, now: datetime) -> datetime | None:
    """The next time a crontab expression fires after `now` (UTC), None if invalid."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        trigger = CronTrigger.from_crontab(cron, timezone=now.tzinfo)
    except ValueError:
        return None
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire


class ComplianceReader:
    """Builds the retention view (compliance role)."""

    def __init__(self, reader: StoreReader) -> None:
        self.reader = reader

    def view(self, now: datetime) -> RetentionView:
        """Everything the retention screen shows, as of `now`."""
        settings = self.reader.rt.policies.retention
        with self.reader.lock:
            store = self.reader.rt.store
            body = build_report(store, _ReadAudit(store), settings, now=now,  # type: ignore[arg-type]
                                pseudonym=self.reader.rt.keyring.pseudonym)
            runs = audit_entries(store, events=("retention_run",), last=1)
            # A session limited to one tenant (a role bound to tenants) sees that tenant's
            # events only: other tenants' shreds, erasures and reveals are not its business.
            recent = audit_entries(store, last=AUDIT_EVENTS_SHOWN, tenant=self.reader.tenant)
            idle = idle_holds(store, settings, self.reader.rt.keyring, tenant=self.reader.tenant)
        tenant = self.reader.tenant
        holdings = [h for h in body["holdings"] if not tenant or h["tenant"] == tenant]
        rules = [("default", settings.default), *sorted(
            (t, r) for t, r in settings.tenants.items() if not tenant or t == tenant)]
        holds = [h for h in settings.legal_holds if not tenant or h.tenant == tenant]
        return RetentionView(
            checked_at=now, schedule_cron=settings.schedule_cron,
            next_shred=next_fire(settings.schedule_cron, now), rules=tuple(rules),
            legal_holds=len(holds), holdings=tuple(holdings),
            chain=body["audit_chain"], self_check=body["self_check"],
            last_run=runs[-1] if runs else None, recent=tuple(reversed(recent)),
            tenant=tenant, idle_holds=len(idle))

    def may_report(self, role: str) -> None:
        """SemtraceError when `role` may not issue the signed report (no `audit`, or bound to
        tenants: the report covers every tenant), said before the dialog asks for a file."""
        require(self.reader.rt.policies.access, role, "audit",
                every_tenant="the retention report")

    def write_report(self, out: Path, *, role: str, fmt: str = "md") -> str | None:
        """Write the signed retention report to `out`, as `semtrace audit retention` does;
        what it found wrong (a chain that does not verify, a failed self-check), else None."""
        rt = self.reader.rt
        self.may_report(role)
        if out.exists():
            raise SemtraceError(f"{out} already exists; it was not overwritten.")
        if not out.parent.is_dir():
            raise SemtraceError(f"The folder {out.parent} does not exist.")
        if not os.access(out.parent, os.W_OK):  # before the issue, which is audited
            raise SemtraceError(f"The folder {out.parent} is not writable; no report was "
                                "issued.")
        writer = open_runtime(rt.data_dir, keyring=rt.keyring, policies=rt.policies)
        try:
            issued = issue_signed(writer.store, rt.keyring, rt.policies.retention, fmt=fmt,
                                  via="tui")
        finally:
            writer.close()
        try:
            with out.open("x") as fh:  # one made meanwhile is not replaced either
                fh.write(issued.text)
        except OSError as exc:  # the OS's words alone ('[Errno 30] ...') said nothing else
            raise SemtraceError(f"The signed report could not be written to {out} "
                                f"({exc.strerror or type(exc).__name__}); its issue is in the "
                                "audit log.") from None
        return issued.problem
