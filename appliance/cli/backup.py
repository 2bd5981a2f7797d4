"""`semtrace backup | restore`: a consistent, still encrypted copy of a live data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import credential, credential_options, data_dir_option, emit_json
from appliance.words import plural


def _progress_step(prog: Any) -> Any:
    task = prog.add_task("backup", total=None)

    def step(what: str, done: int, total: int) -> None:
        prog.update(task, description=what, completed=done, total=total or None)

    return step


@click.command()
@click.argument("dest", type=click.Path(path_type=Path))
@data_dir_option
@credential_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def backup(dest: Path, data_dir: Path | None, passphrase_file: Path | None,
           key_file: Path | None, as_json: bool) -> None:
    """Copy the data dir into DEST (a new or empty folder), consistent and still encrypted,
    while `serve` runs; the copy holds every data key live now (see README, Backup)."""
    from appliance.backup import take_backup
    from appliance.cli import progress_bar
    from appliance.runtime import default_data_dir

    directory = data_dir or default_data_dir()
    from appliance.backup import _check_source, check_destination

    _check_source(directory)  # the data dir's and the folder's sentences before a prompt
    check_destination(directory, dest)
    cred = credential(passphrase_file, key_file)
    with progress_bar() as prog:
        report = take_backup(directory, cred, dest, progress=_progress_step(prog))
    from appliance.backup import POLICIES
    from appliance.config.retention import by_user_id

    copy = Path(report.destination) / POLICIES / "retention.toml"
    for position in report.holds_by_pseudonym:  # on stderr, under --json too
        click.echo(f"semtrace: warning: {by_user_id(position, copy=str(copy))}", err=True)
    if as_json:
        emit_json(report)
        return
    click.echo(f"Backed up {plural(report.records, 'record')} ({report.bytes // 1024} KiB, audit "
               f"entry {report.audit_seq}) into {report.destination} at {report.taken_at}. "
               "It holds the data keys live now: keep it no longer than the shortest "
               "retention period, and restore it with `semtrace restore`.")


@click.command()
@click.argument("backup_dir", metavar="BACKUP", type=click.Path(path_type=Path))
@data_dir_option
@credential_options
@click.option("--erasures-from", type=click.Path(path_type=Path), default=None,
              metavar="OLD_DATA_DIR", help="The store the backup was taken from: erasures its "
              "audit log recorded after the backup are applied again.")
@click.option("--current-policies", is_flag=True, help="Shred by the retention policy in "
              "use even where it differs from the one saved with the backup.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def restore(backup_dir: Path, data_dir: Path | None, passphrase_file: Path | None,
            key_file: Path | None, erasures_from: Path | None, current_policies: bool,
            as_json: bool) -> None:
    """Restore BACKUP (from `semtrace backup`) into --data-dir (new or empty), then shred
    again what expired since it was taken."""
    from appliance.cli import progress_bar
    from appliance.config import load_policies
    from appliance.restore import read_manifest, restore_backup
    from appliance.runtime import default_data_dir

    target = data_dir or default_data_dir()
    read_manifest(backup_dir)  # its sentence before a passphrase prompt
    policies = load_policies()
    cred = credential(passphrase_file, key_file)
    with progress_bar() as prog:
        report = restore_backup(backup_dir, target, cred, policies,
                                erasures_from=erasures_from, current_policies=current_policies,
                                progress=_progress_step(prog))
    if as_json:
        emit_json(report)
        return
    # what the store holds now first: "Restored 0 records" read as a copy that restored none,
    # where its one record had been shredded again as past retention
    click.echo(f"Restored the copy of {report.taken_at} into {report.data_dir}: it holds "
               f"{plural(report.records, 'record')} now; shredded again "
               f"{plural(report.buckets_shredded, 'bucket')} past retention "
               f"({plural(report.records_shredded, 'record')}), re-applied "
               f"{plural(report.erasures_reapplied, 'erasure')}.")
    if report.migrated:  # a copy an earlier version took (in --json: `migrated`)
        click.echo(f"semtrace: the copy was taken by an earlier version and is now migrated "
                   f"to this one's schema: {', '.join(report.migrated)}.", err=True)
    for warning in report.warnings:
        click.echo(f"semtrace: warning: {warning}", err=True)


COMMANDS = [backup, restore]
