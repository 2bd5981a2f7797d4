"""The NATS front door of one node: its partitions' messages into the service's queue.

Each owned partition has a durable pull consumer. A fetched message goes
through `Service.answer(durable=True)`, the socket's own request path: same
parsing, same queue, same group commit. The message is acknowledged only after
its record is committed (at least once); a redelivered message is recognised
by (tenant, request_id) and answered as a duplicate (exactly-once effect). That
message path is `consuming.py`'s; this module starts, stops and claims.

At start the node claims its partitions (`owners.py`) and re-creates their
consumers: the stream is a work queue, so a fresh consumer starts at the oldest
unacknowledged message and a node that crashed replays its backlog in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance import failpoints
from appliance.cluster import partition as part
from appliance.cluster.bus import connect, node_name
from appliance.cluster.consuming import Consuming
from appliance.cluster.copies import say_copies
from appliance.cluster.erasure_inbox import ErasureInbox
from appliance.cluster.erasures import Applied, ErasureRequest
from appliance.cluster.forward import Forwarder
from appliance.cluster.outage import Outage
from appliance.cluster.owners import Ownership, held, note_versions, owners_bucket
from appliance.cluster.replies import ReplyBook
from appliance.cluster.stream import (
    ConsumerLag,
    check_mapping,
    consumer_config,
    consumer_lag,
    ensure_stream,
)
from appliance.cluster.tenants_note import TenantsNote
from appliance.config import ClusterSettings
from appliance.keys.bus import (
    NODE_NEEDS_KEY,
    BusKeys,
    bus_warning,
    load_bus_keys,
    require_sealing,
)

if TYPE_CHECKING:
    from appliance.service import Service

log = logging.getLogger("semtrace.cluster")
LAG_EVERY_S = 5.0
STOP_GRACE_S = 15.0  # for the batches in hand at stop


class ClusterNode(Consuming):
    """Consumes this node's partitions into a running `Service`."""

    def __init__(self, service: Service, settings: ClusterSettings, *,
                 on_consuming: Callable[[list[int], str, str], None] | None = None,
                 data_dir: str = "", lock: str = "") -> None:
        """`on_consuming(partitions, node, start)`: run on the service's worker once the
        partitions' consumers name this node and this start, before the first fetch (the
        store notes them). `data_dir`: the store's id (`given_away.data_dir_id`), in
        consumers and claims; `lock`: the identity of its lock, held by this process
        (`DataDirLock.identity`), in claims."""
        self.service = service
        self.data_dir = data_dir
        self.lock = lock
        self.start_id = secrets.token_hex(6)  # in the consumers this start makes
        self._on_consuming = on_consuming
        self.settings = settings
        self.node = node_name(settings.node)
        self.partitions = settings.owned()
        require_sealing(bool(settings.security.bus_key_file), settings.security.plain_bus,
                        NODE_NEEDS_KEY)
        self.keys: BusKeys | None = (load_bus_keys(settings.security.bus_key_file)
                                     if settings.security.bus_key_file else None)
        self.book = ReplyBook()
        self.lag: dict[int, ConsumerLag] = {}
        self.accept_plain = settings.security.accept_plain
        # "plain": taken in plain text by a node with a bus key (accept_plain), per message
        self.counters = {"consumed": 0, "redelivered": 0, "retried": 0, "refused": 0,
                         "plain": 0}
        self._nc: Any = None
        self._outage = Outage(settings.url, self.node)  # one line when NATS drops, one back
        self._js: Any = None
        self._erase_again_at = 0.0  # after a failed secure delete, none is tried until then
        self._ownership: Ownership | None = None
        self._inbox: ErasureInbox | None = None
        self._note: TenantsNote | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._loop_calls: set[asyncio.Task[None]] = set()  # answered apart (may be held)
        self._subs: dict[int, Any] = {}
        self._stopping = asyncio.Event()
        # the socket's writes of other nodes' tenants go to their owner, from the start on
        self.forwarder = service.forward = Forwarder(
            partitions=settings.partitions, owns=self.owns, keys=self.keys,
            max_bytes=service.policies.service.max_frame_bytes)
        service.unowned = lambda t: None if self.owns(p := part.partition_of(
            t, settings.partitions)) else p  # a lookup of another node's tenant says where

    async def start(self) -> None:
        """Connect, check the server's mapping, claim the partitions, start consuming."""
        s = self.settings
        sec = s.security
        warning = bus_warning(sec.plain_bus, sec.accept_plain)
        if warning:  # an opt-out (plain_bus) or the move to sealing: said once, at start
            log.warning(warning, extra={"event": "plain_bus" if sec.plain_bus
                                        else "accept_plain", "node": self.node})
        self._nc = self.forwarder.nc = await connect(s.url, s.security,
                                                     name=f"semtrace-node-{self.node}",
                                                     callbacks=self._outage.callbacks())
        try:
            self._js = self._nc.jetstream()
            await check_mapping(self._nc, s.partitions)
            await ensure_stream(self._js, s,
                                max_msg_size=self.service.policies.service.max_frame_bytes)
            kv = await owners_bucket(self._js, ttl_s=s.owner_ttl_s, replicas=s.replicas)
            self._ownership = Ownership(kv, self.node, self.partitions, s.owner_ttl_s,
                                        on_lost=self._give_up, data_dir=self.data_dir,
                                        lock=self.lock)
            # a partition no node holds gets no answer: the socket does not wait for one
            self.forwarder.claimed = functools.partial(held, kv)
            await self._ownership.claim()
            await note_versions(kv, self.node)
            # noted before a tenant's first prompt is stored here (`erase --all-tenants`)
            self._note = TenantsNote(self._js, self.node, replicas=s.replicas,
                                     known=self._known_tenants)
            self.service.noting = self._note.ahead
            # erasures asked for on other nodes, applied before a waiting prompt is consumed
            self._inbox = ErasureInbox(self._js, replicas=s.replicas, partitions=s.partitions,
                                       owns=self.owns, apply=self._erase, node=self.node,
                                       reconnects=lambda: int(self._nc.stats["reconnects"]),
                                       note=self._note)
            await self._inbox.start()
            pulls = {}
            for p in self.partitions:
                self._subs[p] = await self._nc.subscribe(part.part_subject(p),
                                                         cb=self._on_request)
                pulls[p] = await self._reset_consumer(p)
            failpoints.point("cluster.consumers")  # killed before the store notes the name
            if self._on_consuming is not None:  # the consumers name this node from now on
                await self.service.in_worker(self._on_consuming, self.partitions, self.node,
                                             self.start_id)
            await self.service.in_worker(say_copies, self.service.pipeline.store,
                                         s.partitions, self.partitions)
            for p, pull in pulls.items():
                self._tasks.append(asyncio.create_task(self._consume(p, pull)))
            self._tasks.append(asyncio.create_task(self._poll_lag()))
        except BaseException:
            await self._close()
            raise
        log.info("consuming", extra={"event": "cluster_start", "node": self.node,
                                     "partitions": part.format_ranges(self.partitions)})

    async def stop(self) -> None:
        """Finish the batches in hand (commit, answer, ack), release the partitions."""
        self._stopping.set()
        tasks = [*self._tasks, *self._loop_calls]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in late:  # unacknowledged messages are simply delivered again
                task.cancel()
            if late:
                log.warning("consumers cancelled", extra={"event": "cluster_stop_late",
                                                          "tasks": len(late)})
            await asyncio.gather(*late, return_exceptions=True)
        await self._close()
        log.info("stopped consuming", extra={"event": "cluster_stop", "node": self.node})

    def _give_up(self, p: int, holder: str) -> None:
        """Another node claimed `p` (this one was cut off): stop consuming it at once.

        The batch in hand finishes (commit, answer, ack); the next fetch is not made.
        """
        sub = self._subs.pop(p, None)
        if sub is not None:
            self._tasks.append(asyncio.create_task(_unsubscribe(sub)))

    async def _known_tenants(self) -> list[str]:
        """The tenants this node's store and policies know (`erase --all-tenants`)."""
        from appliance.erasure import known_tenants

        return list(await self.service.in_worker(known_tenants, self.service.pipeline.store,
                                                 self.service.policies))

    async def _erase(self, request: ErasureRequest, attempt: int) -> Applied:
        """Apply an erasure another node asked for, on the worker thread, as the service's
        own (tombstone, shredding, audit entry naming the request and its `attempt`);
        refused if pseudonyms differ."""
        if self.service.eraser is None:
            return Applied(self.node, refused=f"Node '{self.node}' runs without an eraser.")
        report = await self.service.in_worker(self.service.eraser, request, attempt)
        if isinstance(report, str):
            return Applied(self.node, refused=report)
        return Applied(self.node, held=report.held, buckets=report.buckets,
                       records=report.records, completed_at=report.completed_at,
                       unattributable_buckets=report.unattributable_buckets,
                       pseudonyms_changed_at=report.pseudonyms_changed_at)

    async def _close(self) -> None:
        self.forwarder.nc = None  # the socket refuses other nodes' tenants from now on
        if self._inbox is not None:
            await self._inbox.stop()
        if self._note is not None:
            if self.service.noting == self._note.ahead:
                self.service.noting = None
            await self._note.stop()
        for sub in self._subs.values():
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._ownership is not None:
            await self._ownership.release()
        if self._nc is not None:
            self._outage.closing = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.flush(), 5)  # the last acks and replies
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 5)

    async def _reset_consumer(self, p: int) -> Any:
        """A fresh durable consumer: delivery restarts at the oldest unacknowledged message."""
        from nats.js.errors import NotFoundError

        name = part.consumer_name(self.settings.stream, p)
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(self.settings.stream, name)
        await self._js.add_consumer(self.settings.stream, consumer_config(
            self.settings, p, self.node, data_dir=self.data_dir, start=self.start_id))
        return await self._js.pull_subscribe_bind(durable=name, stream=self.settings.stream)

    async def _poll_lag(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(Exception):
                self.lag = await consumer_lag(self._js, self.settings,
                                              [p for p in self.partitions if self.owns(p)])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), LAG_EVERY_S)


async def _unsubscribe(sub: Any) -> None:
    with contextlib.suppress(Exception):
        await sub.unsubscribe()
