"""`semtrace retention run`: crypto-shred what the retention policy says is due."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.cli import credential_options, data_dir_option, emit_json, role_option
from appliance.cli.compliance import _as_of, _audit, _opened


@click.group()
def retention() -> None:
    """Retention: crypto-shred buckets past policy."""


@retention.command("run")
@data_dir_option
@credential_options
@role_option
@click.option("--as-of", default=None, help="Pretend it is this time (ISO-8601).")
@click.option("--json", "as_json", is_flag=True, help="Print the run report as JSON.")
def retention_run(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                  role: str | None, as_of: str | None, as_json: bool) -> None:
    """Run the retention job now (the service also runs it on schedule)."""
    from rich.progress import Progress

    from appliance.retention import Shredder, run_retention
    from appliance.roles import require

    now = _as_of(as_of)
    with _opened(data_dir, passphrase_file, key_file) as rt:
        require(rt.policies.access, role or "compliance", "retention",
                every_tenant="the retention run")
        shredder = Shredder(rt.store, _audit(rt))
        with Progress(transient=True, disable=not sys.stderr.isatty()) as prog:
            task = prog.add_task("shredding", total=None)
            report = run_retention(shredder, rt.policies.retention, rt.keyring, now=now,
                                   progress=lambda i, n: prog.update(task, completed=i, total=n))
    if as_json:
        emit_json(report)
    else:
        click.echo(f"Shredded {report.shredded} bucket(s), {report.records} record(s); cleared "
                   f"{report.vault_cleared} vault entries; {len(report.held)} bucket(s) on "
                   f"legal hold.")
    for idle in report.idle_holds:  # on stderr, under --json too: a hold that holds nothing
        who = f"user {idle.user} of {idle.tenant}" if idle.user else f"tenant {idle.tenant}"
        click.echo(f"Warning: legal hold {idle.index + 1} of retention.toml ({who}, reason "
                   f"{idle.reason!r}) matches no stored data: check its tenant and user_id "
                   "against what the gateway sends (both are case-sensitive).", err=True)


COMMANDS = [retention]
