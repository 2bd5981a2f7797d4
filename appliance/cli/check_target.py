"""Which data dir `doctor` checks, and the sentence saying why.

`sudo semtrace doctor` on a healthy service host looked in root's own default folder,
found nothing and exited 1. doctor only reads, and is meant to check the service: with no
data dir given, no store of the caller's own and install.sh's record in the venv, it checks
the service's data dir and says so. Commands that change data keep refusing instead
(appliance.runtime.require_data_dir names the service's folder to give).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GIVEN = "option"
ENVIRONMENT = "environment"
USER_DEFAULT = "user default"
SERVICE = "service"


@dataclass(frozen=True)
class Target:
    """The data dir doctor checks, where it came from (one of the names above), why (a
    sentence for the report) and what to say if it does not exist."""

    path: Path
    source: str
    why: str
    missing: str


def choose(given: Path | None, from_env: bool, default: Path, default_has_store: bool,
           service: Path | None, record: Path, service_fallback: Path) -> Target:
    """The decision, apart from I/O: a data dir given (option or $SEMTRACE_DATA_DIR) wins;
    then the caller's own store; then the installed service's (install.sh's record);
    else the caller's default, as before."""
    if given is not None:
        how = "$SEMTRACE_DATA_DIR" if from_env else "--data-dir"
        return Target(given, ENVIRONMENT if from_env else GIVEN,
                      f"Checked the data dir {given}, given by {how}.",
                      f"The data dir {given} does not exist.")
    if service is not None and not default_has_store and service != default:
        return Target(
            service, SERVICE,
            f"Checked the data dir {service}, this host's service's (install.sh's record "
            f"{record}): no --data-dir or $SEMTRACE_DATA_DIR was given and this user has no "
            f"store in {default}.",
            f"The data dir {service} of this host's service (install.sh's record {record}) "
            "does not exist.")
    return Target(
        default, USER_DEFAULT,
        f"Checked the data dir {default}, the default of this user: no --data-dir or "
        "$SEMTRACE_DATA_DIR was given.",
        f"The data dir {default} does not exist (the default of this user: no --data-dir "
        "or $SEMTRACE_DATA_DIR was given; this install's service's is "
        f"{service or service_fallback}).")


def check_target(given: Path | None, from_env: bool) -> Target:
    """`choose`, with this user's default, its store and the venv's install record read."""
    from appliance.config import paths
    from appliance.runtime import default_data_dir, is_initialised

    default = default_data_dir()
    try:
        has_store = is_initialised(default)
    except OSError:  # a default this user may not look into is no store of theirs
        has_store = False
    return choose(given, from_env, default, has_store, paths.installed_service().get(
        "data_dir"), paths.SERVICE_RECORD, paths.SERVICE_DATA_DIR)
