"""Whose copy of a partition an import brought, as of its export: a node must not consume
a partition from a copy that its old owner has outgrown since.

A node refuses a partition that another node consumed since it last did
(`given_away.refuse_taken`), but the new owner after an import never consumed the
partition, so nothing refused it. The move cut short (the old owner started again with
the partition still in its --own, before `forget`) then split the tenants: the old
owner stored new prompts after the export, and the new owner, started later, consumed
the partition from its imported copy, which lacks them; nothing merges two copies. So
`export` writes into its file the exporting data dir's id and, for each partition, the
id of the start that made its consumer (`stream.LastConsumer.start`, noted by that start
in `given_away`'s consumed note); `import` notes them here; and `serve` refuses a
partition whose consumer another start made since (the old owner's, or any other node's),
until this node consumed it once (the note goes then, or with `forget` or `reclaim`).
A node that never consumed a partition over NATS (filled by `replay` or the socket)
exports its data dir's id and no start: any consumer of this build made since is newer.
`cluster import` checks the same on NATS before it imports (cli/cluster_stale.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from appliance.errors import InputError, SemtraceError

KEY = "cluster_imported"
ORIGIN = "export_origin"  # the export file's meta key


@dataclass(frozen=True)
class Source:
    """One partition's consumer as the export found it noted on the exporting node."""

    data_dir: str
    node: str
    start: str
    at: float  # when it was exported


@dataclass(frozen=True)
class Imported:
    count: int
    partitions: dict[int, Source]


def origin(db: Any, partitions: list[int], count: int, held: list[int]) -> str:
    """What an export of `partitions` (of `count`) carries (JSON): this data dir's id and,
    for each partition, the start that made its consumer here. A partition held here only
    as imported passes its import's origin on: exported again before this node consumed
    it, the copy is still as of that first export. A partition of `held` (those of the
    exported tenants) that this node never consumed over NATS (its store filled by `replay`
    or the socket, or an earlier build's) names no start: any consumer made since by a
    start of this build is then newer than the file."""
    from appliance.cluster.given_away import consumed_here, consumer_starts, data_dir_id

    starts = consumer_starts(db, partitions, count)
    me = data_dir_id(db)  # made now if this data dir never ran with NATS: its starts carry it
    names = consumed_here(db, count)
    found: dict[str, dict[str, Any]] = {str(p): {"node": names.get(p, ""), "start": s}
                                        for p, s in sorted(starts.items())}
    brought = read(db)
    if brought.count == count:
        found |= {str(p): {"node": s.node, "start": s.start, "data_dir": s.data_dir,
                           "at": s.at}
                  for p, s in sorted(brought.partitions.items())
                  if p in partitions and str(p) not in found}
    found |= {str(p): {"node": names.get(p, ""), "start": ""}
              for p in sorted(set(held) & set(partitions)) if str(p) not in found}
    return json.dumps({"count": count, "data_dir": me, "at": time.time(),
                       "partitions": found})


def read(db: Any) -> Imported:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    if row is None:
        return Imported(0, {})
    value = json.loads(row[0])
    return Imported(int(value["count"]), {
        int(p): Source(e["data_dir"], e["node"], e["start"], float(e["at"]))
        for p, e in value["partitions"].items()})


def _write(db: Any, noted: Imported) -> None:
    if not noted.partitions:
        db.execute("DELETE FROM meta WHERE key = ?", (KEY,))
        return
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (KEY, json.dumps(
        {"count": noted.count, "partitions": {
            str(p): {"data_dir": s.data_dir, "node": s.node, "start": s.start, "at": s.at}
            for p, s in sorted(noted.partitions.items())}})))


def parse(carried: str) -> Imported:
    """An export's origin (`origin`'s JSON) as its partitions' sources."""
    value = json.loads(carried)
    # a partition passed on by a node that held it only as imported names its first origin
    return Imported(int(value["count"]), {
        int(p): Source(str(e.get("data_dir", value["data_dir"])), str(e["node"]),
                       str(e["start"]), float(e.get("at", value["at"])))
        for p, e in value["partitions"].items()})


def outgrown(sources: dict[int, Source], partitions: list[int], last: dict[int, Any],
             data_dir: str) -> tuple[int, Source, Any] | None:
    """The first of `partitions` whose consumer (`last`: each one's `stream.LastConsumer`)
    another start made than the one its export saw (`sources`), with both; None if none.
    A consumer this data dir (`data_dir`: its id) made is its own (killed at start). An
    export that saw no start of its node (`Source.start` empty) is outgrown by any
    consumer but an earlier build's of that node (named as its note named it)."""
    for p in partitions:
        source, other = sources.get(p), last.get(p)
        if source is None or other is None or (data_dir and other.data_dir == data_dir):
            continue  # no consumer to judge by; or this data dir's own
        if other.data_dir == source.data_dir and other.start == source.start:
            continue  # the consumer the export saw: nobody consumed since
        if not source.start and other.data_dir is None and other.node == source.node:
            continue  # an earlier build's consumer of the exporting node, from before
        return p, source, other
    return None


def _exported(source: Source, what: str, to: str = "") -> str:
    """For a refusal: how `what` left its node (UTC, to the minute), the node named if the
    export saw its start."""
    when = datetime.fromtimestamp(source.at, UTC).strftime("%Y-%m-%d %H:%M")
    if source.start:
        return f"after {what} exported from '{source.node}'{to} (at {when} UTC)"
    return (f"and {what} exported{to} (at {when} UTC) from a data dir that had not consumed it "
            "over NATS")


def _verb(other: Any) -> str:
    """For a refusal: what the later consumer's start did with the partition."""
    return "reclaimed" if other.reclaimed else "consumed"


def refuse_stale_export(name: str, carried: str, last: dict[int, Any], data_dir: str) -> None:
    """InputError, before anything is imported, if the export `name` (its origin
    `carried`) is older than its partitions: their consumer on NATS (`last`) was made
    since by another start, whose node may hold newer records than the file."""
    sources = parse(carried).partitions
    found = outgrown(sources, sorted(sources), last, data_dir)
    if found is None:
        return
    p, source, other = found
    raise InputError(
        f"Partition {p} was {_verb(other)} by node '{other.node}' "
        f"{_exported(source, f'{name} was')}, so the file may lack its tenants' newer records: "
        f"export the partition again (stop '{other.node}', `semtrace cluster export "
        f"--partitions {p}` there) and import that file instead, or, if '{other.node}' and "
        "its data are lost, import this one with --owner-lost and run `semtrace cluster "
        f"reclaim --partitions {p}` here. Nothing was imported.")


def note(db: Any, carried: str | None) -> None:
    """Note an export's origin (inside the import's transaction): its partitions' history
    here is the exporting node's from now on, so this node's own consumed note of them
    goes (it consumed them before they went elsewhere, or never)."""
    from appliance.cluster.given_away import forget_consumed

    if carried is None:
        return
    given = parse(carried)
    forget_consumed(db, set(given.partitions))
    old = read(db)
    kept = old.partitions if old.count == given.count else {}
    _write(db, Imported(given.count, {**kept, **given.partitions}))


def drop(db: Any, partitions: set[int]) -> list[int]:
    """Drop `partitions` from the note (inside the caller's transaction): the ones dropped."""
    old = read(db)
    gone = sorted(p for p in old.partitions if p in partitions)
    if gone:
        _write(db, Imported(old.count, {p: s for p, s in old.partitions.items()
                                        if p not in partitions}))
    return gone


def refuse(db: Any, owned: list[int], count: int, last: dict[int, Any],
           data_dir: str) -> None:
    """SemtraceError if a partition of `owned` that this node holds only as imported had its
    consumer made since the export by another start than the one the export saw (`last`:
    each partition's `stream.LastConsumer`): that node may hold newer records."""
    noted = read(db)
    if noted.count != count:
        return
    found = outgrown(noted.partitions, owned, last, data_dir)
    if found is not None:
        p, source, other = found
        raise SemtraceError(
            f"Partition {p} was {_verb(other)} by node '{other.node}' "
            f"{_exported(source, 'its tenants were', ' to this node')}, so the copy "
            "imported here may lack their newer records: start this node without "
            f"{p} in --own (`own` in cluster.toml) and remove that copy (`semtrace cluster "
            f"forget --partitions {p} --yes --discard`), or move the partition again (stop "
            f"'{other.node}', `semtrace cluster export --partitions {p}` there, the forget "
            "above here, then `semtrace cluster import` here), or, if "
            f"'{other.node}' and its data are lost, run `semtrace cluster reclaim "
            f"--partitions {p}` here. Nothing was consumed.")
