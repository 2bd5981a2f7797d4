"""Reading a message another node wrote into NATS, which may run another version.

During a rolling upgrade nodes of two versions share one bus, so a message may carry a
field this version does not know (a later version added it). The rule for every message
that crosses between nodes: a field this version does not know is ignored; a field it
knows must be there (unless it has a default: an earlier version did not write it) and of
its type, else the message is refused with one sentence (`ValueError`). A change that
cannot keep that rule (a field renamed, or of another type) raises the message's `"v"`
(`WIRE_VERSION`): a message of a higher `v` is refused in one sentence, not misread; one of
this `v` or lower (or without one) is read as above. Pure: no NATS here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")
WIRE_VERSION = 1  # the highest `"v"` of a message between nodes this version reads


def check_version(obj: Any, what: str) -> None:
    """Pure: ValueError naming `what` when the JSON object `obj` says it is of a later,
    incompatible wire version than this node reads (a missing `v` is version 1)."""
    if not isinstance(obj, dict) or "v" not in obj:
        return
    v = obj["v"]
    if not _accepts(int, v):
        raise ValueError(f"The {what}'s field 'v' is a {type(v).__name__}, not an int.")
    if v > WIRE_VERSION:
        raise ValueError(f"The {what} is of wire version {v}, which this node (wire version "
                         f"{WIRE_VERSION}) cannot read: upgrade this node.")


def _accepts(kind: Any, value: Any) -> bool:
    """Pure: whether a JSON value is of an annotated field type (str, int, float, bool,
    and their unions with None)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_accepts(k, value) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:  # JSON writes 1.0 as 1.0, but another writer may write 1
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in (str, bool):
        return isinstance(value, kind)
    raise TypeError(f"{kind!r} is not a wire type")  # a programming error, not a message's


def known_fields(cls: type[T], obj: Any, what: str, *,
                 local: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pure: the fields of dataclass `cls` in the JSON object `obj` (checked), and the
    fields `obj` has that `cls` does not know; `local`: fields of `cls` that are never on
    the wire. ValueError naming `what` when `obj` is not an object, a field `cls` needs is
    missing, or one is of another type."""
    if not isinstance(obj, dict):
        raise ValueError(f"The {what} is not a JSON object.")
    hints = typing.get_type_hints(cls)
    known: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in local:
            continue
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"The {what} lacks its field '{f.name}'.")
            continue
        value = obj[f.name]
        if not _accepts(hints[f.name], value):
            raise ValueError(f"The {what}'s field '{f.name}' is a {type(value).__name__}, "
                             f"not a {_name(hints[f.name])}.")
        widen = isinstance(value, int) and not isinstance(value, bool) and (
            hints[f.name] is float or float in typing.get_args(hints[f.name]))
        known[f.name] = float(value) if widen else value
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return known, {k: v for k, v in obj.items() if k not in names}


def read(cls: type[T], obj: Any, what: str) -> T:
    """Pure: `cls` from the JSON object `obj`, its unknown fields ignored (`known_fields`)."""
    return cls(**known_fields(cls, obj, what)[0])


def _name(kind: Any) -> str:
    args = typing.get_args(kind)
    if args:
        return " or ".join("null" if a is type(None) else a.__name__ for a in args)
    return "number" if kind is float else str(kind.__name__)
