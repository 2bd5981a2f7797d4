"""The running service's scheduled jobs (retention, daily DP releases), its background
topic refinement, and what it writes to the audit log as it starts and stops."""

from __future__ import annotations

import functools
from typing import Any

# How soon the service forgets what another process shredded (`semtrace erase`, `retention
# run`) when no prompt comes: its index's vectors and its linker's memory of the user (a
# batch forgets them first in any case).
SHRED_SYNC_SECONDS = 5.0


async def _serve_with_jobs(service: Any, rt: Any, telemetry: Any = None) -> None:
    """Run the service with its scheduled jobs (APScheduler, UTC): retention, daily DP releases."""
    import asyncio
    from datetime import UTC

    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    from appliance.audit import AuditLog
    from appliance.daily import make_daily
    from appliance.erasure import erase_requested
    from appliance.retention import Shredder
    from appliance.service.clock import keep_jobs_on_time
    from appliance.service.retention_job import RetentionJob

    audit = AuditLog(rt.store.db, rt.keyring.audit_signer(), anchor=rt.store.keys_db)
    shredder = Shredder(rt.store, audit, index=service.pipeline.index,
                        on_user_shredded=service.pipeline.forget)
    retention = RetentionJob(service, shredder, rt.keyring, telemetry=telemetry)

    async def release_job() -> None:
        await service.in_worker(lambda: make_daily(rt.store, service.policies))

    async def startup_jobs() -> None:
        try:
            await retention.run(catchup=True)
        finally:  # what retention shreds is out of the day's releases
            if service.state != "stopping":
                await release_job()

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(retention.run, CronTrigger.from_crontab(
        service.policies.retention.schedule_cron, timezone=UTC), id="retention",
        replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=3600)
    scheduler.add_job(release_job, CronTrigger.from_crontab(
        service.policies.privacy.release_cron, timezone=UTC), id="daily-releases",
        replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=3600)
    async def forget_job() -> None:  # a shred by another process while no prompt comes
        await service.in_worker(service.pipeline.sync_shredded)

    scheduler.add_job(forget_job, IntervalTrigger(seconds=SHRED_SYNC_SECONDS), id="forget",
                      replace_existing=True, coalesce=True, max_instances=1)
    await service.in_worker(audit.append, "start", {"pid": __import__("os").getpid()})
    service.audit = audit.append
    service.eraser = functools.partial(erase_requested, shredder, service, rt.keyring)
    scheduler.start()
    service.scheduler = scheduler
    on_time = asyncio.ensure_future(keep_jobs_on_time(scheduler))  # a clock stepped back
    retention.begin_catchup()  # before the sockets open: ping and /metrics say so at once
    startup = asyncio.ensure_future(startup_jobs())  # a host that was off catches up now
    # topics refined off the ingest path, a quiet tenant's too (else only in line, at
    # every `topic_refine_every`-th prompt: a tenant below it never got its labels)
    topics = service.pipeline.topics if hasattr(service.pipeline.topics, "start") else None
    if topics is not None:
        topics.start(interval=service.policies.privacy.topic_refine_seconds)
    try:
        await service.run()
    finally:
        on_time.cancel()
        await asyncio.gather(on_time, return_exceptions=True)
        scheduler.shutdown(wait=False)
        await asyncio.gather(startup, return_exceptions=True)
        if topics is not None:
            _stop_topics(topics)
        _audit_stop(audit)


def _stop_topics(topics: Any) -> None:
    """Stop the background refinement, refining what is pending first; a failure is
    logged, never stops the stop."""
    import logging

    try:
        topics.stop(flush=True)
    except Exception:
        logging.getLogger("semtrace.service").exception(
            "the last topic refinement failed", extra={"event": "topics_refine"})


def _audit_stop(audit: Any) -> None:
    """The `stop` audit entry; on a full or failing disk a log line instead (the entry's
    transaction is rolled back whole, the chain stays valid)."""
    import logging

    from appliance.service import STORAGE_CODES, storage_error

    try:
        audit.append("stop", {})
    except Exception as exc:
        code = storage_error(exc, None).code
        if code not in STORAGE_CODES:
            raise
        logging.getLogger("semtrace.service").error(
            "the stop could not be written to the audit log (%s)", code,
            extra={"event": "audit_stop_failed", "code": code})
