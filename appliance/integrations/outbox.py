"""The decorator's requests, sent in order per user from worker threads; the caller waits
for each a bounded time (`register_wait`).

A slow appliance (a long queue, a slow disk) must not hold the application for the whole
`timeout` of a request: a turn's registration and its update are handed to this worker
and the application waits `register_wait` at most for each. A later reply is still taken
(the job runs to its end: the turn's `reply` is set, its span annotated if still open, and
the update that follows uses it). A user's requests go, in the order the application made
them, to one of `WORKERS` workers (`shard_of` the user), and a tool loop's call (which the
service may hold up to 2 s while its turn's update is on its way from another process) to
that worker's twin among `WORKERS` loop workers. Each worker sends on connections of its
own (`SyncChannel` shards), one request at a time; a loop worker has `loop_senders` threads,
each sending one call at a time on a connection of its own (over NATS, every worker and
thread on the one connection all the channel's requests share). A user's requests are kept in
order (`key`): one handed over while an earlier one of the same user is waiting or being
sent on another worker (or on another thread of a loop worker) is handed to its worker once
that one is done. So a turn's update reaches the appliance before the next turn's
registration, which may name it (by its history or its previous response id), and a held
loop call delays its own user's later requests only: no other user's turn or loop call is
kept behind it (while fewer than `loop_senders` calls of its loop worker are held), nor
behind a slow commit of another worker. At most `MAX_PENDING` requests wait to be
sent: more are not sent (counted as missed, as while the appliance is down), so a stalled
appliance never piles up prompts in the application's memory. A job that fails is logged
by type only. A process forked from the one that made the outbox (a pre-forking server)
gets workers of its own; after `close` nothing more is sent, and nothing raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Hashable
from concurrent import futures
from dataclasses import dataclass, field

from appliance.integrations.breaker import Breaker

MAX_PENDING = 1_000  # requests handed to the workers and not sent yet
WORKERS = 4  # senders, each with its own connections; a user's requests go to one
# (and as many loop workers, for tool loop calls: see `Outbox.loop_worker`)


@dataclass(eq=False)
class _Job:
    """One request's job: the future the caller waits on, its worker, and whether it was
    handed to that worker yet (else it waits for its user's earlier job on the other)."""

    run: Callable[[], None]
    context: contextvars.Context
    worker: int
    key: Hashable
    done: futures.Future[None] = field(default_factory=futures.Future)
    handed: bool = False


class Outbox:
    """Worker threads sending an adapter's requests, a user's in the order they were handed
    over: workers `0 .. workers-1` for turns, `workers .. 2*workers-1` for tool loop calls
    (`loop_worker`)."""

    def __init__(self, breaker: Breaker, workers: int | None = None, *,
                 loop_senders: int = 1) -> None:
        """`loop_senders`: the threads of each loop worker, each sending one of its calls
        (of different users) at a time, so one the service holds keeps no other waiting."""
        self.breaker = breaker
        self.workers = workers or WORKERS
        self.loop_senders = loop_senders
        self._lock = threading.Lock()
        self._pools, self._pid, self._pending = self._new_pools(), os.getpid(), 0
        self._last: dict[Hashable, _Job] = {}  # a key's (user's) last job not done yet

    def _new_pools(self) -> list[futures.ThreadPoolExecutor]:
        return [futures.ThreadPoolExecutor(1 if n < self.workers else self.loop_senders,
                                           thread_name_prefix="semtrace")
                for n in range(2 * self.workers)]

    def _one_sender(self, worker: int) -> bool:
        """Whether `worker` sends its jobs one at a time, in the order handed over."""
        return worker < self.workers or self.loop_senders == 1

    def loop_worker(self, shard: int) -> int:
        """The worker that sends the tool loop calls of the users of worker `shard`."""
        return self.workers + shard % self.workers

    def submit(self, job: Callable[[], None], shard: int = 0, *,
               key: Hashable = None) -> futures.Future[None]:
        """Run `job` (which sends one request) on worker `shard`, after the jobs of `key`
        (its user; default: the worker) handed over before, in the caller's context (its
        current span); a done future when too many are waiting."""
        worker = shard % len(self._pools)
        key = ("worker", worker) if key is None else key
        new: _Job | None = None
        after: _Job | None = None
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's workers are not in this process
                self._pools, self._pid, self._pending = self._new_pools(), os.getpid(), 0
                self._last = {}
            if self._pending < MAX_PENDING:
                new = _Job(job, contextvars.copy_context(), worker, key)
                before, self._last[key] = self._last.get(key), new
                self._pending += 1
                if before is None or before.done.done() or (
                        before.worker == worker and before.handed
                        and self._one_sender(worker)):  # its worker keeps order
                    self._hand(new)
                else:  # its user's last job waits, or is being sent, elsewhere
                    after = before
        if new is None:
            self.breaker.skipped()
            skipped: futures.Future[None] = futures.Future()
            skipped.set_result(None)
            return skipped
        if after is not None:
            after.done.add_done_callback(lambda _: self._hand_late(new))
        elif not new.handed:  # closed, or the interpreter is exiting: not sent
            self._drop(new)
        return new.done

    def _hand(self, job: _Job) -> None:
        """Give `job` to its worker (under the lock); `handed` says whether it took it."""
        try:
            self._pools[job.worker].submit(job.context.run, self._run, job)
        except RuntimeError:  # closed, or the interpreter is exiting
            return
        job.handed = True

    def _hand_late(self, job: _Job) -> None:
        """Its user's earlier job is done: give `job` to its worker now."""
        with self._lock:
            if self._pid != os.getpid():
                return
            self._hand(job)
        if not job.handed:
            self._drop(job)

    def _drop(self, job: _Job) -> None:
        self.breaker.skipped()
        self._finish(job)

    def _run(self, job: _Job) -> None:
        try:
            job.run()
        except Exception as exc:  # noqa: BLE001 - on the worker: nobody to raise to
            self.breaker.quiet_warning("the semtrace adapter failed; the call goes on",
                                       "semtrace_callback_failed", None,
                                       error=type(exc).__name__)
        finally:
            self._finish(job)

    def _finish(self, job: _Job) -> None:
        """`job` is over: its user's next job, if it waits for it, is handed over."""
        with self._lock:
            self._pending -= 1
            if self._last.get(job.key) is job:
                del self._last[job.key]
        job.done.set_result(None)

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
        within `timeout`. (Each user's last job is done after the user's earlier ones.)"""
        with self._lock:
            last = [job.done for job in self._last.values()]
        return not futures.wait(last, timeout=timeout).not_done

    def close(self) -> None:
        for pool in self._pools:
            pool.shutdown(wait=False)
