"""The requests a LiteLLM call is sent as, built from the call's kwargs and response.

The ingest request (before the call, or whole after it) carries the last user
message, the digests of the messages before it, the tenant and user the
gateway vouches for, the session id, the model and the traceparent of the
request's span; the update after the answer carries tokens, latency, status,
cost and the answer's digest and id, never its text. `logger.py`'s
`SemtraceLogger` sends them.

Chat calls (`completion`) take these from `messages` and the chat completion;
Responses API calls (`responses`, the proxy's `/v1/responses`) from `input`
(`instructions`, the system prompt, is not dialogue and is not sent), their
`previous_response_id`, and the response's `output` and `id`; a turn of the proxy's
Responses websocket from its `response.create` frame and its `response.completed`
event (`websocket_turn`).
"""

from __future__ import annotations

import json
import math
import sys
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from appliance.ingest import content_digest
from appliance.integrations import (
    MAX_TEXT_CHARS,
    as_message,
    last_user,
    message_text,
    prompt_fields,
    prompt_history,
    traceparent,
)
from appliance.integrations.tool_loops import loop_request, tool_outputs_only

# chat completions, and Anthropic's Messages API (`litellm.anthropic.messages`, the
# proxy's /v1/messages): the same `messages`, its `system` prompt kept apart
ANTHROPIC_CALLS = ("anthropic_messages", "aanthropic_messages")
CHAT_CALLS = ("completion", "acompletion", *ANTHROPIC_CALLS)
RESPONSES_CALLS = ("responses", "aresponses")  # LiteLLM's call types for the Responses API
# a turn of the proxy's Responses websocket (`/v1/responses` over a websocket): logged after
# its answer with the client's `response.create` frame as `input` (a JSON string) and the
# provider's raw events as the response
WEBSOCKET_CALLS = ("_aresponses_websocket", "aresponses_websocket")
TURN_ENDS = ("response.completed", "response.incomplete", "response.failed")


def user_text(messages: Any) -> str | None:
    """The last user message's text (string content or the text parts of a list)."""
    i = last_user(messages)
    return None if i is None else message_text((as_message(messages[i]) or {}).get("content"))


def input_messages(value: Any) -> list[Any]:
    """A Responses call's `input` as chat messages: a string is the user's message; a list's
    items are kept in order (message items have a role and a content that is a string or
    a list of `input_text` / `output_text` parts; other items have no role and are not
    dialogue). Items given as objects (a response's `output` sent back) become dicts."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list | tuple):
        return []
    return [item if isinstance(item, dict) else
            item.model_dump() if callable(getattr(item, "model_dump", None)) else {}
            for item in value]


def websocket_turn(kwargs: dict[str, Any], response_obj: Any) -> tuple[dict[str, Any], Any]:
    """A turn of the proxy's Responses websocket as a Responses call: its `response.create`
    frame's `input`, `previous_response_id` and `user`, and the response its last event
    carries (`response.completed`); any other call as it is. The kwargs' nested dicts are
    shared, so what is written to the call's metadata reaches LiteLLM's."""
    if kwargs.get("call_type") not in WEBSOCKET_CALLS:
        return kwargs, response_obj
    try:
        frame = json.loads(kwargs.get("input") or "")
    except (TypeError, ValueError):
        frame = None
    if not isinstance(frame, dict) or frame.get("type") != "response.create":
        return {**kwargs, "call_type": "aresponses", "input": None}, response_obj
    turn = {**kwargs, "call_type": "aresponses", "input": frame.get("input"),
            "previous_response_id": frame.get("previous_response_id"),
            "user": frame.get("user") or kwargs.get("user")}
    events = response_obj if isinstance(response_obj, list) else []
    ends = [e.get("response") for e in events
            if isinstance(e, dict) and e.get("type") in TURN_ENDS]
    return turn, ends[-1] if ends else None


def is_responses(kwargs: dict[str, Any]) -> bool:
    """Whether the call is a Responses API call (over HTTP or the proxy's websocket)."""
    return kwargs.get("call_type") in (*RESPONSES_CALLS, *WEBSOCKET_CALLS)


def loop_call(kwargs: dict[str, Any], response_obj: Any, start: Any, end: Any,
              status: str | None, *, tenant: str,
              tenant_by_team: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The `update` attaching a Responses call that continues a tool loop (its `input` holds
    the tools' outputs and no user message) to the turn its `previous_response_id`
    continues: before the call (`status` None) without figures, after it with what it
    cost. None for any other call."""
    kwargs, response_obj = websocket_turn(kwargs, response_obj)
    request_id = kwargs.get("litellm_call_id")
    if kwargs.get("call_type") not in RESPONSES_CALLS or not request_id:
        return None
    previous = provider_response_id(kwargs.get("previous_response_id"))
    if not previous or not tool_outputs_only(call_messages(kwargs) or []):
        return None
    params = kwargs.get("litellm_params") or {}
    metadata = _metadata(kwargs)
    session = (params.get("litellm_session_id") or kwargs.get("litellm_session_id")
               or metadata.get("session_id"))
    return loop_request(
        request_id=str(request_id), tenant=tenant_of(metadata, tenant, tenant_by_team),
        user_id=user_of(kwargs, metadata, session), previous_response_id=previous,
        response=None if status is None else _response(response_obj, start, end, status,
                                                       response_cost(kwargs)))


def call_messages(kwargs: dict[str, Any]) -> list[Any] | None:
    """The call's messages (a Responses call's `input`), or None for a call type not recorded."""
    call_type = kwargs.get("call_type", "completion")
    if call_type in CHAT_CALLS:
        return list(kwargs.get("messages") or [])
    if call_type in RESPONSES_CALLS:
        # after the answer the SDK's kwargs hold the input as `messages` only
        given = kwargs.get("input")
        return input_messages(given if given is not None else kwargs.get("messages"))
    return None


PROXY_ISSUED = "litellm_proxy:responses_api:response_id:"  # what the proxy encrypts


def provider_response_id(value: Any) -> str | None:
    """The provider's response id: LiteLLM hands callers ids that also name the deployment
    that answered, and sends the provider's own id on (`previous_response_id` after its
    decoding, as the SDK's callbacks see it); both sides are kept as the provider's id. On
    the proxy (with a master key) the id a caller holds is also encrypted, with a new
    ciphertext each time it is handed out: it is decrypted first (`_proxy_issued`)."""
    if not isinstance(value, str) or not value:
        return None
    value = _proxy_issued(value)
    try:
        from litellm.responses.utils import ResponsesAPIRequestUtils
    except ImportError:  # pragma: no cover - LiteLLM's layout changed: keep the id as given
        return value
    decoded = ResponsesAPIRequestUtils.decode_previous_response_id_to_original_previous_response_id
    out = decoded(value)
    return out if isinstance(out, str) and out else value


def _proxy_issued(value: str) -> str:
    """The id inside a response id the LiteLLM proxy encrypted for its caller (its response
    id security, on with a master key: the client's copy and the logged copy of one id are
    different ciphertexts, so neither matches the other); else the id unchanged. Only in a
    process that runs the proxy: elsewhere its key does not exist (and importing the proxy
    to look would take seconds)."""
    if not value.startswith("resp_") or "litellm.proxy.proxy_server" not in sys.modules:
        return value
    try:
        from litellm.proxy.common_utils.encrypt_decrypt_utils import decrypt_value_helper

        plain = decrypt_value_helper(value=value[len("resp_"):], key="response_id",
                                     exception_type="debug", return_original_value=True)
    except Exception:  # noqa: BLE001 - not one of the proxy's ids (or its layout changed)
        return value
    if not isinstance(plain, str) or not plain.startswith(PROXY_ISSUED):
        return value
    inner = plain[len(PROXY_ISSUED):].split(";", 1)[0]
    return inner or value


def _metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The call's metadata dict (created if missing): the SDK's `litellm_params.metadata`,
    or the proxy request's `litellm_metadata` (the proxy's own on routes such as
    `/v1/responses`, where `metadata` is the provider's parameter), else its `metadata`."""
    if "litellm_params" not in kwargs and ("metadata" in kwargs or "litellm_metadata" in kwargs):
        key = "litellm_metadata" if isinstance(kwargs.get("litellm_metadata"), dict) else "metadata"
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


def _get(obj: Any, key: str) -> Any:
    """A field of a response part, whether LiteLLM hands it as an object or a dict."""
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def _usage(response_obj: Any) -> tuple[int | None, int | None]:
    """(input, output) tokens: a Responses usage's `input_tokens` / `output_tokens`, or a
    chat usage's `prompt_tokens` / `completion_tokens` (LiteLLM's logging may hand a
    Responses answer's usage in the chat form)."""
    usage = _get(response_obj, "usage")
    if usage is None:
        return None, None

    def count(*keys: str) -> int | None:
        for key in keys:
            value = _get(usage, key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    return count("input_tokens", "prompt_tokens"), count("output_tokens", "completion_tokens")


def output_text(response_obj: Any) -> str | None:
    """A Responses answer's text: each output message's text (as `message_text` reads the
    message when it is sent back in a later `input`), joined by newlines."""
    texts = [message_text([p if isinstance(p, dict) else {"type": _get(p, "type"),
                                                         "text": _get(p, "text")}
                           for p in _get(item, "content") or []])
             for item in _get(response_obj, "output") or []
             if _get(item, "type") == "message"]
    joined = "\n".join(t for t in texts if t)
    return joined or None


def _answer(response_obj: Any) -> dict[str, Any]:
    """The answer's digest and id (never its text) from a chat completion or a Responses
    API response (its id as the provider gave it, which a `previous_response_id` names)."""
    out: dict[str, Any] = {}
    rid = _get(response_obj, "id")
    if isinstance(rid, str) and rid:
        out["id"] = rid
    choices = _get(response_obj, "choices")
    if choices:
        message = _get(choices[0], "message")
        text = message_text(_get(message, "content"))
    elif _get(response_obj, "output") is not None:
        if "id" in out:
            out["id"] = provider_response_id(rid)
        text = output_text(response_obj)
    elif isinstance(_get(response_obj, "content"), list):  # an Anthropic message
        text = message_text(_get(response_obj, "content"))
    else:
        text = None
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
    """The call's user: the request's `user` (an Anthropic Messages call's
    `metadata.user_id`), else the proxy key's user; an anonymous
    caller is told apart by its session, else its key, else it is alone (its call id):
    anonymous callers never share one user, so strangers are never linked together."""
    given = kwargs.get("metadata") if kwargs.get("call_type") in ANTHROPIC_CALLS else None
    anthropic = given.get("user_id") if isinstance(given, dict) else None
    for value in (kwargs.get("user"), anthropic, metadata.get("user_api_key_user_id")):
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
                  mode: str = "sync", tenant_by_team: dict[str, str] | None = None,
                  max_text_chars: int = MAX_TEXT_CHARS) -> dict[str, Any] | None:
    """The ingest request for one LiteLLM call (`status` None: before the call, without a
    response), or None when it has no user text. A prompt over `max_text_chars` is cut
    (`prompt_fields`): recorded, marked truncated, still threaded."""
    kwargs, response_obj = websocket_turn(kwargs, response_obj)
    messages = call_messages(kwargs)
    i = last_user(messages) if messages is not None else None
    request_id = kwargs.get("litellm_call_id")
    if messages is None or i is None or not request_id:
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
        **prompt_fields(message_text((as_message(messages[i]) or {}).get("content")) or "",
                        max_text_chars),
        "ts": start_utc.isoformat(),
        "model": model, "history": prompt_history(messages, i),
    }
    if status is not None:
        req["response"] = _response(response_obj, start, end, status, response_cost(kwargs))
    previous = provider_response_id(kwargs.get("previous_response_id"))
    if previous and kwargs.get("call_type") in RESPONSES_CALLS:
        req["previous_response_id"] = previous
    if session:
        req["session_id"] = str(session)
    tp = traceparent(parent_span(kwargs))
    if tp:
        req["traceparent"] = tp
    return req


# LiteLLM's exceptions for a prompt refused for what it says (a provider's content filter,
# a proxy guardrail or pre-call check), not for a failure: the protocol's `blocked`
BLOCKING_ERRORS = ("ContentPolicyViolationError", "RejectedRequestError",
                   "GuardrailRaisedException", "BlockedPiiEntityError")


def failure_status(kwargs: dict[str, Any]) -> str:
    """`blocked` for a call refused for its content, else `error`. The proxy's guardrails
    also refuse with an HTTP error that says which policy the request violated."""
    exc = kwargs.get("exception")
    if exc is None:
        return "error"
    names = {cls.__name__ for cls in type(exc).__mro__}
    guardrail = ("HTTPException" in names
                 and "violated" in str(getattr(exc, "detail", "")).lower())
    return "blocked" if names & set(BLOCKING_ERRORS) or guardrail else "error"


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
