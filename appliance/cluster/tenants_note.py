"""When a running node writes its note of the tenants it knows (`tenants_known.py`).

At start, and each minute, the note is the tenants its store and policies know. A tenant
the node has not noted yet is noted before its first prompt is stored, not a minute
later: `erase --all-tenants` on another node would miss it meanwhile. A prompt taken
from NATS waits for the note (the node answers `busy` when NATS does not take it, and the
message is delivered again); one taken on the local socket is not held up by NATS: its
tenant is noted at once in the background, and again each second until NATS takes it.
The note only grows while the node runs (a tenant noted ahead of its commit is not
dropped by a refresh that read the store before the commit); it is written only when it
grows, never per prompt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from appliance.cluster.erasures import failure_of
from appliance.cluster.tenants_known import note_tenants, tenants_bucket

log = logging.getLogger("semtrace.cluster")


class TenantsNote:
    """This node's note in `semtrace_tenants`: written at start, on `refresh`, and before
    a tenant it has not noted is stored (`ahead`)."""

    def __init__(self, js: Any, node: str, *, replicas: int,
                 known: Callable[[], Awaitable[list[str]]]) -> None:
        """`known`: the tenants this node's store and policies know."""
        self.js, self.node, self.replicas, self.known = js, node, replicas, known
        self.noted: frozenset[str] = frozenset()  # what NATS holds of this node's note
        self.behind: set[str] = set()  # stored (or about to be) but not noted yet
        self._lock = asyncio.Lock()
        self._written = False  # the note was written once since start
        self._failing = False  # a failed write was said: not again until one succeeds
        self._background: set[asyncio.Task[bool]] = set()

    async def refresh(self) -> None:
        """Note the tenants the store and policies know, when they are not all noted."""
        try:
            names = set(await self.known())
        except Exception as exc:  # the store busy or failing: tried again at the next one
            log.warning("this node's tenants could not be noted", extra={
                "event": "tenants_note_failed", "error": failure_of(exc)})
            return
        await self._write(names)

    async def ahead(self, tenant: str, *, wait: bool) -> bool:
        """Before a prompt of `tenant` is stored: True when the tenant is noted (at once
        when it was already); False when `wait` and NATS did not take the note. Without
        `wait` it is noted in the background and True is returned at once."""
        if tenant in self.noted and self._written:
            return True
        if not wait:  # one write in flight per tenant, not one per prompt while NATS is down
            if tenant not in self.behind:
                self.behind.add(tenant)
                task = asyncio.create_task(self._write(set()))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            return True
        return await self._write({tenant})

    async def catch_up(self) -> None:
        """Note the tenants whose note failed before (each second, while there are any)."""
        if self.behind:
            await self._write(set())

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _write(self, names: set[str]) -> bool:
        """Write the note with `names` added, when it grows (or was never written); False
        when NATS did not take it (the names wait in `behind` for the next write)."""
        async with self._lock:
            wanted = frozenset(self.noted | self.behind | names)
            if wanted == self.noted and self._written:
                return True
            try:
                kv = await tenants_bucket(self.js, replicas=self.replicas)
                if not await note_tenants(kv, self.node, sorted(wanted)):
                    log.warning("this node's name cannot be a NATS key: erase --all-tenants "
                                "on other nodes does not learn its tenants",
                                extra={"event": "tenants_note_failed"})
            except Exception as exc:  # tried again each second (`catch_up`)
                self.behind |= names
                if not self._failing:  # said once, not at each prompt delivered again
                    self._failing = True
                    log.warning("this node's tenants could not be noted", extra={
                        "event": "tenants_note_failed", "error": failure_of(exc)})
                return False
            self.noted, self._written, self._failing = wanted, True, False
            self.behind -= wanted
            return True
