"""`semtrace send`: stdin's JSON-lines requests to the service, one reply printed per line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli import data_dir_option
from appliance.cli.service.daemon import SOCKET_NAME
from appliance.cli.sockets import ingest_socket
from appliance.errors import InputError, SemtraceError
from appliance.words import plural


def _requests(lines: Any, run: str | None = None, skipped: list[int] | None = None,
              sent: list[int] | None = None) -> Any:
    """Request objects of stdin's lines; a line without `request_id` (or `op`), or with a
    null one, gets `send-<run>-N` (`ingest`),
    unique to this invocation, so a second file's line N is not taken for a duplicate.
    Lines that are not a JSON object (or not UTF-8) are named by number only and their
    numbers added to `skipped`; the numbers of the lines yielded go to `sent`, in order."""
    import secrets

    run = run or secrets.token_hex(4)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
            why = "it is not a JSON object"
        except UnicodeDecodeError:
            obj, why = None, "it is not valid UTF-8"
        except ValueError:
            obj, why = None, "it is not a JSON object"
        if not isinstance(obj, dict):
            click.echo(f"semtrace: line {lineno} skipped: {why}.", err=True)
            if skipped is not None:
                skipped.append(lineno)
            continue
        obj.setdefault("v", 1)  # "v": null stays bad_version, as the service says
        for key, default in (("op", "ingest"), ("request_id", f"send-{run}-{lineno}")):
            if obj.get(key) is None:  # null is absent, as the service takes it: a null
                obj[key] = default  # op was unknown_op, a null request_id bad_request
        if sent is not None:
            sent.append(lineno)
        yield obj


def _too_large(lineno: int) -> SemtraceError:
    """A line over the service's frame limit: the service replied and closed the connection
    without reading on, so that line and every later one went unsent (it said only 'The
    service closed the connection.')."""
    return SemtraceError(
        f"Line {lineno} is larger than the service's frame limit (max_frame_bytes in its "
        "service.toml): the service refused it and closed the connection, so the lines after "
        "it were not sent; cut that prompt (docs/protocol.md, Over-long prompts) or raise "
        f"max_frame_bytes, then send lines {lineno} on again.")


@click.command()
@data_dir_option
@click.option("--socket", "socket_path", type=click.Path(path_type=Path, readable=False),
              default=None,
              help="The service's socket (default DATA_DIR/semtrace.sock; on an installed "
              "service's host, with no data dir of your own, the service's).")
@click.option("--window", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Requests in flight at once.")
@click.option("--json", "as_json", is_flag=True, help="Replies are JSON lines (always).")
def send(data_dir: Path | None, socket_path: Path | None, window: int, as_json: bool) -> None:
    """Stream JSON-lines requests from stdin to the service; print one reply per line."""
    from appliance.client import Client, connection_refusal

    path = ingest_socket(socket_path, data_dir, SOCKET_NAME)
    failed = sent = 0
    skipped: list[int] = []
    lines: list[int] = []  # the line of each request sent, in order: replies come so
    with Client(path) as client:
        for reply in client.stream(_requests(sys.stdin.buffer, skipped=skipped, sent=lines),
                                   window=window):
            refusal = connection_refusal(reply)  # every request sent here has an id
            if refusal is not None:
                raise refusal
            click.echo(json.dumps(reply))
            if (reply.get("error") or {}).get("code") == "frame_too_large":
                raise _too_large(lines[sent])
            sent += 1
            failed += 0 if reply.get("ok") else 1
    if not sent and not skipped:
        raise InputError("stdin held no requests (it is empty or blank).")
    if failed:
        click.echo(f"semtrace: {plural(failed, 'request')} "
                   f"{'was' if failed == 1 else 'were'} refused.", err=True)
    if skipped:
        click.echo(f"semtrace: {plural(len(skipped), 'line')} "
                   f"{'was' if len(skipped) == 1 else 'were'} not sent.", err=True)
    if failed or skipped:
        sys.exit(1)
