"""The NATS front door of one node: its partitions' messages into the service's queue.

Each owned partition has a durable pull consumer. A fetched message goes
through `Service.answer(durable=True)`, the socket's own request path: same
parsing, same queue, same group commit. The message is acknowledged only after
its record is committed (at least once); a redelivered message is recognised
by (tenant, request_id) and answered as a duplicate (exactly-once effect).

At start the node claims its partitions (`owners.py`) and re-creates their
consumers: the stream is a work queue, so a fresh consumer starts at the oldest
unacknowledged message and a node that crashed replays its backlog in order.

A tool loop's call (an `update` naming a `previous_response_id`) that the service holds
until its turn's update lands (`dispatch.ATTACH_HOLD`) is answered and acknowledged on its
own: that update comes behind it in the partition, and waiting for the call would hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from appliance import failpoints
from appliance.cluster import partition as part
from appliance.cluster.bus import connect, node_name
from appliance.cluster.copies import say_copies
from appliance.cluster.erasure_inbox import ErasureInbox
from appliance.cluster.erasures import Applied, ErasureRequest
from appliance.cluster.forward import Forwarder
from appliance.cluster.messages import checked, fields, refused_key
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
    Unsealed,
    bus_warning,
    ingest_aad,
    load_bus_keys,
    open_frame,
    reply_aad,
    require_sealing,
)
from appliance.protocol import ProtocolError, echo_id, error_reply

if TYPE_CHECKING:
    from appliance.service import Service

log = logging.getLogger("semtrace.cluster")
# after a secure delete of a consumed request failed, seconds before the next is tried
ERASE_RETRY_S = 60.0
# Replies that mean "not now": the message is redelivered later, nothing is answered.
RETRY_CODES = ("internal", "shutting_down", "busy")
LAG_EVERY_S = 5.0
STOP_GRACE_S = 15.0  # for the batches in hand at stop


class ClusterNode:
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

    def owns(self, p: int) -> bool:
        """Whether this node still consumes partition `p`."""
        return p in self.partitions and (self._ownership is None
                                         or p not in self._ownership.lost)

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

    # ------------------------------------------------------------ consuming

    async def _consume(self, p: int, pull: Any) -> None:
        from nats.errors import TimeoutError as NatsTimeout

        while not self._stopping.is_set() and self.owns(p):
            try:
                msgs = await asyncio.wait_for(
                    pull.fetch(self.settings.fetch_batch, timeout=1.0), 10.0)
            except (NatsTimeout, TimeoutError):
                continue
            except Exception as exc:  # NATS reconnecting: wait, then pull again
                log.warning("fetch failed", extra={"event": "fetch_failed", "partition": p,
                                                   "error": type(exc).__name__})
                await asyncio.sleep(0.5)
                continue
            if not self.owns(p):  # lost while fetching: back to the stream, for its owner
                for msg in msgs:
                    with contextlib.suppress(Exception):
                        await msg.nak()
                return
            try:
                await self._handle(p, msgs)
            except Exception as exc:  # what it had not acked is delivered again
                self._unsettled(p, exc)
                await asyncio.sleep(0.5)

    async def _handle(self, p: int, msgs: list[Any]) -> None:
        """Answer a fetched batch in order; ack each message after its commit."""
        running: list[tuple[Any, str, bytes | None, asyncio.Future[dict[str, Any]]]] = []
        for msg in msgs:
            split = part.split_part_subject(msg.subject)
            if split is None:
                await msg.term()
                continue
            tenant = split[1]
            if msg.metadata.num_delivered > 1:
                self.counters["redelivered"] += 1
            try:
                frame, kid = self._open(msg.data, tenant, split[0])
            except ProtocolError as exc:  # refused whole: nothing reaches the service
                refused: asyncio.Future[dict[str, Any]] = asyncio.Future()
                refused.set_result(error_reply(exc.code, exc.message))
                running.append((msg, tenant, None, refused))
                continue
            obj = fields(frame)
            if obj.get("op") not in ("ingest", None):  # reads and feedback see earlier writes
                await asyncio.gather(*(f for *_, f in running), return_exceptions=True)
            check = checked(tenant, split[0], self.settings.partitions)
            answer = asyncio.ensure_future(self.service.answer(frame, durable=True,
                                                               check=check))
            if obj.get("op") == "update" and obj.get("previous_response_id"):
                task = asyncio.ensure_future(self._settle_loop_call(msg, tenant, kid, answer))
                self._loop_calls.add(task)  # its turn's update may be behind it
                task.add_done_callback(self._loop_calls.discard)
                continue
            running.append((msg, tenant, kid, answer))
        for msg, tenant, kid, fut in running:
            try:
                await self._settle(msg, tenant, kid, await fut)
            except Exception as exc:  # answer or ack lost: delivered again after ack_wait_s
                self._unsettled(p, exc)

    def _unsettled(self, p: int, exc: Exception) -> None:
        log.warning("message not settled", extra={"event": "settle_failed", "partition": p,
                                                  "error": type(exc).__name__})

    async def _settle_loop_call(self, msg: Any, tenant: str, kid: bytes | None,
                                answer: asyncio.Future[dict[str, Any]]) -> None:
        """Answer and acknowledge a tool loop's call once the service has (it may hold it
        until its turn's update, later in this partition, lands); a failed ack is simply
        delivered again (attaching is idempotent)."""
        reply = await answer
        with contextlib.suppress(Exception):
            await self._settle(msg, tenant, kid, reply)

    def _open(self, data: bytes, tenant: str, p: int) -> tuple[bytes, bytes | None]:
        """(the request frame, the bus key id it was sealed with); ProtocolError if refused.

        With a bus key only a message sealed for this subject's tenant opens; without
        one a sealed message is refused. Nothing of the payload is logged.
        """
        try:
            frame, kid = open_frame(self.keys, data, ingest_aad(tenant),
                                    accept_plain=self.accept_plain)
        except Unsealed as exc:
            log.warning("message refused", extra={"event": "bus_refused", "partition": p,
                                                  "reason": exc.reason})
            raise ProtocolError("bad_request", str(exc)) from None
        if kid is None and self.keys is not None:
            self.counters["plain"] += 1
        return frame, kid

    async def _settle(self, msg: Any, tenant: str, kid: bytes | None,
                      reply: dict[str, Any]) -> None:
        code = (reply.get("error") or {}).get("code")
        if code in RETRY_CODES:
            self.counters["retried"] += 1
            await msg.nak(delay=1.0)
            return
        answer = json.dumps(reply, ensure_ascii=False, separators=(",", ":")).encode()
        if kid is not None and self.keys is not None:  # answered in the request's own key
            answer = self.keys.seal(answer, reply_aad(tenant), key_id=kid)
        rid = reply.get("request_id")
        key = (tenant, rid) if isinstance(rid, str) else refused_key(tenant, msg.data)
        subject = self.book.answered(key, answer)
        await self._nc.publish(subject or part.enriched_subject(tenant), answer)
        await self._erase_from_disk(msg)
        await msg.ack()
        self.counters["consumed" if reply.get("ok") else "refused"] += 1

    async def _erase_from_disk(self, msg: Any) -> None:
        """Overwrite a consumed request in JetStream's files (its secure delete) before the
        ack removes it: an ack alone leaves its bytes in the block file for as long as any
        other message there waits (another partition's backlog), where `semtrace erase`
        cannot reach them. A failure leaves it to the ack (logged, nothing of it), and none
        is tried for a minute (a NATS user that may not delete would wait each time). A
        request already gone (delivered twice, the other answer erased it) is no failure."""
        from nats.js.errors import APIError

        if time.monotonic() < self._erase_again_at:
            return
        seq = msg.metadata.sequence.stream
        try:
            await self._js.delete_msg(self.settings.stream, seq)
            return
        except APIError as exc:  # refused: no failure if the request is gone already
            if await self._gone(seq):
                return
            error = type(exc).__name__
        except Exception as exc:
            error = type(exc).__name__
        self._erase_again_at = time.monotonic() + ERASE_RETRY_S
        log.warning("consumed requests not erased from JetStream's files for a minute: may "
                    "this node's NATS user publish to $JS.API.>?", extra={
                        "event": "bus_erase_failed", "error": error})

    async def _gone(self, seq: int) -> bool:
        """Whether the stream no longer holds message `seq` (False when not known)."""
        from nats.js.errors import NotFoundError

        try:
            await self._js.get_msg(self.settings.stream, seq)
        except NotFoundError:
            return True
        except Exception:
            return False
        return False

    async def _on_request(self, msg: Any) -> None:
        """A request passing on the wire: note its reply subject for after the commit."""
        split = part.split_part_subject(msg.subject)
        if not msg.reply or split is None:
            return
        try:
            frame, _ = open_frame(self.keys, msg.data, ingest_aad(split[1]),
                                  accept_plain=self.accept_plain)
        except Unsealed:  # the consumer refuses it too; its error answers this requester
            key = refused_key(split[1], msg.data)
        else:
            try:
                rid = json.loads(frame).get("request_id")
            except (ValueError, AttributeError):
                return
            if not isinstance(rid, str):
                return
            # the reply names only a valid id (protocol.echo_id): one it does not name is
            # booked, as the consumer books it, under the message's digest
            key = (split[1], rid) if echo_id(rid) is not None else refused_key(split[1],
                                                                                   msg.data)
        answer = self.book.asked(key, msg.reply)
        if answer is not None:
            await self._nc.publish(msg.reply, answer)

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
