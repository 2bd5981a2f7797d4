"""`semtrace serve --check` (`service.py`): the configuration check, read-only, and what it
prints: the data dir and key, a stale --own, the policies' warnings, and what serve will do
at start."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from appliance.cli import emit_json
from appliance.keys import Credential


def check_config(directory: Path, cred: Credential, cluster: Any, warnings: list[str],
                 hold_warnings: list[str], plain_bus_warning: str) -> None:
    """Check the data dir (and this node's --own) with `cred` and print the result as JSON;
    log the policies' warnings as serve would. SemtraceError if serve would refuse to start."""
    from appliance.runtime import inspect_data_dir

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
    message = "Configuration OK." if not at_start else (
        f"Configuration OK; at start serve will {', '.join(at_start)}.")
    emit_json({"ok": True, "data_dir": str(directory), "message": message,
               "at_start": at_start,
               "warnings": [*warnings, *hold_warnings, *filter(None, [plain_bus_warning])]})
