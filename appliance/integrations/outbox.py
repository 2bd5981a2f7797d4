"""The decorator's requests, sent in order per user from worker threads; the caller waits
for each a bounded time (`register_wait`).

A slow appliance (a long queue, a slow disk) must not hold the application for the whole
`timeout` of a request: a turn's registration and its update are handed to this worker
and the application waits `register_wait` at most for each. A later reply is still taken
(the job runs to its end: the turn's `reply` is set, its span annotated if still open, and
the update that follows uses it). A user's requests all go to one of `WORKERS` workers,
which keeps the order the application made them in: a turn's update reaches the appliance
before the next turn's registration, which may name it (by its history or its previous
response id). Each worker sends on connections of its own (`SyncChannel` shards), one
request at a time: another user's requests are not held behind one the service holds (a
tool loop's call, up to 2 s) nor behind a slow commit. At most `MAX_PENDING` requests
wait to be sent: more are not sent (counted as missed, as while the appliance is down), so
a stalled appliance never piles up prompts in the application's memory. A job that fails
is logged by type only. A process forked from the one that made the outbox (a pre-forking
server) gets workers of its own; after `close` nothing more is sent, and nothing raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable
from concurrent import futures

from appliance.integrations.breaker import Breaker

MAX_PENDING = 1_000  # requests handed to the workers and not sent yet
WORKERS = 4  # senders, each with its own connections; a user's requests go to one


class Outbox:
    """Worker threads sending an adapter's requests, a user's in the order they were handed
    over (`shard_of` their key)."""

    def __init__(self, breaker: Breaker, workers: int | None = None) -> None:
        self.breaker = breaker
        self.workers = workers or WORKERS
        self._lock = threading.Lock()
        self._pools, self._pid, self._pending = self._new_pools(), os.getpid(), 0

    def _new_pools(self) -> list[futures.ThreadPoolExecutor]:
        return [futures.ThreadPoolExecutor(1, thread_name_prefix="semtrace")
                for _ in range(self.workers)]

    def submit(self, job: Callable[[], None], shard: int = 0) -> futures.Future[None]:
        """Run `job` (which sends one request) on worker `shard`, after those handed to it
        before, in the caller's context (its current span); a done future when too many
        are waiting."""
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's workers are not in this process
                self._pools, self._pid, self._pending = self._new_pools(), os.getpid(), 0
            if self._pending < MAX_PENDING:
                try:
                    work = self._pools[shard % self.workers].submit(
                        contextvars.copy_context().run, self._run, job)
                except RuntimeError:  # closed, or the interpreter is exiting: not sent
                    pass
                else:
                    self._pending += 1
                    return work
        self.breaker.skipped()
        skipped: futures.Future[None] = futures.Future()
        skipped.set_result(None)
        return skipped

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - on the worker: nobody to raise to
            self.breaker.quiet_warning("the semtrace adapter failed; the call goes on",
                                       "semtrace_callback_failed", None,
                                       error=type(exc).__name__)
        finally:
            with self._lock:
                self._pending -= 1

    @staticmethod
    def wait(job: futures.Future[None], timeout: float) -> bool:
        """Wait for `job` `timeout` seconds at most; whether it is done."""
        return not futures.wait([job], timeout=timeout).not_done

    @staticmethod
    async def await_(job: futures.Future[None], timeout: float) -> bool:
        """`wait` for asyncio code: the event loop serves other tasks meanwhile, and a job
        done after the loop closed (the application returned) wakes nothing."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake(_: object) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(
                    lambda: None if woken.done() else woken.set_result(None))

        job.add_done_callback(wake)
        await asyncio.wait({woken}, timeout=timeout)
        return job.done()

    def flush(self, timeout: float) -> bool:
        """Wait until what was handed over before has been sent (or failed); whether it has
        within `timeout`."""
        try:
            marks = [pool.submit(lambda: None) for pool in self._pools]
        except RuntimeError:  # closed
            return True
        return not futures.wait(marks, timeout=timeout).not_done

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=False)
