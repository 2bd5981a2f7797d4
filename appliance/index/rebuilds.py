"""The rebuild worker: one thread per `VectorIndex` that rebuilds its tenants' indexes one
after the other (`appliance.index` says what a rebuild does).

A tenant whose fillers call for a rebuild is queued once; the worker starts when the first
is queued and ends when none is left, so a retention run that takes many tenants past the
threshold at once costs one thread, not one each waiting its turn. Each tenant's state is
looked at again when its turn comes (`Turn.rebuild_turn`): one whose slots new prompts took
back meanwhile is skipped. At exit the rebuild running stops at its next chunk, the exit
waits for it, and the tenants still queued are dropped with the process.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Protocol

log = logging.getLogger("semtrace.index")

THREAD_NAME = "semtrace-index-rebuild"
ONE_REBUILD = threading.Lock()  # rebuilds run one at a time in the process
STOP = threading.Event()  # set at exit: a rebuild stops at its next chunk


class Stopped(Exception):
    """The process is exiting: the rebuild stopped, the old index kept."""


def stop_if_exiting() -> None:
    """Raise `Stopped` once the process is exiting (`_stop_rebuilds`)."""
    if STOP.is_set():
        raise Stopped


def _stop_rebuilds() -> None:
    """At exit, before Python finalises: stop a running rebuild and wait for it. A daemon
    thread still inside usearch (which lets go of the GIL) when the interpreter finalises
    takes it back there and is ended by the C++ runtime: the process dies of SIGABRT."""
    STOP.set()
    with ONE_REBUILD:  # held by a rebuild for all its usearch work (and malloc_trim)
        pass


atexit.register(_stop_rebuilds)


class Turn(Protocol):
    """A tenant index as the worker sees it."""

    name: str

    def rebuild_turn(self) -> None:
        """Rebuild if the fillers still call for it (holding ONE_REBUILD for it), then
        queue itself again or settle."""

    def settle(self) -> None:
        """No rebuild is due any more (dropped at exit)."""


class RebuildQueue:
    """Tenants due a rebuild, in the order they became due, and the one worker thread that
    rebuilds them in turn."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # never held while a tenant's lock is taken
        self._queue: dict[Turn, None] = {}  # insertion-ordered: a tenant at most once
        self._worker: threading.Thread | None = None
        self._ended: threading.Thread | None = None  # the last worker started

    def want(self, tenant: Turn) -> bool:
        """Queue `tenant` (once), starting the worker if none runs. False once the process
        is exiting: nothing is queued then."""
        with self._lock:
            if STOP.is_set():
                return False
            self._queue[tenant] = None
            if self._worker is None:
                if self._ended is not None:  # the last worker, past its loop: never two
                    self._ended.join()  # alive at once
                self._worker = self._ended = threading.Thread(
                    target=self._run, name=THREAD_NAME, daemon=True)
                self._worker.start()
            return True

    def _run(self) -> None:
        """The worker: each queued tenant's turn, until none is left or the process exits."""
        while True:
            with self._lock:
                if not self._queue or STOP.is_set():
                    dropped = list(self._queue)
                    self._queue.clear()
                    self._worker = None
                    break
                tenant = next(iter(self._queue))
                del self._queue[tenant]
            try:
                tenant.rebuild_turn()  # (it logs a rebuild's own failure and settles)
            except Exception as exc:  # a fault past it: the worker goes on with the others
                log.error("index rebuild failed", extra={
                    "event": "index_compact_failed", "tenant": tenant.name,
                    "exc_type": type(exc).__name__})
                tenant.settle()
        for tenant in dropped:  # exiting: nobody will rebuild them
            tenant.settle()
