"""`semtrace serve | send`: the ingest service and its command-line client."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli import credential, credential_options, data_dir_option, emit_json
from appliance.runtime import default_data_dir

SOCKET_NAME = "semtrace.sock"


@click.command()
@data_dir_option
@credential_options
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), default=None,
              help="Unix socket to listen on (default DATA_DIR/semtrace.sock).")
@click.option("--check", is_flag=True, help="Validate policies, model and key, then exit.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
def serve(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
          socket_path: Path | None, check: bool, log_level: str) -> None:
    """Serve the ingest protocol on a local Unix socket until SIGTERM."""
    from appliance.config import load_policies
    from appliance.embed import load_manifest, verify_model
    from appliance.runtime import make_pipeline, open_runtime
    from appliance.service import DataDirLock, Service
    from appliance.telemetry import setup_logging

    setup_logging(log_level)
    directory = data_dir or default_data_dir()
    policies = load_policies()
    verify_model(load_manifest())
    rt = open_runtime(directory, credential(passphrase_file, key_file), policies=policies)
    lock = DataDirLock(directory)
    try:
        lock.acquire()
        if check:
            emit_json({"ok": True, "data_dir": str(directory), "message": "Configuration OK."})
            return
        pipeline = make_pipeline(rt)
        service = Service(pipeline, policies, socket_path=socket_path or directory / SOCKET_NAME,
                          reload=load_policies)
        asyncio.run(_serve_with_jobs(service, rt))
    finally:
        lock.release()
        rt.close()


async def _serve_with_jobs(service: Any, rt: Any) -> None:
    """Run the service with its scheduled retention job (APScheduler, UTC) and audit entries."""
    from datetime import UTC

    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    from appliance.audit import AuditLog
    from appliance.retention import Shredder, run_retention

    audit = AuditLog(rt.store.db, rt.keyring.audit_signer())
    shredder = Shredder(rt.store, audit, index=service.pipeline.index,
                        on_user_shredded=service.pipeline.forget)

    async def retention_job() -> None:
        await service.in_worker(lambda: run_retention(
            shredder, service.policies.retention, rt.keyring))

    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(retention_job, CronTrigger.from_crontab(
        service.policies.retention.schedule_cron, timezone=UTC), id="retention",
        replace_existing=True, coalesce=True, max_instances=1, misfire_grace_time=3600)
    await service.in_worker(audit.append, "start", {"pid": __import__("os").getpid()})
    scheduler.start()
    service.scheduler = scheduler
    startup = asyncio.ensure_future(retention_job())  # a host that was off catches up now
    try:
        await service.run()
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.gather(startup, return_exceptions=True)
        audit.append("stop", {})


def _requests(lines: Any) -> Any:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict):
            click.echo(f"semtrace: line {lineno} skipped: it is not a JSON object.", err=True)
            continue
        obj.setdefault("v", 1)
        obj.setdefault("op", "ingest")
        obj.setdefault("request_id", f"send-{lineno}")
        yield obj


@click.command()
@data_dir_option
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), default=None,
              help="The service's socket (default DATA_DIR/semtrace.sock).")
@click.option("--window", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Requests in flight at once.")
@click.option("--json", "as_json", is_flag=True, help="Replies are JSON lines (always).")
def send(data_dir: Path | None, socket_path: Path | None, window: int, as_json: bool) -> None:
    """Stream JSON-lines requests from stdin to the service; print one reply per line."""
    from appliance.client import Client

    path = socket_path or (data_dir or default_data_dir()) / SOCKET_NAME
    failed = 0
    with Client(path) as client:
        for reply in client.stream(_requests(sys.stdin), window=window):
            failed += 0 if reply.get("ok") else 1
            click.echo(json.dumps(reply))
    if failed:
        click.echo(f"semtrace: {failed} request(s) were refused.", err=True)
        sys.exit(1)


COMMANDS = [serve, send]
