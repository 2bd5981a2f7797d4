"""`semtrace audit | reveal | compliance`: compliance commands (`erase`: erasure.py,
`retention`: retention.py)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import (
    credential,
    credential_options,
    data_dir_option,
    emit_json,
    open_dir,
    role_option,
)
from appliance.errors import AccessDenied, InputError, SemtraceError
from appliance.words import named

if TYPE_CHECKING:
    from appliance.audit import AuditLog
    from appliance.runtime import Runtime


@contextlib.contextmanager
def _opened(data_dir: Path | None, passphrase_file: Path | None,
            key_file: Path | None, *, only_reads: bool = False) -> Iterator[Runtime]:
    """The data dir, opened for writing (migrated); for a command that `only_reads`, opened
    read-only when this process may not write it (an auditor's read-only copy)."""
    readonly = False
    if only_reads:
        from appliance.runtime import default_data_dir
        from appliance.store.core import DB_FILE, writable

        readonly = not writable((data_dir or default_data_dir()) / DB_FILE)
    rt = open_dir(data_dir, passphrase_file, key_file, readonly=readonly)
    try:
        yield rt
    finally:
        rt.close()


def _audit(rt: Runtime) -> AuditLog:
    from appliance.audit import AuditLog

    return AuditLog(rt.store.db, rt.keyring.audit_signer(), anchor=rt.store.keys_db)


def _as_of(value: str | None, option: str = "--as-of") -> datetime:
    from appliance.ingest import parse_ts

    if value is None:
        return datetime.now(UTC)
    try:
        return parse_ts(value)
    except SemtraceError:
        raise InputError(f"{option} {value!r} is not an ISO-8601 time.") from None


EMAIL_RE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
MAX_REASON = 200


def _days(days: float) -> str:
    """`1 day`, `30 days`, `0.5 days` (vault_days may be a fraction)."""
    return f"{days:,g} {'day' if days == 1 else 'days'}"


def _reason(reason: str, *, user_id: str | None = None) -> str:
    """An audited reason: a blank one records nothing a reviewer could check, and one that
    names the user or an e-mail address would keep them in the audit log (and the signed
    report) after the erasure it records."""
    if not reason.strip():
        raise InputError("--reason must not be empty; it is recorded in the audit log.")
    if len(reason) > MAX_REASON:  # a pasted request (a letter, an e-mail) carries PII
        raise InputError(f"--reason is {len(reason):,} characters; the audit log keeps it for "
                         f"good, so give a ticket number and a few words (at most "
                         f"{MAX_REASON}).")
    names_user = user_id is not None and len(user_id.strip()) >= 3 \
        and user_id.strip().lower() in reason.lower()
    if names_user or EMAIL_RE.search(reason):
        raise InputError("--reason must not hold the user id or an e-mail address: the audit "
                         "log keeps it for good; give a ticket number instead.")
    return reason


def _names_pseudonym(reason: str, is_user: Callable[[str], bool]) -> bool:
    """Whether any stretch of the reason (3 characters or more) is the user id whose keyed
    pseudonym `is_user` recognises, as typed or in another case (lower, upper, capitalised:
    `_reason` ignores case too, so 'DSAR BOB.JONES' names the user `bob.jones`). Reveal knows
    its record's user only by pseudonym, so it tries every stretch (at most ~20,000 for a
    reason of 200 characters, each in up to 5 spellings: well under a second)."""
    return any(is_user(spelt) for i in range(len(reason))
               for j in range(i + 3, len(reason) + 1)
               for spelt in _spellings(reason[i:j]))


def _spellings(text: str) -> set[str]:
    """`text` in the cases a user id is usually written: a pseudonym is of one exact id."""
    return {text, text.lower(), text.upper(), text.capitalize(), text.title()}


class RecordId(click.IntRange):
    """A record id as `threads show`, `search` and the TUI print it ('#123') or bare; within
    SQLite's integer range (a larger one names no record and would overflow the query)."""

    name = "record id"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, str):
            value = value.strip().removeprefix("#")
        converted: int = super().convert(value, param, ctx)
        return converted


RECORD_ID = RecordId(1, 2**63 - 1)
PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z_]*?(?:_\d+)?>")


def _nothing_to_reveal(rt: Runtime, record_id: int, tenant: str | None) -> tuple[str, str]:
    """Why a reveal found no originals, as a word for `--json` and as the officer needs it:
    no such record, nothing redacted in it, or originals no longer (or never) kept."""
    from appliance.retention import rules_for

    if tenant is None:
        # on a cluster a record lives only on its tenant's owner, and its id does not say
        # which tenant: 'never written' would send the officer away from a record that exists
        where = (": on a cluster a record is kept only by the node that owns its tenant "
                 "(`semtrace cluster status --tenant T` names it): reveal on that node's data "
                 "dir" if rt.policies.cluster.url else "")
        return "no_record", (f"No record {record_id} in this store (never written, or "
                             f"shredded){where}; nothing was revealed.")
    found = rt.store.records("r.id = ?", (record_id,))
    text = found[0].text if found else None
    if text is None:  # its key is destroyed; the rows go at the shred's end
        return "record_shredded", f"Record {record_id} was shredded; nothing was revealed."
    if not PLACEHOLDER_RE.search(text):
        return "nothing_redacted", (f"Record {record_id} holds no personal data: redaction "
                                    "replaced nothing in it; nothing was revealed.")
    days = rules_for(rt.policies.retention, tenant).vault_days
    kept, shredded_at = rt.store.vault_shred(record_id)
    if not kept:  # 'no longer kept' sent officers looking for a shred that never happened
        return "never_kept", (
            f"The originals of record {record_id} were never kept: it was stored while "
            "this data dir had no compliance key (originals are kept only from its "
            "enrolment on); nothing was revealed.")
    if shredded_at is not None:
        return "originals_shredded", (
            f"The originals of record {record_id} were shredded on "
            f"{datetime.fromtimestamp(shredded_at, UTC):%Y-%m-%d %H:%M} UTC (they are "
            f"kept {_days(days)} after the day they were recorded: vault_days in "
            "retention.toml); nothing was revealed.")
    return "no_longer_kept", (
        f"The originals of record {record_id} are no longer kept: they are shredded "
        f"{_days(days)} after the day they were recorded (vault_days in retention.toml), "
        "and none are kept from before a compliance key was enrolled; nothing was revealed.")


@click.command()
@click.argument("record_id", type=RECORD_ID)
@data_dir_option
@credential_options
@role_option
@click.option("--reason", required=True, help="Why the original is needed (audited).")
@click.option("--compliance-passphrase-file", type=click.Path(path_type=Path), default=None,
              help="The compliance credential that unlocks the reveal key.")
@click.option("--json", "as_json", is_flag=True, help="Print the originals as JSON (none "
              "revealed: an object saying why, exit 1).")
def reveal(record_id: int, data_dir: Path | None, passphrase_file: Path | None,
           key_file: Path | None, role: str | None, reason: str,
           compliance_passphrase_file: Path | None, as_json: bool) -> None:
    """Show the original values behind a record's placeholders (compliance only; audited)."""
    from appliance.keys import read_passphrase_file, unlock_reveal_key
    from appliance.roles import bound_tenants, require

    reason = _reason(reason)
    with _opened(data_dir, passphrase_file, key_file) as rt:
        log = _audit(rt)
        tenant = rt.store.record_tenant(record_id)
        acting = role or rt.policies.access.default_role  # as audited: the role it acted as
        try:
            name = require(rt.policies.access, role, "reveal")
            bound = bound_tenants(rt.policies.access, name)
            if bound is not None and tenant not in bound:
                # another tenant's record and no record at all read alike: a role limited
                # to tenants learns nothing of what lies outside them
                raise AccessDenied(f"The {name} role has no record {record_id} to reveal in "
                                   f"its {named('tenant', list(bound))}; nothing was "
                                   "revealed.")
            if compliance_passphrase_file is None:  # a missing option: bad input (exit 2,
                # as a wrong or missing credential file is), not a role refused (exit 4)
                raise InputError("Reveal needs the compliance credential "
                                 "(--compliance-passphrase-file).")
            opener = unlock_reveal_key(rt.data_dir, read_passphrase_file(
                compliance_passphrase_file))
        except SemtraceError as exc:
            log.append("reveal_denied", {"record": record_id, "tenant": tenant,
                                         "role": acting, "why": type(exc).__name__})
            raise
        user = rt.store.record_user(record_id)
        if tenant is not None and user is not None and _names_pseudonym(
                reason, lambda text: rt.keyring.pseudonym(tenant, text) == user):
            raise InputError("--reason must not hold the user id or an e-mail address: the "
                             "audit log keeps it for good; give a ticket number instead.")
        pairs = rt.store.reveal(record_id, opener)
        log.append("reveal", {"record": record_id, "tenant": tenant, "role": acting,
                              "reason": reason, "found": pairs is not None})
        if pairs is None:
            why, said = _nothing_to_reveal(rt, record_id, tenant)
            if as_json:  # a script reads the outcome, not only the exit status
                emit_json({"record": record_id, "revealed": False, "why": why,
                           "originals": []})
            raise SemtraceError(said)
    if as_json:
        emit_json([{"placeholder": p, "original": v} for p, v in pairs])
    else:
        for p, v in pairs:
            click.echo(f"{p}\t{v}")


@click.group()
def compliance() -> None:
    """The compliance credential."""


@compliance.command("enroll")
@data_dir_option
@credential_options
@click.option("--compliance-passphrase-file", type=click.Path(path_type=Path), required=True,
              help="File holding the compliance passphrase (not the master one).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compliance_enroll(data_dir: Path | None, passphrase_file: Path | None,
                      key_file: Path | None, compliance_passphrase_file: Path,
                      as_json: bool) -> None:
    """Create the reveal key; from now on originals are kept in the vault for compliance."""
    from appliance.keys import create_reveal_key, read_passphrase_file, require_distinct

    master = credential(passphrase_file, key_file)
    officer = read_passphrase_file(compliance_passphrase_file)
    require_distinct(master, officer)
    with _opened(data_dir, passphrase_file, key_file) as rt:
        create_reveal_key(rt.data_dir, officer, rt.keyring)
        _audit(rt).append("policy_change", {"change": "compliance key enrolled"})
    if as_json:
        emit_json({"enrolled": True})
    else:
        click.echo("Compliance key enrolled; new records keep their originals in the vault.")


@compliance.command("retag")
@data_dir_option
@credential_options
@role_option
@click.option("--compliance-passphrase-file", type=click.Path(path_type=Path), required=True,
              help="Proves reveal.pub is the public half of the enrolled compliance key.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def compliance_retag(data_dir: Path | None, passphrase_file: Path | None,
                     key_file: Path | None, role: str | None,
                     compliance_passphrase_file: Path, as_json: bool) -> None:
    """Tag reveal.pub under the keyring again (enrolled before tags existed); operators only.

    The store refuses to write with an untagged reveal.pub: a public key swapped
    in would receive every original. This checks the file against the private key
    the compliance passphrase unlocks, then tags it; a swapped key is refused.
    """
    from appliance.config import load_policies
    from appliance.keys import open_keyring, read_passphrase_file, retag_reveal_key
    from appliance.roles import require
    from appliance.runtime import default_data_dir, is_initialised

    directory = data_dir or default_data_dir()
    if not is_initialised(directory):
        open_dir(directory, None, None)  # raises the sentence for a missing data dir
    require(load_policies().access, role or "operator", "service")
    keyring = open_keyring(directory, credential(passphrase_file, key_file))
    changed = retag_reveal_key(directory, keyring,
                               read_passphrase_file(compliance_passphrase_file))
    if changed:  # the store opens again now; the audit log says who did it
        with _opened(directory, passphrase_file, key_file) as rt:
            _audit(rt).append("policy_change", {"change": "compliance key re-tagged"})
    if as_json:
        emit_json({"retagged": changed})
    else:
        click.echo("reveal.pub re-tagged; the store writes again." if changed
                   else "reveal.pub already carries its tag; nothing changed.")


COMMANDS = [reveal, compliance]
