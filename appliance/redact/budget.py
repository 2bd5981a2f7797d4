"""One prompt's time budget: every step of its redaction draws on the same clock.

The policy's `pattern_timeout_s` is the time the redaction of one prompt may take: its
normalisation and its share of spaCy's NER batch are charged first, then Presidio's patterns,
the IBAN checks and Semtrace's own recognisers (their expressions and their loops) run
against what is left. The budget is per thread and per prompt (`prompt_budget`), so two
redactors with different policies, or two worker threads, never share a limit.

Semtrace's recognisers compile their expressions with `timed` (the `regex` module, which can
stop a match part-way, with `re`'s syntax); each call gets the time left, and an expression
or a loop (`check`) past it raises `RedactionFailed`, which the redactor turns into a refusal
of that prompt (`Unredactable`): nothing of it is stored partly redacted.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import regex

from appliance.errors import SemtraceError

# `regex` takes a timeout of 0 as "already past" but a negative one as "no limit": the time
# left is never passed below this.
MIN_TIMEOUT_S = 1e-6

_LOCAL = threading.local()

# `re`'s flags by name: `regex` numbers some differently (re.ASCII is 256, regex.ASCII 128,
# which `re` calls DEBUG), so a flag is translated, never passed on as a number.
_FLAG_NAMES = ("IGNORECASE", "LOCALE", "MULTILINE", "DOTALL", "UNICODE", "VERBOSE", "ASCII")


def regex_flags(flags: int) -> int:
    """`re` flags as the same flags of `regex`; a flag `regex` has no equal of is refused."""
    out, rest = 0, int(flags)
    for name in _FLAG_NAMES:
        bit = int(getattr(re, name))
        if rest & bit:
            out |= int(getattr(regex, name))
            rest &= ~bit
    if rest:
        raise ValueError(f"re flags {rest:#x} have no regex equivalent")
    return out


class RedactionFailed(SemtraceError):
    """The analyser could not finish a prompt. The message names the cause (a recogniser,
    a pattern name, an exception type), never the text."""


@dataclass(frozen=True)
class Budget:
    """The time one prompt's redaction may take (`limit`, seconds) and when it runs out
    (`deadline`, on `time.monotonic`)."""

    limit: float
    deadline: float

    def remaining(self) -> float:
        """Seconds left (negative once past the deadline)."""
        return self.deadline - time.monotonic()


@contextmanager
def prompt_budget(limit: float | None, *, spent: float = 0.0) -> Iterator[Budget | None]:
    """Run one prompt's redaction on this thread under `limit` seconds, `spent` of them
    already used (its normalisation and share of the NER batch). None: no limit."""
    previous = getattr(_LOCAL, "budget", None)
    budget = None if limit is None else Budget(limit, time.monotonic() + limit - spent)
    _LOCAL.budget = budget
    try:
        yield budget
    finally:
        _LOCAL.budget = previous


def current() -> Budget | None:
    """The budget of the prompt this thread is redacting, if any."""
    return getattr(_LOCAL, "budget", None)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the step running on this thread (a recogniser), for the refusal's message."""
    previous = getattr(_LOCAL, "stage", None)
    _LOCAL.stage = name
    try:
        yield
    finally:
        _LOCAL.stage = previous


def _past(what: str, budget: Budget) -> RedactionFailed:
    where = getattr(_LOCAL, "stage", None)
    return RedactionFailed(f"{what}{f' of {where}' if where else ''} ran past the prompt's "
                           f"time budget ({budget.limit:g} s, pattern_timeout_s)")


def check(what: str = "the redaction") -> None:
    """Raise `RedactionFailed` if this thread's prompt is past its budget."""
    budget = current()
    if budget is not None and budget.remaining() <= 0:
        raise _past(what, budget)


def time_left(default: float | None = None) -> float | None:
    """The timeout to give one expression now: the prompt's time left (never below
    `MIN_TIMEOUT_S`), or `default` outside a prompt's redaction."""
    budget = current()
    if budget is None:
        return default
    return max(budget.remaining(), MIN_TIMEOUT_S)


class RemainingSeconds:
    """A timeout that is read when used: the running prompt's time left, or `default`
    outside one. Presidio's IBAN recogniser reads its limit from a module global at each call
    and passes it to `regex`, which takes any number (`__float__`): with this in the global,
    each prompt gets its own redactor's budget, not whichever policy was loaded last."""

    def __init__(self, default: float) -> None:
        self.default = default

    def __float__(self) -> float:
        left = time_left(self.default)
        return self.default if left is None else left

    def __int__(self) -> int:
        return int(float(self))

    def __str__(self) -> str:
        return f"{float(self):.3g}"

    __repr__ = __str__


class TimedPattern:
    """An expression in `re`'s syntax, compiled by `regex`, whose calls run under the time
    left to the prompt being redacted (no limit outside one); past it, `RedactionFailed`."""

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled = regex.compile(pattern, regex_flags(flags) | regex.VERSION0)

    def _fail(self, budget: Budget | None) -> RedactionFailed:
        shown = self.pattern if len(self.pattern) <= 40 else self.pattern[:37] + "..."
        if budget is None:  # cannot happen: no timeout is given outside a budget
            return RedactionFailed(f"the expression {shown!r} timed out")
        return _past(f"the expression {shown!r}", budget)

    def _call(self, method: str, text: str, pos: int, endpos: int | None) -> Any:
        budget = current()
        if budget is not None and budget.remaining() <= 0:
            raise self._fail(budget)
        try:
            return getattr(self._compiled, method)(text, pos, endpos, timeout=time_left())
        except TimeoutError:
            raise self._fail(budget) from None

    def search(self, text: str, pos: int = 0, endpos: int | None = None) -> Any:
        """`re.Pattern.search` under the prompt's budget."""
        return self._call("search", text, pos, endpos)

    def match(self, text: str, pos: int = 0, endpos: int | None = None) -> Any:
        """`re.Pattern.match` under the prompt's budget."""
        return self._call("match", text, pos, endpos)

    def fullmatch(self, text: str, pos: int = 0, endpos: int | None = None) -> Any:
        """`re.Pattern.fullmatch` under the prompt's budget."""
        return self._call("fullmatch", text, pos, endpos)

    def finditer(self, text: str, pos: int = 0, endpos: int | None = None) -> Iterator[Any]:
        """`re.Pattern.finditer` under the prompt's budget (`bounded_finditer`)."""
        return bounded_finditer(self._compiled, text, (pos, endpos), {}, default=None,
                                fail=self._fail)

    def findall(self, text: str, pos: int = 0, endpos: int | None = None) -> list[Any]:
        """`re.Pattern.findall` under the prompt's budget."""
        return list(self._call("findall", text, pos, endpos))

    def sub(self, repl: str, text: str, count: int = 0) -> str:
        """`re.Pattern.sub` (a string replacement) under the prompt's budget."""
        budget = current()
        if budget is not None and budget.remaining() <= 0:
            raise self._fail(budget)
        try:
            return str(self._compiled.sub(repl, text, count, timeout=time_left()))
        except TimeoutError:
            raise self._fail(budget) from None


def bounded_finditer(compiled: Any, text: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                     default: float | None,
                     fail: Callable[[Budget | None], RedactionFailed]) -> Iterator[Any]:
    """`compiled.finditer(text, *args, **kwargs)` (a `regex` pattern) under the time left to
    the prompt being redacted (`default` outside a prompt's budget; None: no limit): each
    step gets the time left when the iteration began, the budget is checked again after
    each match, and past it `fail(budget)` is raised."""
    budget = current()
    if budget is not None and budget.remaining() <= 0:
        raise fail(budget)
    try:
        for m in compiled.finditer(text, *args, **{**kwargs, "timeout": time_left(default)}):
            yield m
            if budget is not None and budget.remaining() <= 0:
                raise fail(budget)
    except TimeoutError:
        raise fail(budget) from None


def timed(pattern: str, flags: int = 0) -> TimedPattern:
    """Compile `pattern` (`re` syntax and flags) to run under each prompt's budget."""
    return TimedPattern(pattern, flags)
