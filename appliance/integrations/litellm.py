"""A LiteLLM callback: each completion goes to the appliance; its reply goes on the span.

    import litellm
    from appliance.integrations.litellm import SemtraceLogger

    litellm.callbacks = [SemtraceLogger("/run/semtrace/semtrace.sock", tenant="acme")]
    # or, to a cluster: SemtraceLogger("nats://10.0.0.5:4222", tenant="acme", redact=True)

On success or failure of a chat completion the callback sends the last user
message, the user, the session id LiteLLM knows (`litellm_session_id` or
`metadata.session_id`), the model and the token counts to the socket, with the
traceparent of the request's span. The reply's `gen_ai.conversation.id` and
`semtrace.*` attributes are set on that span while it is still recording
(`metadata.litellm_parent_otel_span` on the proxy, else the current span) and
in the call's metadata, where loggers after this one in `litellm.callbacks` see
them. The appliance being down never fails a completion: it is logged and
counted in `failures`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger
from opentelemetry import trace

from appliance.client import is_nats_url, open_async_client, open_client
from appliance.errors import SemtraceError
from appliance.integrations import annotate, reply_attributes, traceparent
from appliance.integrations.redaction import TextRedactor, text_redactor

log = logging.getLogger("semtrace.integrations.litellm")
CHAT_CALLS = ("completion", "acompletion")


def user_text(messages: Any) -> str | None:
    """The last user message's text (string content or the text parts of a list)."""
    for message in reversed(messages or []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content
                                if isinstance(p, dict) and p.get("type") == "text")
        return content if isinstance(content, str) and content.strip() else None
    return None


def _metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
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


def build_request(kwargs: dict[str, Any], response_obj: Any, start: datetime, end: datetime,
                  *, status: str, tenant: str, default_user: str,
                  mode: str = "sync") -> dict[str, Any] | None:
    """The ingest request for one LiteLLM call, or None when it has no user text."""
    if kwargs.get("call_type", "completion") not in CHAT_CALLS:
        return None
    text = user_text(kwargs.get("messages"))
    request_id = kwargs.get("litellm_call_id")
    if text is None or not request_id:
        return None
    params = kwargs.get("litellm_params") or {}
    metadata = params.get("metadata") or {}
    model, provider = kwargs.get("model"), kwargs.get("custom_llm_provider")
    if model and provider and "/" not in model:
        model = f"{provider}/{model}"
    input_tokens, output_tokens = _usage(response_obj) if status == "ok" else (None, None)
    start_utc = start.astimezone(UTC) if isinstance(start, datetime) else datetime.now(UTC)
    latency = (end - start).total_seconds() * 1000 if isinstance(end, datetime) else None
    req: dict[str, Any] = {
        "v": 1, "op": "ingest", "mode": mode, "request_id": str(request_id),
        "tenant": metadata.get("semtrace_tenant") or tenant,
        "user_id": kwargs.get("user") or metadata.get("user_api_key_user_id") or default_user,
        "text": text, "ts": start_utc.isoformat(), "model": model,
        "response": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                     "latency_ms": latency, "status": status},
    }
    session = params.get("litellm_session_id") or metadata.get("session_id")
    if session:
        req["session_id"] = str(session)
    tp = traceparent(parent_span(kwargs))
    if tp:
        req["traceparent"] = tp
    return req


class SemtraceLogger(CustomLogger):
    """LiteLLM callback that records every chat completion in the appliance."""

    def __init__(self, socket_path: str | Path, *, tenant: str = "default",
                 default_user: str = "anonymous", mode: str = "sync",
                 timeout: float = 5.0, redact: bool | TextRedactor = False) -> None:
        """Args:
            socket_path: the appliance's Unix socket, or a `nats://host:port` URL (mode
                async is then fire-and-forget to the bus).
            redact: True (Presidio, policies/redaction.toml) or a function: prompts
                leave the gateway with placeholders instead of PII.
        """
        super().__init__()
        self.socket_path: str | Path = (socket_path if is_nats_url(socket_path)
                                        else Path(socket_path))
        self.redact = text_redactor(redact)
        self.tenant, self.default_user, self.mode, self.timeout = (tenant, default_user, mode,
                                                                   timeout)
        self.sent = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._client: Any = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = \
            weakref.WeakKeyDictionary()

    # ------------------------------------------------------------ LiteLLM hooks

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._record_sync(kwargs, response_obj, start_time, end_time, "ok")

    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._record_sync(kwargs, response_obj, start_time, end_time, "error")

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        await self._record_async(kwargs, response_obj, start_time, end_time, "ok")

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        await self._record_async(kwargs, response_obj, start_time, end_time, "error")

    # ------------------------------------------------------------ sending

    def _request(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
                 status: str) -> dict[str, Any] | None:
        req = build_request(kwargs, response_obj, start, end, status=status,
                            tenant=self.tenant, default_user=self.default_user, mode=self.mode)
        if req is not None and self.redact is not None:
            req["text"] = self.redact(req["text"])
        return req

    def _record_sync(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
                     status: str) -> None:
        req = self._request(kwargs, response_obj, start, end, status)
        if req is None:
            return
        reply = None
        with self._lock:
            try:
                if self._client is None:
                    self._client = open_client(self.socket_path, timeout=self.timeout)
                reply = self._client.request(req)
            except (SemtraceError, OSError, ValueError) as exc:
                self._drop_client()
                self._failed(req, exc)
        if reply is not None:
            self._apply(kwargs, req, reply)

    async def _record_async(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
                            status: str) -> None:
        req = self._request(kwargs, response_obj, start, end, status)
        if req is None:
            return
        loop = asyncio.get_running_loop()
        try:
            if loop not in self._async:
                client = await open_async_client(self.socket_path, timeout=self.timeout)
                if self._async.setdefault(loop, client) is not client:
                    await client.close()  # another call connected first
            reply = await asyncio.wait_for(self._async[loop].request(req), self.timeout)
        except (SemtraceError, OSError, ValueError, TimeoutError) as exc:
            stale = self._async.pop(loop, None)
            if stale is not None:
                await asyncio.gather(stale.close(), return_exceptions=True)
            with self._lock:
                self._failed(req, exc)
            return
        self._apply(kwargs, req, reply)

    def _drop_client(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError):
                self._client.close()
            self._client = None

    def _failed(self, req: dict[str, Any], exc: Exception) -> None:
        self.failures += 1
        self._done.notify_all()
        log.warning("semtrace did not record a request", extra={
            "event": "semtrace_unavailable", "request_id": req["request_id"],
            "error": type(exc).__name__})

    def _apply(self, kwargs: Any, req: dict[str, Any], reply: dict[str, Any]) -> None:
        """Put the reply on the call's metadata and its span; count it."""
        attrs = reply_attributes(reply)
        _metadata(kwargs).update(attrs)
        standard = kwargs.get("standard_logging_object")
        if isinstance(standard, dict) and isinstance(standard.get("metadata"), dict):
            standard["metadata"].update(attrs)
        annotate(parent_span(kwargs), reply)
        if not reply.get("ok"):
            log.warning("semtrace refused a request", extra={
                "event": "semtrace_refused", "request_id": req["request_id"],
                "code": (reply.get("error") or {}).get("code")})
        with self._lock:
            self.sent += 1
            self._done.notify_all()

    def wait(self, count: int, timeout: float = 30.0) -> bool:
        """Block until `count` calls were answered or failed (for tests and shutdown)."""
        with self._done:
            return self._done.wait_for(lambda: self.sent + self.failures >= count, timeout)
