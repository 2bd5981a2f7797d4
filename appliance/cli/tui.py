"""`semtrace tui`: the terminal UI for inspecting threads (read-only)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from appliance.cli import (
    FiniteFloatRange,
    credential_options,
    data_dir_option,
    not_blank,
    open_dir,
    role_option,
)
from appliance.cli.sockets import query_socket, query_socket_option
from appliance.errors import SemtraceError


@click.command()
@data_dir_option
@credential_options
@role_option
@click.option("--tenant", default=None, help="Show only this tenant.")
@click.option("--refresh", type=FiniteFloatRange(0.5, 3600), default=5.0, show_default=True,
              help="Seconds between live refreshes.")
@query_socket_option
def tui(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
        role: str | None, tenant: str | None, refresh: float, socket_path: Path | None) -> None:
    """Inspect threads, search prompts, topics and retention in the terminal (read-only).

    With a passphrase or key it opens the store (operators); otherwise it reads through
    the running service's query socket under your OS identity's role.
    """
    not_blank(tenant=tenant)
    sock = query_socket(socket_path, data_dir, passphrase_file, key_file)
    if sock is not None:
        from appliance.tui.app import make_remote_app

        app = make_remote_app(sock, role=role, tenant=tenant, refresh_seconds=refresh)
        _need_terminal()
        app.run()
        _exit_as(app.return_code)
        return
    rt = open_dir(data_dir, passphrase_file, key_file, readonly=True)
    try:
        from appliance.tui.app import make_app

        app = make_app(rt, role=role, tenant=tenant, refresh_seconds=refresh)
        _need_terminal()
        app.run()
    finally:
        rt.close()
    _exit_as(app.return_code)


def _exit_as(code: int | None) -> None:
    """An app stopped by an unexpected error exits 1 (its report is on the terminal); it
    exited 0, as if the user had quit."""
    if code:
        sys.exit(code)


def _need_terminal() -> None:
    """Refuse to draw the UI into a file or pipe (it would hang there, writing escapes)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise SemtraceError("semtrace tui needs a terminal; to script, use `semtrace threads "
                            "list --json`, `search --json` or `stats ... --json`.")


COMMANDS = [tui]
