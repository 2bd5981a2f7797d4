"""The service's retention job: one chunk of buckets per worker job, its progress shown.

A host that was off, or a data dir restored from an old copy, has a long retention
run to make at start (hours of buckets to shred on a big data dir). Run as one worker
job it held the worker for all of it: no prompt was committed, the queue filled, and
the metrics said nothing of why. Here each chunk is its own job, so batches of prompts
are committed between chunks; the service's state says `retention_catchup` while the
start-up run lasts and `retention_progress` how far it is (ping, stats, /metrics).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from typing import Any

from appliance.keys import Keyring
from appliance.retention import RunReport, Shredder, retention_steps
from appliance.service.clock import Reading, RetentionClock

log = logging.getLogger("semtrace.retention")

# Buckets a worker job shreds: about a second of work at the measured shredding speed
# (bench/shred.py: ~100 records a bucket, ~5,000 records/s), the longest a prompt
# then waits behind retention.
SERVICE_CHUNK = 50

_Steps = Generator[tuple[int, int], None, RunReport]


def _advance(steps: _Steps) -> tuple[int, int] | RunReport:
    """One step of the run, on the worker thread (StopIteration cannot cross a future)."""
    try:
        return next(steps)
    except StopIteration as finished:
        report: RunReport = finished.value
        return report


def _held(reading: Reading) -> None:
    """Say why a run shredded nothing: the host's clock stepped ahead."""
    ahead = reading.ahead_s
    how = f"{ahead / 86400:.0f} days" if ahead >= 2 * 86400 else f"{ahead / 3600:.0f} hours"
    log.error(f"retention held: the host's clock moved {how} ahead of the time elapsed since "
              f"the service last read it ({reading.since:%Y-%m-%d %H:%M} UTC), and shredding "
              "by it would destroy what is not due; nothing was shredded. Set the clock "
              "right, or restart the service to go by it as it is.",
              extra={"event": "clock_jump", "ahead_s": round(ahead),
                     "clock": reading.now.isoformat()})


class RetentionJob:
    """Retention runs of a service, one at a time (start-up catch-up and the schedule)."""

    def __init__(self, service: Any, shredder: Shredder, keyring: Keyring, *,
                 telemetry: Any = None, chunk: int = SERVICE_CHUNK,
                 clock: RetentionClock | None = None) -> None:
        self.service, self.shredder, self.keyring = service, shredder, keyring
        self.telemetry = telemetry
        self.chunk = chunk
        self.clock = clock or RetentionClock()
        self._lock = asyncio.Lock()

    def begin_catchup(self) -> None:
        """Mark the service as catching up before its sockets open (call, then `run`)."""
        self.service.state = "retention_catchup"

    async def run(self, *, catchup: bool = False) -> RunReport | None:
        """One whole run; None when the service stopped first (the next start resumes:
        every chunk shredded so far is committed and audited)."""
        svc = self.service
        if catchup:
            self.begin_catchup()
        async with self._lock:  # the hourly job waits for a catch-up still running
            reading = self.clock.read()
            if reading.jumped:
                _held(reading)
                if catchup and svc.state == "retention_catchup":
                    svc.state = "serving"
                return None
            self.clock.accept(reading)
            report = None
            steps = retention_steps(self.shredder, svc.policies.retention, self.keyring,
                                    now=reading.now, chunk=self.chunk)
            try:
                while svc.state != "stopping":
                    step = await svc.in_worker(_advance, steps)
                    if isinstance(step, RunReport):
                        report = step
                        break
                    if step[0] == 0 and catchup and step[1]:
                        log.info("retention catching up", extra={
                            "event": "retention_catchup", "buckets_due": step[1]})
                    svc.retention_progress = step
                if report is None:
                    steps.close()
                    log.info("retention run stopped with the service", extra={
                        "event": "retention_interrupted",
                        "buckets": (svc.retention_progress or (0, 0))[0]})
                    return None
                for idle in report.idle_holds:  # a hold that holds nothing: retention shreds
                    log.warning("legal hold matches no stored data", extra={
                        "event": "legal_hold_idle", "hold": idle.hold,
                        "tenant": idle.tenant, "user": idle.user})
            finally:
                svc.retention_progress = None
                try:  # counted (and the chain verified) before the state says serving
                    if self.telemetry is not None and svc.state != "stopping":
                        await svc.in_worker(self.telemetry.retention_done, report)
                finally:
                    if catchup and svc.state == "retention_catchup":
                        svc.state = "serving"
            return report
