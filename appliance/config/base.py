"""The base of every settings model: unknown keys refused, values frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A settings model: a key it does not know is an error; values cannot change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_crontab(key: str, value: str, example: str) -> str:
    """`value` if APScheduler reads it as a crontab expression; ValueError naming `key`."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger.from_crontab(value)
    except ValueError:
        raise ValueError(f"{key} {value!r} is not a crontab expression (five fields, e.g. "
                         f"\"{example}\").") from None
    return value
