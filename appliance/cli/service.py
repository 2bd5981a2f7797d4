"""`semtrace serve | send`: the ingest service and its command-line client."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from appliance.cli import credential, credential_options, data_dir_option
from appliance.cli.sockets import QUERY_SOCKET_NAME, ingest_socket
from appliance.cluster import bus
from appliance.errors import InputError, SemtraceError
from appliance.runtime import default_data_dir, settle_heap

SOCKET_NAME = "semtrace.sock"


@click.command()
@data_dir_option
@credential_options
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), default=None,
              help="Unix socket to listen on (default DATA_DIR/semtrace.sock).")
@click.option("--query-socket", "query_socket", type=click.Path(path_type=Path), default=None,
              help="Readers' socket: `threads ... --socket` asks here under the caller's "
              "OS identity, without the passphrase (default DATA_DIR/query.sock).")
@click.option("--check", is_flag=True, help="Validate policies, linker weights, model, name and "
              "city lists, and key (the store opened read-only), then exit.")
@click.option("--json", "as_json", is_flag=True, help="With --check: the result as JSON (as "
              "it prints it anyway; serve itself writes its log).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.option("--metrics", "metrics_listen", default=None, metavar="ADDR",
              help="Serve Prometheus /metrics on host:port or unix:/path "
              "(default: policies/telemetry.toml; off).")
@click.option("--metrics-group", "metrics_group", default=None, metavar="GROUP",
              help="The group of the metrics' Unix socket: its members may scrape, and "
              "nothing else (default: policies/telemetry.toml; the service's own group).")
@click.option("--otlp-endpoint", default=None, metavar="URL",
              help="Export spans over OTLP/HTTP to a collector on this host, e.g. "
              "http://127.0.0.1:4318/v1/traces (default: policies/telemetry.toml; off).")
@click.option("--nats", "nats_url", default=None, metavar="URL",
              help="Also consume this node's partitions from NATS JetStream, e.g. "
              "nats://127.0.0.1:4222 (default: policies/cluster.toml; off).")
@click.option("--partitions", type=int, default=None,
              help="Partitions of the tenant space (the same on every node).")
@click.option("--own", default=None, metavar="A-B",
              help="Partitions this node consumes, e.g. 0-7 or 0-3,12 (default: all).")
@click.option("--node", "node_name", default=None,
              help="This node's name in the cluster (default: the host name).")
def serve(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
          socket_path: Path | None, query_socket: Path | None, check: bool, as_json: bool,
          log_level: str,
          metrics_listen: str | None, metrics_group: str | None,
          otlp_endpoint: str | None, nats_url: str | None, partitions: int | None,
          own: str | None, node_name: str | None) -> None:
    """Serve the ingest protocol on a local Unix socket (and NATS) until SIGTERM."""
    if as_json and not check:
        raise click.UsageError("--json goes with --check: serve itself writes its log, not a "
                               "result.")
    from appliance.config import load_policies
    from appliance.embed import load_manifest, verify_model
    from appliance.runtime import check_bundled_files, make_pipeline, open_runtime
    from appliance.service import DataDirLock, Service
    from appliance.telemetry import setup_logging, start_telemetry

    setup_logging(log_level)
    directory = data_dir or default_data_dir()
    policies = load_policies()
    warnings = policies.redaction.warnings()
    hold_warnings = policies.retention.warnings()  # said by --check and doctor, never quoted
    settings = telemetry_settings(policies.telemetry, metrics_listen, otlp_endpoint,
                                  metrics_group=metrics_group)
    if settings.metrics.listen:  # one sentence now, not after the models load
        from appliance.errors import ConfigError
        from appliance.metrics import check_listen

        try:
            check_listen(settings.metrics.listen, in_use=not check,
                         group=settings.metrics.socket_group)
        except ValueError as exc:
            raise ConfigError(f"Metrics cannot listen on {settings.metrics.listen}: "
                              f"{str(exc).rstrip('.')}.") from None
    if settings.tracing.otlp_endpoint:
        from appliance.telemetry import otlp_exporter

        otlp_exporter()  # the extra is installed, or one sentence now
    cluster = cluster_settings(policies.cluster, url=nats_url, partitions=partitions, own=own,
                               node=node_name)
    plain_bus_warning = ""
    joining: Any = None  # each own partition's last consumer and the live claims, from NATS
    if cluster.url:
        from appliance.cluster.bus import require_nats

        require_nats()
        # one sentence now, not after the models load: no key and no opt-out, or a bad key
        from appliance.keys.bus import NODE_NEEDS_KEY, bus_warning, load_bus_keys, require_sealing

        sec = cluster.security
        require_sealing(bool(sec.bus_key_file), sec.plain_bus, NODE_NEEDS_KEY)
        if sec.bus_key_file:
            load_bus_keys(sec.bus_key_file)
        plain_bus_warning = bus_warning(sec.plain_bus, sec.accept_plain)  # the node logs it
        if not check:  # NATS in seconds, not after the models load and the store opens
            from appliance.cluster.preflight import preflight

            joining = bus.run(preflight(cluster))
    verify_model(load_manifest())
    check_bundled_files(policies)  # before the store opens: what the pipeline would refuse
    if check:  # read-only, like doctor: on a service host, the service's data dir
        from appliance.cli.check_target import require_target, target_for
        from appliance.cli.service_check import check_config

        target = target_for(data_dir)
        require_target(target, "serve --check")
        check_config(target, credential(passphrase_file, key_file), cluster, warnings,
                     hold_warnings, plain_bus_warning)
        return
    rt = open_runtime(directory, credential(passphrase_file, key_file), policies=policies)
    if note := rt.migration_note():  # an upgrade: what it changed, in the service's log
        logging.getLogger("semtrace.store").info("%s", note, extra={
            "event": "store_migrated", "migrations": [
                f"{name}:{m}" for name, ran in rt.store.migrated.items() for m in ran]})
    lock = DataDirLock(directory)
    try:
        lock.acquire()  # a second serve of this data dir stops here, in its own sentence
        if cluster.url:  # export and forget pick a partition's tenants by this count
            from appliance.cluster import given_away
            from appliance.cluster.move import note_partitions

            given_away.refuse(rt.store.db, cluster.owned(), cluster.partitions)  # stale --own
            from appliance.cluster.bus import node_name as cluster_node

            me = cluster_node(cluster.node)  # a partition another node consumed meanwhile
            data_dir_id = given_away.data_dir_id(rt.store.db)
            from appliance.cluster.owners import name_in_use

            if clash := name_in_use(joining.claims, me, data_dir_id):  # a live namesake
                raise SemtraceError(clash)
            from appliance.cluster.preflight import refuse_live_copy

            bus.run(refuse_live_copy(cluster, joining.claims, data_dir_id,  # a backup's
                                     lock.identity()))
            given_away.refuse_taken(rt.store.db, cluster.owned(), cluster.partitions, me,
                                    joining.last, data_dir_id)  # noted once consuming
            from appliance.cluster import imported  # the exporter consumed since its export

            imported.refuse(rt.store.db, cluster.owned(), cluster.partitions, joining.last,
                            data_dir_id)
            note_partitions(rt.store, cluster.partitions)
        # another data dir's service on these sockets: before the models load
        from appliance.service.sockets import free_socket_path
        from appliance.socket_folder import check_socket_folder, refusal

        for claimed, option in ((socket_path or directory / SOCKET_NAME, "--socket"),
                                (query_socket or directory / QUERY_SOCKET_NAME,
                                 "--query-socket")):
            try:
                check_socket_folder(claimed)
            except ValueError as exc:
                raise SemtraceError(refusal(claimed, option, exc)) from None
            free_socket_path(claimed)
        from appliance import failpoints

        failpoints.point("serve.models")  # killed as it loads its models (the cluster tests)
        pipeline = make_pipeline(rt)
        service = Service(pipeline, policies, socket_path=socket_path or directory / SOCKET_NAME,
                          reload=load_policies,
                          query_socket_path=query_socket or directory / QUERY_SOCKET_NAME)
        telemetry, metrics_server = start_telemetry(settings, pipeline,
                                                    queue_depth=service.queue_depth,
                                                    health=service.health)
        settle_heap()  # after everything long-lived is loaded, before the first prompt
        service.observer = telemetry
        if cluster.url:
            from appliance.cluster.node import ClusterNode

            def consuming(owned: list[int], name: str, start: str) -> None:
                given_away.note_consumed(rt.store.db, owned, cluster.partitions, name, start)

            node = ClusterNode(service, cluster, on_consuming=consuming,
                               data_dir=data_dir_id, lock=lock.identity())
            given_away.note_starting(rt.store.db, node.start_id)  # before its consumers
            service.doors.append(node)
            if telemetry.metrics is not None:
                telemetry.metrics.bind_cluster(lambda: node.lag, node=node.node,
                                               counters=lambda: node.counters)
        try:
            asyncio.run(_serve_with_jobs(service, rt, telemetry))
        finally:
            telemetry.shutdown()
            if metrics_server is not None:
                metrics_server.close()
    finally:
        lock.release()
        rt.close()


def telemetry_settings(base: Any, metrics_listen: str | None, otlp_endpoint: str | None, *,
                       metrics_group: str | None = None) -> Any:
    """policies/telemetry.toml with the command line's addresses (and the metrics socket's
    group); one sentence if invalid."""
    from pydantic import ValidationError

    from appliance.config import TelemetrySettings

    data = base.model_dump()
    if metrics_listen is not None:
        data["metrics"]["listen"] = metrics_listen
    if metrics_group is not None:
        data["metrics"]["socket_group"] = metrics_group
    if otlp_endpoint is not None:
        data["tracing"]["otlp_endpoint"] = otlp_endpoint
    try:
        return TelemetrySettings.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        option = "--otlp-endpoint" if first["loc"][0] != "metrics" else (
            "--metrics-group" if first["loc"][1:] == ("socket_group",) or (
                metrics_group and "socket_group" in first["msg"]) else "--metrics")
        raise click.BadParameter(first["msg"].removeprefix("Value error, "),
                                 param_hint=option) from None


def cluster_settings(base: Any, **given: Any) -> Any:
    """policies/cluster.toml with the command line's values; one sentence if invalid."""
    from pydantic import ValidationError

    from appliance.config import ClusterSettings

    data = base.model_dump()
    data.update({k: v for k, v in given.items() if v is not None})
    try:
        settings = ClusterSettings.model_validate(data)
        settings.owned()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise click.BadParameter(first["msg"].removeprefix("Value error, "),
                                 param_hint=f"--{first['loc'][0]}".replace("--url", "--nats")
                                 ) from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--own") from None
    return settings


async def _serve_with_jobs(service: Any, rt: Any, telemetry: Any = None) -> None:
    """Run the service with its scheduled jobs (APScheduler, UTC): retention, daily DP releases."""
    from datetime import UTC

    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    from appliance.audit import AuditLog
    from appliance.daily import make_daily
    from appliance.erasure import erase_requested
    from appliance.retention import Shredder
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
    await service.in_worker(audit.append, "start", {"pid": __import__("os").getpid()})
    service.audit = audit.append
    service.eraser = functools.partial(erase_requested, shredder, service, rt.keyring)
    scheduler.start()
    service.scheduler = scheduler
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


def _requests(lines: Any, run: str | None = None, skipped: list[int] | None = None) -> Any:
    """Request objects of stdin's lines; a line without `request_id` gets `send-<run>-N`,
    unique to this invocation, so a second file's line N is not taken for a duplicate.
    Lines that are not a JSON object (or not UTF-8) are named by number only and their
    numbers added to `skipped`."""
    import secrets

    run = run or secrets.token_hex(4)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
            why = "it is not a JSON object"
        except UnicodeDecodeError:
            obj, why = None, "it is not valid UTF-8"
        except ValueError:
            obj, why = None, "it is not a JSON object"
        if not isinstance(obj, dict):
            click.echo(f"semtrace: line {lineno} skipped: {why}.", err=True)
            if skipped is not None:
                skipped.append(lineno)
            continue
        obj.setdefault("v", 1)
        obj.setdefault("op", "ingest")
        obj.setdefault("request_id", f"send-{run}-{lineno}")
        yield obj


@click.command()
@data_dir_option
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), default=None,
              help="The service's socket (default DATA_DIR/semtrace.sock; on an installed "
              "service's host, with no data dir of your own, the service's).")
@click.option("--window", type=click.IntRange(1, 4096), default=64, show_default=True,
              help="Requests in flight at once.")
@click.option("--json", "as_json", is_flag=True, help="Replies are JSON lines (always).")
def send(data_dir: Path | None, socket_path: Path | None, window: int, as_json: bool) -> None:
    """Stream JSON-lines requests from stdin to the service; print one reply per line."""
    from appliance.client import Client, connection_refusal

    path = ingest_socket(socket_path, data_dir, SOCKET_NAME)
    failed = sent = 0
    skipped: list[int] = []
    with Client(path) as client:
        for reply in client.stream(_requests(sys.stdin.buffer, skipped=skipped),
                                   window=window):
            refusal = connection_refusal(reply)  # every request sent here has an id
            if refusal is not None:
                raise refusal
            sent += 1
            failed += 0 if reply.get("ok") else 1
            click.echo(json.dumps(reply))
    if not sent and not skipped:
        raise InputError("stdin held no requests (it is empty or blank).")
    if failed:
        click.echo(f"semtrace: {failed} request(s) were refused.", err=True)
    if skipped:
        click.echo(f"semtrace: {len(skipped)} line(s) were not sent.", err=True)
    if failed or skipped:
        sys.exit(1)


COMMANDS = [serve, send]
