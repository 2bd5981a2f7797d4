"""The topics' background thread: refine when prompts arrived or a shred happened.

`TopicAssigner` runs it (`start`, `stop`); the lock, the tenants' state and each step
(`refine`, `_prune`) are the assigner's (`assigner.py`).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from appliance.store import Store
from appliance.topics.tenant import TenantTopics

log = logging.getLogger("semtrace.topics")


class Background:
    """The daemon thread of a `TopicAssigner` (its state and steps are declared here)."""

    _store: Store
    _tenants: dict[str, TenantTopics]
    _lock: threading.RLock
    _wake: threading.Event
    _stop: threading.Event
    _worker: threading.Thread | None
    _writer: Any
    _shred_mark: float | None

    def refine(self, tenant: str, scope: str | None = None, *,
               now: float | None = None, loaded_only: bool = False) -> dict[str, str]:
        raise NotImplementedError

    def _prune(self) -> None:
        raise NotImplementedError


    def start(self, *, interval: float = 60.0) -> None:
        """Refine in a daemon thread: when enough prompts arrived, or every `interval` s."""
        if self._worker is not None:
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, args=(interval,),
                                        name="semtrace-topics", daemon=True)
        self._worker.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                try:  # a shred (erase, retention) by this process or another since the last
                    mark = self._shred_mark
                    if mark is not None and self._store.shred_watermark() > mark:
                        self._prune()
                        for state in self._tenants.values():  # (a bucket anonymised at
                            state.pending += 1  # once names no user): publish them again
                except Exception:
                    log.exception("topic refinement failed", extra={"event": "topics_refine"})
                due = [t for t, s in self._tenants.items() if s.pending]
            for tenant in due:
                try:
                    self.refine(tenant, loaded_only=True)
                except Exception:  # a failed refinement must not stop the next ones
                    log.exception("topic refinement failed", extra={"event": "topics_refine"})

    def stop(self, *, flush: bool = False) -> None:
        """Stop the background refinement and close its connection.

        With `flush`, first refine every tenant with prompts since its last refinement
        (a service stopping: its topics and labels are then published as they stand).
        """
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        if flush:
            with self._lock:
                due = [t for t, s in self._tenants.items() if s.pending]
            for tenant in due:
                self.refine(tenant)
        if self._writer is not None:
            self._writer.close()
            self._writer = None
