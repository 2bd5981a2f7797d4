"""The host's clock stepped ahead while the service runs: its next retention run shreds
nothing and says why, instead of destroying, for good, every key due by the wrong date. A
restart goes by the clock as it is. The step is made by the clock retention reads
(`appliance.retention`'s datetime), as the old code read it too."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import T0, make_prompt

WAIT = 120  # seconds: a bound on a hang, never a measurement


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    thread = threading.Thread(target=lp.run_forever, daemon=True)
    thread.start()
    yield lp
    lp.call_soon_threadsafe(lp.stop)
    thread.join(30)


def test_a_clock_stepped_ahead_holds_retention_until_it_is_set_right_or_a_restart(
        pipeline: Any, runtime: Any, loop: asyncio.AbstractEventLoop,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from appliance import retention
    from appliance.audit import AuditLog
    from appliance.retention import Shredder, live_buckets
    from appliance.service import Service
    from appliance.service.retention_job import RetentionJob

    step = [timedelta(0)]

    class Host(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return datetime.now(tz) + step[0]

    monkeypatch.setattr(retention, "datetime", Host)
    an_hour_ago = (datetime.now(UTC) - T0).total_seconds() / 60 - 60
    pipeline.process([make_prompt("How do I book the large meeting room?",
                                  minutes=an_hour_ago)])
    live = live_buckets(runtime.store)
    assert len(live) == 1
    service = Service(pipeline, runtime.policies, socket_path=runtime.data_dir / "s.sock")
    shredder = Shredder(runtime.store, AuditLog(runtime.store.db, runtime.keyring.audit_signer(),
                                                anchor=runtime.store.keys_db),
                        index=pipeline.index, on_user_shredded=pipeline.forget)

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(WAIT)

    async def begin() -> None:
        await service.start()

    on_loop(begin())
    try:
        job = RetentionJob(service, shredder, runtime.keyring)
        step[0] = timedelta(days=400)  # `date -s` a year ahead, while it runs
        with caplog.at_level(logging.ERROR, logger="semtrace.retention"):
            assert on_loop(job.run()) is None
        assert live_buckets(runtime.store) == live  # nothing shredded
        held = [r for r in caplog.records if getattr(r, "event", None) == "clock_jump"]
        assert len(held) == 1 and "moved 400 days ahead" in held[0].getMessage()

        step[0] = timedelta(0)  # the clock set right: the next run goes on as before
        report = on_loop(job.run())
        assert report is not None and report.shredded == 0

        # set back ten days (a wrong time source), taken (it shreds later); then set
        # right: the old code took that for a step ahead and held every run till a restart
        caplog.clear()
        for back in (timedelta(days=-10), timedelta(0)):
            step[0] = back
            with caplog.at_level(logging.ERROR, logger="semtrace.retention"):
                report = on_loop(job.run())
            assert report is not None and report.shredded == 0, caplog.messages
        assert not [r for r in caplog.records if getattr(r, "event", None) == "clock_jump"]

        step[0] = timedelta(days=400)  # left ahead, and the service restarted: taken
        restarted = RetentionJob(service, shredder, runtime.keyring)
        report = on_loop(restarted.run())
        assert report is not None and report.shredded == 1
        assert live_buckets(runtime.store) == []
    finally:
        on_loop(service.drain())
