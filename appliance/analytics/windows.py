"""The default window of a query and the key a cached release is filed under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from appliance import constants
from appliance.errors import InputError


def release_key(kind: str, start: datetime, end: datetime, *extra: str) -> str:
    """What a cached release is filed under: its kind, window and any filter."""
    return "|".join((kind, start.isoformat(), end.isoformat(), *extra))


DEFAULT_DAYS = constants.DEFAULT_DAYS


def default_window(now: datetime, days: int = DEFAULT_DAYS) -> tuple[datetime, datetime]:
    """The `days` UTC days ending tonight: every default query of a day shares its release."""
    tonight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = tonight + timedelta(days=1)
    return end - timedelta(days=days), end


def window_before(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The window as long as [start, end) just before it (an incident's default baseline),
    or one sentence when it would begin before the calendar's first day."""
    try:
        return start - (end - start), start
    except OverflowError:
        raise InputError("The window is too long to be compared with as long a window before "
                         "it; name the baseline or shorten the window; nothing was spent."
                         ) from None
