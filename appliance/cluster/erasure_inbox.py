"""The owner's side of a cluster erasure (`erasures.py`): the node that owns a tenant applies
the requests other nodes put into the bucket `semtrace_erasures`.

At start, after claiming its partitions and before consuming them, it applies every
waiting request of its tenants (a failure there stops the start, as a prompt of the user
must not be consumed first). While it runs it watches the bucket and applies each new
request at once. A request it cannot apply (its store raised: a full disk, a locked
database) is not left for its next start: the failure (attempts, a fixed phrase, when it
tries again) goes into the request's key, which `erase --wait` reports, and the node tries
again after 1, 2, 4 ... up to 60 s, for as long as it runs and owns the tenant, until it
applies it or a newer request of the same erasure replaces it.

A watch does not survive a restart of nats-server (its consumer is gone with it), so the
watch is made again when the connection was re-established, and every `REWATCH_S` in any
case; each new watch reads every key's last value, so a request put meanwhile is applied.
With each new watch the node sweeps the bucket (`erasure_sweep.py`): answers no command
waits for any more leave NATS's disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from appliance.cluster.erasure_sweep import sweep
from appliance.cluster.erasures import (
    Applied,
    ErasureRequest,
    Failed,
    decode,
    encode,
    erasures_bucket,
    failure_of,
)
from appliance.cluster.kv_read import bucket_entries
from appliance.cluster.partition import partition_of
from appliance.cluster.tenants_note import TenantsNote
from appliance.errors import SemtraceError

log = logging.getLogger("semtrace.cluster")
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
TICK_S = 1.0  # how often the follower looks at the connection
REWATCH_S = 60.0  # a fresh watch at least this often (a watch that went quiet)

# the request and which attempt this is (1 the first; the failed ones before it are counted
# in the request's key, so across restarts too): the owner's audit entry says it
Apply = Callable[[ErasureRequest, int], Awaitable[Applied]]


def retry_delay(attempts: int) -> float:
    """Pure: seconds to wait after `attempts` failed attempts: 1, 2, 4 ... at most 60."""
    return min(RETRY_FIRST_S * 2 ** max(attempts - 1, 0), RETRY_MAX_S)


class ErasureInbox:
    """The owner's side: applies the requests for the partitions it owns, first those that
    waited (`start`, before the node consumes), then each new one as it comes, retrying
    those it could not apply."""

    def __init__(self, js: Any, *, replicas: int, partitions: int,
                 owns: Callable[[int], bool], apply: Apply, node: str = "",
                 reconnects: Callable[[], int] = lambda: 0,
                 note: TenantsNote | None = None) -> None:
        """`reconnects`: how often the NATS connection was re-established (a new watch);
        `note`: this node's note of its tenants for `erase --all-tenants`
        (`tenants_note.py`), refreshed at start and with each new watch, and written each
        second while a tenant waits to be noted."""
        self.js, self.replicas, self.partitions = js, replicas, partitions
        self.owns, self.apply, self.node, self.reconnects = owns, apply, node, reconnects
        self.applied = 0
        self._kv: Any = None
        self._watcher: Any = None
        self._watched_at = 0.0
        self._reconnects = 0
        self._failing = False  # the watch failed and was said so
        self.note = note
        self._task: asyncio.Task[None] | None = None
        self._retrying: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._said: set[tuple[str, str]] = set()  # (key, value's digest) said unreadable

    async def start(self) -> None:
        """Apply every waiting request of this node's tenants, then follow new ones."""
        self._kv = await erasures_bucket(self.js, replicas=self.replicas)
        # every waiting request, before the node consumes: the watch's first pass alone
        # raced to none at all (kv_read.py); those it brings again are applied already
        for entry in await bucket_entries(self._kv):
            await self._handle(entry, at_start=True)
        await self._watch(at_start=True)
        await self._sweep()
        await self._note()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        tasks = [t for _, t in self._retrying.values()] + ([self._task] if self._task else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._unwatch()

    async def _unwatch(self) -> None:
        if self._watcher is not None:
            with contextlib.suppress(Exception):
                await self._watcher.stop()
            self._watcher = None

    async def _watch(self, *, at_start: bool = False) -> None:
        """A new watch: the last value of each key (handled here), then updates."""
        await self._unwatch()
        self._reconnects, self._watched_at = self.reconnects(), time.monotonic()
        self._watcher = await self._kv.watchall()
        while (entry := await self._watcher.updates(timeout=30)) is not None:
            await self._handle(entry, at_start=at_start)

    async def _follow(self) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        while True:
            try:
                if (self._watcher is None or self.reconnects() != self._reconnects
                        or time.monotonic() - self._watched_at >= REWATCH_S):
                    await self._watch()
                    self._failing = False
                    await self._sweep()
                    await self._note()
                elif self.note is not None:
                    await self.note.catch_up()
                with contextlib.suppress(NatsTimeout):
                    entry = await self._watcher.updates(timeout=TICK_S)
                    if entry is not None:
                        await self._handle(entry)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS away: watched again when it is back
                if not self._failing:  # said once, not at every tick of an outage
                    self._failing = True
                    log.warning("the erasure requests could not be read", extra={
                        "event": "erasure_watch_failed", "error": failure_of(exc)})
                await self._unwatch()
                await asyncio.sleep(TICK_S)

    async def _sweep(self) -> None:
        """Answers no command waits for any more leave NATS's disk (`erasure_sweep.py`)."""
        try:
            await sweep(self.js, self._kv)
        except Exception as exc:  # tried again with the next watch
            log.warning("the erasure requests could not be swept", extra={
                "event": "erasure_sweep_failed", "error": failure_of(exc)})

    async def _note(self) -> None:
        """Note this node's tenants in `semtrace_tenants` when they grew."""
        if self.note is not None:
            await self.note.refresh()

    async def _handle(self, entry: Any, *, at_start: bool = False) -> None:
        if entry.operation is not None or not entry.value:  # a delete or purge marker
            return
        try:
            request, applied, failed = decode(entry.value)
        except (ValueError, KeyError, TypeError) as exc:  # left for a node that reads it
            self._unreadable(entry, exc)
            return
        if applied is not None or not self.owns(partition_of(request.tenant, self.partitions)):
            return
        retrying = self._retrying.get(entry.key)
        if retrying is not None:
            if retrying[0] == request.request_id:  # its own failure written back, or seen again
                return
            retrying[1].cancel()  # a newer request of the same erasure replaces it
        if not await self._still_waiting(entry.key, request):  # answered since (seen again)
            return
        attempts = failed.attempts if failed is not None else 0
        if await self._attempt(entry.key, request, attempts, at_start=at_start):
            return
        task = asyncio.create_task(self._retry(entry.key, request, attempts + 1))
        self._retrying[entry.key] = (request.request_id, task)

    def _unreadable(self, entry: Any, exc: Exception) -> None:
        """Say once per value (not at each new watch, nor when the sweep writes it again)
        why a request was not read."""
        said = (entry.key, hashlib.sha256(entry.value).hexdigest())
        if said in self._said:
            return
        self._said.add(said)
        garbled = isinstance(exc, json.JSONDecodeError | UnicodeDecodeError)
        why = (str(exc) if isinstance(exc, ValueError) and not garbled  # `wire.py`'s sentence
               else "An erasure request in NATS is not one this node can read.")
        log.warning(why, extra={"event": "erasure_unreadable"})

    async def _attempt(self, key: str, request: ErasureRequest, attempts: int, *,
                       at_start: bool = False) -> bool:
        """Apply the request once and write the outcome (or the failure) into its key;
        False when it failed (raised again at start: the node must not consume yet)."""
        try:
            outcome = await self.apply(request, attempts + 1)
        except Exception as exc:
            attempts += 1
            delay = None if at_start else retry_delay(attempts)
            error = failure_of(exc)
            log.warning("an erasure request could not be applied", extra={
                "event": "erasure_request_failed", "tenant": request.tenant,
                "attempts": attempts, "error": error, "retry_in_s": delay})
            with contextlib.suppress(Exception):  # NATS away too: it is retried all the same
                await self._write(key, request, failed=Failed(self.node, attempts, error,
                                                              time.time(), delay))
            if at_start:  # one sentence, no traceback: the node exits and is started again
                raise SemtraceError(
                    f"An erasure node '{request.requested_on}' asked for in {request.tenant} "
                    f"could not be applied ({error}); this node does not consume before it "
                    "is, so it stops: fix the store and start it again (the request waits in "
                    "NATS).") from None
            return False
        self.applied += 1
        log.info("erasure applied", extra={
            "event": "erasure_applied", "tenant": request.tenant, "records": outcome.records,
            "requested_on": request.requested_on, "refused": outcome.refused is not None,
            "attempts": attempts + 1})
        await self._write(key, request, applied=outcome)
        return True

    async def _retry(self, key: str, request: ErasureRequest, attempts: int) -> None:
        """Try again with a growing delay while this node owns the tenant and the key still
        holds this request unapplied."""
        try:
            while True:
                await asyncio.sleep(retry_delay(attempts))
                if not self.owns(partition_of(request.tenant, self.partitions)):
                    return  # the new owner applies it before it consumes
                try:
                    if not await self._still_waiting(key, request):
                        return
                    if await self._attempt(key, request, attempts):
                        return
                except Exception as exc:  # NATS away while applied: the answer is written
                    log.warning("an erasure request could not be answered", extra={
                        "event": "erasure_answer_failed", "tenant": request.tenant,
                        "error": failure_of(exc)})
                    continue
                attempts += 1
        finally:
            if self._retrying.get(key, ("", None))[1] is asyncio.current_task():
                del self._retrying[key]

    async def _still_waiting(self, key: str, request: ErasureRequest) -> bool:
        from nats.js.errors import KeyNotFoundError

        try:
            current, applied, _ = decode((await self._kv.get(key)).value)
        except (KeyNotFoundError, ValueError, KeyError, TypeError):
            return False
        return current.request_id == request.request_id and applied is None

    async def _write(self, key: str, request: ErasureRequest, *,
                     applied: Applied | None = None, failed: Failed | None = None) -> None:
        """Write the outcome over this request only: a newer one put meanwhile is applied
        when it comes (compare-and-set on the key's current revision)."""
        from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

        for _ in range(5):
            try:
                entry = await self._kv.get(key)
                current, done, _ = decode(entry.value)
            except (KeyNotFoundError, ValueError, KeyError, TypeError):
                return
            if current.request_id != request.request_id or done is not None:
                return
            try:
                await self._kv.update(key, encode(request, applied, failed), last=entry.revision)
                return
            except KeyWrongLastSequenceError:
                continue
