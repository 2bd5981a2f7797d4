"""`semtrace erase`: a user's right to be forgotten (GDPR art. 17), unless on legal hold."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import click

from appliance.cli import credential_options, data_dir_option, emit_json, role_option
from appliance.cli.compliance import _audit, _opened, _reason
from appliance.errors import InputError


@click.command()
@data_dir_option
@credential_options
@role_option
@click.option("--tenant", required=True)
@click.option("--user", "user_id", required=True, help="The user id as the gateway sends it.")
@click.option("--reason", required=True, help="Why (recorded in the audit log).")
@click.option("--json", "as_json", is_flag=True)
def erase(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
          role: str | None, tenant: str, user_id: str, reason: str, as_json: bool) -> None:
    """Erase every record of one user now (GDPR art. 17), unless on legal hold."""
    from appliance.retention import Shredder, erase_user
    from appliance.roles import require

    reason = _reason(reason, user_id=user_id)
    for option, value in (("--tenant", tenant), ("--user", user_id)):
        if not value.strip():  # the service never stores one: it would match no record
            raise InputError(f"{option} must not be empty.")
    with _opened(data_dir, passphrase_file, key_file) as rt:
        require(rt.policies.access, role or "compliance", "erase", tenant=tenant)
        report = erase_user(Shredder(rt.store, _audit(rt)), rt.policies.retention, rt.keyring,
                            tenant=tenant, user_id=user_id, reason=reason)
    if as_json:
        emit_json({**dataclasses.asdict(report), "complete": report.complete})
    elif report.held:
        click.echo(f"User {report.user} of {tenant} is on legal hold; nothing was erased.")
    elif not report.buckets and report.complete:  # a mistyped id reads as done otherwise
        click.echo(f"No records of {report.user} in {tenant} (none written, or all already "
                   "shredded); nothing was erased. The request is in the audit log.")
    else:
        click.echo(f"Erased {report.records} record(s) in {report.buckets} bucket(s) of "
                   f"{report.user}.")
    if report.held:
        sys.exit(5)
    if not report.complete:
        click.echo(f"Erasure NOT complete: {report.unattributable_buckets} bucket(s) of {tenant} "
                   f"were written before a key rotation ({report.pseudonyms_changed_at}) that "
                   "changed pseudonyms (older versions did); they may hold this user's records "
                   "and cannot be attributed. Retention shreds them when they expire.",
                   err=True)
        sys.exit(7)


COMMANDS = [erase]
