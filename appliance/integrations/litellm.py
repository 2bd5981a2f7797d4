"""A LiteLLM callback: each chat completion is registered before the call, updated after.

    import litellm
    from appliance.integrations.litellm import SemtraceLogger

    litellm.callbacks = [SemtraceLogger("/run/semtrace/semtrace.sock", tenant="acme")]
    # or, to a cluster: SemtraceLogger("nats://10.0.0.5:4222", tenant="acme", redact=True)

Before the provider is called (`async_pre_call_hook` on the proxy,
`log_pre_api_call` in the SDK) the callback sends the last user message, the
digests of the messages before it (`history`: their content never leaves the
gateway process), the user, the session id LiteLLM knows (`litellm_session_id`
or `metadata.session_id`), the model and the traceparent of the request's span.
The reply's `gen_ai.conversation.id` and `semtrace.*` attributes go on that span
while the request is still open (`metadata.litellm_parent_otel_span` on the
proxy, else the current span) and in the call's metadata, where loggers after
this one in `litellm.callbacks` see them. After the answer (success or failure)
an `update` sends tokens, latency, status, the cost LiteLLM computed
(`response_cost`), the answer's digest and its id. A call
that could not be registered before is sent whole after the answer. The
appliance being down never fails a completion: it is logged and counted in
`failures`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import weakref
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from opentelemetry import trace

from appliance.client import is_nats_url, open_async_client, open_client
from appliance.errors import SemtraceError
from appliance.ingest import content_digest
from appliance.integrations import (
    annotate,
    history_digests,
    last_user,
    message_text,
    reply_attributes,
    traceparent,
)
from appliance.integrations.redaction import TextRedactor, text_redactor

log = logging.getLogger("semtrace.integrations.litellm")
CHAT_CALLS = ("completion", "acompletion")
REGISTERED_MAX = 10_000  # call ids registered before the call and awaiting their update


def user_text(messages: Any) -> str | None:
    """The last user message's text (string content or the text parts of a list)."""
    i = last_user(messages)
    return None if i is None else message_text(messages[i].get("content"))


def _metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's metadata dict (created if missing): the SDK's `litellm_params.metadata`,
    or the proxy request's `metadata` / `litellm_metadata`."""
    if "litellm_params" not in kwargs and ("metadata" in kwargs or "litellm_metadata" in kwargs):
        key = "metadata" if isinstance(kwargs.get("metadata"), dict) else "litellm_metadata"
        if not isinstance(kwargs.get(key), dict):
            kwargs[key] = {}
        proxy: dict[str, Any] = kwargs[key]
        return proxy
    params = kwargs.setdefault("litellm_params", {}) or {}
    if params.get("metadata") is None:
        params["metadata"] = {}
    metadata: dict[str, Any] = params["metadata"]
    return metadata


def parent_span(kwargs: dict[str, Any]) -> Any:
    """The request's span: the proxy's `litellm_parent_otel_span`, else the current one."""
    span = _metadata(kwargs).get("litellm_parent_otel_span")
    if span is not None and span.get_span_context().is_valid:
        return span
    return trace.get_current_span()


def _usage(response_obj: Any) -> tuple[int | None, int | None]:
    usage = getattr(response_obj, "usage", None)
    if usage is None and isinstance(response_obj, dict):
        usage = response_obj.get("usage")
    if usage is None:
        return None, None
    get = usage.get if isinstance(usage, dict) else lambda k: getattr(usage, k, None)
    return get("prompt_tokens"), get("completion_tokens")


def _answer(response_obj: Any) -> dict[str, Any]:
    """The answer's digest and id (never its text) from a chat completion response."""
    out: dict[str, Any] = {}
    rid = getattr(response_obj, "id", None)
    if isinstance(rid, str) and rid:
        out["id"] = rid
    choices = getattr(response_obj, "choices", None)
    if choices:
        message = getattr(choices[0], "message", None)
        text = message_text(getattr(message, "content", None))
        if text:
            out["sha256"] = content_digest(text)
    return out


def tenant_of(metadata: dict[str, Any], tenant: str,
              tenant_by_team: dict[str, str] | None = None) -> str:
    """The call's tenant: from the gateway's configuration, by the proxy key's team when
    `tenant_by_team` maps it (the proxy sets `user_api_key_team_id` from the key it
    authenticated), else the configured tenant. Never from what the client sent: a
    `semtrace_tenant` in the request's metadata is ignored."""
    team = metadata.get("user_api_key_team_id")
    if tenant_by_team and isinstance(team, str) and team in tenant_by_team:
        return tenant_by_team[team]
    return tenant


def user_of(kwargs: dict[str, Any], metadata: dict[str, Any], session: Any) -> str:
    """The call's user: the request's `user`, else the proxy key's user; an anonymous
    caller is told apart by its session, else its key, else it is alone (its call id):
    anonymous callers never share one user, so strangers are never linked together."""
    for value in (kwargs.get("user"), metadata.get("user_api_key_user_id")):
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value)
    if session:
        return f"anonymous:session:{session}"
    key = metadata.get("user_api_key_hash")
    if isinstance(key, str) and key:
        return f"anonymous:key:{key}"
    return f"anonymous:call:{kwargs.get('litellm_call_id')}"


def build_request(kwargs: dict[str, Any], response_obj: Any, start: datetime | None,
                  end: datetime | None, *, status: str | None, tenant: str,
                  mode: str = "sync",
                  tenant_by_team: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The ingest request for one LiteLLM call (`status` None: before the call, without a
    response), or None when it has no user text."""
    if kwargs.get("call_type", "completion") not in CHAT_CALLS:
        return None
    messages = kwargs.get("messages") or []
    i = last_user(messages)
    request_id = kwargs.get("litellm_call_id")
    if i is None or not request_id:
        return None
    params = kwargs.get("litellm_params") or {}
    metadata = _metadata(kwargs)
    model, provider = kwargs.get("model"), kwargs.get("custom_llm_provider")
    if model and provider and "/" not in model:
        model = f"{provider}/{model}"
    start_utc = start.astimezone(UTC) if isinstance(start, datetime) else datetime.now(UTC)
    session = (params.get("litellm_session_id") or kwargs.get("litellm_session_id")
               or metadata.get("session_id"))
    req: dict[str, Any] = {
        "v": 1, "op": "ingest", "mode": mode, "request_id": str(request_id),
        "tenant": tenant_of(metadata, tenant, tenant_by_team),
        "user_id": user_of(kwargs, metadata, session),
        "text": message_text(messages[i].get("content")), "ts": start_utc.isoformat(),
        "model": model, "history": history_digests(messages[:i]),
    }
    if status is not None:
        req["response"] = _response(response_obj, start, end, status, response_cost(kwargs))
    if session:
        req["session_id"] = str(session)
    tp = traceparent(parent_span(kwargs))
    if tp:
        req["traceparent"] = tp
    return req


def response_cost(kwargs: dict[str, Any]) -> float | None:
    """The cost LiteLLM computed for the call (`response_cost`), when it is a usable number."""
    cost = kwargs.get("response_cost")
    if cost is None:
        cost = (kwargs.get("standard_logging_object") or {}).get("response_cost")
    if isinstance(cost, bool) or not isinstance(cost, int | float):
        return None
    return float(cost) if math.isfinite(cost) and cost >= 0 else None


def _response(response_obj: Any, start: Any, end: Any, status: str,
              cost: float | None = None) -> dict[str, Any]:
    input_tokens, output_tokens = _usage(response_obj) if status == "ok" else (None, None)
    latency = ((end - start).total_seconds() * 1000
               if isinstance(end, datetime) and isinstance(start, datetime) else None)
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "latency_ms": latency,
            "status": status, **({"cost": cost} if cost is not None else {}),
            **(_answer(response_obj) if status == "ok" else {})}


def build_update(req: dict[str, Any], response_obj: Any, start: Any, end: Any,
                 status: str, cost: float | None = None) -> dict[str, Any]:
    """The update after the answer for a call registered before it."""
    return {"v": 1, "op": "update", "tenant": req["tenant"], "request_id": req["request_id"],
            "response": _response(response_obj, start, end, status, cost)}


class SemtraceLogger(CustomLogger):
    """LiteLLM callback that records every chat completion in the appliance."""

    def __init__(self, socket_path: str | Path, *, tenant: str = "default",
                 tenant_by_team: dict[str, str] | None = None, mode: str = "sync",
                 timeout: float = 5.0, register_before_call: bool = True,
                 redact: bool | TextRedactor = False) -> None:
        """Args:
            socket_path: the appliance's Unix socket, or a `nats://host:port` URL (mode
                async is then fire-and-forget to the bus).
            tenant: the tenant of every call (this gateway's configuration).
            tenant_by_team: on the proxy, the tenant of each key's team id (calls whose
                key has another team, or none, go to `tenant`).
            redact: True (Presidio, policies/redaction.toml) or a function: prompts
                leave the gateway with placeholders instead of PII.
        """
        super().__init__()
        self.socket_path: str | Path = (socket_path if is_nats_url(socket_path)
                                        else Path(socket_path))
        self.redact = text_redactor(redact)
        self.tenant, self.mode, self.timeout = tenant, mode, timeout
        self.tenant_by_team = dict(tenant_by_team or {})
        self.register_before_call = register_before_call
        self.sent = 0  # calls recorded (registered and updated, or sent whole)
        self.failures = 0  # calls the appliance did not record
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._client: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = \
            weakref.WeakKeyDictionary()
        self._registered: OrderedDict[str, dict[str, Any]] = OrderedDict()

    # ------------------------------------------------------------ LiteLLM hooks

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """SDK: register the prompt before the provider is called."""
        req = self._before(kwargs)
        if req is not None:
            reply = self._send_sync(req)
            if reply is not None:
                self._registered_now(kwargs, req, reply)

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any],
                                  call_type: Any) -> None:
        """Proxy: register the prompt before the request is routed (the data is unchanged)."""
        req = self._before({**data, "call_type": call_type})
        if req is not None:
            reply = await self._send_async(req)
            if reply is not None:
                self._registered_now(data, req, reply)
        return None

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._after_sync(kwargs, response_obj, start_time, end_time, "ok")

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._after_sync(kwargs, response_obj, start_time, end_time, "error")

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        await self._after_async(kwargs, response_obj, start_time, end_time, "ok")

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        await self._after_async(kwargs, response_obj, start_time, end_time, "error")

    # ------------------------------------------------------------ what to send

    def _before(self, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The registration of a call not registered yet (the proxy and the SDK both ask)."""
        if not self.register_before_call:
            return None
        with self._lock:
            if str(kwargs.get("litellm_call_id")) in self._registered:
                return None
        req = build_request(kwargs, None, None, None, status=None, tenant=self.tenant,
                            tenant_by_team=self.tenant_by_team, mode="sync")
        return req

    def _registered_now(self, kwargs: dict[str, Any], req: dict[str, Any],
                        reply: dict[str, Any]) -> None:
        if reply.get("ok"):
            with self._lock:
                self._registered[req["request_id"]] = req
                while len(self._registered) > REGISTERED_MAX:
                    self._registered.popitem(last=False)
        self._apply(kwargs, req, reply)

    def _after(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
               status: str) -> tuple[dict[str, Any] | None, bool]:
        """(request, whether it is an update) for a finished call."""
        with self._lock:
            registered = self._registered.pop(str(kwargs.get("litellm_call_id")), None)
        if registered is not None:
            return build_update(registered, response_obj, start, end, status,
                                response_cost(kwargs)), True
        return build_request(kwargs, response_obj, start, end, status=status,
                             tenant=self.tenant, tenant_by_team=self.tenant_by_team,
                             mode=self.mode), False

    # ------------------------------------------------------------ sending

    def _after_sync(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
                    status: str) -> None:
        req, update = self._after(kwargs, response_obj, start, end, status)
        if req is not None:
            self._finished(kwargs, req, self._send_sync(req), update)

    async def _after_async(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
                           status: str) -> None:
        req, update = self._after(kwargs, response_obj, start, end, status)
        if req is not None:
            self._finished(kwargs, req, await self._send_async(req), update)

    def _outgoing(self, req: dict[str, Any]) -> dict[str, Any]:
        """The request as it leaves the gateway (its prompt redacted if asked)."""
        if self.redact is None or not isinstance(req.get("text"), str):
            return req
        return {**req, "text": self.redact(req["text"])}

    def _send_sync(self, req: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            try:
                if self._client is None:
                    self._client = open_client(self.socket_path, timeout=self.timeout)
                reply: dict[str, Any] = self._client.request(self._outgoing(req))
                return reply
            except (SemtraceError, OSError, ValueError) as exc:
                self._drop_client()
                self._unavailable(req, exc)
                return None

    async def _send_async(self, req: dict[str, Any]) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        try:
            if loop not in self._async:
                client = await open_async_client(self.socket_path, timeout=self.timeout)
                if self._async.setdefault(loop, client) is not client:
                    await client.close()  # another call connected first
            reply: dict[str, Any] = await asyncio.wait_for(
                self._async[loop].request(self._outgoing(req)), self.timeout)
            return reply
        except (SemtraceError, OSError, ValueError, TimeoutError) as exc:
            stale = self._async.pop(loop, None)
            if stale is not None:
                await asyncio.gather(stale.close(), return_exceptions=True)
            self._unavailable(req, exc)
            return None

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None

    @staticmethod
    def _unavailable(req: dict[str, Any], exc: Exception) -> None:
        log.warning("semtrace did not answer", extra={
            "event": "semtrace_unavailable", "request_id": req["request_id"], "op": req["op"],
            "error": type(exc).__name__})

    def _finished(self, kwargs: Any, req: dict[str, Any], reply: dict[str, Any] | None,
                  update: bool) -> None:
        """Count a finished call; a whole ingest's reply also goes on the span."""
        if reply is not None and not update:
            self._apply(kwargs, req, reply)
        elif reply is not None and not reply.get("ok"):
            self._refused(req, reply)
        with self._lock:
            if reply is None:
                self.failures += 1
            else:
                self.sent += 1
            self._done.notify_all()

    @staticmethod
    def _refused(req: dict[str, Any], reply: dict[str, Any]) -> None:
        log.warning("semtrace refused a request", extra={
            "event": "semtrace_refused", "request_id": req["request_id"], "op": req["op"],
            "code": (reply.get("error") or {}).get("code")})

    def _apply(self, kwargs: Any, req: dict[str, Any], reply: dict[str, Any]) -> None:
        """Put the reply on the call's metadata and its span."""
        attrs = reply_attributes(reply)
        _metadata(kwargs).update(attrs)
        standard = kwargs.get("standard_logging_object")
        if isinstance(standard, dict) and isinstance(standard.get("metadata"), dict):
            standard["metadata"].update(attrs)
        annotate(parent_span(kwargs), reply)
        if not reply.get("ok"):
            self._refused(req, reply)

    def wait(self, count: int, timeout: float = 30.0) -> bool:
        """Block until `count` calls were recorded or failed (for tests and shutdown)."""
        with self._done:
            return self._done.wait_for(lambda: self.sent + self.failures >= count, timeout)
