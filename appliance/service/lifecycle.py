"""The Service: start both sockets and the batcher, signals (stop, reload), drain."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from appliance.errors import SemtraceError
from appliance.link.model import weights_digest, weights_path
from appliance.service.batching import Batching
from appliance.service.core import FrontDoor
from appliance.service.query_socket import QuerySocket
from appliance.service.reload import audited_change, reload_plan
from appliance.service.sockets import free_socket_path
from appliance.socket_folder import listen_at, make_socket_folder, refusal
from appliance.words import plural

log = logging.getLogger("semtrace.service")


def gave_up_sentence(requests: int) -> str:
    """The log's warning when a stop on a failing disk gave up queued requests: how many,
    that their senders were refused (told to retry), and what the operator does; before,
    'gave up 1 queued request, none of them recorded' and no word of the disk's repair."""
    what = ("1 queued request, not recorded (its sender was refused and told to retry)"
            if requests == 1 else f"{plural(requests, 'queued request')}, none of them "
            "recorded (their senders were refused and told to retry)")
    return (f"stopped with the disk failing: gave up {what}; every request recorded before "
            "is kept: free space on the data dir's disk, or repair it, before starting again")


class Service(QuerySocket, Batching):
    """Serve one data dir on one Unix socket."""

    async def start(self) -> None:
        path = self.socket_path
        # both, before either is bound; only a folder made here is ours to set the mode of:
        # 0750 for the ingest socket's group, 0755 for the query socket's readers
        for claimed, mode, option in ((path, 0o750, "--socket"),
                                      (self.query_socket_path, 0o755, "--query-socket")):
            if claimed is not None:
                try:
                    make_socket_folder(claimed, mode=mode)
                except ValueError as exc:
                    raise SemtraceError(refusal(claimed, option, exc)) from None
                free_socket_path(claimed)
        limit = self.policies.service.max_frame_bytes
        # each socket at its path only with its mode (socket_folder.listen_at)
        self._server = await asyncio.start_unix_server(self._on_connect,
                                                       sock=listen_at(path, 0o660),
                                                       limit=limit)
        if self.query_socket_path is not None:
            await self._start_query_socket(self.query_socket_path, limit)
        self._batcher = asyncio.create_task(self._batch_loop())
        if self.state == "starting":  # a start-up retention run keeps retention_catchup
            self.state = "serving"
        log.info("listening", extra={"event": "start", "socket": str(path)})

    def request_stop(self) -> None:
        self.state = "stopping"
        self._stopping.set()

    def reload_policies(self) -> None:
        if self._reload is None:
            return
        try:
            before = self.policies
            self.policies, restart = reload_plan(before, self._reload())
        except SemtraceError as exc:
            log.error("policy reload refused: %s", exc, extra={"event": "reload_failed"})
            return
        log.info("policies reloaded", extra={"event": "reload"})
        if weights_digest(self.policies.correlation) != self._weights_digest:
            # replaced since the start: the pipeline holds the model it loaded then
            restart = sorted([*restart, weights_path(self.policies.correlation).name])
        change = audited_change(before, self.policies)
        if change is not None and self.audit is not None:  # a legal hold lifted is evidence
            self._audit_task = asyncio.ensure_future(self.in_worker(
                self.audit, "policy_change", change))
        if restart:
            log.warning("these policy changes take effect only after a restart: %s",
                        ", ".join(restart), extra={"event": "reload_needs_restart",
                                                   "keys": restart})

    async def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then drain in-flight requests."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload_policies)
        await self.start()
        started: list[FrontDoor] = []
        try:
            for door in self.doors:
                await door.start()
                started.append(door)
            await self._stopping.wait()
        finally:
            for door in reversed(started):
                await door.stop()
            await self.drain()

    async def drain(self) -> None:
        """Stop accepting, finish what is queued, close connections."""
        self.state = "stopping"  # a retention run stops at its next chunk (retention_job.py)
        if self._server is not None:
            self._server.close()
        if self._query_server is not None:
            self._query_server.close()
        if self.scheduler is not None:
            self.scheduler.pause()
        while not self._queue.empty():
            await asyncio.sleep(0.01)
        await self._queue.join()
        if self._given_up:
            log.warning("%s", gave_up_sentence(self._given_up),
                        extra={"event": "shutdown_gave_up", "requests": self._given_up})
        held = [*self._connections, *self._query_connections]
        for task in held:
            task.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
        self._pool.shutdown(wait=True)  # waits for a running job too
        self._embedding.close()
        if self._read_side is not None:
            self._readers.submit(self._read_side.close)
        self._readers.shutdown(wait=True)
        for sock in (self.socket_path, self.query_socket_path):
            if sock is not None:
                with contextlib.suppress(FileNotFoundError):
                    sock.unlink()
        log.info("stopped", extra={"event": "stop"})
