"""`semtrace cluster import`'s check of an export against NATS: a file older than its
partitions (their old owner consumed them after the export) is refused before anything is
imported, where NATS answers; `serve` refuses such a partition again at start
(`cluster/imported.refuse`), for a file imported while NATS could not tell."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from appliance.errors import InputError, SemtraceError
from appliance.words import ranges


def stale_check(db: Any, path: Path, nats_url: str | None, *, owner_lost: bool,
                unchecked: bool = False) -> Callable[[str | None], None]:
    """The check `import_tenants` shows the export's origin (`imported.origin`'s JSON, None
    for an export of an earlier build, which carries none): InputError for a stale export,
    and on a node of a cluster for one that carries no origin unless `unchecked` (the
    operator vouches that its old owner has not consumed since, or it is lost: `owner_lost`);
    a line on stderr when it could not be checked now."""
    def check(carried: str | None) -> None:
        if carried is None:
            if not _url(nats_url) or unchecked or owner_lost:
                return  # no cluster to check against; or the operator vouches for the file
            raise InputError(
                f"{path} names no start of its old owner (it was exported by an earlier "
                "build), so neither this import nor this node's start can tell whether that "
                "node consumed its partitions after the export: export them again there with "
                "this build and import that file, or, if that node has not been started with "
                "them since the export (and stays stopped until its `semtrace cluster forget` "
                "has passed), import this one with --accept-unchecked. Nothing was imported.")
        if owner_lost:
            return
        _against_nats(db, path, carried, nats_url)

    return check


def _against_nats(db: Any, path: Path, carried: str, nats_url: str | None) -> None:
    from appliance.cli.service import cluster_settings
    from appliance.cluster import bus, imported
    from appliance.cluster.given_away import DATA_DIR_ID
    from appliance.cluster.partition import format_ranges
    from appliance.cluster.preflight import consumers_of
    from appliance.config import load_cluster

    given = imported.parse(carried)
    parts = sorted(given.partitions)
    were = "was" if len(parts) == 1 else "were"
    later = (f"whether {ranges('partition', format_ranges(parts))} {were} consumed since the "
             "export is checked when this node starts")
    base = load_cluster()
    if not _url(nats_url):
        if any(src.start for src in given.partitions.values()):  # none: never consumed
            click.echo(f"semtrace: No NATS URL (--nats, or url in cluster.toml), so {later}.",
                       err=True)
        return
    settings = cluster_settings(base, url=nats_url, partitions=given.count)
    try:
        bus.require_nats()
        last = bus.run(consumers_of(settings, parts))
    except SemtraceError as exc:  # NATS down or refusing: the node's start checks again
        click.echo(f"semtrace: {str(exc).rstrip('.')}; so {later}.", err=True)
        return
    row = db.execute("SELECT value FROM meta WHERE key = ?", (DATA_DIR_ID,)).fetchone()
    imported.refuse_stale_export(str(path), carried, last, str(row[0]) if row else "")


def _url(nats_url: str | None) -> str:
    """The NATS URL the import may ask: --nats, else cluster.toml's ("" for none)."""
    from appliance.config import load_cluster

    return nats_url or load_cluster().url or ""
