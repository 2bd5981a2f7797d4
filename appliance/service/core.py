"""The service's shared state: queue items, the worker thread, counters and stats."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from appliance import __version__
from appliance.config import Policies
from appliance.link.model import weights_digest
from appliance.pipeline import Pipeline
from appliance.records import Outcome, Prompt, ServiceHealth
from appliance.staging import EmbeddingThread


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


class ServiceCore:
    """The state every part of the service shares, and the single worker thread."""

    def __init__(self, pipeline: Pipeline, policies: Policies, *, socket_path: Path,
                 reload: Callable[[], Policies] | None = None,
                 query_socket_path: Path | None = None) -> None:
        self.pipeline = pipeline
        self.policies = policies
        self.socket_path = socket_path
        self.query_socket_path = query_socket_path  # readers' socket (queryserver.py)
        self._query_server: asyncio.AbstractServer | None = None
        self._reload = reload
        # the linker's weights as loaded at start: SIGHUP does not reload them, it says so
        self._weights_digest = weights_digest(policies.correlation) if reload else None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtrace-worker")
        # the next batch's embedding, while the worker links and stores the one before
        self._embedding = EmbeddingThread()
        # the query socket's reads, on connections of their own: they never hold up ingest
        self._readers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="semtrace-reader")
        self._read_side: Any = None  # queryserver.ReadSide, made with the query socket
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=policies.service.queue_max)
        self._server: asyncio.AbstractServer | None = None
        self._stopping = asyncio.Event()
        self._batcher: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[Any]] = set()  # the ingest socket's
        # the query socket's, bounded apart: readers (anyone, mode 0666) flooding it never
        # take the gateway's connections
        self._query_connections: set[asyncio.Task[Any]] = set()
        self._side = 0  # stats/lookup/update/feedback requests waiting for the worker
        # (tenant, request id) of queued ingests: an update for one waits for its commit
        self._pending: dict[tuple[str, str], asyncio.Future[None]] = {}
        # per tenant: set (and dropped) when a turn of it may have become findable (an
        # ingest committed, an update or a tool loop's call recorded): held loop calls look
        self._landings: dict[str, asyncio.Event] = {}
        self._started = time.monotonic()
        self.counters: dict[str, int] = {"ingested": 0, "duplicates": 0, "errors": 0,
                                         "rejected_peers": 0, "busy": 0, "batches": 0,
                                         "erased": 0, "unredactable": 0}
        self.on_batch: Callable[[list[Outcome], float], None] | None = None
        self.observer: ServiceObserver | None = None
        self.scheduler: Any = None  # set by the caller that schedules jobs
        # writes an audit entry (on the worker thread); set by the caller that has the log
        self.audit: Callable[[str, dict[str, Any]], object] | None = None
        # applies an erasure another node of a cluster asked for (cluster/erasures.py)
        self.eraser: Callable[[Any], Any] | None = None
        # a cluster node's note of its tenants (cluster/tenants_note.py): awaited before a
        # prompt is queued; False (only when `wait`) means the tenant could not be noted
        self.noting: Callable[..., Awaitable[bool]] | None = None
        # a cluster node's forwarding of socket writes of tenants it does not own to their
        # owner (cluster/forward.py): (request object, parsed request) -> the reply to send,
        # or None when this node owns the tenant
        self.forward: Callable[[dict[str, Any], Any], Awaitable[dict[str, Any] | None]] | None \
            = None
        # a cluster node: the partition of a tenant it does not own, else None (a lookup of
        # such a tenant, not forwarded, says where its records are)
        self.unowned: Callable[[str], int | None] | None = None
        self.doors: list[FrontDoor] = []  # started after the socket, stopped before draining
        # Set when a batch fails on the disk while stopping: the rest of the queue is given
        # up (refused, nothing written) instead of being retried one request at a time.
        self._giving_up: BaseException | None = None
        self._given_up = 0
        # starting -> (retention_catchup ->) serving -> stopping; see records.SERVICE_STATES
        self.state = "starting"
        self.retention_progress: tuple[int, int] | None = None  # (shredded, due) of a run

    def health(self) -> ServiceHealth:
        """The state and, during a retention run, its progress (cheap: any thread)."""
        progress = self.retention_progress
        if progress is None:
            return ServiceHealth(self.state)
        return ServiceHealth(self.state, progress[0], progress[1])

    def _landed(self, tenant: str) -> None:
        """Wake the tool loop calls of `tenant` held for their turn (one may be found now)."""
        event = self._landings.pop(tenant, None)
        if event is not None:
            event.set()

    async def in_worker(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run store/pipeline work on the single worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def queue_depth(self) -> int:
        """Prompts waiting for the worker."""
        return self._queue.qsize()

    async def stats(self) -> dict[str, Any]:
        counts = await self.in_worker(self.pipeline.store.counts)
        return {"version": __version__, "uptime_s": round(time.monotonic() - self._started, 1),
                "queue_depth": self._queue.qsize(), "model_id": self.pipeline.embedder.model_id,
                "index_sizes": self.pipeline.index.sizes(), "store": counts,
                "counters": dict(self.counters), **self.health().as_json()}
