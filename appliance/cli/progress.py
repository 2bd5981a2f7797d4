"""Progress of a long command where nobody sees a terminal: one line now and then.

On a terminal the commands draw a rich progress bar on stderr. Run from a script, a
cron job or a unit, stderr is a file or a pipe, the bar is hidden, and a replay of
10,000 prompts said nothing for minutes. `LineProgress` takes the bar's place there:
a plain line on stderr at most every `INTERVAL_S` seconds, naming the step and how far
it is. It prints names of steps and counts only, never data.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import IO, TYPE_CHECKING

from appliance.errors import InputError

if TYPE_CHECKING:
    from rich.progress import TaskID

INTERVAL_S = 30.0  # between two lines; the first comes after one interval, so short runs are quiet
INTERVAL_ENV = "SEMTRACE_PROGRESS_INTERVAL_S"  # an operator's own interval (0: every step)


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0


class LineProgress:
    """The part of rich's `Progress` the commands use, written as occasional lines."""

    def __init__(self, out: IO[str] | None = None, interval_s: float | None = None) -> None:
        self._out = out or sys.stderr
        self._interval = interval() if interval_s is None else interval_s
        self._tasks: list[_Task] = []
        self._last = time.monotonic()

    def __enter__(self) -> LineProgress:
        self._last = time.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    def add_task(self, description: str, total: float | None = None) -> TaskID:
        from rich.progress import TaskID

        self._tasks.append(_Task(description, total))
        return TaskID(len(self._tasks) - 1)

    def advance(self, task: TaskID, advance: float = 1) -> None:
        self._tasks[task].completed += advance
        self._tick(self._tasks[task])

    def update(self, task: TaskID, *, description: str | None = None,
               completed: float | None = None, total: float | None = None) -> None:
        t = self._tasks[task]
        if description is not None:
            t.description = description
        if completed is not None:
            t.completed = completed
        t.total = total
        self._tick(t)

    def _tick(self, task: _Task) -> None:
        now = time.monotonic()
        if now - self._last < self._interval:
            return
        self._last = now
        self._out.write(f"semtrace: {line(task.description, task.completed, task.total)}\n")
        self._out.flush()


def interval() -> float:
    """Seconds between two lines: `SEMTRACE_PROGRESS_INTERVAL_S`, or 30."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InputError(f"{INTERVAL_ENV} must be a number of seconds, 0 or more.")
    return value


def line(description: str, completed: float, total: float | None) -> str:
    """'replay: 1,200 of 10,000 (12%)', or '... 1,200 done' without a total."""
    if not total:
        return f"{description}: {int(completed):,} done"
    share = min(100, int(100 * completed / total))
    return f"{description}: {int(completed):,} of {int(total):,} ({share}%)"
