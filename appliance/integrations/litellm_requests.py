"""The requests a LiteLLM call is sent as, built from the call's kwargs and response.

The ingest request (before the call, or whole after it) carries the last user
message, the digests of the messages before it, the tenant and user the
gateway vouches for, the session id, the model and the traceparent of the
request's span; the update after the answer carries tokens, latency, status,
cost and the answer's digest and id, never its text. `litellm.py`'s
`SemtraceLogger` sends them.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from appliance.ingest import content_digest
from appliance.integrations import history_digests, last_user, message_text, traceparent

CHAT_CALLS = ("completion", "acompletion")


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
