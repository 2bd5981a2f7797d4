"""Group commit: queued prompts run as one batch on the worker; a failing disk while
stopping gives up the rest of the queue."""

from __future__ import annotations

import asyncio
import logging
import time

from appliance.protocol import ERASED, UNREDACTABLE, ProtocolError
from appliance.records import Erased, Outcome, Unredactable
from appliance.service.core import ServiceCore, _Item
from appliance.service.storage_errors import STORAGE_CODES, storage_error
from appliance.staging import Staged

log = logging.getLogger("semtrace.service")

# Characters of prompt text a batch may hold and still be staged before the batch before it
# is finished: that batch's replies wait for its redaction (about 40 us of CPU a character
# on the 2-core host under load, 1.3 s for one prompt of 32,768 characters; a batch of 64
# of the bench streams' prompts holds under 36,000).
# A longer one is staged after: the replies before it are not held up by seconds.
STAGE_AHEAD_CHARS = 65_536


def _long(items: list[_Item]) -> bool:
    return sum(len(i.prompt.text) for i in items) > STAGE_AHEAD_CHARS


class Batching(ServiceCore):
    """The batch loop that drains the queue into the pipeline."""

    async def _batch_loop(self) -> None:
        """Batches in the order they were queued. While one is linked and stored on the
        worker, the next one queued (if any) is already staged: redacted, and its embedding
        running on the embedding thread (appliance/staging.py), so the two use both cores;
        with nothing queued a batch is finished at once (in one worker job, its embedding
        still on the embedding thread, part by part while the worker redacts the rest and
        links the first), and before a long next batch (`STAGE_AHEAD_CHARS`) is staged."""
        # taken from the queue, not finished yet: at most the batch staged last and the one
        # before it (settled here only if the loop is cancelled between the two)
        waiting: list[tuple[list[_Item], Staged | None]] = []
        try:
            while True:
                items = [] if waiting else [await self._queue.get()]
                while len(items) < self.policies.service.batch_max:
                    try:
                        items.append(self._queue.get_nowait())
                    except asyncio.QueueEmpty:
                        break
                if items:
                    waiting.append((items, None))
                    if len(waiting) == 1 and self._queue.empty():
                        # alone: redacted, embedded, linked and stored in one worker job, so
                        # nothing queued on the worker meanwhile (a retention run's chunk)
                        # comes between its two halves and holds its replies up; the
                        # embedding thread still embeds it, part by part (staging.py)
                        await self._finish(*waiting.pop(0))
                        continue
                    if len(waiting) > 1 and _long(items):  # its redaction would hold up
                        await self._finish(*waiting.pop(0))  # the replies of the one before
                    waiting[-1] = (items, await self._stage(items))
                if len(waiting) > 1 or not items:
                    await self._finish(*waiting.pop(0))
        finally:
            for items, _ in waiting:
                for item in items:
                    self._queue.task_done()
                    self._settle(item)

    async def _stage(self, items: list[_Item]) -> Staged | None:
        """Redact a batch and start its embedding; None when it is to be given up or run
        from the start (`_run_batch` isolates a request that fails)."""
        if self._giving_up is not None:
            return None
        try:
            return await self.in_worker(
                lambda: self.pipeline.stage([i.prompt for i in items], ahead=self._embedding))
        except Exception:
            return None

    async def _finish(self, items: list[_Item], staged: Staged | None) -> None:
        try:
            if self._giving_up is not None:
                self._give_up(items)
            else:
                await self._run_batch(items, staged)
        finally:
            for item in items:
                self._queue.task_done()
                self._settle(item)

    def _settle(self, item: _Item) -> None:
        """Wake updates waiting for this item's ingest."""
        if item.done is None:
            return
        key = (item.prompt.tenant, item.prompt.request_id)
        if self._pending.get(key) is item.done:
            del self._pending[key]
        if not item.done.done():
            item.done.set_result(None)
        self._landed(item.prompt.tenant)

    async def _run_batch(self, items: list[_Item], staged: Staged | None = None) -> None:
        start = time.perf_counter()
        try:
            if staged is None:
                outcomes = await self.in_worker(lambda: self.pipeline.process(
                    [i.prompt for i in items], ahead=self._embedding))
            else:
                outcomes = await self.in_worker(self.pipeline.finish, staged)
        except Exception as exc:
            if self._stopping.is_set() and storage_error(exc, None).code in STORAGE_CODES:
                self._start_giving_up(exc)
                self._give_up(items)
                return
            if len(items) > 1:  # isolate the request that failed
                for n, item in enumerate(items):
                    if self._giving_up is not None:
                        self._give_up(items[n:])
                        return
                    await self._run_batch([item])
                return
            log.exception("ingest failed", extra={"event": "ingest_failed"})
            self.counters["errors"] += 1
            if items[0].future and not items[0].future.done():
                items[0].future.set_exception(storage_error(exc, items[0].prompt.request_id))
            self._observe(items, None)
            return
        self.counters["batches"] += 1
        stored: list[tuple[_Item, Outcome]] = []
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, Erased):
                self._erased(item)
                continue
            if isinstance(outcome, Unredactable):
                self._unredactable(item, outcome.reason)
                continue
            stored.append((item, outcome))
            self.counters["duplicates" if outcome.duplicate else "ingested"] += 1
            if item.future and not item.future.done():
                item.future.set_result(outcome)
        if self.on_batch:
            self.on_batch([o for _, o in stored], time.perf_counter() - start)
        if stored:
            self._observe([i for i, _ in stored], [o for _, o in stored])

    def _erased(self, item: _Item) -> None:
        """A prompt of a user erased after it was sent: refused, nothing of it written."""
        self.counters["erased"] += 1
        p = item.prompt
        log.info("not stored: its user was erased after it was sent", extra={
            "event": "ingest_erased", "request_id": p.request_id, "tenant": p.tenant})
        if item.future and not item.future.done():
            item.future.set_exception(ProtocolError("erased", ERASED, p.request_id))

    def _unredactable(self, item: _Item, reason: str) -> None:
        """A prompt whose redaction did not finish: refused (fail closed), nothing of it
        written. The log names the cause, never the text."""
        self.counters["unredactable"] += 1
        p = item.prompt
        log.warning("not stored: its redaction did not finish (%s)", reason, extra={
            "event": "ingest_unredactable", "request_id": p.request_id, "tenant": p.tenant})
        if item.future and not item.future.done():
            item.future.set_exception(ProtocolError("unredactable", UNREDACTABLE,
                                                    p.request_id))

    def _start_giving_up(self, exc: BaseException) -> None:
        """Stopping on a full or failing disk: refuse what is queued rather than run each
        request through the pipeline again only to fail (a full queue took minutes)."""
        if self._giving_up is None:
            self._giving_up = exc
            log.error("the disk is failing while stopping (%s): giving up the queued "
                      "requests", storage_error(exc, None).code,
                      extra={"event": "shutdown_giving_up", "queued": self._queue.qsize()})

    def _give_up(self, items: list[_Item]) -> None:
        """Refuse these requests with the disk's error; nothing of them was written."""
        assert self._giving_up is not None
        for item in items:
            self._given_up += 1
            self.counters["errors"] += 1
            if item.future and not item.future.done():
                item.future.set_exception(storage_error(self._giving_up,
                                                        item.prompt.request_id))
        self._observe(items, None)

    def _observe(self, items: list[_Item], outcomes: list[Outcome] | None) -> None:
        """Queue the batch for the observer on the worker thread, off the reply path."""
        if self.observer is not None:
            asyncio.get_running_loop().run_in_executor(self._pool, self._observe_now, items,
                                                       outcomes)

    def _observe_now(self, items: list[_Item], outcomes: list[Outcome] | None) -> None:
        try:
            if self.observer is not None:
                self.observer.batch(items, outcomes)
        except Exception:  # telemetry never breaks ingest
            log.exception("telemetry failed", extra={"event": "telemetry_failed"})
