"""`semtrace audit`: verify, list and export the tamper-evident audit log; the signed
retention report and its public key."""

from __future__ import annotations

import bisect
import dataclasses
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from appliance.cli import (
    credential_options,
    data_dir_option,
    emit_json,
    not_blank,
    open_read,
    output_path,
    role_option_as,
)
from appliance.cli.compliance import _as_of, _opened
from appliance.constants import AUDIT_EVENTS
from appliance.errors import InputError
from appliance.words import plural


@click.group()
def audit() -> None:
    """The tamper-evident audit log and retention reports."""


@audit.command("verify")
@data_dir_option
@credential_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_verify(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                 as_json: bool) -> None:
    """Check the audit chain and its signatures; name the first bad entry. Without a data
    dir given, or a store of the caller's own, it checks the installed service's (and says
    so), as doctor does."""
    from appliance.audit import verify_chain
    from appliance.cli.check_target import SERVICE, require_target, target_for
    from appliance.records import jsonable

    target = target_for(data_dir)
    require_target(target, "audit verify")
    with _opened(target.path, passphrase_file, key_file, only_reads=True) as rt:
        result = verify_chain(rt.store.db, rt.store.keys_db)
    if as_json:
        emit_json({**jsonable(result), "data_dir": str(target.path),
                   "data_dir_source": target.source, "data_dir_why": target.why})
    else:
        if target.source == SERVICE:  # not the folder the caller may think: said first
            click.echo(target.why)
        click.echo(f"Audit log intact: {plural(result.entries, 'entry', 'entries')}, "
                   f"{plural(result.checkpoints, 'signed checkpoint')}." if result.ok
                   else f"Audit log BROKEN: {result.problem}.")
    if not result.ok:
        sys.exit(6)


@audit.command("log")
@data_dir_option
@credential_options
@role_option_as("compliance")
@click.option("--tenant", default=None, help="Only entries about this tenant (its shreds, "
              "erasures, reveals); store-wide ones (start, stop, runs) are left out.")
@click.option("--event", "events", multiple=True, type=click.Choice(AUDIT_EVENTS),
              help="Only this kind of entry (repeatable).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True,
              help="The most recent entries shown.")
@click.option("--all", "every", is_flag=True, help="Every entry (an export), not --limit.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_log(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
              role: str | None, tenant: str | None, events: tuple[str, ...], limit: int,
              every: bool, as_json: bool) -> None:
    """Print the most recent audit entries (a role bound to tenants sees only theirs).
    Without a data dir given, or a store of the caller's own, it reads the installed
    service's (and says so), as audit verify does."""
    from appliance.audit import verify_chain
    from appliance.query import audit_entries
    from appliance.reads import check_tenant
    from appliance.roles import bound_tenants, require

    not_blank(tenant=tenant)
    _limit_or_all(limit, every)
    rt = open_read(data_dir, passphrase_file, key_file, "audit log")
    try:
        name = require(rt.policies.access, role or "compliance", "audit", tenant=tenant)
        check_tenant(rt.store, rt.policies, tenant)
        bound = bound_tenants(rt.policies.access, name)
        scope = (tenant,) if tenant else tuple(bound) if bound else None
        entries = audit_entries(rt.store, events=events or None,
                                last=None if every else limit + 1, tenants=scope)
        chain = verify_chain(rt.store.db, rt.store.keys_db)
        signed = rt.store.db.execute("SELECT seq, key_id, signature FROM audit_checkpoints "
                                     "ORDER BY seq").fetchall() if as_json else []
    finally:
        rt.close()
    if not every and len(entries) > limit:  # on stderr: stdout may be the JSON export
        entries = entries[-limit:]
        shown = "entry" if limit == 1 else plural(limit, "entry", "entries")
        click.echo(f"Showing the last {shown}; older ones were left out (--all for "
                   "every one).", err=True)  # not 'held': a legal hold is another matter
    if as_json:
        emit_json([_with_proof(e, signed, chain.ok) for e in entries])
    else:
        if not entries:  # said, so that an empty answer is not read as a failed command
            what = " or ".join(events) if events else "audit"
            click.echo(f"(no {what} entries" + (f" about tenant {tenant}" if tenant else "")
                       + (" in this role's tenants" if scope and not tenant else "") + ")")
        else:  # headed, as threads list and search are (what the second name was: who)
            click.echo(f"{'seq':>6} {'time (UTC)':<19} {'event':<16} {'by':<12} details")
        for e in entries:
            details = json.dumps(e.details, sort_keys=True, ensure_ascii=False)  # not repr
            click.echo(f"{e.seq:>6} {datetime.fromtimestamp(e.ts, UTC):%Y-%m-%d %H:%M:%S} "
                       f"{e.event:<16} {e.actor:<12} {details}")
    if not chain.ok:  # what is listed may be forged: said last, where it is seen
        click.echo(f"Audit log BROKEN: {chain.problem}; these entries cannot be trusted "
                   "(see `semtrace audit verify`).", err=True)
        sys.exit(6)


def _limit_or_all(limit: int, every: bool) -> None:
    """--limit N with --all asks for two answers: refused rather than one silently
    dropped (an officer exporting 'the last 200' would get every entry)."""
    source = click.get_current_context().get_parameter_source("limit")
    if every and source is not click.core.ParameterSource.DEFAULT:
        raise InputError(f"--limit {limit} and --all contradict each other: --all lists "
                         "every entry; give one of them.")


def _with_proof(entry: Any, signed: list[tuple[int, str, str]], ok: bool) -> dict[str, Any]:
    """An entry as exported: with the signed checkpoint that covers it (the first at or
    after it: the chain links it to that signature) and whether it verified, i.e. the
    whole chain verified (`audit verify`) and a checkpoint covers it."""
    from appliance.records import jsonable

    i = bisect.bisect_left([seq for seq, _, _ in signed], entry.seq)
    cp = signed[i] if i < len(signed) else None
    return {**jsonable(entry), "verified": ok and cp is not None,
            "checkpoint": None if cp is None else {"seq": cp[0], "key_id": cp[1],
                                                   "signature": cp[2]}}


@audit.command("retention")
@data_dir_option
@credential_options
@role_option_as("compliance")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default=None,
              help="md (the default), json or html.")
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the report to this new file (never replaced) instead of stdout.")
@click.option("--since", default=None, help="Start of the reporting period (ISO-8601).")
def audit_retention(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                    role: str | None, fmt: str | None, as_json: bool, out: Path | None,
                    since: str | None) -> None:
    """Produce the signed retention report for compliance officers."""
    from appliance.report import issue_signed
    from appliance.roles import require

    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json and --format {fmt} ask for two formats; give one.")
    fmt = "json" if as_json else (fmt or "md")
    start = _as_of(since, "--since") if since else None
    if start is not None and start > datetime.now(UTC):  # a period yet to come: all zeros
        raise InputError(f"--since {since} is in the future; the report would cover nothing "
                         "(no report was issued).")
    if out is not None:  # before the report is issued: its issue is audited
        output_path(out)
        if out.exists():  # an earlier signed report is evidence: never replaced
            raise InputError(f"--out {out} already exists; it was not overwritten (an earlier "
                             "report is kept as it was signed): choose another file.")
    with _opened(data_dir, passphrase_file, key_file) as rt:
        require(rt.policies.access, role or "compliance", "audit",
                every_tenant="the retention report")
        issued = issue_signed(rt.store, rt.keyring, rt.policies.retention, fmt=fmt,
                              since=start)
    if out:
        try:
            with out.open("x") as fh:  # one made meanwhile is not replaced either
                fh.write(issued.text)
        except FileExistsError:
            raise InputError(f"--out {out} was made while the report was built; it was not "
                             "overwritten (the issue is in the audit log).") from None
        click.echo(f"Signed report written to {out}.", err=True)
    else:
        click.echo(issued.text, nl=False)
    if issued.problem:  # issued as evidence, but a script must not file it as a clean one
        click.echo(f"The signed report was issued, but {issued.problem} (see `semtrace "
                   "audit verify`).", err=True)
        sys.exit(6)


@audit.command("public-key")
@data_dir_option
@credential_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_public_key(data_dir: Path | None, passphrase_file: Path | None,
                     key_file: Path | None, as_json: bool) -> None:
    """Print the appliance's current audit-signing public key (base64, Ed25519). Without a
    data dir given, or a store of the caller's own, the installed service's (and says so)."""
    rt = open_read(data_dir, passphrase_file, key_file, "audit public-key")
    try:
        signer = rt.keyring.audit_signer()
        key_id, public_key = signer.key_id(), signer.public_key_b64()
    finally:
        rt.close()
    if as_json:
        emit_json({"key_id": key_id, "public_key": public_key, "algorithm": "Ed25519"})
    else:
        click.echo(public_key)


def _public_key(path: Path) -> str:
    """The Ed25519 public key in a file `audit public-key` wrote (plain, or its --json);
    anything else is refused in one sentence (it would read as 'signed by another key')."""
    import base64
    import binascii

    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        text = ""
    if text.startswith("{"):
        try:
            found = json.loads(text).get("public_key")
            text = found.strip() if isinstance(found, str) else ""
        except (ValueError, AttributeError):
            text = ""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InputError(f"--public-key {path} holds no Ed25519 public key; give the output "
                         "of `semtrace audit public-key` (plain or --json).")
    return text


@audit.command("check-report")
@click.argument("report", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Trusted public key file (from `audit public-key`).")
@data_dir_option
@credential_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_check_report(report: Path, public_key: Path | None, data_dir: Path | None,
                       passphrase_file: Path | None, key_file: Path | None,
                       as_json: bool) -> None:
    """Verify a report offline; exit 0 only when it is intact. Its signer is checked
    against --public-key or the keys of --data-dir; without either, integrity only (said)."""
    from appliance.keys import AuditSigner  # noqa: F401  (keeps key code in appliance.keys)
    from appliance.report import check_report

    _one_trust(public_key, data_dir, passphrase_file, key_file)
    trusted: dict[str, str] | None = None
    trusted_by: str | None = None
    if public_key is not None:
        import hashlib

        pub = _public_key(public_key)
        trusted = {hashlib.sha256(pub.encode()).hexdigest()[:16]: pub}
        trusted_by = f"the key in --public-key {public_key}"
    elif data_dir is not None:
        with _opened(data_dir, passphrase_file, key_file, only_reads=True) as rt:
            signer = rt.keyring.audit_signer()  # what AuditLog would add, nothing written
            trusted = {signer.key_id(): signer.public_key_b64(),
                       **dict(rt.store.db.execute("SELECT key_id, public_key FROM audit_keys"))}
        trusted_by = f"a key the data dir {data_dir} has signed with"
    try:
        text = report.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        text = ""
    result = check_report(text, trusted_keys=trusted,
                          **({"trusted_by": trusted_by} if trusted_by else {}))
    if as_json:  # a script must see, as a reader does, that no key vouched for the signer
        emit_json({**dataclasses.asdict(result), "trusted_key": trusted is not None,
                   "trusted_by": trusted_by})
    else:
        click.echo(result.reason)
    if not result.ok:
        sys.exit(6)


def _one_trust(public_key: Path | None, data_dir: Path | None, passphrase_file: Path | None,
               key_file: Path | None) -> None:
    """The signer is checked against one source: --public-key and --data-dir together, or a
    credential with no data dir to open, would leave the officer's choice unused unseen."""
    given = click.get_current_context().get_parameter_source("data_dir")
    if public_key is not None and given is click.core.ParameterSource.COMMANDLINE:
        raise InputError(f"--public-key {public_key} and --data-dir {data_dir} each name the "
                         "keys to trust; give one of them (nothing was checked).")
    credential = passphrase_file or key_file
    if credential is not None and data_dir is None and public_key is None:
        raise InputError(f"{'--passphrase-file' if passphrase_file else '--key-file'} opens a "
                         "data dir's keys, but no --data-dir was given: add --data-dir DIR, or "
                         "give --public-key KEY_FILE (nothing was checked).")


COMMANDS = [audit]
