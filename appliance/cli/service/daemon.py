"""`semtrace serve`: the ingest service, on its Unix sockets (and NATS), until SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from appliance.cli import credential, credential_options, data_dir_option
from appliance.cli.service.jobs import _serve_with_jobs
from appliance.cli.service.settings import cluster_settings, telemetry_settings
from appliance.cli.sockets import QUERY_SOCKET_NAME
from appliance.errors import SemtraceError

if TYPE_CHECKING:
    from appliance.config import Policies
    from appliance.runtime import Runtime
    from appliance.service import DataDirLock, Service

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
@click.option("--json", "as_json", is_flag=True, help="With --check: print the result as "
              "JSON (serve itself writes its log).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True,
              help="The lowest level of the JSON log lines written on stderr.")
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
              help="Partitions of the tenant space, the same on every node (default: "
              "policies/cluster.toml; 16).")
@click.option("--own", default=None, metavar="A-B",
              help="Partitions this node consumes, e.g. 0-7 or 0-3,12 (default: "
              "policies/cluster.toml; all).")
@click.option("--node", "node_name", default=None,
              help="This node's name in the cluster (default: policies/cluster.toml, then "
              "the host name).")
def serve(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
          socket_path: Path | None, query_socket: Path | None, check: bool, as_json: bool,
          log_level: str,
          metrics_listen: str | None, metrics_group: str | None,
          otlp_endpoint: str | None, nats_url: str | None, partitions: int | None,
          own: str | None, node_name: str | None) -> None:
    """Serve the ingest protocol on a local Unix socket (and NATS) until SIGTERM."""
    from appliance.runtime import default_data_dir

    if as_json and not check:
        raise click.UsageError("--json goes with --check: serve itself writes its log, not a "
                               "result.")
    from appliance.config import load_policies
    from appliance.embed import load_manifest, verify_model
    from appliance.runtime import check_bundled_files
    from appliance.service import DataDirLock
    from appliance.telemetry import setup_logging

    setup_logging(log_level)
    directory = data_dir or default_data_dir()
    policies = load_policies()
    warnings = policies.redaction.warnings()
    hold_warnings = policies.retention.warnings()  # said by --check and doctor, never quoted
    settings = _telemetry_settings(policies, metrics_listen, otlp_endpoint, metrics_group,
                                   check=check)
    cluster = cluster_settings(policies.cluster, url=nats_url, partitions=partitions, own=own,
                               node=node_name)
    plain_bus_warning, joining = _bus_settings(cluster, check=check)
    verify_model(load_manifest())
    check_bundled_files(policies)  # before the store opens: what the pipeline would refuse
    if check:  # read-only, like doctor: on a service host, the service's data dir
        _check_only(data_dir, passphrase_file, key_file, cluster, warnings, hold_warnings,
                    plain_bus_warning, as_json=as_json)
        return
    rt = _open_store(directory, passphrase_file, key_file, policies)
    _warn_loose_modes(directory)
    lock = DataDirLock(directory)
    try:
        lock.acquire()  # a second serve of this data dir stops here, in its own sentence
        data_dir_id = None
        if cluster.url:  # export and forget pick a partition's tenants by this count
            data_dir_id = _refuse_cluster_conflicts(rt, cluster, joining, lock)
        _free_sockets(socket_path or directory / SOCKET_NAME,
                      query_socket or directory / QUERY_SOCKET_NAME)
        _serve_until_stopped(rt, policies, settings, cluster, lock, data_dir_id,
                             socket_path or directory / SOCKET_NAME,
                             query_socket or directory / QUERY_SOCKET_NAME)
    finally:
        lock.release()
        rt.close()


def _warn_loose_modes(directory: Path) -> None:
    """Log the data dir and key files other users may read, and a disk with less room
    than semtrace.db takes (doctor lists them too)."""
    import logging

    from appliance.data_dir_access import loose_modes, low_space

    for loose in loose_modes(directory):
        logging.getLogger("semtrace.service").warning(
            "%s", loose, extra={"event": "data_dir_permissions"})
    for short in low_space(directory):
        logging.getLogger("semtrace.service").warning(
            "%s", short, extra={"event": "low_disk_space"})


def _telemetry_settings(policies: Policies, metrics_listen: str | None,
                        otlp_endpoint: str | None, metrics_group: str | None, *,
                        check: bool) -> Any:
    """The telemetry settings, their metrics address and OTLP exporter checked now: one
    sentence before the models load, not after."""
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
    return settings


def _bus_settings(cluster: Any, *, check: bool) -> tuple[str, Any]:
    """(the plain bus warning the node logs, what NATS says about joining) for a node of a
    cluster, its bus key checked and NATS asked now (not for --check); ("", None) alone."""
    from appliance.cluster import bus

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
    return plain_bus_warning, joining


def _check_only(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
                cluster: Any, warnings: list[str], hold_warnings: list[str],
                plain_bus_warning: str, *, as_json: bool) -> None:
    """`serve --check`: the data dir's check, read-only (`check.py`)."""
    from appliance.cli.check_target import require_target, target_for
    from appliance.cli.service.check import check_config

    target = target_for(data_dir)
    require_target(target, "serve --check")
    check_config(target, credential(passphrase_file, key_file), cluster, warnings,
                 hold_warnings, plain_bus_warning, as_json=as_json)


def _open_store(directory: Path, passphrase_file: Path | None, key_file: Path | None,
                policies: Policies) -> Runtime:
    """The data dir opened; an upgrade's migrations noted in the service's log."""
    import logging

    from appliance.runtime import open_runtime

    rt = open_runtime(directory, credential(passphrase_file, key_file), policies=policies)
    if note := rt.migration_note():  # an upgrade: what it changed, in the service's log
        logging.getLogger("semtrace.store").info("%s", note, extra={
            "event": "store_migrated", "migrations": [
                f"{name}:{m}" for name, ran in rt.store.migrated.items() for m in ran]})
    return rt


def _refuse_cluster_conflicts(rt: Runtime, cluster: Any, joining: Any,
                              lock: DataDirLock) -> Any:
    """This data dir's id, once nothing forbids it to consume its partitions: a stale --own,
    a live namesake, a live copy, partitions taken or imported meanwhile (SemtraceError)."""
    from appliance.cluster import bus, given_away
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
    from appliance.cluster import exported  # exported, never consumed, taken elsewhere

    exported.refuse_moved(rt.store.db, cluster.owned(), cluster.partitions, joining.last,
                          data_dir_id)
    from appliance.cluster import imported  # the exporter consumed since its export

    imported.refuse(rt.store.db, cluster.owned(), cluster.partitions, joining.last,
                    data_dir_id)
    note_partitions(rt.store, cluster.partitions)
    return data_dir_id


def _free_sockets(socket_path: Path, query_socket: Path) -> None:
    """Refuse sockets another data dir's service serves, before the models load."""
    from appliance.service.sockets import free_socket_path
    from appliance.socket_folder import check_socket_folder, refusal

    for claimed, option in ((socket_path, "--socket"), (query_socket, "--query-socket")):
        try:
            check_socket_folder(claimed)
        except ValueError as exc:
            raise SemtraceError(refusal(claimed, option, exc)) from None
        free_socket_path(claimed)


def _serve_until_stopped(rt: Runtime, policies: Policies, settings: Any, cluster: Any,
                         lock: DataDirLock, data_dir_id: Any, socket_path: Path,
                         query_socket: Path) -> None:
    """Load the models, start the service (and this node's NATS consumers) and its
    telemetry, serve until SIGTERM, then stop the telemetry."""
    import asyncio
    import logging

    from appliance import failpoints
    from appliance.config import load_policies
    from appliance.runtime import make_pipeline, settle_heap
    from appliance.service import Service
    from appliance.telemetry import start_telemetry

    # said before the models load (20 s on a fresh 2-core host, minutes on a loaded one):
    # the log was empty until `start`, while clients were told no service listens
    logging.getLogger("semtrace.service").info(
        "starting: loading the models", extra={"event": "starting", "socket": str(socket_path)})
    failpoints.point("serve.models")  # killed as it loads its models (the cluster tests)
    pipeline = make_pipeline(rt)
    service = Service(pipeline, policies, socket_path=socket_path, reload=load_policies,
                      query_socket_path=query_socket)
    telemetry, metrics_server = start_telemetry(settings, pipeline,
                                                queue_depth=service.queue_depth,
                                                health=service.health)
    settle_heap()  # after everything long-lived is loaded, before the first prompt
    service.observer = telemetry
    if cluster.url:
        _start_node(service, rt, cluster, telemetry, lock, data_dir_id)
    try:
        asyncio.run(_serve_with_jobs(service, rt, telemetry))
    finally:
        telemetry.shutdown()
        if metrics_server is not None:
            metrics_server.close()


def _start_node(service: Service, rt: Runtime, cluster: Any, telemetry: Any,
                lock: DataDirLock, data_dir_id: Any) -> None:
    """Make the service a node of the cluster: its NATS consumers become one of its doors,
    noted in the store as they start, and their lag goes to the metrics."""
    from appliance.cluster import given_away
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
