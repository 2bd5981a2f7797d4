"""`semtrace serve --check` (`daemon.py`): the configuration check, read-only, and what it
prints: the data dir and key, a stale --own, the policies' warnings, and what serve will do
at start."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from appliance.cli import emit_json
from appliance.cli.check_target import Target

if TYPE_CHECKING:
    from appliance.keys import Credential


def check_config(target: Target, cred: Credential, cluster: Any, warnings: list[str],
                 hold_warnings: list[str], plain_bus_warning: str, *,
                 as_json: bool = False) -> None:
    """Check the data dir `target` names (and this node's --own) with `cred` and print the
    result (as JSON with `as_json`), saying which data dir and why; log the policies'
    warnings as serve would. SemtraceError if serve would refuse to start."""
    import logging

    from appliance.data_dir_access import loose_modes, low_space
    from appliance.runtime import inspect_data_dir

    directory = target.path
    # read-only: a check (of a new version, say) never migrates the store, which an
    # older version would then refuse; a running service does not stop it
    found = inspect_data_dir(directory, cred)
    from appliance.cluster.given_away import check_serve  # a stale --own; an import

    at_start = found.at_start + check_serve(directory, found.keyring, cluster.owned()
                                            if cluster.url else None, cluster.partitions)
    for warning in warnings:
        logging.getLogger("semtrace.redact").warning(
            "%s", warning, extra={"event": "redaction_policy"})
    for warning in hold_warnings:
        logging.getLogger("semtrace.retention").warning(
            "%s", warning, extra={"event": "retention_policy"})
    if plain_bus_warning:
        logging.getLogger("semtrace.cluster").warning("%s", plain_bus_warning, extra={
            "event": "plain_bus" if cluster.security.plain_bus else "accept_plain"})
    for loose in (modes := loose_modes(directory)):  # serve starts; others may read keys
        logging.getLogger("semtrace.service").warning(
            "%s", loose, extra={"event": "data_dir_permissions"})
    for short in (space := low_space(directory)):
        logging.getLogger("semtrace.service").warning(
            "%s", short, extra={"event": "low_disk_space"})
    message = "Configuration OK." if not at_start else (
        f"Configuration OK; at start serve will {', '.join(at_start)}.")
    for behind in found.warnings:  # serve starts; what it lacks is said
        logging.getLogger("semtrace.store").warning(
            "%s", behind, extra={"event": "store_behind_keys"})
    said = [*warnings, *hold_warnings, *filter(None, [plain_bus_warning]), *modes,
            *found.warnings, *space]
    if as_json:
        emit_json({"ok": True, "data_dir": str(directory), "data_dir_source": target.source,
                   "data_dir_why": target.why, "message": message, "at_start": at_start,
                   "warnings": said})
        return
    click.echo(target.why)
    click.echo(message)
    if said:
        click.echo("Warnings:")
    for warning in said:
        click.echo(f"  - {warning}")
