"""The clock the service's scheduled retention runs go by: the host's, held against the
time that has passed since the service last read it.

Retention destroys keys by the date: a host clock stepped ahead while the service runs
(`date -s` mistyped, a bad time source, a VM resumed with a wrong clock) made the next
hourly run shred, for good, everything due by that wrong date. A run whose clock moved
more than `JUMP_LIMIT_S` beyond the time elapsed since the last accepted reading (the
boot-time clock, which counts suspended time and never steps) shreds nothing and says
so; it runs again once the clock is set right, or after a restart, which takes the
host's time as it is. A clock set back is taken: it shreds later, never earlier; and
once set right again it is not held (the reading kept is the latest the service went by,
never one a clock set back gave).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

log = logging.getLogger("semtrace.retention")
# A step ahead of more than a day is held (retention's periods are whole days).
JUMP_LIMIT_S = 86400.0


def _elapsed() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _host_now() -> datetime:
    from appliance import retention

    return retention.utc_now()


@dataclass(frozen=True)
class Reading:
    """The host's time now, and how many seconds it moved beyond the time elapsed since
    the last accepted reading (negative: set back)."""

    now: datetime
    ahead_s: float
    since: datetime

    @property
    def jumped(self) -> bool:
        return self.ahead_s > JUMP_LIMIT_S


class RetentionClock:
    """Reads the host's clock for retention; `accept` a reading to go by it from then."""

    def __init__(self, host: Callable[[], datetime] = _host_now,
                 elapsed: Callable[[], float] = _elapsed) -> None:
        self._host, self._elapsed = host, elapsed
        self._anchor = (host(), elapsed())

    def read(self) -> Reading:
        now, elapsed = self._host(), self._elapsed()
        wall0, elapsed0 = self._anchor
        ahead = (now - wall0).total_seconds() - (elapsed - elapsed0)
        return Reading(now, ahead, wall0)

    def accept(self, reading: Reading) -> None:
        """Go by `reading` from now on. A clock set back is not kept as the reference:
        else setting it right again (ahead of that reading by the days it was behind)
        would read as a step ahead and hold retention until a restart."""
        if reading.ahead_s >= 0:
            self._anchor = (reading.now, self._elapsed())


# The scheduled jobs (retention, daily releases, the shred sync): APScheduler sleeps on the
# event loop's clock until the next run by the host's clock, so a clock set back N days
# stopped every job for N days, even once set right (its sleep was already counted).
STEP_S = 60.0  # the host's clock moved this much more (or less) than the time elapsed
WATCH_S = 10.0  # how often the service looks


async def keep_jobs_on_time(scheduler: Any, *, every: float = WATCH_S,
                            wall: Callable[[], float] = time.time,
                            elapsed: Callable[[], float] = _elapsed) -> None:
    """Every `every` seconds (the event loop's clock, which no step moves), until
    cancelled: a step of the host's clock since the last look reschedules `scheduler`'s
    jobs from the clock as it is (logged `clock_step`); else the scheduler is woken, in
    case the clock was set back and right between two looks."""
    last = (wall(), elapsed())
    while True:
        await asyncio.sleep(every)
        now = (wall(), elapsed())
        step, last = (now[0] - last[0]) - (now[1] - last[1]), now
        if abs(step) > STEP_S:
            _reschedule(scheduler, step)
        else:
            scheduler.wakeup()


def _reschedule(scheduler: Any, step: float) -> None:
    from datetime import UTC

    from apscheduler.triggers.interval import IntervalTrigger

    for job in scheduler.get_jobs():
        trigger = job.trigger
        if isinstance(trigger, IntervalTrigger):  # it counts from a date of the old clock
            trigger = IntervalTrigger(seconds=trigger.interval.total_seconds(), timezone=UTC)
        scheduler.reschedule_job(job.id, trigger=trigger)
    size = abs(step)
    how = (f"{size / 86400:.0f} days" if size >= 2 * 86400 else
           f"{size / 3600:.0f} hours" if size >= 7200 else f"{size / 60:.0f} minutes")
    log.warning(f"the host's clock was set {'ahead' if step > 0 else 'back'} by {how}: the "
                "service's scheduled jobs (retention, daily releases) go by it from now on.",
                extra={"event": "clock_step", "step_s": round(step)})
