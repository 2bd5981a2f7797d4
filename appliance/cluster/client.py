"""The gateways' side of the bus: protocol-v1 requests to `semtrace.ingest.<tenant>`.

`request` is NATS request-reply: the reply is the socket's reply JSON, sent by
the node that owns the tenant once the record is committed. `publish` is
fire-and-forget: the enrichment then appears on `semtrace.enriched.<tenant>`.
A request that gets no reply in time is still on the bus (JetStream keeps it
until its node commits it); `lookup` on that node, or the enriched subject,
gives its answer later.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from appliance.cluster.bus import connect
from appliance.cluster.partition import ingest_subject, valid_tenant
from appliance.config import ClusterSecurity
from appliance.errors import SemtraceError


def _subject(obj: dict[str, Any]) -> str:
    tenant = obj.get("tenant")
    if not isinstance(tenant, str) or not valid_tenant(tenant):
        raise SemtraceError("Over NATS a tenant is 1-128 letters, digits, '_' or '-'.")
    return ingest_subject(tenant)


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


class AsyncNatsClient:
    """An asyncio gateway client over NATS."""

    def __init__(self, nc: Any, *, timeout: float) -> None:
        self._nc = nc
        self.timeout = timeout

    @classmethod
    async def connect(cls, url: str, *, timeout: float = 5.0,
                      security: ClusterSecurity | None = None,
                      name: str = "semtrace-gateway") -> AsyncNatsClient:
        nc = await connect(url, security or ClusterSecurity(), name=name,
                           connect_timeout=timeout)
        return cls(nc, timeout=timeout)

    async def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Request-reply: the committed record's reply; SemtraceError if none in time.

        A request in async mode is published fire-and-forget instead (see `publish`).
        """
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        if obj.get("mode") == "async":
            return await self.publish(obj)
        subject = _subject(obj)
        try:
            msg = await self._nc.request(subject, _frame(obj), timeout=self.timeout)
        except (NatsTimeout, TimeoutError, NoRespondersError):
            raise SemtraceError(f"No node answered within {self.timeout:g} s; the request "
                                "stays queued on the bus.") from None
        reply: dict[str, Any] = json.loads(msg.data)
        return reply

    async def publish(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Fire-and-forget; returns the queued reply a socket gives in async mode."""
        await self._nc.publish(_subject(obj), _frame(obj))
        await self._nc.flush(timeout=self.timeout)
        return {"request_id": obj.get("request_id"), "ok": True, "mode": "async",
                "queued": True}

    async def close(self) -> None:
        await self._nc.drain()


class NatsClient:
    """A blocking gateway client over NATS (its own event loop on a daemon thread)."""

    def __init__(self, url: str, *, timeout: float = 5.0,
                 security: ClusterSecurity | None = None) -> None:
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="semtrace-nats-client")
        self._thread.start()
        try:
            self._inner: AsyncNatsClient = self._run(AsyncNatsClient.connect(
                url, timeout=timeout, security=security))
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout + 5)

    def __enter__(self) -> NatsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Request-reply (see AsyncNatsClient.request)."""
        reply: dict[str, Any] = self._run(self._inner.request(obj))
        return reply

    def publish(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Fire-and-forget (see AsyncNatsClient.publish)."""
        reply: dict[str, Any] = self._run(self._inner.publish(obj))
        return reply

    def close(self) -> None:
        try:
            self._run(self._inner.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
