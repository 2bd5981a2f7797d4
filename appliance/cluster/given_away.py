"""The partitions a node gave away: it must not consume them again from a stale --own.

`cluster forget` removes a moved partition's tenants from the old node. Its
`--own` (or `own` in cluster.toml) may still name the partition: restarted
while the new owner is down (its claim released or expired), the old node would
claim the partition and consume its queued prompts into a store that no longer
holds its tenants, splitting their conversations over two nodes. So `forget`
notes the partitions in the store's `meta`, in the transaction that removes
their rows, and `serve` refuses to start with one of them. The note goes when
the partition comes back with its data (`cluster import` of one of its
tenants) or, when its owner and data are lost, by `cluster reclaim`.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.errors import SemtraceError

KEY = "cluster_given_away"


@dataclass(frozen=True)
class GivenAway:
    """The partitions this node gave away (and when), in a partition count."""

    count: int
    partitions: dict[int, float]


def read(db: Any) -> GivenAway | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    if row is None:
        return None
    value = json.loads(row[0])
    return GivenAway(int(value["count"]), {int(p): float(t)
                                           for p, t in value["partitions"].items()})


def _write(db: Any, given: GivenAway) -> None:
    if not given.partitions:
        db.execute("DELETE FROM meta WHERE key = ?", (KEY,))
        return
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
               (KEY, json.dumps({"count": given.count, "partitions": {
                   str(p): t for p, t in sorted(given.partitions.items())}})))


def note(db: Any, partitions: list[int], count: int) -> None:
    """Add `partitions` (of `count`), inside the transaction that forgets their tenants."""
    old = read(db)
    kept = old.partitions if old is not None and old.count == count else {}
    now = time.time()
    _write(db, GivenAway(count, {**kept, **{p: now for p in partitions}}))
    forget_consumed(db, set(partitions))


def take_back(db: Any, partitions: set[int]) -> list[int]:
    """Drop `partitions` from the note (inside the caller's transaction): the ones dropped."""
    old = read(db)
    if old is None:
        return []
    back = sorted(p for p in old.partitions if p in partitions)
    _write(db, GivenAway(old.count, {p: t for p, t in old.partitions.items()
                                     if p not in partitions}))
    return back


def take_back_tenants(db: Any, tenants: list[str]) -> list[int]:
    """Drop the partitions of these imported tenants (inside the import's transaction)."""
    from appliance.cluster.partition import partition_of

    old = read(db)
    if old is None:
        return []
    return take_back(db, {partition_of(t, old.count) for t in tenants})


def refuse(db: Any, owned: list[int], count: int) -> None:
    """SemtraceError in one sentence if `owned` (of `count`) names a partition given away."""
    from appliance.cluster.partition import format_ranges

    given = read(db)
    if given is None or given.count != count:
        return
    stale = sorted(set(owned) & set(given.partitions))
    if not stale:
        return
    spec = format_ranges(stale)
    when = datetime.fromtimestamp(given.partitions[stale[0]], UTC).strftime("%Y-%m-%d %H:%M")
    word = "partition" if len(stale) == 1 else "partitions"
    raise SemtraceError(
        f"This node gave {word} {spec} away (`cluster forget` at {when} UTC) and holds none of "
        f"its tenants: start it without {spec} in --own (`own` in cluster.toml); to take it "
        "back, import its tenants from the node that owns it now (`cluster export` there, "
        f"`cluster import` here), or, if that node and its data are lost, run `semtrace "
        f"cluster reclaim --partitions {spec}` here. Nothing was consumed.")


def check_serve(data_dir: Path, ring: Any, owned: list[int] | None, count: int) -> list[str]:
    """`serve --check`'s part, read-only, with the keyring the check unlocked (None: a key
    rotation is pending, whose own check speaks first): SemtraceError if `owned` (None: no
    NATS) names a partition given away; what serve will undo at start (an interrupted
    import)."""
    from appliance.store import DB_FILE, connect, import_journal

    if ring is None:
        return []
    conn = connect(data_dir / DB_FILE, ring, readonly=True)
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            return []  # a store before its first migration: nothing was noted in it
        if owned is not None:
            refuse(conn, owned, count)
        keys = import_journal.pending(conn)
    finally:
        conn.close()
    return ["remove the data keys of an interrupted `cluster import`"] if keys else []


# ------------------------------------------------- partitions consumed here, then elsewhere

CONSUMED = "cluster_consumed"


def _consumed(db: Any) -> tuple[int, dict[int, str]]:
    count, parts, _ = _consumed_starts(db)
    return count, parts


def _consumed_starts(db: Any) -> tuple[int, dict[int, str], dict[int, str]]:
    """(count, partition -> node name, partition -> the id of the start that made its
    consumer: earlier builds noted none)."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (CONSUMED,)).fetchone()
    if row is None:
        return 0, {}, {}
    value = json.loads(row[0])
    return (int(value["count"]), {int(p): str(n) for p, n in value["partitions"].items()},
            {int(p): str(s) for p, s in value.get("starts", {}).items()})


def consumed_here(db: Any, count: int) -> dict[int, str]:
    """The partitions (of `count`) this data dir consumed, each with its node name then."""
    noted_count, parts = _consumed(db)
    return parts if noted_count == count else {}


def consumer_starts(db: Any, partitions: list[int], count: int) -> dict[int, str]:
    """The start ids of the consumers this data dir last made for `partitions` (of `count`)."""
    noted_count, _, starts = _consumed_starts(db)
    return {p: starts[p] for p in partitions if p in starts} if noted_count == count else {}


def _write_consumed(db: Any, count: int, parts: dict[int, str],
                    starts: dict[int, str] | None = None) -> None:
    if not parts:
        db.execute("DELETE FROM meta WHERE key = ?", (CONSUMED,))
        return
    value: dict[str, Any] = {"count": count,
                             "partitions": {str(p): n for p, n in sorted(parts.items())}}
    if kept := {str(p): s for p, s in sorted((starts or {}).items()) if p in parts}:
        value["starts"] = kept
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
               (CONSUMED, json.dumps(value)))


def note_consumed(db: Any, owned: list[int], count: int, node: str, start: str = "") -> None:
    """Remember that this data dir consumes `owned` under the name `node`, their consumers
    made by the start `start` (each start, once the partitions' consumers name it: a start
    that dies before, loading its models, say, leaves the note as the consumers left it, so
    a renamed node is not refused later). An import's note of them goes: consumed here."""
    from appliance.cluster import imported

    old_count, parts, starts = _consumed_starts(db)
    same = old_count == count
    with db:
        db.execute("BEGIN IMMEDIATE")
        kept = {p: s for p, s in (starts if same else {}).items() if p not in owned}
        _write_consumed(db, count, {**(parts if same else {}), **{p: node for p in owned}},
                        {**kept, **({p: start for p in owned} if start else {})})
        imported.drop(db, set(owned))
        if start:  # consumed: this data dir's line of starts goes on from here
            db.execute("DELETE FROM meta WHERE key IN (?, ?)", (STARTING, RESTORED))


def forget_consumed(db: Any, partitions: set[int]) -> list[int]:
    """Drop `partitions` from the consumed note and from an import's note (inside the
    caller's transaction); the ones dropped."""
    from appliance.cluster import imported

    count, parts, starts = _consumed_starts(db)
    gone = sorted(p for p in parts if p in partitions)
    _write_consumed(db, count, {p: n for p, n in parts.items() if p not in partitions}, starts)
    return sorted(set(gone) | set(imported.drop(db, partitions)))


def reclaimable(db: Any, partitions: set[int]) -> list[int]:
    """The ones of `partitions` that `cluster reclaim` would give back (read only)."""
    from appliance.cluster import imported

    given = read(db)
    _, parts = _consumed(db)
    brought = imported.read(db)
    return sorted(p for p in partitions
                  if (given is not None and p in given.partitions) or p in parts
                  or p in brought.partitions)


def reclaim(db: Any, partitions: set[int], count: int, node: str,
            exported: frozenset[int] = frozenset()) -> list[int]:
    """Give `partitions` back to this node, noted as consumed under `node` (inside the
    caller's transaction), as a start notes them: should another node consume them before
    this one starts, this one refuses them. `exported`: those whose tenants this node
    exported and holds still (`exported.moved`). The ones given back."""
    back = sorted(set(take_back(db, partitions)) | set(forget_consumed(db, partitions))
                  | (exported & partitions))
    old_count, parts, starts = _consumed_starts(db)
    if back:  # a reclaim's consumer names no start
        _write_consumed(db, count, {**(parts if old_count == count else {}),
                                    **{p: node for p in back}},
                        starts if old_count == count else {})
    return back


# ------------------------------------------------- two copies of one data dir, one at a time

STARTING = "cluster_starting"  # the starts since the last one that consumed (killed ones)
RESTORED = "cluster_restored"  # `semtrace restore` made this copy; gone once it consumed


def note_starting(db: Any, start: str) -> None:
    """Remember, before its consumers are made, that the start `start` of this data dir is
    under way: killed before it notes what it consumed, its consumers are still its own."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (STARTING,)).fetchone()
    starts = [*json.loads(row[0]), start][-50:] if row else [start]
    with db:
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                   (STARTING, json.dumps(starts)))


def note_restored(db: Any, taken_at: str) -> None:
    """Mark a data dir restored from a backup (inside the restore's transaction): its
    original may have consumed after the backup, which is no copy running beside it."""
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (RESTORED, taken_at))


def _copy_consumed(db: Any, p: int, start: str | None) -> bool:
    """Whether partition `p`'s consumer, made by the start `start` of this data dir, was
    made by another copy of it since this one last consumed `p`: a start it neither noted
    nor began. A restored data dir is behind its original by design (the lost node's
    backup), so only the original, or a copy not restored, is told."""
    _, _, starts = _consumed_starts(db)
    if start is None or p not in starts or start == starts[p]:
        return False
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN (?, ?)",
                           (STARTING, RESTORED)).fetchall())
    return RESTORED not in meta and start not in json.loads(meta.get(STARTING, "[]"))


DATA_DIR_ID = "cluster_data_dir_id"


def data_dir_id(db: Any) -> str:
    """This data dir's id (made at its first start with NATS), which its consumers and
    claims carry: a restart of this data dir under any name, apart from another data dir."""
    row = db.execute("SELECT value FROM meta WHERE key = ?", (DATA_DIR_ID,)).fetchone()
    if row is not None:
        return str(row[0])
    made = secrets.token_hex(8)
    with db:
        db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (DATA_DIR_ID, made))
    return str(db.execute("SELECT value FROM meta WHERE key = ?", (DATA_DIR_ID,)).fetchone()[0])


def refuse_taken(db: Any, owned: list[int], count: int, me: str,
                 last: dict[int, Any], data_dir: str = "") -> None:
    """SemtraceError if a partition this node consumed was consumed by another node since
    (`last`: each partition's `stream.LastConsumer`, from its JetStream consumer): that node
    holds the tenants' newer records, and taking the partition back would split them. Or
    another node claimed it with `cluster reclaim`: it is that node's now.

    A consumer that names its data dir (`data_dir`: this one's id) is this node's own
    whatever name it carries (a start that died between making the consumers and noting
    its name), and another data dir's even under this node's name; unless another copy of
    this data dir made it since (`_copy_consumed`)."""
    noted_count, parts = _consumed(db)
    if noted_count != count:
        return
    found = {p: kind for p in owned
             if (kind := _taken(db, p, parts, last.get(p), me, data_dir)) is not None}
    if not found:
        return
    from appliance.cluster.partition import format_ranges

    first = min(found)
    other = last[first]
    # every partition refused alike, at once: one at a time, an operator who took the
    # named one out of --own was refused for the next at each start (5 starts for 6-10)
    group = [p for p in sorted(found) if found[p] == found[first] and last[p].node == other.node]
    was = "was" if len(group) == 1 else "were"
    raise SemtraceError(_taken_sentence(found[first], format_ranges(group), was, other.node,
                                        me, parts[first]))


def _taken(db: Any, p: int, parts: dict[int, str], other: Any, me: str,
           data_dir: str) -> str | None:
    """Why partition `p` is refused (`refuse_taken`): "copy", "renamed", "reclaimed",
    "taken", or None (this node may consume it)."""
    if p not in parts or other is None:
        return None
    if other.data_dir is not None:
        if other.data_dir == data_dir and _copy_consumed(db, p, other.start):
            return "copy"
        if other.data_dir == data_dir:
            return None
    elif other.node == parts[p]:  # an earlier build's consumer: by its name only
        return None
    if other.node == me:  # this data dir was renamed as the node that took p since
        return "renamed"
    return "reclaimed" if other.reclaimed else "taken"


def _taken_sentence(kind: str, p: str, was: str, node: str, me: str, old_name: str) -> str:
    """The refusal of `refuse_taken`; `p` the partitions (a range), `was` "was"/"were"."""
    one = was == "was"
    head, its = f"{'Partition' if one else 'Partitions'} {p}", "its" if one else "their"
    if kind == "copy":
        return (f"{head} {was} consumed by another copy of this data dir (as node "
                f"'{node}': one restored from a backup, or copied, and started "
                f"while this one was stopped) since this one last did, so {its} tenants' "
                f"newer records are there: keep that copy and start this one without "
                f"{p} in --own (`own` in cluster.toml) with its stale copy removed "
                f"(`semtrace cluster forget --partitions {p} --yes --discard`), or, if "
                f"that copy and its data are lost, run `semtrace cluster reclaim "
                f"--partitions {p}` here. Nothing was consumed.")
    if kind == "renamed":
        return (f"{head} {was} consumed by another node named '{me}' since this node "
                f"last did (as '{old_name}'), so {its} tenants' newer records are there: start "
                "this node under its own name (--node, `node` in cluster.toml), or without "
                f"{p} in --own and with its stale copy removed (`semtrace cluster forget "
                f"--partitions {p} --yes --discard`). Nothing was consumed.")
    if kind == "reclaimed":
        return (f"{head} {was} reclaimed by node '{node}' (`semtrace cluster "
                f"reclaim` there) since this node last consumed {'it' if one else 'them'}, so "
                f"{'it is' if one else 'they are'} that node's now: "
                f"start this node without {p} in --own (`own` in cluster.toml) and remove its "
                f"stale copy (`semtrace cluster forget --partitions {p} --yes --discard`), "
                f"or, if '{node}' should not have {'it' if one else 'them'}, run `semtrace "
                f"cluster reclaim --partitions {p}` here. Nothing was consumed.")
    return (f"{head} {was} consumed by node '{node}' since this node last did, so "
            f"{its} tenants' newer records are there: start this node without {p} in --own "
            f"(`own` in cluster.toml) and remove its stale copy (`semtrace cluster forget "
            f"--partitions {p} --yes --discard`), or, if '{node}' and its data are lost, "
            f"run `semtrace cluster reclaim --partitions {p}` here. Nothing was consumed.")
