"""One prompt's time budget: every step of its redaction draws on the same clock.

The policy's `pattern_timeout_s` is the CPU time the redaction of one prompt may cost on the
thread that redacts it (`time.thread_time`): its normalisation and its share of spaCy's NER
batch are charged first, then Presidio's patterns, the IBAN checks and Semtrace's own
recognisers (their expressions and their loops) run against what is left. It is the work
the prompt costs, not the time it waited for a core: on a host busier than its cores an
ordinary long prompt is not refused for the wait. A wall-clock guard (the policy's
`wall_timeout_s`, else `WALL_FACTOR` times the budget) still bounds how long one prompt
holds the worker when the host gives it too little CPU. The budget is per thread and per
prompt (`prompt_budget`), so two redactors with different policies, or two worker threads,
never share a limit.

Semtrace's recognisers compile their expressions with `timed` (the `regex` module, which can
stop a match part-way, with `re`'s syntax); each call gets the time left, and an expression
or a loop (`check`) past it raises `RedactionFailed`, which the redactor turns into a refusal
of that prompt (`Unredactable`): nothing of it is stored partly redacted. `regex` counts its
timeout on the process's CPU clock (C's `clock()`), which never runs slower than the
thread's: a call never costs the prompt more than the time it was given. When other threads
of the process ran meanwhile it can stop early, with the prompt's own budget not spent: the
call is then run again (a `finditer` goes on after its last match) with what is left.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import regex

from appliance.config.redaction import DEFAULT_WALL_FACTOR
from appliance.errors import SemtraceError

# `regex` takes a timeout of 0 as "already past" but a negative one as "no limit": the time
# left is never passed below this.
MIN_TIMEOUT_S = 1e-6

# The wall-clock guard when the policy sets no `wall_timeout_s`: one prompt's redaction may
# take this many times its budget on the wall clock (time waiting for a core included)
# before it is refused all the same.
WALL_FACTOR = DEFAULT_WALL_FACTOR

# How often (wall-clock seconds) the thread's CPU clock is read: a reading is a system call
# (about 1.5 us, 15 times `time.monotonic`) and a long prompt checks its budget some 60,000
# times. In between, the CPU time left is bounded from the last reading (a thread's CPU time
# never runs faster than the wall clock): never more than this much under the true figure.
CPU_READ_EVERY_S = 0.005

_T = TypeVar("_T")

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
    """The CPU time one prompt's redaction may cost its thread (`limit`, seconds), when that
    is spent (`deadline`, on `time.thread_time`), and the wall-clock guard (`wall_deadline`,
    on `time.monotonic`: `wall` seconds from the prompt's start; `wall_set`: the policy's
    `wall_timeout_s`, not `WALL_FACTOR` times `limit`)."""

    limit: float
    deadline: float
    wall_deadline: float
    wall: float = 0.0
    wall_set: bool = False
    # The last reading of the CPU clock: (time.monotonic, time.thread_time) at it.
    _read: list[float] = field(default_factory=list, compare=False, repr=False)

    def cpu_left(self, now: float | None = None) -> float:
        """CPU seconds of this thread left (negative once spent): read from the thread's
        clock at most every `CPU_READ_EVERY_S` (`now`: `time.monotonic()`), and whenever the
        bound from the last reading says the budget may be spent."""
        if now is None:
            now = time.monotonic()
        read = self._read
        if read and now - read[0] < CPU_READ_EVERY_S:
            left = self.deadline - read[1] - (now - read[0])
            if left > 0:
                return left
        cpu = time.thread_time()
        read[:] = (now, cpu)
        return self.deadline - cpu

    def wall_left(self) -> float:
        """Wall-clock seconds left to the guard (negative once past it)."""
        return self.wall_deadline - time.monotonic()

    def remaining(self) -> float:
        """Seconds left: the CPU time left, or the time left to the wall-clock guard when
        that is less (negative once past either)."""
        now = time.monotonic()
        return min(self.wall_deadline - now, self.cpu_left(now))


@contextmanager
def prompt_budget(limit: float | None, *, wall: float | None = None, spent: float = 0.0,
                  waited: float = 0.0) -> Iterator[Budget | None]:
    """Run one prompt's redaction on this thread under `limit` seconds of its CPU, `spent`
    of them already used (its normalisation and share of the NER batch), and a wall-clock
    guard of `wall` seconds (None: `WALL_FACTOR` times `limit`), `spent` and `waited` wall
    seconds of it already gone. `limit` None: no limit."""
    previous = getattr(_LOCAL, "budget", None)
    budget = None
    if limit is not None:
        guard = WALL_FACTOR * limit if wall is None else wall
        budget = Budget(limit, time.thread_time() + limit - spent,
                        time.monotonic() + guard - spent - waited, guard, wall is not None)
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


def past(what: str, budget: Budget) -> RedactionFailed:
    """The refusal of a step (`what`, of the stage running) past the prompt's budget, or past
    its wall-clock guard with CPU time left (the host gave the prompt too little CPU)."""
    where = getattr(_LOCAL, "stage", None)
    what = f"{what}{f' of {where}' if where else ''}"
    if budget.wall_left() <= 0 < budget.cpu_left():
        named = ("wall_timeout_s" if budget.wall_set
                 else f"{budget.wall / budget.limit:g} x pattern_timeout_s")
        return RedactionFailed(f"{what} ran past the prompt's wall-clock guard "
                               f"({budget.wall:g} s, {named}: the host gave it too little CPU)")
    return RedactionFailed(f"{what} ran past the prompt's time budget ({budget.limit:g} s of "
                           f"CPU, pattern_timeout_s)")


def check(what: str = "the redaction") -> None:
    """Raise `RedactionFailed` if this thread's prompt is past its budget."""
    budget = current()
    if budget is not None and budget.remaining() <= 0:
        raise past(what, budget)


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
        return past(f"the expression {shown!r}", budget)

    def _call(self, method: str, text: str, pos: int, endpos: int | None) -> Any:
        call = getattr(self._compiled, method)
        return bounded_call(lambda timeout: call(text, pos, endpos, timeout=timeout),
                            default=None, fail=self._fail)

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
        return str(bounded_call(lambda timeout: self._compiled.sub(repl, text, count,
                                                                   timeout=timeout),
                                default=None, fail=self._fail))


def _spent(budget: Budget | None) -> bool:
    return budget is not None and budget.remaining() <= 0


def bounded_call(call: Callable[[float | None], _T], *, default: float | None,
                 fail: Callable[[Budget | None], RedactionFailed]) -> _T:
    """`call(timeout)` (one `regex` call) under the time left to the prompt being redacted
    (`default` outside a prompt's budget; None: no limit); past it, `fail(budget)` is
    raised. A `TimeoutError` with the prompt's budget not spent (`regex` counts the
    process's CPU: other threads ran meanwhile) runs the call again with what is left."""
    budget = current()
    while True:
        if _spent(budget):
            raise fail(budget)
        try:
            return call(time_left(default))
        except TimeoutError:
            if budget is None or _spent(budget):
                raise fail(budget) from None


_FINDITER_ARGS = ("pos", "endpos", "overlapped", "concurrent", "partial")


def bounded_finditer(compiled: Any, text: str, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                     default: float | None,
                     fail: Callable[[Budget | None], RedactionFailed]) -> Iterator[Any]:
    """`compiled.finditer(text, *args, **kwargs)` (a `regex` pattern) under the time left to
    the prompt being redacted (`default` outside a prompt's budget; None: no limit): each
    step gets the time left when the iteration began, the budget is checked again after
    each match, and past it `fail(budget)` is raised. A `TimeoutError` with the budget not
    spent (other threads of the process ran) goes on from the last match with what is left:
    the same matches come out, none twice."""
    budget = current()
    params = {**dict(zip(_FINDITER_ARGS, args, strict=False)), **kwargs}
    params.pop("timeout", None)
    last: tuple[int, int] | None = None
    while True:
        if _spent(budget):
            raise fail(budget)
        try:
            for m in compiled.finditer(text, **params, timeout=time_left(default)):
                if last is not None and last[0] == last[1] == m.start() == m.end():
                    continue  # the empty match the iteration stopped after, found again
                last = m.span()
                yield m
                if _spent(budget):
                    raise fail(budget)
            return
        except TimeoutError:
            if budget is None or _spent(budget) or params.get("overlapped"):
                raise fail(budget) from None
            if last is not None:
                params["pos"] = last[1]


def timed(pattern: str, flags: int = 0) -> TimedPattern:
    """Compile `pattern` (`re` syntax and flags) to run under each prompt's budget."""
    return TimedPattern(pattern, flags)
