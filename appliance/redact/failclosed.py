"""Presidio's regular expressions fail closed: a prompt they cannot finish is refused.

Presidio runs each pattern with a time limit (`REGEX_TIMEOUT_SECONDS`, 60 s unless the
environment says otherwise) and, when a pattern runs past it, logs a warning and goes on
without what the pattern would have found: the prompt came out partly redacted. Here every
pattern recogniser's expressions run under the time left to the prompt's budget (the
policy's `pattern_timeout_s`: the CPU time of one prompt's whole redaction, budget.py), and
a pattern that runs past it raises `RedactionFailed` out of the analyser (not a
`TimeoutError`, which Presidio would catch). Presidio's other timed expressions (the IBAN
recogniser's, which calls the `regex` module directly with a module global) get the same
time left (`RemainingSeconds` in that global), and their skip-with-a-warning is caught from
Presidio's log (`TimeoutWatch`) and turned into the same refusal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any, cast

from appliance.redact.budget import (
    RedactionFailed,
    RemainingSeconds,
    bounded_finditer,
    current,
    past,
)

__all__ = ["RedactionFailed", "TimeoutWatch", "bound_patterns", "set_presidio_timeout",
           "timeout_watch"]

PRESIDIO_LOGGER = "presidio-analyzer"


class _BoundedRegex:
    """A compiled `regex` pattern whose `finditer` runs under the prompt's time left (or
    `timeout` outside a prompt's budget) and fails closed."""

    def __init__(self, compiled: Any, timeout: float, where: str) -> None:
        self._compiled = compiled
        self._timeout = timeout
        self._where = where

    def _failed(self) -> RedactionFailed:
        budget = current()
        if budget is not None:
            return past(f"the pattern {self._where}", budget)
        return RedactionFailed(f"the pattern {self._where} ran past its time limit "
                               f"({self._timeout:g} s)")

    def finditer(self, text: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return bounded_finditer(self._compiled, text, args, kwargs, default=self._timeout,
                                fail=lambda _budget: self._failed())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._compiled, name)


def bound_patterns(recognizers: Iterable[Any], timeout: float) -> int:
    """Put every pattern of Presidio's pattern recognisers (its own, ours, the policy's
    custom ones) under `timeout`; returns how many. Presidio compiles a pattern lazily, and
    again when the flags change: whatever it assigns is wrapped as it is assigned."""
    from presidio_analyzer import Pattern, PatternRecognizer

    class BoundedPattern(Pattern):
        @property
        def compiled_regex(self) -> Any:
            return self.__dict__.get("_bounded")

        @compiled_regex.setter
        def compiled_regex(self, compiled: Any) -> None:
            wrap = self.__dict__.get("_wrap")
            if compiled is not None and wrap is not None:
                compiled = wrap(compiled)  # a pattern's own matcher (urls.py), bounded too
            self.__dict__["_bounded"] = (None if compiled is None else _BoundedRegex(
                compiled, timeout, f"'{self.name}' of {self.__dict__.get('_owner', '?')}"))

    count = 0
    for recognizer in recognizers:
        if not isinstance(recognizer, PatternRecognizer):
            continue
        recognizer = cast(Any, recognizer)
        bounded = []
        for p in recognizer.patterns:
            b = BoundedPattern(p.name, p.regex, p.score)
            b.__dict__["_owner"] = recognizer.name
            b.__dict__["_wrap"] = getattr(p, "wrap_compiled", None)
            bounded.append(b)
        recognizer.patterns = bounded
        count += len(bounded)
    return count


def set_presidio_timeout() -> None:
    """Presidio's own limit (read from its modules' globals at each call, for the expressions
    it runs outside a pattern recogniser's `finditer`: the IBAN checks) made the time left to
    the prompt being redacted on the calling thread. Before, each redactor built wrote its
    policy's limit into these globals: the last one built set it for every redactor of the
    process. Outside a prompt's budget Presidio's own value (60 s, or the environment's)
    stays."""
    from presidio_analyzer import analyzer_engine, pattern_recognizer
    from presidio_analyzer.predefined_recognizers.generic import iban_recognizer

    for module in (analyzer_engine, pattern_recognizer, iban_recognizer):
        limit: Any = module.__dict__["REGEX_TIMEOUT_SECONDS"]
        if not isinstance(limit, RemainingSeconds):
            module.__dict__["REGEX_TIMEOUT_SECONDS"] = RemainingSeconds(float(limit))


class TimeoutWatch(logging.Filter):
    """Catches Presidio's "timed out, skipping" warnings (logged with the `TimeoutError`) on
    this thread: `check` then raises `RedactionFailed`. The warning itself is dropped (its
    traceback says nothing a reader needs; the refusal is logged without the text)."""

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, TimeoutError):
            self._local.failed = True
            return False
        return True

    def reset(self) -> None:
        self._local.failed = False

    def failed(self) -> bool:
        """Whether a Presidio expression on this thread timed out since `reset`."""
        return bool(getattr(self._local, "failed", False))

    def check(self) -> None:
        if self.failed():
            self._local.failed = False
            raise RedactionFailed("a Presidio expression ran longer than its time limit")


_WATCH = TimeoutWatch()


def timeout_watch() -> TimeoutWatch:
    """The process's watch, on Presidio's logger (added once; its warnings kept enabled so
    that a quieter log level cannot hide a timeout from it)."""
    logger = logging.getLogger(PRESIDIO_LOGGER)
    if _WATCH not in logger.filters:
        logger.addFilter(_WATCH)
    if not logger.isEnabledFor(logging.WARNING):
        logger.setLevel(logging.WARNING)
    logger.disabled = False
    return _WATCH
