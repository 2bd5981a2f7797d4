"""The ingest service: asyncio Unix-socket server in front of the pipeline.

One process; asyncio on the main thread for I/O; redaction, embedding and all
store access in ONE worker thread (llama.cpp and SQLite are used by one thread
at a time). Concurrent requests are batched into one redaction/embedding pass
and one transaction (group commit); a reply with ok=true is sent only after
commit (sync mode) or on enqueue (async mode). A bounded queue answers `busy`
instead of dropping.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import pwd
import signal
import socket
import struct
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from appliance import __version__
from appliance.config import AccessSettings, Policies
from appliance.errors import SemtraceError
from appliance.lock import LOCK_FILE, DataDirLock  # noqa: F401  (re-exported)
from appliance.pipeline import Pipeline
from appliance.protocol import (
    OPS,
    ProtocolError,
    Request,
    decode_frame,
    encode,
    error_reply,
    ok_reply,
    parse_request,
)
from appliance.query import records_by_request
from appliance.records import Outcome, Prompt

log = logging.getLogger("semtrace.service")


def peer_allowed(uid: int, gids: Iterable[int], access: AccessSettings, *,
                 own_uid: int) -> bool:
    """Whether a peer with these credentials (primary and supplementary groups) may use the
    socket (pure policy)."""
    if access.allow_same_uid and uid == own_uid:
        return True
    return uid in access.socket_uids or bool(set(gids) & set(access.socket_gids))


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a Unix socket, as the kernel says."""

    pid: int
    uid: int
    gids: frozenset[int]  # primary and supplementary


def peer_credentials(sock: socket.socket) -> Peer:
    """The peer's pid, uid and groups: SO_PEERCRED, plus the supplementary groups the
    kernel lists for that pid (or, when /proc cannot say, the user's groups in /etc/group)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, frozenset({gid, *supplementary_groups(pid, uid, gid)}))


def supplementary_groups(pid: int, uid: int, gid: int) -> set[int]:
    """A process's supplementary groups from /proc/PID/status, else its user's groups."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Groups:"):
                    return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    try:
        return set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
    except (KeyError, OSError):
        return set()


# Policy keys a running service takes on SIGHUP; every other change needs a restart
# (the pipeline, redactor, queue, frame limit and schedule are built at start).
LIVE_KEYS = ("access.", "retention.default", "retention.tenants", "retention.legal_holds",
             "service.batch_max",
             "service.inflight_per_connection", "service.idle_timeout_s",
             "service.busy_retry_after_ms", "service.max_connections", "service.ts_past_days",
             "service.ts_future_s")


def _leaves(data: dict[str, Any]) -> dict[str, Any]:
    """`section.key` -> value (the second level is the unit of a reload)."""
    return {f"{section}.{key}": value for section, keys in data.items()
            for key, value in keys.items()}


def reload_plan(current: Policies, new: Policies) -> tuple[Policies, list[str]]:
    """What a reload applies: the live keys from `new`, the rest as running; and the
    changed keys that need a restart (pure)."""
    old, fresh = _leaves(current.model_dump()), _leaves(new.model_dump())
    changed = [k for k in fresh if fresh[k] != old.get(k)]
    restart = sorted(k for k in changed if not k.startswith(LIVE_KEYS))
    merged = current.model_dump()
    for key in changed:
        if key not in restart:
            section, name = key.split(".", 1)
            merged[section][name] = fresh[key]
    return Policies.model_validate(merged), restart


def storage_error(exc: BaseException, request_id: str | None) -> ProtocolError:
    """The reply to a batch that could not be committed: a full disk and an I/O error are
    said as such (nothing was recorded either way); anything else is `internal`."""
    causes: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(causes) < 8:  # a failed ROLLBACK hides the first error
        causes.append(seen)
        seen = seen.__context__
    text = " ".join(str(c) for c in causes).lower()
    if any(isinstance(c, OSError) for c in causes):
        exc = next(c for c in causes if isinstance(c, OSError))
    if "disk is full" in text or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
        return ProtocolError("disk_full", "The appliance's disk is full; nothing was "
                             "recorded. Retry once space is freed.", request_id)
    if "disk i/o error" in text or isinstance(exc, OSError):
        return ProtocolError("io_error", "The appliance could not write to its disk; "
                             "nothing was recorded. Retry later.", request_id)
    return ProtocolError("internal", "The request could not be recorded; retry later.",
                         request_id)


STORAGE_CODES = ("disk_full", "io_error")


@dataclass
class _Item:
    prompt: Prompt
    future: asyncio.Future[Outcome] | None  # None: async mode, nobody waits
    traceparent: str | None = None  # as the gateway sent it (telemetry parents spans on it)
    arrived_ns: int = field(default_factory=time.time_ns)
    done: asyncio.Future[None] | None = None  # set once its batch has run (updates wait)


class ServiceObserver(Protocol):
    """What telemetry sees of the service (implemented in telemetry.py)."""

    def reply(self, op: str, reply: dict[str, Any]) -> None:
        """Every reply, on the event loop: must be cheap."""

    def batch(self, items: Sequence[_Item], outcomes: Sequence[Outcome] | None) -> None:
        """A committed (or, with None, failed) batch, on the worker thread after the replies."""


class FrontDoor(Protocol):
    """Another way in besides the socket (the NATS front door), run by the service."""

    async def start(self) -> None:
        """Start taking requests (after the socket and the worker are up)."""

    async def stop(self) -> None:
        """Stop taking requests and finish those in hand (before the service drains)."""


class Service:
    """Serve one data dir on one Unix socket."""

    def __init__(self, pipeline: Pipeline, policies: Policies, *, socket_path: Path,
                 reload: Callable[[], Policies] | None = None,
                 query_socket_path: Path | None = None) -> None:
        self.pipeline = pipeline
        self.policies = policies
        self.socket_path = socket_path
        self.query_socket_path = query_socket_path  # readers' socket (queryserver.py)
        self._query_server: asyncio.AbstractServer | None = None
        self._reload = reload
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtrace-worker")
        # the query socket's reads, on connections of their own: they never hold up ingest
        self._readers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtrace-reader")
        self._read_side: Any = None  # queryserver.ReadSide, made with the query socket
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=policies.service.queue_max)
        self._server: asyncio.AbstractServer | None = None
        self._stopping = asyncio.Event()
        self._batcher: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()
        self._side = 0  # stats/lookup/update/feedback requests waiting for the worker
        # (tenant, request id) of queued ingests: an update for one waits for its commit
        self._pending: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._started = time.monotonic()
        self.counters: dict[str, int] = {"ingested": 0, "duplicates": 0, "errors": 0,
                                         "rejected_peers": 0, "busy": 0, "batches": 0}
        self.on_batch: Callable[[list[Outcome], float], None] | None = None
        self.observer: ServiceObserver | None = None
        self.scheduler: Any = None  # set by the caller that schedules jobs
        self.doors: list[FrontDoor] = []  # started after the socket, stopped before draining
        # Set when a batch fails on the disk while stopping: the rest of the queue is given
        # up (refused, nothing written) instead of being retried one request at a time.
        self._giving_up: BaseException | None = None
        self._given_up = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        path = self.socket_path
        if not path.parent.exists():  # only a directory made here is ours to restrict
            path.parent.mkdir(parents=True)
            os.chmod(path.parent, 0o750)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        limit = self.policies.service.max_frame_bytes
        self._server = await asyncio.start_unix_server(self._on_connect, path=str(path),
                                                       limit=limit)
        os.chmod(path, 0o660)
        if self.query_socket_path is not None:
            await self._start_query_socket(self.query_socket_path, limit)
        self._batcher = asyncio.create_task(self._batch_loop())
        log.info("listening", extra={"event": "start", "socket": str(path)})

    def request_stop(self) -> None:
        self._stopping.set()

    def reload_policies(self) -> None:
        if self._reload is None:
            return
        try:
            self.policies, restart = reload_plan(self.policies, self._reload())
        except SemtraceError as exc:
            log.error("policy reload refused: %s", exc, extra={"event": "reload_failed"})
            return
        log.info("policies reloaded", extra={"event": "reload"})
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
            log.warning("stopped with the disk failing: gave up %d queued request(s), none of "
                        "them recorded; every request recorded before is kept", self._given_up,
                        extra={"event": "shutdown_gave_up", "requests": self._given_up})
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._batcher is not None:
            self._batcher.cancel()
            await asyncio.gather(self._batcher, return_exceptions=True)
        self._pool.shutdown(wait=True)  # waits for a running job too
        if self._read_side is not None:
            self._readers.submit(self._read_side.close)
        self._readers.shutdown(wait=True)
        for sock in (self.socket_path, self.query_socket_path):
            if sock is not None:
                with contextlib.suppress(FileNotFoundError):
                    sock.unlink()
        log.info("stopped", extra={"event": "stop"})

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run store/pipeline work on the single worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------ batching

    async def _batch_loop(self) -> None:
        while True:
            first = await self._queue.get()
            items = [first]
            while len(items) < self.policies.service.batch_max:
                try:
                    items.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                if self._giving_up is not None:
                    self._give_up(items)
                else:
                    await self._run_batch(items)
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

    async def _run_batch(self, items: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            outcomes = await self.in_worker(self.pipeline.process, [i.prompt for i in items])
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
        for item, outcome in zip(items, outcomes, strict=True):
            self.counters["duplicates" if outcome.duplicate else "ingested"] += 1
            if item.future and not item.future.done():
                item.future.set_result(outcome)
        if self.on_batch:
            self.on_batch(outcomes, time.perf_counter() - start)
        self._observe(items, outcomes)

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

    # ------------------------------------------------------------ the query socket

    async def _start_query_socket(self, path: Path, limit: int) -> None:
        if not path.parent.exists():
            path.parent.mkdir(parents=True)
            os.chmod(path.parent, 0o755)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._query_server = await asyncio.start_unix_server(self._on_query_connect,
                                                             path=str(path), limit=limit)
        os.chmod(path, 0o666)  # anyone may ask; each request runs under the peer's role

    async def _on_query_connect(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        await self._hold(writer, self._serve_queries(reader, writer))

    async def _serve_queries(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        peer = peer_credentials(writer.get_extra_info("socket"))
        while not self._stopping.is_set():
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"),
                                              self.policies.service.idle_timeout_s)
            except (asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
                return
            if line.strip():
                writer.write(encode(await self.query(line.rstrip(b"\r\n"), peer)))
                await writer.drain()

    async def query(self, frame: bytes, peer: Peer) -> dict[str, Any]:
        """The reply to one read request from `peer` (queryserver.py)."""
        from appliance import queryserver
        from appliance.roles import Caller

        try:
            obj = decode_frame(frame)
            if obj.get("op") not in queryserver.QUERY_OPS:
                raise ProtocolError("unknown_op", "'op' must be one of "
                                    f"{', '.join(queryserver.QUERY_OPS)}.")
            policies = self.policies  # one snapshot for the check and the answer (SIGHUP)
            role = queryserver.authorize(policies.access, obj, Caller(peer.uid, peer.gids),
                                         owner_uid=os.getuid())
            if self._queue.qsize() + self._side >= self.policies.service.queue_max:
                return error_reply("busy", "The service is busy; retry shortly.",
                                   retry_after_ms=self.policies.service.busy_retry_after_ms)
            self._side += 1
            try:
                embedder: Any = self.pipeline.embedder
                text = queryserver.search_text(obj)
                if text is not None:  # the model runs on the worker thread only
                    vectors, _ = await self.in_worker(embedder.embed, [text])
                    embedder = queryserver.QueryVector(embedder.model_id, embedder.dims, text,
                                                       vectors[0])
                if self._read_side is None:
                    self._read_side = queryserver.ReadSide(self.pipeline.store,
                                                           self.pipeline.keys)
                reply: dict[str, Any] = await asyncio.get_running_loop().run_in_executor(
                    self._readers, self._read_side.answer, obj, role, policies, embedder)
            finally:
                self._side -= 1
        except ProtocolError as exc:
            if exc.code == "forbidden":
                log.warning("query refused", extra={"event": "query_refused", "uid": peer.uid})
            return error_reply(exc.code, exc.message, exc.request_id)
        except Exception as exc:
            log.error("query failed", extra={"event": "query_failed",
                                             "exc_type": type(exc).__name__})
            return error_reply("internal", "The query could not be answered; retry later.")
        return reply

    # ------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        await self._hold(writer, self._serve_connection(reader, writer))

    async def _hold(self, writer: asyncio.StreamWriter,
                    serve: Coroutine[Any, Any, None]) -> None:
        """Run one connection of either socket under the shared `max_connections` bound;
        over it, answer `busy` and close. The connection is closed however it ends."""
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.policies.service.max_connections:
            serve.close()
            self.counters["busy"] += 1
            with contextlib.suppress(Exception):
                writer.write(encode(error_reply(
                    "busy", "Too many connections are open; retry shortly.",
                    retry_after_ms=self.policies.service.busy_retry_after_ms)))
                await writer.drain()
            writer.close()
            return
        self._connections.add(task)
        try:
            await serve
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = peer_credentials(sock)
        if not peer_allowed(peer.uid, peer.gids, self.policies.access, own_uid=os.getuid()):
            self.counters["rejected_peers"] += 1
            log.warning("peer refused", extra={"event": "peer_refused", "uid": peer.uid,
                                               "gid": sorted(peer.gids)})
            writer.write(encode(error_reply("forbidden", "This user may not use the socket.")))
            await writer.drain()
            return
        replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None] = asyncio.Queue(
            maxsize=self.policies.service.inflight_per_connection)
        sender = asyncio.create_task(self._send_replies(replies, writer))
        try:
            await self._read_requests(reader, replies)
        finally:
            await replies.put(None)
            await sender

    async def _read_requests(self, reader: asyncio.StreamReader,
                             replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None]) -> None:
        svc = self.policies.service
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), svc.idle_timeout_s)
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # EOF (maybe mid-line: nothing was a request) or idle
            except asyncio.LimitOverrunError:
                fut = loop.create_future()
                fut.set_result(error_reply(
                    "frame_too_large",
                    f"A request line is larger than {svc.max_frame_bytes} bytes; closing."))
                await replies.put(fut)
                return
            if not line.strip():
                continue
            await replies.put(asyncio.ensure_future(self._respond(line)))

    async def _send_replies(self, replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None],
                            writer: asyncio.StreamWriter) -> None:
        while (fut := await replies.get()) is not None:
            reply = await fut
            with contextlib.suppress(ConnectionError):
                writer.write(encode(reply))
                await writer.drain()

    async def _respond(self, line: bytes) -> dict[str, Any]:
        return await self.answer(line.rstrip(b"\r\n"))

    async def answer(self, frame: bytes, *, durable: bool = False,
                     check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """The reply to one request frame, as the socket sends it.

        Args:
            durable: every ingest waits for queue space (no `busy`) and for its commit,
                whatever its mode (the NATS front door acks only after commit).
            check: called with the decoded object before anything else; may raise
                ProtocolError (the NATS front door checks the subject's tenant).
        """
        op = "unknown"
        try:
            obj = decode_frame(frame)
            op = obj["op"] if obj.get("op") in OPS else op
            if check is not None:
                check(obj)
            svc = self.policies.service
            req = parse_request(obj, max_text_chars=self.policies.correlation.max_text_chars,
                                ts_past=timedelta(days=svc.ts_past_days),
                                ts_future=timedelta(seconds=svc.ts_future_s))
            reply = await self._dispatch(req, obj.get("traceparent"), durable=durable)
        except ProtocolError as exc:
            reply = error_reply(exc.code, exc.message, exc.request_id)
        except Exception as exc:  # a bug must cost one request, never the connection
            log.error("request failed", extra={"event": "request_failed",
                                               "exc_type": type(exc).__name__})
            self.counters["errors"] += 1
            reply = error_reply("internal", "The request could not be handled; retry later.")
        if self.observer is not None:
            self.observer.reply(op, reply)
        return reply

    async def _dispatch(self, req: Request, traceparent: Any = None, *,
                        durable: bool = False) -> dict[str, Any]:
        if req.op == "ping":
            return {"request_id": req.request_id, "ok": True, "pong": True,
                    "version": __version__, "protocol": 1}
        if req.op == "ingest":
            return await self._ingest(req, traceparent, durable=durable)
        # the other ops wait for the worker too: they count against the same bound
        if self._queue.qsize() + self._side >= self.policies.service.queue_max:
            self.counters["busy"] += 1
            return error_reply("busy", "The service is busy; retry shortly.", req.request_id,
                               retry_after_ms=self.policies.service.busy_retry_after_ms)
        self._side += 1
        try:
            return await self._side_op(req)
        finally:
            self._side -= 1

    async def _side_op(self, req: Request) -> dict[str, Any]:
        """stats, lookup, update and feedback."""
        if req.op == "stats":
            return {"request_id": req.request_id, "ok": True, **await self.stats()}
        if req.op == "lookup":
            return await self._lookup(req)
        if req.op == "update":
            return await self._update(req)
        assert req.op == "feedback" and req.tenant and req.request_id and req.feedback
        found = await self.in_worker(self.pipeline.store.set_feedback, req.tenant,
                                     req.request_id, req.feedback)
        if not found:
            raise ProtocolError("not_found", "No recorded request with this id.",
                                req.request_id)
        return {"request_id": req.request_id, "ok": True}

    async def _ingest(self, req: Request, traceparent: Any = None, *,
                      durable: bool = False) -> dict[str, Any]:
        assert req.prompt is not None
        if self._stopping.is_set():
            raise ProtocolError("shutting_down", "The service is shutting down; retry later.",
                                req.request_id)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Outcome] | None = None
        if req.mode == "sync" or durable:
            fut = loop.create_future()
        item = _Item(req.prompt, fut, traceparent if isinstance(traceparent, str) else None,
                     done=loop.create_future())
        try:
            if durable:  # the NATS front door waits for room instead of answering busy
                await self._queue.put(item)
            else:
                self._queue.put_nowait(item)
            assert item.done is not None
            self._pending[(req.prompt.tenant, req.prompt.request_id)] = item.done
        except asyncio.QueueFull:
            self.counters["busy"] += 1
            return error_reply("busy", "The service is busy; retry shortly.", req.request_id,
                               retry_after_ms=self.policies.service.busy_retry_after_ms)
        if fut is None:
            return {"request_id": req.request_id, "ok": True, "mode": "async", "queued": True,
                    "trace_id": req.prompt.trace_id, "span_id": req.prompt.span_id}
        return ok_reply(await fut)

    async def _update(self, req: Request) -> dict[str, Any]:
        """Tokens, latency, status, answer digest after the answer (idempotent)."""
        assert req.tenant and req.request_id
        pending = self._pending.get((req.tenant, req.request_id))
        if pending is not None:  # its ingest is still queued: update once it is committed
            await asyncio.shield(pending)
        found = await self.in_worker(self.pipeline.update, req.tenant, req.request_id,
                                     req.response, req.model)
        if not found:
            raise ProtocolError("not_found", "No recorded request with this id.",
                                req.request_id)
        return {"request_id": req.request_id, "ok": True, "updated": True}

    async def _lookup(self, req: Request) -> dict[str, Any]:
        assert req.tenant and req.request_id
        rec = await self.in_worker(records_by_request, self.pipeline.store, req.tenant,
                                   req.request_id)
        if rec is None:
            raise ProtocolError("not_found", "No recorded request with this id.", req.request_id)
        o = Outcome(request_id=rec.request_id, record_id=rec.record_id, thread_id=rec.thread_id,
                    parent_id=rec.parent_id, parent_request_id=rec.parent_request_id,
                    position=rec.position, intent=rec.intent, similarity=rec.similarity,
                    topic_id=rec.topic_id, duplicate=True, trace_id=rec.trace_id,
                    span_id=rec.span_id, link_source=rec.link_source)
        return {**ok_reply(o, mode="lookup"), "feedback": rec.feedback}

    def queue_depth(self) -> int:
        """Prompts waiting for the worker."""
        return self._queue.qsize()

    async def stats(self) -> dict[str, Any]:
        counts = await self.in_worker(self.pipeline.store.counts)
        return {"version": __version__, "uptime_s": round(time.monotonic() - self._started, 1),
                "queue_depth": self._queue.qsize(), "model_id": self.pipeline.embedder.model_id,
                "index_sizes": self.pipeline.index.sizes(), "store": counts,
                "counters": dict(self.counters)}
