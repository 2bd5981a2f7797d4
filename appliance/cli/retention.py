"""`semtrace retention run`: crypto-shred what the retention policy says is due."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import (
    credential_options,
    data_dir_option,
    emit_json,
    open_dir,
    progress_bar,
    role_option_as,
)
from appliance.cli.compliance import _as_of, _audit, _opened
from appliance.errors import InputError
from appliance.words import plural

if TYPE_CHECKING:
    from appliance.retention import Due


@click.group()
def retention() -> None:
    """Retention: crypto-shred buckets past policy."""


@retention.command("run")
@data_dir_option
@credential_options
@role_option_as("compliance")
@click.option("--as-of", default=None, help="Pretend it is this time (ISO-8601).")
@click.option("--dry-run", is_flag=True, help="Say what is due and what a legal hold keeps; "
              "shred nothing (a shred cannot be undone: try --as-of with this first).")
@click.option("--yes-future", is_flag=True, help="Confirm an --as-of more than a day ahead: "
              "what falls due by then is shredded now, for good.")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
def retention_run(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                  role: str | None, as_of: str | None, dry_run: bool, yes_future: bool,
                  as_json: bool) -> None:
    """Run the retention job now (the service also runs it on schedule)."""
    from appliance.retention import Shredder, run_retention
    from appliance.roles import require

    now = _as_of(as_of)
    if not dry_run and not yes_future:
        _refuse_far_future(as_of, now, datetime.now(UTC))
    if dry_run:
        _dry_run(data_dir, passphrase_file, key_file, role, now, as_json)
        return
    with _opened(data_dir, passphrase_file, key_file) as rt:
        require(rt.policies.access, role or "compliance", "retention",
                every_tenant="the retention run")
        shredder = Shredder(rt.store, _audit(rt))
        with progress_bar() as prog:
            task = prog.add_task("shredding", total=None)
            report = run_retention(shredder, rt.policies.retention, rt.keyring, now=now,
                                   progress=lambda i, n: prog.update(task, completed=i, total=n))
    if as_json:
        emit_json(report)
    else:
        click.echo(f"Shredded {plural(report.shredded, 'bucket')}, "
                   f"{plural(report.records, 'record')}; cleared "
                   f"{plural(report.vault_cleared, 'vault entry', 'vault entries')}; "
                   f"{plural(len(report.held), 'bucket')} on "
                   f"legal hold{_classes(b['class'] for b in report.held_buckets)}.")
    _warn_idle(report.idle_holds, rt.policies.retention.legal_holds)


FUTURE_ALLOWANCE = timedelta(days=1)  # a time zone or a clock apart, not a mistyped year


def _refuse_far_future(given: str | None, as_of: datetime, now: datetime) -> None:
    """Pure: a run --as-of beyond tomorrow shreds now, and for good, what only falls due
    then (a mistyped year destroys data early), so it needs --yes-future."""
    if as_of > now + FUTURE_ALLOWANCE:
        raise InputError(f"--as-of {given} is more than a day in the future, so the run would "
                         "shred now, for good, data not yet due; preview it with --dry-run "
                         "and add --yes-future if that is meant (nothing was shredded).")


def _classes(classes: Iterable[str]) -> str:
    """Pure: what the held buckets hold, e.g. ' (2 of prompts, 1 of vault originals)'."""
    counts = Counter(classes)
    names = {"prompts": "prompts", "vault": "vault originals"}
    said = [f"{counts[c]} of {names.get(c, c)}" for c in (*names, *sorted(set(counts) - set(names)))
            if counts[c]]
    return f" ({', '.join(said)})" if said else ""


def _warn_idle(idle: list[Any], holds: list[Any]) -> None:
    """`holds`: the policy's legal holds, to say what to check in the one that is idle (a
    hold by pseudonym has no user_id to compare with what the gateway sends)."""
    for hold in idle:  # on stderr, under --json too: a hold that holds nothing
        who = f"user {hold.user} of {hold.tenant}" if hold.user else f"tenant {hold.tenant}"
        check = ("its tenant (case-sensitive, as the gateway sends it) and its pseudonym, as "
                 "`semtrace threads list --tenant T --user U` prints the user's"
                 if holds[hold.index].pseudonym is not None else "its tenant and user_id "
                 "against what the gateway sends (both are case-sensitive)")
        click.echo(f"Warning: legal hold {hold.hold} of retention.toml ({who}, reason "
                   f"{hold.reason!r}) matches no stored data: check {check}.", err=True)


def _dry_run(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
             role: str | None, now: datetime, as_json: bool) -> None:
    """What a run at `now` would shred and what a hold keeps, read-only: nothing changes
    and nothing is audited."""
    from appliance.cli.check_target import read_target
    from appliance.retention import held_pairs, idle_holds, live_buckets, plan
    from appliance.roles import require

    # read-only, like audit verify: on a service host, the service's data dir (a run
    # shreds, and keeps refusing root's empty default folder instead)
    target = read_target(data_dir, "retention run --dry-run")
    rt = open_dir(target.path, passphrase_file, key_file, readonly=True)
    try:
        require(rt.policies.access, role or "compliance", "retention",
                every_tenant="the retention run")
        settings = rt.policies.retention
        due, held = plan(live_buckets(rt.store), settings, now, held_pairs(settings, rt.keyring))
        counts: dict[int, int] = dict(rt.store.db.execute(
            "SELECT bucket_id, count(*) FROM records GROUP BY bucket_id").fetchall())
        vault: dict[int, int] = dict(rt.store.db.execute(
            "SELECT bucket_id, count(*) FROM vault GROUP BY bucket_id").fetchall())
        idle = idle_holds(rt.store, settings, rt.keyring)
    finally:
        rt.close()
    rows: list[dict[str, Any]] = [
        {"bucket": d.bucket.bucket_id, "tenant": d.bucket.tenant, "day": d.bucket.day,
         "class": d.data} | _counts(d, counts, vault) for d in due]
    if as_json:
        emit_json({"as_of": now, "dry_run": True, "due": rows,
                   "held": [(h.bucket.tenant, h.bucket.user, h.bucket.day) for h in held],
                   "held_buckets": [h.as_json() | _counts(h, counts, vault) for h in held],
                   "idle_holds": idle, "data_dir": str(target.path),
                   "data_dir_source": target.source, "data_dir_why": target.why})
    else:
        tenants = Counter(r["tenant"] for r in rows)
        where = ", ".join(f"{t} {n}" for t, n in sorted(tenants.items())) or "none"
        entries = sum(r["vault_entries"] for r in rows)
        # the date as ISO: strftime's %Y wrote the year 1 as '1' (--as-of 0001-01-01)
        click.echo(f"As of {now.date().isoformat()} {now:%H:%M} UTC a run would shred "
                   f"{plural(len(rows), 'bucket')} ({where}), "
                   f"{plural(sum(r['records'] for r in rows), 'record')} and "
                   f"{plural(entries, 'vault entry', 'vault entries')}; "
                   f"{plural(len(held), 'bucket')} {'is' if len(held) == 1 else 'are'} kept "
                   "by a legal hold"
                   f"{_classes(h.data for h in held)}. Nothing was shredded (--dry-run).")
    _warn_idle(idle, settings.legal_holds)


def _counts(d: Due, records: dict[int, int], vault: dict[int, int]) -> dict[str, int]:
    return {"records": records.get(d.bucket.bucket_id, 0) if d.data_class == "prompts" else 0,
            "vault_entries": vault.get(d.bucket.bucket_id, 0)}


COMMANDS = [retention]
