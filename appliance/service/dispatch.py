"""One request frame to its reply: ping, ingest (queued), stats, lookup, update, feedback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from appliance import __version__
from appliance.protocol import (
    OPS,
    ProtocolError,
    Request,
    decode_frame,
    echo_id,
    error_reply,
    ok_reply,
    parse_request,
)
from appliance.query import records_by_request
from appliance.records import Outcome
from appliance.service.core import ServiceCore, _Item
from appliance.store.turns import OtherUsersTurn

log = logging.getLogger("semtrace.service")
# Seconds a tool loop's call is held when its turn is not found yet: its turn's update (the
# response id it names) may be on its way from another gateway process, or its ingest
# queued. Well under a gateway's request timeout (5 s by default), so the held call's reply
# still reaches it. Held only while such a turn may come (`_turn_coming`): a turn of the user
# registered in the last AWAITING_S seconds that has had no update yet.
ATTACH_HOLD = 2.0
AWAITING_S = 600.0
# A traceparent longer than this is taken as missing (a valid one is 55 characters; later
# versions may append fields): a queued request does not hold a client's long string.
MAX_TRACEPARENT = 512



WRITES = ("ingest", "update", "feedback")
OFF_BUS_TENANT = ("On a node of a cluster a tenant is 1-128 letters, digits, '_' or '-' (one "
                  "NATS subject token), so that every node reaches its owner; this one is "
                  "not, and nothing was stored.")


def refuse_off_bus_tenant(req: Any) -> None:
    """A write, on a node of a cluster, of a tenant no NATS subject can carry: refused
    whichever node it reaches. Before, the node that owned its partition stored it, and
    every other node answered `not_forwarded` ... "retry shortly": a tenant that only one
    node could take, that no gateway could send over NATS, and no other node erase."""
    from appliance.cluster.partition import valid_tenant

    if req.op in WRITES and req.tenant is not None and not valid_tenant(req.tenant):
        raise ProtocolError("bad_request", OFF_BUS_TENANT, req.request_id)


def not_held_here(tenant: str, p: int) -> str:
    """A lookup's not_found on a node of a cluster that does not own the tenant: its records
    are on the partition's owner, which a lookup (a read, not forwarded) does not reach.
    Before, it said only "No recorded request with this id." of a request its owner stored."""
    return (f"No recorded request with this id on this node: tenant {tenant}'s partition "
            f"({p}) is owned by another node, which holds its records; a lookup is not "
            f"forwarded, so ask that node (`semtrace cluster status --tenant {tenant}` names "
            "it).")

@dataclass(frozen=True)
class Parsed:
    """One frame, read: its error reply, or the request (and, on a cluster node's socket,
    the object to forward). Holds nothing else of the frame."""

    op: str
    error: dict[str, Any] | None = None
    req: Request | None = None
    forward: dict[str, Any] | None = None
    traceparent: str | None = None


class Dispatch(ServiceCore):
    """Answer request frames, whichever door they came in by."""

    async def answer(self, frame: bytes, *, durable: bool = False,
                     check: Callable[[dict[str, Any]], None] | None = None,
                     socket: bool = False) -> dict[str, Any]:
        """The reply to one request frame, as the socket sends it.

        Args:
            socket: it came in by the ingest socket, where a cluster node forwards the
                writes of tenants it does not own to their owner (`forward`).
            durable: every ingest waits for queue space (no `busy`) and for its commit,
                whatever its mode (the NATS front door acks only after commit).
            check: called with the decoded object before anything else; may raise
                ProtocolError (the NATS front door checks the subject's tenant).
        """
        return await self.answer_parsed(self.parse_frame(frame, check=check, socket=socket),
                                        durable=durable)

    def parse_frame(self, frame: bytes, *, check: Callable[[dict[str, Any]], None] | None = None,
                    socket: bool = False) -> Parsed:
        """Decode and check one frame, at once: what its reply needs and nothing more. A
        sync ingest waits for its commit holding its `Prompt` (its text cut to
        `max_text_chars`, its history as digests), never the frame: before, each queued
        request kept its 256 KiB frame, its decoded copies and every history message."""
        op = "unknown"
        obj: dict[str, Any] = {}
        try:
            obj = decode_frame(frame)
            op = obj["op"] if obj.get("op") in OPS else op
            if check is not None:
                check(obj)
            svc = self.policies.service
            req = parse_request(obj, max_text_chars=self.policies.correlation.max_text_chars,
                                ts_past=timedelta(days=svc.ts_past_days),
                                ts_future=timedelta(seconds=svc.ts_future_s))
            if socket and self.unowned is not None:
                refuse_off_bus_tenant(req)
        except ProtocolError as exc:
            return Parsed(op, error=error_reply(exc.code, exc.message, exc.request_id))
        except Exception as exc:  # a bug must cost one request, never the connection
            return Parsed(op, error=self._failed(exc, echo_id(obj.get("request_id"))))
        traceparent = obj.get("traceparent")
        return Parsed(op, req=req, forward=obj if socket and self.forward is not None else None,
                      traceparent=traceparent if isinstance(traceparent, str)
                      and len(traceparent) <= MAX_TRACEPARENT else None)

    async def answer_parsed(self, parsed: Parsed, *, durable: bool = False) -> dict[str, Any]:
        """The reply to a frame `parse_frame` read."""
        forwarded: dict[str, Any] | None = None
        reply = parsed.error
        if reply is None:
            assert parsed.req is not None
            try:
                if parsed.forward is not None and self.forward is not None:
                    forwarded = await self.forward(parsed.forward, parsed.req)
                reply = forwarded if forwarded is not None else await self._dispatch(
                    parsed.req, parsed.traceparent, durable=durable)
            except ProtocolError as exc:
                reply = error_reply(exc.code, exc.message, exc.request_id)
            except Exception as exc:  # a bug must cost one request, never the connection
                reply = self._failed(exc, parsed.req.request_id)
        if self.observer is not None:  # one stored by another node is counted there too
            self.observer.reply(parsed.op, {**reply, "forwarded": True}
                                if forwarded is not None and reply.get("ok") else reply)
        return reply

    def _failed(self, exc: Exception, request_id: str | None) -> dict[str, Any]:
        """`internal`, with the request's id: a client retrying by id knows which one."""
        log.error("request failed", extra={"event": "request_failed",
                                           "exc_type": type(exc).__name__})
        self.counters["errors"] += 1
        return error_reply("internal", "The request could not be handled; retry later.",
                           request_id)

    async def _dispatch(self, req: Request, traceparent: Any = None, *,
                        durable: bool = False) -> dict[str, Any]:
        if req.op == "ping":
            return {"request_id": req.request_id, "ok": True, "pong": True,
                    "version": __version__, "protocol": 1, **self.health().as_json()}
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
        await self._committed(req.tenant, req.request_id)
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
        # a cluster node notes a tenant before its first prompt is stored: one from NATS
        # waits for the note (busy, delivered again, when NATS does not take it)
        if self.noting is not None and not await self.noting(req.prompt.tenant, wait=durable):
            self.counters["busy"] += 1
            return error_reply("busy", "The service is busy; retry shortly.", req.request_id,
                               retry_after_ms=self.policies.service.busy_retry_after_ms)
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
                    "trace_id": req.prompt.trace_id, "span_id": req.prompt.span_id,
                    "truncated": req.prompt.truncated}
        return ok_reply(await fut)

    async def _committed(self, tenant: str, request_id: str) -> None:
        """Until the ingest of this request, if it is queued or staged (redacted, not
        stored yet), is finished: a lookup, an update or a feedback sent right after an
        async ingest finds it, never `not_found`."""
        pending = self._pending.get((tenant, request_id))
        if pending is not None:
            await asyncio.shield(pending)

    async def _update(self, req: Request) -> dict[str, Any]:
        """Tokens, latency, status, answer digest after the answer (idempotent)."""
        assert req.tenant and req.request_id
        if req.previous_response_id is not None:
            return await self._attach(req)
        await self._committed(req.tenant, req.request_id)
        found = await self.in_worker(self.pipeline.update, req.tenant, req.request_id,
                                     req.response, req.model)
        if not found:
            raise ProtocolError("not_found", "No recorded request with this id.",
                                req.request_id)
        self._landed(req.tenant)
        return {"request_id": req.request_id, "ok": True, "updated": True}

    async def _attach(self, req: Request) -> dict[str, Any]:
        """A tool loop's call that names the response it continues: part of that turn. When
        no turn answered with it yet but one may still (`_turn_coming`), the call is held
        `ATTACH_HOLD` at most and looked for again each time a turn of the tenant may have
        become findable (its update from another gateway process may come after this
        call: the loop's client had the answer before the gateway reported it)."""
        assert req.tenant and req.request_id and req.user_id and req.previous_response_id
        args = (self.pipeline.attach, req.tenant, req.request_id, req.user_id,
                req.previous_response_id, req.response, req.model)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ATTACH_HOLD
        queued: set[tuple[str, str]] | None = None  # the tenant's ingests at the first miss
        while True:
            # before looking: what lands while the lookup runs wakes the wait below
            landing = self._landings.setdefault(req.tenant, asyncio.Event())
            try:
                found = await self.in_worker(*args)
            except OtherUsersTurn:  # never added to it: one sentence the operator can act on
                raise ProtocolError("other_user", "This previous_response_id continues "
                                    "another user's turn; a tool loop's call must carry the "
                                    "user of the turn it continues. Nothing was recorded.",
                                    req.request_id) from None
            if found is not None or loop.time() >= deadline:
                break
            if queued is None:
                queued = {key for key in self._pending if key[0] == req.tenant}
            # (a turn that landed since the lookup began is looked for once more)
            if not await self._turn_coming(req, queued) and not landing.is_set():
                break
            if self._stopping.is_set():  # its turn may still come: ask again after the restart
                raise ProtocolError("shutting_down", "The service is shutting down; retry "
                                    "later.", req.request_id)
            await _either(landing, self._stopping, deadline - loop.time())
        if found is None:
            raise ProtocolError("not_found", "No recorded turn of this user answered with "
                                "this previous_response_id.", req.request_id)
        self._landed(req.tenant)  # its response id may be what another held call names
        turn, thread = found
        return {"request_id": req.request_id, "ok": True, "updated": True,
                "conversation_id": thread, "parent_request_id": turn,
                "link_source": "previous_response_id"}

    async def _turn_coming(self, req: Request, queued: set[tuple[str, str]]) -> bool:
        """Whether the turn a loop call names may still become findable: an ingest of the
        tenant queued when the call came is not committed yet, or a turn of the user
        registered in the last `AWAITING_S` (or a call of its loop) still waits for its
        update, which reports its response id. Else the call is refused at once: a held
        request delays the replies after it on its connection (a proxy worker's only)."""
        if any(key in self._pending for key in queued):
            return True
        assert req.tenant and req.user_id
        tenant, user_id = req.tenant, req.user_id
        store, keys = self.pipeline.store, self.pipeline.keys
        return bool(await self.in_worker(lambda: store.awaiting_update(
            tenant, keys.pseudonym(tenant, user_id), time.time() - AWAITING_S)))

    async def _lookup(self, req: Request) -> dict[str, Any]:
        assert req.tenant and req.request_id
        # an ingest accepted (async, or pipelined before it) and not stored yet is waited
        # for, as an update is: its lookup answered not_found after `ok: true`
        await self._committed(req.tenant, req.request_id)
        rec = await self.in_worker(records_by_request, self.pipeline.store, req.tenant,
                                   req.request_id)
        if rec is None:
            p = self.unowned(req.tenant) if self.unowned is not None else None
            raise ProtocolError("not_found", "No recorded request with this id." if p is None
                                else not_held_here(req.tenant, p), req.request_id)
        o = Outcome(request_id=rec.request_id, record_id=rec.record_id, thread_id=rec.thread_id,
                    parent_id=rec.parent_id, parent_request_id=rec.parent_request_id,
                    position=rec.position, intent=rec.intent, similarity=rec.similarity,
                    topic_id=rec.topic_id, duplicate=True, trace_id=rec.trace_id,
                    span_id=rec.span_id, link_source=rec.link_source,
                    text_truncated=bool((rec.evidence or {}).get("text_truncated")))
        return {**ok_reply(o, mode="lookup"), "feedback": rec.feedback}


async def _either(first: asyncio.Event, second: asyncio.Event, timeout: float) -> None:
    """Until either event is set, `timeout` at most."""
    waits = [asyncio.ensure_future(first.wait()), asyncio.ensure_future(second.wait())]
    try:
        await asyncio.wait(waits, timeout=max(timeout, 0.0),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
