"""The message path of a cluster node (`node.py`): its partitions' fetched messages
opened, answered through the service, settled (the answer published, the request's bytes
erased from JetStream's files, the ack), and the wire's reply subjects noted for after the
commit.

A message is acknowledged only after its record is committed (at least once); a
redelivered message is recognised by (tenant, request_id) and answered as a duplicate
(exactly-once effect). A reply that means "not now" (`RETRY_CODES`) is not answered: the
message is delivered again later.

A tool loop's call (an `update` naming a `previous_response_id`) that the service holds
until its turn's update lands (`dispatch.ATTACH_HOLD`) is answered and acknowledged on its
own: that update comes behind it in the partition, and waiting for the call would hold it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from appliance.cluster import partition as part
from appliance.cluster.messages import checked, fields, refused_key
from appliance.cluster.replies import ReplyBook
from appliance.keys.bus import BusKeys, Unsealed, ingest_aad, open_frame, reply_aad
from appliance.protocol import ProtocolError, echo_id, error_reply

if TYPE_CHECKING:
    from appliance.cluster.owners import Ownership
    from appliance.config import ClusterSettings
    from appliance.service import Service

log = logging.getLogger("semtrace.cluster")
# after a secure delete of a consumed request failed, seconds before the next is tried
ERASE_RETRY_S = 60.0
# Replies that mean "not now": the message is redelivered later, nothing is answered.
RETRY_CODES = ("internal", "shutting_down", "busy")


class Consuming:
    """The consuming half of `ClusterNode`: what it does with each message of its
    partitions (the node's start, stop and claims are `node.py`'s)."""

    service: Service
    settings: ClusterSettings
    partitions: list[int]
    keys: BusKeys | None
    book: ReplyBook
    accept_plain: bool
    counters: dict[str, int]
    _nc: Any
    _js: Any
    _erase_again_at: float
    _ownership: Ownership | None
    _loop_calls: set[asyncio.Task[None]]
    _stopping: asyncio.Event

    def owns(self, p: int) -> bool:
        """Whether this node still consumes partition `p`."""
        return p in self.partitions and (self._ownership is None
                                         or p not in self._ownership.lost)

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
