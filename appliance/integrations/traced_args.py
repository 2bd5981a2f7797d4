"""The decorator's arguments (`decorator.py`, `Semtrace.traced`): the names it is given
checked against the function's, a call's arguments by name, and the user of a call that
names none."""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Callable
from typing import Any

from appliance.integrations import message_text


def check_names(fn: Callable[..., Any], sig: inspect.Signature, **names: str | None) -> None:
    """`traced`'s argument names must be the function's (or go to its `**kwargs`): a
    misspelt one would otherwise fail every call of it, at the first call, not here."""
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    for what, name in names.items():
        if name is not None and name not in sig.parameters:
            raise TypeError(f"semtrace.traced({what}={name!r}): "
                            f"{getattr(fn, '__qualname__', fn)!s} has no argument {name!r}.")


def arguments(sig: inspect.Signature, bound: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments by name, those its `**kwargs` took included."""
    extra = next((bound.get(p.name) for p in sig.parameters.values()
                  if p.kind is p.VAR_KEYWORD), None)
    return {**(extra if isinstance(extra, dict) else {}), **bound}


def anonymous_user(session_id: str | None) -> str:
    """The user id of a call that has none: its session's, else its own, so that anonymous
    callers never share one user (strangers' prompts are never linked together)."""
    if session_id:
        return f"anonymous:session:{session_id}"
    return "anonymous:call:" + secrets.token_hex(8)


def prompt_text(value: Any) -> str | None:
    """A prompt as the application gave it, as text: a string, the text parts of a list of
    parts (a multimodal message's content, joined by newlines), a number as written; None
    when it holds no text (None, an image alone, blanks): such a prompt is not sent."""
    text = message_text(value)
    if text is None and isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    return text if text is not None and text.strip() else None
