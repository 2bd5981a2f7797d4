"""The default window of a query and the key a cached release is filed under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def release_key(kind: str, start: datetime, end: datetime, *extra: str) -> str:
    """What a cached release is filed under: its kind, window and any filter."""
    return "|".join((kind, start.isoformat(), end.isoformat(), *extra))


DEFAULT_DAYS = 7


def default_window(now: datetime, days: int = DEFAULT_DAYS) -> tuple[datetime, datetime]:
    """The `days` UTC days ending tonight: every default query of a day shares its release."""
    tonight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    end = tonight + timedelta(days=1)
    return end - timedelta(days=days), end
