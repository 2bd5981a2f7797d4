"""Parse the filter line of the threads and search screens: `key:value` words.

`tenant:acme user:u_3fa9 since:7d until:2026-03-02 topic:tp_12 model:gpt-4o
position:topic_shift`; `user:` also takes a user id as the gateway sends it. Times are
ISO dates or datetimes (UTC) or an age such as `30m`, `24h`, `7d` before now. `until:` is
the end of a half-open interval: `until:2026-03-02` keeps the threads that started on or
before that day (before the midnight after it), `until:2026-03-02T09:00` those that started
before 09:00. Pure: the clock is passed in.
"""

from __future__ import annotations

import contextlib
import re
import shlex
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from appliance.records import POSITIONS, from_iso

KEYS = ("tenant", "user", "since", "until", "topic", "model", "position")
_AGE = re.compile(r"^(\d+)([mhdw])$")
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_PSEUDONYM = re.compile(r"u_[0-9a-f]{0,20}")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class FilterError(ValueError):
    """A filter line that cannot be understood (the message is one sentence)."""


@dataclass(frozen=True)
class Filters:
    """The filters a user typed; `since`/`until` are resolved to UTC datetimes.

    `until` is exclusive: a thread matches when it started before it (`until:DAY` is the
    midnight after DAY), so a window [since, until) loses no last second.
    """

    tenant: str | None = None
    user: str | None = None  # a pseudonym or its start, else a user id as the gateway sends it
    since: datetime | None = None
    until: datetime | None = None
    topic: str | None = None
    model: str | None = None
    position: str | None = None

    def describe(self) -> str:
        """The active filters as `key:value` words (empty when none)."""
        words = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = _shown(value, until=f.name == "until")
            if value is not None:
                words.append(f"{f.name}:{value}")
        return " ".join(words)


def _midnight(ts: datetime) -> bool:
    return (ts.hour, ts.minute, ts.second, ts.microsecond) == (0, 0, 0, 0)


def _shown(ts: datetime, *, until: bool) -> str:
    """A resolved time as a filter word reads it back: a day for a midnight (`until:` the
    day before the midnight it ends at), else the minute."""
    if not _midnight(ts):
        return ts.strftime("%Y-%m-%dT%H:%M")
    return f"{ts - timedelta(days=1) if until else ts:%Y-%m-%d}"


def is_pseudonym(user: str) -> bool:
    """Whether a `user:` value is a pseudonym or its start (`u_3fa9`); anything else is a
    user id as the gateway sends it, which the reader turns into its tenant's pseudonym."""
    return _PSEUDONYM.fullmatch(user) is not None


def parse_time(value: str, now: datetime, *, end: bool = False) -> datetime:
    """An ISO date/datetime (UTC unless it says otherwise; `Z` or `z`) or an age like `7d`.

    `end`: the time is the exclusive end of an interval (`until:`), so a date alone is the
    midnight after it: `until:2026-03-02` takes in the whole of that day.
    """
    m = _AGE.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        ts = from_iso(value)  # `Z` or `z`, as RFC 3339 allows
    except ValueError:
        raise FilterError(f"'{value}' is not a time: use 2026-03-02, 2026-03-02T09:00 or an "
                          "age like 30m, 24h, 7d.") from None
    if end and _DAY.fullmatch(value):
        ts += timedelta(days=1)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def split_words(text: str, *, keys: tuple[str, ...] = KEYS, quoted: bool = False
                ) -> tuple[dict[str, str], list[str]]:
    """`key:value` words with known keys, and the remaining free words, in order.

    `quoted`: a value in quotes may hold spaces (`topic:"vpn guide"`, a label's phrase);
    a line whose quotes do not pair is split at spaces as it is.
    """
    found: dict[str, str] = {}
    free: list[str] = []
    words = text.split()
    if quoted:
        with contextlib.suppress(ValueError):
            words = shlex.split(text)
    for word in words:
        key, sep, value = word.partition(":")
        if sep and key.lower() in keys:
            if not value:
                raise FilterError(f"'{word}' has no value after the colon.")
            found[key.lower()] = value
        else:
            free.append(word)
    return found, free


def to_filters(found: dict[str, str], now: datetime) -> Filters:
    """Validated filters from `key: value` pairs."""
    position = found.get("position")
    if position is not None:
        position = position.lower().replace("-", "_")
        if position not in POSITIONS:
            raise FilterError(f"position '{found['position']}' is unknown; use one of "
                              f"{', '.join(POSITIONS)}.")
    since = parse_time(found["since"], now) if "since" in found else None
    until = parse_time(found["until"], now, end=True) if "until" in found else None
    # no order between them: since: filters the last turn, until: the start, so since: later
    # than until: finds the threads still going on across that span (as threads list)
    return Filters(tenant=found.get("tenant"), user=found.get("user"), since=since, until=until,
                   topic=found.get("topic"), model=found.get("model"), position=position)


def parse_filters(text: str, now: datetime) -> Filters:
    """The threads screen's filter line; every word must be `key:value`."""
    found, free = split_words(text, quoted=True)
    if free:
        raise FilterError(f"'{free[0]}' is not a filter: use key:value with a key among "
                          f"{', '.join(KEYS)}.")
    return to_filters(found, now)


def parse_search(text: str, now: datetime) -> tuple[str, Filters]:
    """The search line: free words are the query; `tenant:`, `user:`, `since:` narrow it."""
    found, free = split_words(text, keys=("tenant", "user", "since"))
    return " ".join(free), to_filters(found, now)
