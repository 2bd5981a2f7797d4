"""Which data dir the checks (`doctor`, `serve --check`, `audit verify`) and the other
commands that only read the store check, and the sentence saying why.

`sudo semtrace doctor` on a healthy service host looked in root's own default folder,
found nothing and exited 1. The checks only read, and are meant to check the service: with
no data dir given, no store of the caller's own and install.sh's record in the venv, they
check the service's data dir and say so. The commands that open the store read-only with
the master key (`audit log`, `audit public-key`, `retention run --dry-run`, `thresholds`,
`threads list|show`, `search`, `stats --user`: `read_target`) choose the same way.
Commands that change data keep refusing instead (appliance.runtime.require_data_dir names
the service's folder to give).

The sentence fits the command: the checks say what they checked ("Checked the data dir
..."), the commands that only read say what they read ("Reading the data dir ...", on
stderr before their output).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import InputError

GIVEN = "option"
ENVIRONMENT = "environment"
USER_DEFAULT = "user default"
SERVICE = "service"

CHECKED = "Checked"  # doctor, serve --check, audit verify: the report of a check
READING = "Reading"  # the commands that only read the store, said before what they print


@dataclass(frozen=True)
class Target:
    """The data dir doctor checks, where it came from (one of the names above), why (a
    sentence for the report) and what to say if it does not exist."""

    path: Path
    source: str
    why: str
    missing: str


def choose(given: Path | None, from_env: bool, default: Path, default_has_store: bool,
           service: Path | None, record: Path, service_fallback: Path, *,
           verb: str = CHECKED) -> Target:
    """The decision, apart from I/O: a data dir given (option or $SEMTRACE_DATA_DIR) wins;
    then the caller's own store; then the installed service's (install.sh's record);
    else the caller's default, as before. `verb` opens the why: CHECKED or READING."""
    if given is not None:
        how = "$SEMTRACE_DATA_DIR" if from_env else "--data-dir"
        return Target(given, ENVIRONMENT if from_env else GIVEN,
                      f"{verb} the data dir {given}, given by {how}.",
                      f"The data dir {given} does not exist.")
    if service is not None and not default_has_store and service != default:
        return Target(
            service, SERVICE,
            f"{verb} the data dir {service}, this host's service's (install.sh's record "
            f"{record}): no --data-dir or $SEMTRACE_DATA_DIR was given and this user has no "
            f"store in {default}.",
            f"The data dir {service} of this host's service (install.sh's record {record}) "
            "does not exist.")
    # the service's folder as this install's only where install.sh recorded one: a source
    # checkout or a --no-service install has none (it said "this install's service's is
    # /var/lib/semtrace" there too)
    where = (f"this install's service's is {service}" if service is not None else
             f"a service install, by install.sh, keeps its data in {service_fallback}")
    return Target(
        default, USER_DEFAULT,
        f"{verb} the data dir {default}, the default of this user: no --data-dir or "
        "$SEMTRACE_DATA_DIR was given.",
        f"The data dir {default} does not exist (the default of this user: no --data-dir "
        f"or $SEMTRACE_DATA_DIR was given; {where}).")


def unreadable(path: Path, command: str) -> str:
    """The sentence for a data dir this user may not look into."""
    return (f"The data dir {path} cannot be read by this user (uid {os.getuid()}): run "
            f"{command} as root or as its owner.")


def readable(path: Path) -> bool:
    """Whether this user may list `path` (True for one that is not a folder: other checks
    name that)."""
    return not path.is_dir() or os.access(path, os.R_OK | os.X_OK)


def target_for(data_dir: Path | None, *, verb: str = CHECKED) -> Target:
    """`check_target` for the running click command's --data-dir: given, from
    $SEMTRACE_DATA_DIR (click says which) or not at all."""
    import click
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source("data_dir")
    return check_target(data_dir, from_env=source == ParameterSource.ENVIRONMENT, verb=verb)


def require_target(target: Target, command: str) -> None:
    """Refuse (exit 2), in doctor's words, a service's data dir that is missing or that this
    user cannot read; other data dirs are left to `require_data_dir`, whose sentences they
    had before."""
    if target.source != SERVICE:
        return
    try:
        missing = not target.path.exists()
        closed = not missing and not readable(target.path)
    except OSError:  # a parent folder closed to this user
        missing, closed = False, True
    if missing:
        raise InputError(target.missing)
    if closed:
        raise InputError(unreadable(target.path, command))


def read_target(data_dir: Path | None, command: str) -> Target:
    """The data dir a command that only reads the store opens, by the checks' rule
    (`target_for`, refused as `require_target` refuses); the service's is said on stderr
    first ("Reading the data dir ...": stdout may carry --json), since it is not the folder
    the caller may think. `command` as the caller typed it, for the unreadable sentence."""
    import click

    target = target_for(data_dir, verb=READING)
    require_target(target, command)
    if target.source == SERVICE:
        click.echo(f"semtrace: {target.why}", err=True)
    return target


def check_target(given: Path | None, from_env: bool, *, verb: str = CHECKED) -> Target:
    """`choose`, with this user's default, its store and the venv's install record read."""
    from appliance.config import paths
    from appliance.runtime import default_data_dir, is_initialised

    default = default_data_dir()
    try:
        has_store = is_initialised(default)
    except OSError:  # a default this user may not look into is no store of theirs
        has_store = False
    return choose(given, from_env, default, has_store, paths.installed_service().get(
        "data_dir"), paths.SERVICE_RECORD, paths.SERVICE_DATA_DIR, verb=verb)
