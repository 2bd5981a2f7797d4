"""The host's clock set back (a wrong time source, a mistyped `date -s`) no longer stops
the service's scheduled jobs. APScheduler sleeps on the event loop's clock until the next
run by the host's clock: set back ten days, it slept ten days, and setting the clock right
did not wake it. Retention, the daily releases and the 5 s shred sync (an erased user's
vectors forgotten without a prompt) all stopped. The service now reschedules its jobs
when the clock steps (`keep_jobs_on_time`).

A real AsyncIOScheduler and the trigger the shred sync uses; the host's clock is stepped
where APScheduler reads it (its modules' `datetime`) and where the watch reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

WITHIN = 60.0  # a bound on a wait for a run, never reached when things work


def test_jobs_go_on_after_the_clock_is_set_back_and_set_right(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import apscheduler.executors.base
    import apscheduler.schedulers.base
    import apscheduler.triggers.interval
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    from appliance.service.clock import keep_jobs_on_time

    step = [timedelta(0)]

    class Host(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + step[0]

    for module in (apscheduler.schedulers.base, apscheduler.triggers.interval,
                   apscheduler.executors.base):
        monkeypatch.setattr(module, "datetime", Host)

    async def run() -> None:
        ran = asyncio.Event()

        async def job() -> None:
            ran.set()

        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(job, IntervalTrigger(seconds=0.2), id="forget", coalesce=True,
                          max_instances=1)
        scheduler.start()
        watch = asyncio.ensure_future(keep_jobs_on_time(
            scheduler, every=0.1, wall=lambda: time.time() + step[0].total_seconds()))
        try:
            for clock in (timedelta(0), timedelta(days=-10), timedelta(0)):
                step[0] = clock
                ran.clear()
                await asyncio.wait_for(ran.wait(), WITHIN)  # the old code: ten days
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            scheduler.shutdown(wait=False)
            await asyncio.sleep(0)

    with caplog.at_level(logging.WARNING, logger="semtrace.retention"):
        asyncio.run(run())
    said = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "clock_step"]
    assert said[:1] == ["the host's clock was set back by 10 days: the service's scheduled "
                        "jobs (retention, daily releases) go by it from now on."], said
