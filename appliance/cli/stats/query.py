"""`semtrace stats ...`'s query: its window, its common options, and where it runs (the
store opened with the master key, or the service's query socket)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import (
    credential_options,
    data_dir_option,
    emit_json,
    not_blank,
    open_dir,
    open_read,
    role_option,
)
from appliance.cli.sockets import ask, query_socket, query_socket_option
from appliance.cli.stats.text import _print
from appliance.constants import DEFAULT_DAYS
from appliance.errors import InputError

if TYPE_CHECKING:
    from appliance.reads import StatsQuery


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")  # a date alone, no time
DAY = timedelta(days=1)


def _when(value: str | None, default: datetime, name: str, now: datetime | None = None
          ) -> datetime:
    """An option's time as `threads list` and `search` read theirs (the TUI's parser): an
    ISO date or time (UTC unless it says otherwise) or an age before now, 30m, 24h, 7d; a
    date alone is its midnight (the window is half-open)."""
    from appliance.tui.filters import FilterError, parse_time

    if value is None:
        return default
    try:
        return parse_time(value, now or datetime.now(UTC)).astimezone(UTC)
    except FilterError:
        raise InputError(f"--{name} must be an ISO-8601 date or time, e.g. 2024-03-04 or "
                         "2024-03-04T09:00:00Z, or an age such as 30m, 24h, 7d.") from None


def _window(since: str | None, until: str | None) -> tuple[datetime, datetime]:
    from appliance import analytics

    now = datetime.now(UTC)  # one clock for both: `--from 8d --to 1d` is 7 days
    end = _when(until, analytics.default_window(now)[1], "to", now)
    start = _when(since, end - timedelta(days=DEFAULT_DAYS), "from", now)
    if start >= end and until is None:  # the end is the default: "earlier than --to" named
        # an option the user never gave (a --from in the future, as `search --since` says it)
        raise InputError(f"--from {since} is in the future ({start:%Y-%m-%d %H:%M} UTC): "
                         "there is nothing to count yet; nothing was spent.")
    if start >= end and until is not None and _DAY.fullmatch(until) and end.year < 9999 \
            and start < end + DAY:
        # `--from 2026-03-02 --to 2026-03-02`, asked as that day: `--to` is exclusive
        raise InputError(f"--from must be earlier than --to: a date alone is its midnight, "
                         f"so --to {until} ends as the day before it closes; to take in "
                         f"{until}, give --to {end + DAY:%Y-%m-%d}.")
    if start >= end:
        raise InputError("--from must be earlier than --to.")
    return start, end


def stats_command(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Common options; runs the query (on the store, or over the query socket) and prints it.

    The decorated function gets the window and its own options and returns the extra
    fields of the StatsQuery (topic, bucket, baseline).
    """

    def decorate(fn: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
        @wraps(fn)
        def run(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                role: str | None, tenant: str, user: str | None, since: str | None,
                until: str | None, socket_path: Path | None, as_json: bool,
                **kw: Any) -> None:
            from appliance.reads import StatsQuery
            from appliance.reads_json import report_from_json

            not_blank(tenant=tenant, user=user)
            start, end = _window(since, until)
            q = StatsQuery(kind=kind, tenant=tenant, user=user, start=start, end=end,
                           **fn(start, end, **kw))
            sock = query_socket(socket_path, data_dir, passphrase_file, key_file)
            data = (_over_socket(sock, q, role) if sock is not None else
                    _direct(q, data_dir, passphrase_file, key_file, role))
            if as_json:
                emit_json(data)
            else:
                _print(report_from_json(data), data["currency"], user=user)

        cmd: Callable[..., Any] = run
        for option in (
            click.option("--json", "as_json", is_flag=True, help="Print JSON."),
            query_socket_option,
            click.option("--to", "until", default=None,
                         help="Window end, not included (default the end of today, UTC): "
                              "an ISO date or time, or an age ago (1d); a date alone is its "
                              "midnight, so --to 2024-03-05 ends as "
                              "the 4th closes (`threads list --until` takes in its date)."),
            click.option("--from", "since", default=None,
                         help=f"Window start (default {DEFAULT_DAYS} days before --to): an "
                              "ISO date or time, or an age ago: 30m, 24h, 7d (as `threads "
                              "list --since`)."),
            click.option("--user", default=None,
                         help="One user's own view (exact, costs no privacy budget): "
                              "the user id as the gateway sends it, or the pseudonym "
                              "`threads list` prints (or its start, as the TUI shows it)."),
            click.option("--tenant", required=True, help="The tenant (budgets are per tenant)."),
            role_option, credential_options, data_dir_option,
        ):
            cmd = option(cmd)
        return cmd

    return decorate


def _direct(q: StatsQuery, data_dir: Path | None, passphrase_file: Path | None,
            key_file: Path | None, role: str | None) -> dict[str, Any]:
    """The report's JSON, from the store opened with the master key (operators). One user's
    view only reads: on a service host, the service's store, as audit verify (check_target);
    a cross-user figure spends privacy budget, so root's empty default folder is refused."""
    from appliance.reads import reads_threads, run_stats, stats_permission
    from appliance.reads_json import stats_json
    from appliance.roles import require

    rt = (open_read(data_dir, passphrase_file, key_file, f"stats {q.kind} --user")
          if q.user is not None else open_dir(data_dir, passphrase_file, key_file))
    try:
        name = require(rt.policies.access, role, stats_permission(q.user), tenant=q.tenant)
        return stats_json(run_stats(q, rt.store, rt.keyring, rt.policies,
                                    reads_threads=reads_threads(rt.policies, name, q.tenant)),
                          rt.policies.pricing.currency)
    finally:
        rt.close()


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _over_socket(sock: Path, q: StatsQuery, role: str | None) -> dict[str, Any]:
    """The report's JSON, from the service's query socket (readers, no passphrase)."""
    req: dict[str, Any] = {"op": "stats", "role": role, "kind": q.kind, "tenant": q.tenant,
                           "user": q.user, "from": _iso(q.start), "to": _iso(q.end),
                           "topic": q.topic, "bucket": q.bucket}
    if q.baseline is not None:
        req["baseline_from"], req["baseline_to"] = map(_iso, q.baseline)
    report: dict[str, Any] = ask(sock, req)["report"]
    return report

