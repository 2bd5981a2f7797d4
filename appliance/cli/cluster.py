"""`semtrace cluster ...`: status of a NATS cluster, the server's mappings, moving partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from appliance.cli import credential_options, data_dir_option, emit_json, open_dir, progress_bar
from appliance.errors import InputError, SemtraceError
from appliance.words import plural, ranges


@click.group()
def cluster() -> None:
    """Scale-out over NATS JetStream: tenants partitioned over several nodes."""


def _settings(url: str | None, partitions: int | None) -> Any:
    from appliance.cli.service import cluster_settings
    from appliance.config import load_cluster

    settings = cluster_settings(load_cluster(), url=url, partitions=partitions)
    if not settings.url:
        raise click.UsageError("No NATS URL: give --nats or set url in policies/cluster.toml.")
    return settings


def _partitions_of(spec: str, count: int) -> list[int]:
    from appliance.cluster.partition import parse_own

    try:
        return parse_own(spec, count)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--partitions") from None


nats_option = click.option("--nats", "nats_url", default=None, metavar="URL",
                           help="NATS server (default: policies/cluster.toml).")
count_option = click.option("--of", "count", type=click.IntRange(1, 1024), default=None,
                            help="Partitions of the tenant space (default: the count this "
                            "node last served with, else cluster.toml).")


@cluster.command()
@nats_option
@click.option("--tenant", "tenants", multiple=True, metavar="TENANT",
              help="Only say which partition and node hold this tenant (repeatable): the "
              "node to query, erase or reveal on.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(nats_url: str | None, tenants: tuple[str, ...], as_json: bool) -> None:
    """Partitions, their owners, and each consumer's lag and redeliveries."""
    from appliance.cluster import bus
    from appliance.cluster.bus import require_nats
    from appliance.cluster.partition import valid_tenant
    from appliance.cluster.status import cluster_status, status_lines, tenant_homes

    for tenant in tenants:
        if not valid_tenant(tenant):
            raise click.BadParameter("a tenant on the bus is 1-128 letters, digits, '_' or "
                                     "'-'.", param_hint="--tenant")
    require_nats()
    report = bus.run(cluster_status(_settings(nats_url, None)))
    if tenants:
        homes = tenant_homes(report, list(tenants))
        if as_json:
            emit_json(homes)
            return
        for h in homes:
            late = (", late: stopped, killed, hung or cut off from NATS" if h.owner_late
                    else "")
            where = (f"node {h.owner} (heard from {h.owner_seen_s:g} s ago{late})" if h.owner
                     else f"unreadable claim ({h.unreadable_claim}): a node holds it, this "
                     "one cannot say which" if h.unreadable_claim
                     else "no node (its prompts queue)")
            click.echo(f"tenant {h.tenant}: partition {h.partition}, {where}, lag {h.lag}")
        return
    if as_json:
        emit_json(report)
        return
    for line in status_lines(report):
        click.echo(line)


@cluster.command("nats-config")
@click.option("--partitions", type=click.IntRange(1, 1024), required=True,
              help="Partitions of the tenant space (the nodes' --partitions).")
@click.option("--json", "as_json", is_flag=True, help="Print the mappings as JSON.")
def nats_config(partitions: int, as_json: bool) -> None:
    """Print the nats-server `mappings` block that partitions the ingest subjects."""
    from appliance.cluster.partition import server_mappings

    block = server_mappings(partitions)
    if as_json:
        pairs = [line.strip().split(": ", 1) for line in block.splitlines() if ": " in line]
        emit_json({"mappings": {k.strip('"'): v.strip('"') for k, v in pairs}})
    else:
        click.echo(block, nl=False)


@cluster.command("export")
@data_dir_option
@credential_options
@click.option("--partitions", "spec", required=True, metavar="A-B",
              help="The partitions whose tenants leave this node, e.g. 3 or 2-3.")
@count_option
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="The export file to write (new; mode 0600).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def export(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
           spec: str, count: int | None, out: Path, as_json: bool) -> None:
    """Write the tenants of some partitions to a file (the node must be stopped)."""
    from appliance.cluster.move import export_tenants, partition_count, tenants_in
    from appliance.cluster.partition import format_ranges

    rt = _stopped(data_dir, passphrase_file, key_file)
    try:
        n = partition_count(rt.store, count, rt.policies.cluster.partitions)
        parts = _partitions_of(spec, n)
        tenants = tenants_in(rt.store, parts, n)
        if not tenants:
            raise SemtraceError(
                f"This node holds no tenant of {ranges('partition', spec)}, so there is nothing to "
                f"export and no file was written: run `semtrace cluster forget --partitions "
                f"{spec} --yes` here, then start the new owner with {spec} in its --own.")
        from appliance.cluster import imported
        from appliance.cluster.partition import partition_of

        held = sorted({partition_of(t, n) for t in tenants})
        with progress_bar() as prog:
            report = export_tenants(rt.store, rt.keyring, tenants, out,
                                    partitions=format_ranges(parts),
                                    origin=imported.origin(rt.store.db, parts, n, held),
                                    progress=_progress_step(prog, "export"))
        from appliance.cluster import exported

        exported.note(rt.store.db, tenants)  # forget checks that it destroys no only copy
        _audit(rt, "cluster_export", report, partitions=spec)
    finally:
        rt.close()
    _print(report, as_json, f"Exported {plural(len(report.tenants), 'tenant')}, "
           f"{plural(report.records, 'record')} to {out}. Import it on the new owner, then "
           f"run `semtrace cluster forget --partitions {spec} --yes` here.")


@cluster.command("import")
@data_dir_option
@credential_options
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--keep", is_flag=True, help="Keep the export file (default: delete it).")
@nats_option
@click.option("--owner-lost", is_flag=True, help="Import even if the partitions' old owner "
              "consumed them after the export (it is lost with its data; then `cluster "
              "reclaim` them here).")
@click.option("--accept-unchecked", is_flag=True, help="Import an export of an earlier build "
              "(it names no start of its old owner, so nothing can check it): that node has "
              "not been started with its partitions since the export.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def import_(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
            path: Path, keep: bool, nats_url: str | None, owner_lost: bool,
            accept_unchecked: bool, as_json: bool) -> None:
    """Copy an export into this node's store (the node must be stopped); an export older
    than its partitions on NATS is refused."""
    from appliance import failpoints
    from appliance.cli.cluster_stale import stale_check
    from appliance.cluster.move import import_tenants

    rt = _stopped(data_dir, passphrase_file, key_file)
    try:
        # an earlier run of it that was interrupted is undone as the store opens (one line)
        check = stale_check(rt.store.db, path, nats_url, owner_lost=owner_lost,
                            unchecked=accept_unchecked)
        with progress_bar() as prog:
            report = import_tenants(rt.store, rt.keyring, path,
                                    progress=_progress_step(prog, "import"), check=check)
        failpoints.point("import.rows_committed")  # rows in, the file not yet deleted
        # again: the earlier run may have stopped before its audit line
        _audit(rt, "cluster_import", report, **({"again": True} if report.already else {}))
    finally:
        rt.close()
    if not keep:  # it holds data keys: a copy left behind would survive crypto-shredding
        path.unlink()
    if report.already:
        _print(report, as_json, f"{path} was imported here before (that run stopped before "
               f"it deleted the file); nothing was imported again"
               + ("." if keep else ", and the file is deleted now."))
        return
    moved = report.partitions
    _print(report, as_json, f"Imported {plural(len(report.tenants), 'tenant')}, "
           f"{plural(report.records, 'record')}"
           + (f" of {ranges('partition', moved)}. Next: `semtrace cluster forget "
              f"--partitions {moved} --yes` on the node they came from, then start this node "
              f"with {moved} in its --own (`own` in cluster.toml)." if moved else "."))


@cluster.command()
@data_dir_option
@credential_options
@click.option("--partitions", "spec", required=True, metavar="A-B",
              help="The partitions whose tenants were moved away.")
@count_option
@click.option("--yes", is_flag=True, help="Confirm: their data keys are destroyed.")
@click.option("--discard", is_flag=True, help="Also destroy tenants never exported from "
              "here (or with records since): their only copy, e.g. a stale one on a node "
              "that came back after its partitions moved.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def forget(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
           spec: str, count: int | None, yes: bool, discard: bool, as_json: bool) -> None:
    """Remove the tenants of some partitions from this node after they moved."""
    from appliance.cluster.move import forget_tenants, partition_count, tenants_in

    if not yes:
        raise click.UsageError("Forgetting destroys these tenants' data here: add --yes.")
    rt = _stopped(data_dir, passphrase_file, key_file)
    try:
        n = partition_count(rt.store, count, rt.policies.cluster.partitions)
        parts = _partitions_of(spec, n)
        tenants = tenants_in(rt.store, parts, n)
        from appliance.cluster import exported

        only = [] if discard else exported.not_exported(rt.store.db, tenants)
        if only:
            raise SemtraceError(
                f"{plural(len(only), 'tenant')} of {ranges('partition', spec)} "
                f"{'has' if len(only) == 1 else 'have'} records here that no "
                f"export from this node carries (e.g. {only[0]}: never exported, or written "
                "to since), and forgetting would destroy them: export them first (`semtrace "
                f"cluster export --partitions {spec}`), or add --discard to destroy them "
                "anyway. Nothing was changed.")
        with progress_bar() as prog:
            report = forget_tenants(rt.store, tenants, partitions=parts,
                                    count=n, progress=_progress_step(prog, "forget"))
        _audit(rt, "cluster_forget", report, partitions=spec)
    finally:
        rt.close()
    _print(report, as_json, f"Removed {plural(len(report.tenants), 'tenant')}, "
           f"{plural(report.records, 'record')} from this node. It no longer serves "
           f"{ranges('partition', spec)}: take "
           f"{spec} out of its --own (`own` in cluster.toml) before it starts again.")


@cluster.command()
@data_dir_option
@credential_options
@click.option("--partitions", "spec", required=True, metavar="A-B",
              help="The partitions this node gave away, consumed before another node "
              "that is lost with its data, or imported from such a node.")
@count_option
@nats_option
@click.option("--node", "node_name", default=None,
              help="The name this node serves under (default: policies/cluster.toml, then "
              "the host name).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reclaim(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None,
            spec: str, count: int | None, nats_url: str | None, node_name: str | None,
            as_json: bool) -> None:
    """Serve again partitions whose later owner is lost with its data (no import)."""
    from appliance.cluster import bus, given_away
    from appliance.cluster.bus import node_name as cluster_node
    from appliance.cluster.bus import require_nats
    from appliance.cluster.move import partition_count
    from appliance.cluster.reclaim import name_consumers

    rt = _stopped(data_dir, passphrase_file, key_file)
    try:
        n = partition_count(rt.store, count, rt.policies.cluster.partitions)
        parts = _partitions_of(spec, n)
        from appliance.cluster import exported

        held = frozenset(exported.moved(rt.store.db, parts, n))  # exported, not forgotten
        if not given_away.reclaimable(rt.store.db, set(parts)) and not held:
            raise InputError(f"This node did not give {ranges('partition', spec)} away; "
                             "nothing was changed.")
        require_nats()
        settings = _settings(nats_url, n)
        me = cluster_node(node_name or settings.node)
        # NATS first: the consumers name this node, so that the lost node, should it come
        # back, refuses the partitions; then this node's own note, as a start writes it
        bus.run(name_consumers(settings, sorted(parts), me,
                                   given_away.data_dir_id(rt.store.db)))
        from appliance.cluster import imported

        brought = set(imported.read(rt.store.db).partitions)  # a copy imported, never consumed
        with rt.store.db:
            rt.store.db.execute("BEGIN IMMEDIATE")
            back = given_away.reclaim(rt.store.db, set(parts), n, me, held)
        from appliance.audit import AuditLog

        AuditLog(rt.store.db, rt.keyring.audit_signer(), anchor=rt.store.keys_db).append(
            "cluster_reclaim", {"partitions": spec, "node": me})
    finally:
        rt.close()
    if as_json:
        emit_json({"partitions": back, "node": me})
    else:
        click.echo(_reclaimed(back, me, held, brought))


def _reclaimed(back: list[int], me: str, held: frozenset[int], brought: set[int]) -> str:
    """What `reclaim` says: the partitions this node may serve, and from which copy."""
    from appliance.cluster.partition import format_ranges

    one = len(back) == 1
    it, its = ("it", "its") if one else ("them", "their")
    what = ranges("partition", format_ranges(back))
    rest = (f"add {it} to its --own and start it as '{me}'. "
            + ("Its consumer on NATS names" if one else "Their consumers on NATS name")
            + f" it now, so a node that consumed {it} before refuses {it}, should it come "
            "back.")
    if set(back) <= held:
        return (f"This node may serve {what} from the copy it exported (without what {its} "
                f"lost owner stored since): {rest}")
    if set(back) <= brought:
        return (f"This node may serve {what} from the copy imported here (without what {its} "
                f"lost owner stored after the export): {rest}")
    return f"This node may serve {what} again (without {its} earlier data): {rest}"


def _progress_step(prog: Any, verb: str) -> Any:
    task = prog.add_task(verb, total=None)

    def step(table: str, done: int, total: int) -> None:
        prog.update(task, description=f"{verb}: {table}", completed=done, total=total)

    return step


def _stopped(data_dir: Path | None, passphrase_file: Path | None, key_file: Path | None) -> Any:
    """The data dir, opened for writing while no service runs on it."""
    from appliance.errors import InputError, SemtraceError
    from appliance.runtime import default_data_dir, require_data_dir
    from appliance.service import DataDirLock

    require_data_dir(data_dir or default_data_dir())  # before the lock file is made in it
    lock = DataDirLock(data_dir or default_data_dir())
    try:
        lock.acquire()
    except InputError:  # a data dir this process may not write: said as such
        raise
    except SemtraceError:
        raise SemtraceError("Stop the node first: a service is running on this data dir.") \
            from None
    lock.release()
    return open_dir(data_dir, passphrase_file, key_file)


def _audit(rt: Any, event: str, report: Any, **extra: Any) -> None:
    from appliance.audit import AuditLog

    AuditLog(rt.store.db, rt.keyring.audit_signer(), anchor=rt.store.keys_db).append(
        event, {"tenants": report.tenants, "records": report.records, **extra})


def _print(report: Any, as_json: bool, sentence: str) -> None:
    if as_json:
        emit_json(report)
    else:
        click.echo(sentence)


COMMANDS = [cluster]


# the bus key file's commands live in their own module
from appliance.cli.buskey import bus_key  # noqa: E402

cluster.add_command(bus_key)
