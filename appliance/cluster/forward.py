"""A node's socket requests of tenants it does not own: sent on to their owner over NATS.

In a cluster a tenant's records live on its partition's owner, the node whose reads,
erasures, exports and `forget` see them. A gateway pointed at another node's socket
(before a move, or by mistake) would otherwise start a second copy of the tenant there
that nothing notices. So an ingest, update or feedback for such a tenant goes, sealed like
a gateway's, to `semtrace.ingest.<tenant>` (the path a gateway publishing to NATS takes),
and the owner's reply is the socket's. A `lookup` stays a read of this node's store, as
every query does ("Queries ... answer on the owner only", docs/scale-out.md).

When the request cannot be forwarded (NATS unreachable, this node not connected yet, a
tenant name NATS cannot carry) the socket answers `not_forwarded` in one sentence and
nothing was stored anywhere; when it was forwarded but no answer came in time,
`unanswered` says whether it stays queued on the bus or may have been lost. No answer is
waited for when no node holds the partition's claim (its owner stopped or restarting):
replies go in request order, so that wait would hold every later reply on the connection.

A prompt longer than `max_text_chars` is cut here as a single host cuts it (protocol v1,
"Over-long prompts") and goes to the owner cut, as a client that cut it itself sends it
(`truncated`, `text_sha256` of the whole text): the whole text never goes onto the bus,
where JetStream keeps it on disk, and the owner stores and answers what a single host
would. A partition's requests go onto the bus in the order they came (cluster/bus_order.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

from appliance.cluster.bus_order import Line, Turn, ask
from appliance.cluster.client import open_reply, sealed_request
from appliance.cluster.partition import partition_of, valid_tenant
from appliance.errors import SemtraceError
from appliance.keys.bus import BusKeys
from appliance.protocol import Request, error_reply

log = logging.getLogger("semtrace.cluster")
FORWARDED_OPS = ("ingest", "update", "feedback")  # writes; a lookup reads this node's store
WAIT_S = 4.0  # for the owner's answer: under a gateway's socket timeout (5 s by default)
# With no node holding the partition's claim (its owner stopped or restarting), no answer
# can come: the request waits only for NATS to say whether anything takes it. The socket
# answers a connection's requests in order, so 4 s here would delay every reply after it
# on that connection, the node's own tenants' included (a proxy's pipelined connection).
NO_OWNER_WAIT_S = 0.25
CLAIM_FRESH_S = 1.0  # a partition's claim, read from NATS, is taken as is this long
LOG_EVERY_S = 60.0  # one `forward_failed` line per reason at most this often

NOT_FORWARDED = ("This tenant's partition ({p}) is owned by another node, and this node "
                 "could not forward the request there over NATS ({why}); nothing was "
                 "stored: retry shortly, or send it over NATS to semtrace.ingest.<tenant>.")
UNREACHABLE = "the NATS server is unreachable; this node is reconnecting to it"
NOT_CONNECTED = "this node is not connected to NATS: it is starting or stopping"
BAD_NAME = "over NATS a tenant is 1-128 letters, digits, '_' or '-'"
NO_STREAM = "nothing on the NATS server takes it: the server lacks the mappings or is stopping"
TOO_LARGE = ("sealed for the bus it is larger than the stream takes, max_frame_bytes; send "
             "a shorter history")
QUEUED = ("This tenant's partition ({p}) is owned by another node, to which this node "
          "forwarded the request over NATS, and no answer came within {wait:g} s; it stays "
          "queued on the bus and is stored once the owner takes it (send it again with the "
          "same request_id for its answer).")
DROPPED = ("This tenant's partition ({p}) is owned by another node, and the connection to "
           "NATS dropped while this node forwarded the request there; it may not have been "
           "delivered: send it again with the same request_id (a stored one is recognised).")
NO_OWNER = ("This tenant's partition ({p}) is owned by another node, which is not running "
            "now (stopped or restarting: no node holds the partition); this node forwarded "
            "the request there over NATS, where it stays queued and is stored once the owner "
            "takes the partition (send it again with the same request_id for its answer).")
UNREADABLE = ("This tenant's partition ({p}) is owned by another node, whose answer over "
              "NATS this node could not read ({why}); send it again with the same request_id.")


def unowned_partition(req: Request, partitions: int, owns: Callable[[int], bool]) -> int | None:
    """The partition of a request to forward (a write of a tenant whose partition this node
    does not own), else None. Pure."""
    if req.op not in FORWARDED_OPS or req.tenant is None:
        return None
    p = partition_of(req.tenant, partitions)
    return None if owns(p) else p


# What protocol v1 reads of each write request (docs/protocol.md) and of its `response`; any
# other field a client adds (an OpenAI `messages` list, `metadata`, a response's `choices`,
# a feedback's copy of the prompt it rates) is ignored where it arrives, so it is not
# forwarded either: it may hold the conversation itself, and JetStream keeps a forwarded
# request on disk. `mode` is kept for every op: it says whether the socket waits for the
# owner's answer.
COMMON_FIELDS = frozenset({"v", "op", "request_id", "tenant", "mode"})
OP_FIELDS = {
    "ingest": COMMON_FIELDS | {
        "traceparent", "user_id", "session_id", "text", "truncated", "text_sha256", "ts",
        "index", "synthetic", "history", "previous_response_id", "model", "response"},
    "update": COMMON_FIELDS | {"user_id", "previous_response_id", "model", "response"},
    "feedback": COMMON_FIELDS | {"rating", "abandoned"},
}
REQUEST_FIELDS = frozenset().union(*OP_FIELDS.values())
RESPONSE_FIELDS = frozenset({
    "status", "text", "sha256", "id", "input_tokens", "output_tokens", "latency_ms", "cost"})


def protocol_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` with only the fields protocol v1 reads of its op (and of `response`, its own).
    Pure."""
    fields = OP_FIELDS.get(str(obj.get("op")), COMMON_FIELDS)
    out = {k: v for k, v in obj.items() if k in fields}
    if isinstance(out.get("response"), dict):
        out["response"] = {k: v for k, v in out["response"].items() if k in RESPONSE_FIELDS}
    return out


def digested_history(obj: dict[str, Any], req: Request) -> dict[str, Any]:
    """`obj` with its history, and the answer's text (`response.text`), as digests only
    (parsed into `req`), and nothing protocol v1 does not read: a message's content is
    digested where it arrives and never leaves this process, not even sealed on the bus
    (protocol v1: content in `history` and an answer's text are never stored). Pure."""
    obj = protocol_fields(obj)
    history = None if req.prompt is None else req.prompt.history
    if history is not None and "history" in obj:
        obj = {**obj, "history": [{"role": m.role, "sha256": m.digest} for m in history]}
    response = obj.get("response")
    parsed = req.response if req.prompt is None else req.prompt.response
    if isinstance(response, dict) and "text" in response and parsed is not None \
            and parsed.digest is not None:
        kept = {k: v for k, v in response.items() if k != "text"}
        obj = {**obj, "response": {**kept, "sha256": parsed.digest}}
    return obj


def cut_as_here(obj: dict[str, Any], req: Request) -> dict[str, Any]:
    """`obj` with its prompt as this node parsed it (`req`) when it cut an over-long one:
    the start it kept, `truncated: true` and the whole text's digest (or the client's) in
    `text_sha256`. The owner then keeps that start under that digest, as a single host
    does, and the whole text stays here. Pure."""
    prompt = req.prompt
    if req.op != "ingest" or prompt is None or not prompt.truncated or prompt.digest is None:
        return obj
    return {**obj, "text": prompt.text, "truncated": True, "text_sha256": prompt.digest}


class Forwarder:
    """Sends a node's socket writes of other nodes' tenants to their owner (`__call__`)."""

    def __init__(self, *, partitions: int, owns: Callable[[int], bool],
                 keys: BusKeys | None, max_bytes: int, wait_s: float = WAIT_S) -> None:
        """`max_bytes`: the largest message the stream takes (its `max_msg_size`, the
        nodes' `max_frame_bytes`); JetStream drops a larger one without a word."""
        self.partitions = partitions
        self.max_bytes = max_bytes
        self.owns = owns
        self.keys = keys
        self.wait_s = wait_s
        self.nc: Any = None  # the node's connection, from its connect to its close
        self.counts = {"forwarded": 0, "not_forwarded": 0, "unanswered": 0}
        self._logged: dict[str, float] = {}
        # whether a node holds partition p's claim now (None: unknown, wait as if it did);
        # set by the node once its claims bucket is open
        self.claimed: Callable[[int], Awaitable[bool | None]] | None = None
        self._claims: dict[int, tuple[float, bool | None]] = {}
        self._line = Line()  # each partition's requests go onto the bus in arrival order

    async def __call__(self, obj: dict[str, Any], req: Request) -> dict[str, Any] | None:
        """The owner's reply to `obj` (parsed as `req`), or this socket's refusal of it;
        None when this node owns the tenant (the request is answered here)."""
        p = unowned_partition(req, self.partitions, self.owns)
        if p is None:
            return None
        assert req.tenant is not None
        rid = req.request_id
        nc = self.nc
        if not valid_tenant(req.tenant):
            return self._refused(rid, p, BAD_NAME, "tenant_name")
        if nc is None or nc.is_closed:
            return self._refused(rid, p, NOT_CONNECTED, "not_connected")
        if not nc.is_connected:  # sent now, it would wait in this process's memory only
            return self._refused(rid, p, UNREACHABLE, "unreachable")
        if req.op == "ingest" and req.prompt is not None and obj.get("ts") is None:
            # its time is its arrival here, not when the owner takes it from the stream
            obj = {**obj, "ts": req.prompt.ts.astimezone(UTC).isoformat()}
        obj = digested_history(cut_as_here(obj, req), req)
        subject, payload = sealed_request(obj, self.keys)
        if len(payload) > self.max_bytes:  # near the socket's own bound, plus the seal
            return self._refused(rid, p, TOO_LARGE, "too_large")
        turn = self._line.take(p)  # before anything awaits: the order it came in
        try:
            if obj.get("mode") == "async":
                await turn.ready()
                return await self._publish(nc, subject, payload, rid, p, turn)
            owner_up = await self._owner_up(p)
            await turn.ready()
            return await self._request(nc, subject, payload, req.tenant, rid, p, turn,
                                       owner_up=owner_up)
        finally:
            turn.done()

    async def _owner_up(self, p: int) -> bool:
        """Whether a node may answer partition `p` now: False only when no node holds its
        claim (read from NATS at most once a CLAIM_FRESH_S per partition)."""
        if self.claimed is None:
            return True
        now = time.monotonic()
        seen = self._claims.get(p)
        if seen is None or now - seen[0] >= CLAIM_FRESH_S:
            seen = self._claims[p] = (now, await self.claimed(p))
        return seen[1] is not False

    async def _publish(self, nc: Any, subject: str, payload: bytes, rid: str | None,
                       p: int, turn: Turn) -> dict[str, Any]:
        """Async mode: sent once the server has it (a flush), as a gateway's publish."""
        before = _reconnects(nc)
        try:
            await nc.publish(subject, payload)
            turn.done()
            await nc.flush(timeout=self.wait_s)
        except Exception:  # noqa: BLE001 - nats-py's own errors: the connection dropped
            return self._unanswered(rid, DROPPED.format(p=p), "dropped")
        if _reconnects(nc) != before:
            return self._unanswered(rid, DROPPED.format(p=p), "dropped")
        self.counts["forwarded"] += 1
        return {"request_id": rid, "ok": True, "mode": "async", "queued": True}

    async def _request(self, nc: Any, subject: str, payload: bytes, tenant: str,
                       rid: str | None, p: int, turn: Turn, *,
                       owner_up: bool = True) -> dict[str, Any]:
        """Request-reply; with no owner up (`owner_up` False) it waits NO_OWNER_WAIT_S
        only: time for NATS to answer that nothing takes the subject (or for an owner
        back meanwhile to answer)."""
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        before = _reconnects(nc)
        try:
            asked = await ask(nc, subject, payload)
            turn.done()
            msg = await asked.reply(self.wait_s if owner_up else NO_OWNER_WAIT_S)
        except NoRespondersError:  # no stream captures the subject: nothing kept it
            return self._refused(rid, p, NO_STREAM, "no_stream")
        except (NatsTimeout, TimeoutError):
            if not nc.is_connected or _reconnects(nc) != before:
                return self._unanswered(rid, DROPPED.format(p=p), "dropped")
            if not owner_up:
                return self._unanswered(rid, NO_OWNER.format(p=p), "queued")
            return self._unanswered(rid, QUEUED.format(p=p, wait=self.wait_s), "queued")
        except Exception:  # noqa: BLE001 - closed or dropped under the request
            return self._unanswered(rid, DROPPED.format(p=p), "dropped")
        try:
            reply = open_reply(msg.data, tenant, self.keys)
        except (SemtraceError, ValueError) as exc:
            why = str(exc).rstrip(".") if isinstance(exc, SemtraceError) else "not JSON"
            return self._unanswered(rid, UNREADABLE.format(p=p, why=why), "unreadable")
        self.counts["forwarded"] += 1
        return reply

    def _refused(self, rid: str | None, p: int, why: str, reason: str) -> dict[str, Any]:
        self.counts["not_forwarded"] += 1
        self._log(reason, p)
        return error_reply("not_forwarded", NOT_FORWARDED.format(p=p, why=why), rid)

    def _unanswered(self, rid: str | None, message: str, reason: str) -> dict[str, Any]:
        self.counts["unanswered"] += 1
        if reason != "queued":  # queued: the owner is down or behind, which status shows
            self._log(reason, None)
        return error_reply("unanswered", message, rid)

    def _log(self, reason: str, p: int | None) -> None:
        """One warning per reason a minute at most (a gateway may send many a second)."""
        now = time.monotonic()
        if now - self._logged.get(reason, -LOG_EVERY_S) < LOG_EVERY_S:
            return
        self._logged[reason] = now
        log.warning("a socket request of another node's tenant was not forwarded",
                    extra={"event": "forward_failed", "reason": reason, "partition": p})


def _reconnects(nc: Any) -> int:
    return int(nc.stats.get("reconnects", 0))
