"""A thread's turns as a tree by parent pointers, laid out for display. Pure.

A chain of single replies stays at one level; where a turn has several
children (the user went back to it and asked again) each child's sub-tree
becomes a `Branch`, indented one level. Turns whose parent is not in the
thread (none, or shredded) start their own chain at the top level.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from appliance.records import Record


@dataclass(frozen=True)
class Turn:
    """One turn as displayed: its record, its parent in the thread and the gap to it.

    `number` is the turn's place in the thread in time order (1 = first prompt), the
    name people use for it ("turn #3"); record ids are store-wide and opaque."""

    record: Record
    parent: Record | None
    gap_seconds: float | None
    depth: int = 0
    number: int = 0
    parent_number: int | None = None
    later_day: bool = False  # on a later UTC day than the thread's first turn: show its date


@dataclass(frozen=True)
class Branch:
    """The sub-tree of the `index`-th (0-based) of `count` children of turn `from_id`
    (numbered `from_number` in the thread)."""

    from_id: int
    index: int
    count: int
    items: tuple[Turn | Branch, ...]
    from_number: int = 0


Item = Turn | Branch


def _children(records: Sequence[Record]) -> tuple[list[Record], dict[int, list[Record]]]:
    seen: set[int] = set()
    kids: dict[int, list[Record]] = defaultdict(list)
    roots = []
    # a parent must come earlier in (time, id) order: no cycle can form
    for r in sorted(records, key=lambda r: (r.ts, r.record_id)):
        if r.parent_id is not None and r.parent_id in seen:
            kids[r.parent_id].append(r)
        else:
            roots.append(r)
        seen.add(r.record_id)
    return roots, kids


def _turn(r: Record, parent: Record | None, depth: int, numbers: dict[int, int],
          later: frozenset[int]) -> Turn:
    gap = None if parent is None else (r.ts - parent.ts).total_seconds()
    return Turn(record=r, parent=parent, gap_seconds=gap, depth=depth,
                number=numbers[r.record_id],
                parent_number=None if parent is None else numbers.get(parent.record_id),
                later_day=r.record_id in later)


def _chain(start: Record, parent: Record | None, kids: dict[int, list[Record]],
           depth: int, numbers: dict[int, int], later: frozenset[int]) -> tuple[Item, ...]:
    """A run of single replies from `start`, ending in branches where the run forks."""
    items: list[Item] = []
    node, up = start, parent
    while True:
        items.append(_turn(node, up, depth, numbers, later))
        below = kids.get(node.record_id, [])
        if len(below) == 1:
            node, up = below[0], node
            continue
        for i, child in enumerate(below):
            items.append(Branch(node.record_id, i, len(below),
                                _chain(child, node, kids, depth + 1, numbers, later),
                                from_number=numbers[node.record_id]))
        return tuple(items)


def utc_day(ts: datetime) -> date:
    """The UTC day of a time (the day the thread view's heading and times are in)."""
    return ts.astimezone(UTC).date()


def layout(records: Sequence[Record]) -> tuple[Item, ...]:
    """The display tree of a thread's records (any order in; time order within a chain)."""
    roots, kids = _children(records)
    by_id = {r.record_id: r for r in records}
    ordered = sorted(records, key=lambda r: (r.ts, r.record_id))
    numbers = {r.record_id: i + 1 for i, r in enumerate(ordered)}
    # a thread may run past UTC midnight (the horizon is 72 h): a time alone then misreads
    later = frozenset(r.record_id for r in ordered if utc_day(r.ts) != utc_day(ordered[0].ts))
    items: list[Item] = []
    for root in roots:
        parent = by_id.get(root.parent_id) if root.parent_id is not None else None
        items.extend(_chain(root, parent, kids, 0, numbers, later))
    return tuple(items)


def flatten(items: Sequence[Item]) -> list[Turn]:
    """The turns of a layout in display order."""
    out: list[Turn] = []
    for it in items:
        if isinstance(it, Turn):
            out.append(it)
        else:
            out.extend(flatten(it.items))
    return out
