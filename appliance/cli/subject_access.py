"""`semtrace compliance access`: a data subject's right of access (GDPR art. 15), one user's
records in one tenant written to one new file (`appliance/subject_access.py`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from appliance.cli import (
    credential_options,
    data_dir_option,
    emit_json,
    not_blank,
    progress_bar,
    role_option_as,
)
from appliance.cli.compliance import _audit, _names_pseudonym, _opened, _reason, compliance
from appliance.errors import InputError, SemtraceError
from appliance.words import plural

if TYPE_CHECKING:
    from appliance.runtime import Runtime


@compliance.command("access")
@data_dir_option
@credential_options
@role_option_as("compliance")
@click.option("--tenant", required=True, help="The tenant the user id belongs to.")
@click.option("--user", "user_id", required=True,
              help="The user id as the gateway sends it (or the pseudonym `threads list` "
                   "prints).")
@click.option("--reason", required=True, help="Why (a ticket number; recorded in the audit "
              "log).")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="The file to write (new; mode 0600; JSON).")
@click.option("--compliance-passphrase-file", type=click.Path(path_type=Path), default=None,
              help="Also write the originals the vault keeps (needs the 'reveal' "
                   "permission); without it the file holds the redacted text only.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def access(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
           role: str | None, tenant: str, user_id: str, reason: str, out: Path,
           compliance_passphrase_file: Path | None, as_json: bool) -> None:
    """Write every record held about one user of a tenant to a new file (GDPR art. 15):
    each thread with its turns (time, position, intent, topic, redacted text) and, with the
    compliance credential, the originals behind their placeholders. Audited."""
    from appliance.erasure import alike_user
    from appliance.keys import RevealOpener, read_passphrase_file, unlock_reveal_key
    from appliance.reads import check_tenant, user_named
    from appliance.roles import require
    from appliance.subject_access import as_document, collect, refuse_existing, write

    not_blank(tenant=tenant, user=user_id, out=str(out))
    reason = _reason(reason, user_id=user_id)
    refuse_existing(out)  # before the store is opened: nothing read, nothing audited
    with _opened(data_dir, passphrase_file, key_file) as rt:
        log = _audit(rt)
        acting = role or "compliance"  # as audited: the role it acted as
        opener: RevealOpener | None = None
        try:
            require(rt.policies.access, acting, "threads:read", tenant=tenant)
            if compliance_passphrase_file is not None:
                require(rt.policies.access, acting, "reveal", tenant=tenant)
                opener = unlock_reveal_key(rt.data_dir, read_passphrase_file(
                    compliance_passphrase_file))
        except SemtraceError as exc:
            log.append("subject_access_denied", {
                "tenant": tenant, "role": acting,
                "originals": compliance_passphrase_file is not None, "why": type(exc).__name__})
            raise
        check_tenant(rt.store, rt.policies, tenant)
        user = _erased_as_shown(rt, tenant, user_id, user_named(rt.store, rt.keyring,
                                                                 tenant, user_id))
        if _names_pseudonym(reason, lambda text: rt.keyring.pseudonym(tenant, text) == user):
            raise InputError("--reason must not hold the user id or an e-mail address: the "
                             "audit log keeps it for good; give a ticket number instead.")
        with progress_bar() as prog:  # a user of years: thousands of threads
            task = prog.add_task("access: threads read", total=None)
            found = collect(rt.store, tenant, user, opener=opener,
                            progress=lambda done, total: prog.update(task, completed=done,
                                                                     total=total))
        details = {"tenant": tenant, "user": user, "role": acting, "reason": reason,
                   "threads": len(found.threads), "records": found.records,
                   "originals": opener is not None}
        erased = rt.store.tombstone(tenant, user)
        when = None if erased is None else erased.completed_at or erased.started_at
        erased_at = None if when is None else datetime.fromtimestamp(when, UTC).isoformat()
        if not found.threads:
            log.append("subject_access", details)
            if as_json:  # what was found, for a script: nothing, and whether it was erased
                emit_json({"out": None, "tenant": tenant, "user": user, "threads": 0,
                           "records": 0, "originals": opener is not None,
                           "unattributable_buckets": found.unattributable_buckets,
                           "erased": erased is not None, "erased_at": erased_at})
            alike = None if erased is not None else alike_user(rt.store, rt.keyring, tenant,
                                                                 user_id)
            raise SemtraceError(
                f"No records of that user in {tenant} "
                + (f"(the user was erased on {_when(when or 0)}: the audit log's erase entry "
                   f"names {user})" if erased is not None else
                   "(none written, or all shredded; user ids are case-sensitive, as the "
                   "gateway sends them" + (f": the same id {alike} has records" if alike
                                           else "") + ")")
                + "; no file was written. The request is in the audit log."
                # on a cluster a tenant's records live only on its owner: 'none' here
                # would send the officer away from records that exist
                + (" On a cluster its records are kept only by the node that owns the tenant "
                   "(`semtrace cluster status --tenant T` names it): ask on that node's data "
                   "dir." if rt.policies.cluster.url else ""))
        write(out, as_document(found, reason=reason))
        try:
            log.append("subject_access", details)
        except BaseException:  # an export the audit log does not record is not handed out
            out.unlink(missing_ok=True)
            raise
    summary = {"out": str(out), "tenant": tenant, "user": user, "threads": len(found.threads),
               "records": found.records, "originals": opener is not None,
               "unattributable_buckets": found.unattributable_buckets,
               "erased": erased is not None, "erased_at": erased_at}
    if as_json:
        emit_json(summary)
    else:
        click.echo(f"Wrote {plural(found.records, 'record')} in "
                   f"{plural(len(found.threads), 'thread')} of "
                   f"{user} in {tenant} to {out} (mode 0600), "
                   + ("with the originals the vault keeps." if opener is not None else
                      "redacted text only (no --compliance-passphrase-file)."))
    if found.unattributable_buckets:
        one = found.unattributable_buckets == 1
        click.echo(f"Note: {plural(found.unattributable_buckets, 'bucket')} of {tenant} "
                   f"{'was' if one else 'were'} written before a key rotation that changed "
                   f"pseudonyms (older versions did); {'it' if one else 'they'} may hold this "
                   "user's records and cannot be attributed to them.", err=True)


def _erased_as_shown(rt: Runtime, tenant: str, value: str, user: str) -> str:
    """The user `--user VALUE` names: `user` (`user_named`'s answer), or VALUE itself when it
    is the whole pseudonym of a user erased before (the audit log and the erasure's own
    output print it): with nothing of theirs left, `user_named` took it for a user id and
    pseudonymised it again, and access said 'none written' of an erased user."""
    from appliance.erasure import PSEUDONYM_WHOLE, live_users

    if (user == value or PSEUDONYM_WHOLE.fullmatch(value) is None
            or rt.store.tombstone(tenant, value) is None
            or live_users(rt.store, tenant, user, limit=1)):
        return user
    return value


def _when(ts: float) -> str:
    return f"{datetime.fromtimestamp(ts, UTC):%Y-%m-%d %H:%M} UTC"


COMMANDS: list[click.Command] = []  # `access` joins the `compliance` group above
