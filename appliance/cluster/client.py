"""The gateways' side of the bus: protocol-v1 requests to `semtrace.ingest.<tenant>`.

`request` is NATS request-reply: the reply is the socket's reply JSON, sent by
the node that owns the tenant once the record is committed. `publish` is
fire-and-forget: the enrichment then appears on `semtrace.enriched.<tenant>`.
A request that gets no reply in time is still on the bus (JetStream keeps it
until its node commits it); `lookup` on that node, or the enriched subject,
gives its answer later.

With a bus key (`bus_key_file`, `appliance.keys.bus`) every request leaves
sealed with AES-256-GCM, bound to its tenant, and the node's answer comes back
sealed in the same key; a plain answer is accepted only when it is an error.
A client without a bus key refuses at construction, unless given the explicit
opt-out `plain_bus=True` (or `security.plain_bus`): JetStream writes every
message to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

from appliance.cluster.bus import PROBE_S, close_within, connect, end_tasks
from appliance.cluster.partition import ingest_subject, valid_tenant
from appliance.config import ClusterSecurity
from appliance.errors import SemtraceError
from appliance.keys.bus import (
    GATEWAY_NEEDS_KEY,
    BusKeys,
    Unsealed,
    ingest_aad,
    is_sealed,
    load_bus_keys,
    reply_aad,
    require_sealing,
)

# NATS answers "no responders" at once when nothing subscribes to the subject: neither the
# stream (made by the first node's start, fed through the server's mappings) nor a node.
# A server that is stopping stops JetStream some 50 ms before it closes its connections:
# a request it reads meanwhile is answered so too, and is not stored either.
NOT_QUEUED = ("Nothing on the NATS server takes {subject}: no node has started with --nats "
              "yet, the server lacks the mappings of `semtrace cluster nats-config`, or it is "
              "shutting down (a restart); the request was not queued.")


# Sent while the connection is down, a message would wait in this process's memory only
# (nats-py buffers it for the reconnection), lost if the gateway stops first: not sent.
UNREACHABLE = ("The NATS server is unreachable (this gateway is reconnecting to it); the "
               "{what} was not sent.")


def _tenant(obj: dict[str, Any]) -> str:
    tenant = obj.get("tenant")
    if not isinstance(tenant, str) or not valid_tenant(tenant):
        raise SemtraceError("Over NATS a tenant is 1-128 letters, digits, '_' or '-'.")
    return tenant


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def sealed_request(obj: dict[str, Any], keys: BusKeys | None) -> tuple[str, bytes]:
    """(subject, payload) of a request: sealed for its tenant when there is a bus key."""
    tenant = _tenant(obj)
    frame = _frame(obj)
    return ingest_subject(tenant), (frame if keys is None
                                    else keys.seal(frame, ingest_aad(tenant)))


def open_reply(data: bytes, tenant: str, keys: BusKeys | None) -> dict[str, Any]:
    """A node's answer (direct reply or on `semtrace.enriched.<tenant>`), opened if sealed.

    SemtraceError with one sentence when it is sealed and cannot be opened, or when
    this side seals and a plain answer claims success (nobody with the key sent it).
    """
    if is_sealed(data):
        if keys is None:
            raise SemtraceError("The node's answer is sealed with a bus key; give this "
                                "gateway the cluster's bus key file (bus_key_file).")
        try:
            data, _ = keys.open(data, reply_aad(tenant))
        except Unsealed:
            raise SemtraceError("The node's answer does not open with this gateway's bus "
                                "key.") from None
        reply: dict[str, Any] = json.loads(data)
        return reply
    reply = json.loads(data)
    if keys is not None and reply.get("ok") is not False:
        raise SemtraceError("A plain answer to a sealed request was ignored: only a node "
                            "holding the bus key answers with success.")
    return reply


def gateway_sealing(sec: ClusterSecurity, bus_keys: BusKeys | None,
                    plain_bus: bool) -> tuple[BusKeys | None, bool]:
    """(bus keys, plain_bus) of a gateway client: the keys given, else `sec.bus_key_file`'s;
    ConfigError before connecting when there are none and plain text is not accepted."""
    if bus_keys is None and sec.bus_key_file:
        bus_keys = load_bus_keys(sec.bus_key_file)
    plain_bus = plain_bus or sec.plain_bus
    require_sealing(bus_keys is not None, plain_bus, GATEWAY_NEEDS_KEY)
    return bus_keys, plain_bus

ENDING_S = 10.0  # a closing client's loop: its leftover tasks end within 5 s (end_tasks)

DROPPED = ("The connection to the NATS server dropped during the request; it may not have "
           "been delivered.")


class NoAnswerYet(SemtraceError, TimeoutError):
    """No node answered in time, the connection to NATS up all along: the request is queued
    on the bus (JetStream keeps it until its node commits it), and the answer may still come.
    That is all the wire tells: a node that holds a tool loop's call until its turn lands
    answers later, one that is down or hung never does, and both are silent until then.
    (Nothing queued it, or the connection dropped: other errors, which say so.)"""

    queued = True  # the bus keeps it: the adapters hand it more while no node answers


class AsyncNatsClient:
    """An asyncio gateway client over NATS."""

    def __init__(self, nc: Any, *, timeout: float, keys: BusKeys | None = None,
                 plain_bus: bool = False) -> None:
        require_sealing(keys is not None, plain_bus, GATEWAY_NEEDS_KEY)
        self._nc = nc
        self.timeout = timeout
        self.keys = keys
        self.dead = False  # the server left a PING unanswered (`probe`): replace this client
        self._probing: asyncio.Future[None] | None = None

    @classmethod
    async def connect(cls, url: str, *, timeout: float = 5.0,
                      security: ClusterSecurity | None = None,
                      name: str = "semtrace-gateway",
                      bus_keys: BusKeys | None = None,
                      plain_bus: bool = False) -> AsyncNatsClient:
        """Connect; `bus_keys` (or `security.bus_key_file`) seals every request.

        Without either, ConfigError before connecting unless `plain_bus` (or
        `security.plain_bus`) accepts plain text on the bus.
        """
        sec = security or ClusterSecurity()
        bus_keys, plain_bus = gateway_sealing(sec, bus_keys, plain_bus)
        # within its timeout, as a request (a gateway's send never blocks past it)
        nc = await connect(url, sec, name=name, connect_timeout=timeout, within=timeout)
        return cls(nc, timeout=timeout, keys=bus_keys, plain_bus=plain_bus)

    async def request(self, obj: dict[str, Any], timeout: float | None = None
                      ) -> dict[str, Any]:
        """Request-reply: the committed record's reply; SemtraceError if none within
        `timeout` (default: the client's), NoAnswerYet when the bus kept the request.

        A request in async mode is published fire-and-forget instead (see `publish`, within
        `timeout`).
        """
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        if obj.get("mode") == "async":
            return await self.publish(obj, timeout)
        subject, payload = sealed_request(obj, self.keys)
        self._check_connected("request")
        before, wait = self._reconnects(), self.timeout if timeout is None else timeout
        try:
            msg = await self._nc.request(subject, payload, timeout=wait)
        except NoRespondersError:  # no stream captures the subject: nothing kept the request
            raise SemtraceError(NOT_QUEUED.format(subject=subject)) from None
        except (NatsTimeout, TimeoutError):
            # lost on the way, perhaps never delivered: the connection is down, or it went
            # down and came back meanwhile (the bytes in the old socket that the server had
            # not read are gone, and the new connection knows nothing of them)
            if not self._nc.is_connected or self._reconnects() != before:
                raise SemtraceError(DROPPED) from None
            raise NoAnswerYet(f"No node answered within {wait:.3g} s; the request "
                              "stays queued on the bus.") from None
        return open_reply(msg.data, _tenant(obj), self.keys)

    async def publish(self, obj: dict[str, Any], timeout: float | None = None
                      ) -> dict[str, Any]:
        """Fire-and-forget; returns the queued reply a socket gives in async mode. `timeout`:
        how long the server may take to confirm it has the message (default: the
        client's)."""
        subject, payload = sealed_request(obj, self.keys)
        self._check_connected("prompt")
        before = self._reconnects()
        try:
            await self._nc.publish(subject, payload)
            await self._nc.flush(timeout=self.timeout if timeout is None else timeout)
        except Exception as exc:  # the connection dropped meanwhile (nats-py's own errors)
            raise SemtraceError("The connection to the NATS server dropped while publishing; "
                                f"the prompt may not have been sent ({type(exc).__name__})."
                                ) from None
        if self._reconnects() != before:  # the flush answered on a new connection only
            raise SemtraceError("The connection to the NATS server dropped while publishing; "
                                "the prompt may not have been sent.")
        return {"request_id": obj.get("request_id"), "ok": True, "mode": "async",
                "queued": True}

    def probe(self) -> None:
        """A request went unanswered in time (`NoAnswerYet`) on this connection, which
        other requests may share: ask the server for a PING in the background, not closing
        the connection under them. A server that answers none within PROBE_S (stopped, a
        frozen host) marks the client `dead`, for the next request to replace it."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(self._probe())

    async def _probe(self) -> None:
        try:
            await self._nc.flush(timeout=PROBE_S)
        except Exception:  # noqa: BLE001 - no answer, or the connection dropped meanwhile
            self.dead = True

    def _reconnects(self) -> int:
        """How many times this connection came back after it dropped."""
        return int(self._nc.stats.get("reconnects", 0))

    def _check_connected(self, what: str) -> None:
        if not self._nc.is_connected:
            raise SemtraceError(UNREACHABLE.format(what=what))

    async def close(self, within: float | None = None) -> None:
        """Drain and close, within `within` seconds (default: the client's timeout); with
        the server unreachable, or no time left, close at once (no drain), and with one
        that does not answer (hung), close without a drain once it left a PING unanswered
        a second (`bus.close_within`)."""
        if self._probing is not None:
            self._probing.cancel()
        await close_within(self._nc, self.timeout if within is None else within)


class NatsClient:
    """A blocking gateway client over NATS (its own event loop on a daemon thread)."""

    def __init__(self, url: str, *, timeout: float = 5.0,
                 security: ClusterSecurity | None = None,
                 bus_keys: BusKeys | None = None, plain_bus: bool = False) -> None:
        """Connect (see AsyncNatsClient.connect); refuses before connecting without a
        bus key unless `plain_bus=True` (or `security.plain_bus`)."""
        sec = security or ClusterSecurity()
        bus_keys, plain_bus = gateway_sealing(sec, bus_keys, plain_bus)
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="semtrace-nats-client")
        self._thread.start()
        try:
            self._inner: AsyncNatsClient = self._run(AsyncNatsClient.connect(
                url, timeout=timeout, security=sec, bus_keys=bus_keys, plain_bus=plain_bus))
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        wait = self.timeout if timeout is None else timeout
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(wait + 5)

    def __enter__(self) -> NatsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, obj: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Request-reply (see AsyncNatsClient.request); `timeout`: this request's wait for
        its answer (default: the client's), so that threads sharing the client each keep
        their own."""
        reply: dict[str, Any] = self._run(self._inner.request(obj, timeout), timeout)
        return reply

    @property
    def dead(self) -> bool:
        """Whether the server left the PING of `probe` unanswered."""
        return self._inner.dead

    def probe(self) -> None:
        """AsyncNatsClient.probe, from any thread (without waiting for the answer)."""
        with contextlib.suppress(RuntimeError):  # closed meanwhile
            self._loop.call_soon_threadsafe(self._inner.probe)

    def settimeout(self, timeout: float) -> None:
        """The time each later request may wait for its answer (a connection opened near
        the end of one request's time must not keep that short wait for the next ones)."""
        self.timeout = self._inner.timeout = timeout

    def publish(self, obj: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Fire-and-forget (see AsyncNatsClient.publish; `timeout` as for `request`)."""
        reply: dict[str, Any] = self._run(self._inner.publish(obj, timeout), timeout)
        return reply

    def close(self, within: float | None = None) -> None:
        """Drain and close (see AsyncNatsClient.close), then end the client's loop."""
        try:
            self._run(self._inner.close(within))
        except TimeoutError:  # a loaded host: what is left ends with the loop
            pass
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        # what still runs on the loop ends first (an attempt given up, a drain unanswered):
        # left pending on a closed loop, it is printed at exit as if something crashed
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(end_tasks(), self._loop).result(ENDING_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
