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

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

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
