"""The service's sockets as the commands reach them: which query socket a read command asks
(or None: open the store directly), which ingest socket `send` writes to, and one query
asked over the query socket, its refusal as one sentence."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance.errors import InputError, SemtraceError

QUERY_SOCKET_ENV = "SEMTRACE_QUERY_SOCKET"
QUERY_SOCKET_NAME = "query.sock"


def query_socket_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--socket", "socket_path", type=click.Path(path_type=Path, readable=False),
        envvar=QUERY_SOCKET_ENV,
        default=None, help="Ask the running service's query socket (default $SEMTRACE_QUERY_"
        "SOCKET; DATA_DIR/query.sock when no passphrase or key is given, and on an installed "
        "service's host, with no data dir of your own, the service's) under your OS "
        "identity's role, without the passphrase.")(fn)


def _credential_given(passphrase_file: Path | None, key_file: Path | None) -> bool:
    from appliance.keys import KEY_FILE_ENV, PASSPHRASE_ENV, SYSTEMD_CREDENTIAL

    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    return bool(passphrase_file or key_file or os.environ.get(KEY_FILE_ENV)
                or os.environ.get(PASSPHRASE_ENV)
                or (cred_dir and (Path(cred_dir) / SYSTEMD_CREDENTIAL).is_file()))


def query_socket(socket_path: Path | None, data_dir: Path | None,
                 passphrase_file: Path | None, key_file: Path | None) -> Path | None:
    """The query socket a read command asks, or None to open the store directly.

    `--socket` (or $SEMTRACE_QUERY_SOCKET) wins; without it, a reader that gives no
    passphrase or key asks the data dir's query socket when the service has one.
    """
    from appliance.runtime import default_data_dir

    if socket_path is not None:
        return socket_path
    if _credential_given(passphrase_file, key_file):
        return None
    directory = data_dir or default_data_dir()
    sock = directory / QUERY_SOCKET_NAME
    if sock.is_socket():
        return sock
    from appliance.runtime import is_initialised

    if data_dir is None and not is_initialised(directory):
        served = _service_query_socket(directory)
        if served is not None:
            return served
    if is_initialised(directory):  # a reader whose service is down: say that, not only
        # "No passphrase given" (readers never had one)
        if not os.isatty(0):
            raise SemtraceError(
                f"No service is listening on {sock} and no passphrase or key was given: "
                "start `semtrace serve` (readers ask its query socket), or open the store "
                "with --passphrase-file or --key-file.")
        click.echo(f"No service is listening on {sock}: opening the store directly.",
                   err=True)
    return None


def _service_query_socket(default: Path) -> Path | None:
    """On a host where install.sh installed the service (its record in this venv), the
    service's query socket: a reader with no data dir of their own (`semtrace threads list`)
    was told this user's default folder did not exist and to run `semtrace init`."""
    from appliance.config.paths import SERVICE_QUERY_SOCKET, installed_service

    record = installed_service()
    if "data_dir" not in record:
        return None
    sock = record.get("query_socket", SERVICE_QUERY_SOCKET)
    if sock.is_socket():
        return sock
    raise SemtraceError(
        f"No service is listening on {sock}, this host's service's query socket, and this "
        f"user has no data dir of their own ({default}): start the service (systemctl start "
        "semtrace), or open a store with --data-dir and --passphrase-file.")


def ingest_socket(socket_path: Path | None, data_dir: Path | None, name: str) -> Path:
    """The ingest socket `send` uses: --socket, else the data dir's; on a host where
    install.sh installed the service, with no data dir given and none of this user's own,
    the service's (`semtrace send` said no service listened in ~/.local/share/semtrace).
    Light (`appliance.data_dir`): only the installed service's record loads the config."""
    from appliance.data_dir import default_data_dir, is_initialised

    if socket_path is not None:
        return socket_path
    directory = data_dir or default_data_dir()
    if data_dir is None and not (directory / name).is_socket():
        from appliance.config.paths import SERVICE_SOCKET, installed_service

        record = installed_service()
        if "data_dir" in record and not is_initialised(directory):
            return record.get("socket", SERVICE_SOCKET)
    return directory / name


def ask(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    """One query over the service's query socket; its refusal as one sentence."""
    from appliance.client import Client
    from appliance.errors import AccessDenied

    with Client(path, timeout=600) as client:  # a search may build a large index
        reply = client.request({"v": 1, **{k: v for k, v in request.items() if v is not None}})
    if not reply.get("ok"):
        err = reply.get("error") or {}
        if err.get("code") == "forbidden":
            raise AccessDenied(str(err.get("message")))
        message = str(err.get("message") or "The service refused the query.")
        if err.get("reason") == "budget_spent":  # exit 5, as the direct command
            from appliance.privacy import BudgetSpent

            raise BudgetSpent(message)
        if err.get("code") in ("bad_request", "not_found"):
            raise InputError(message)
        raise SemtraceError(message)
    return reply
