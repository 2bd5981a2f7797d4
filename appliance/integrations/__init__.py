"""Gateway and application adapters: send prompts to the appliance, put its reply on spans.

`litellm/` is a LiteLLM callback (`logger.py`; the requests it sends are built in
`requests.py`); `decorator.py` is for applications that call
models directly. Both use the helpers here so every adapter writes the same
span attributes (docs/otel.md).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from appliance.errors import ConfigError
from appliance.ingest import CONTROL_RE, MAX_HISTORY, content_digest, cut_text

# What a prompt's text may hold when it leaves the gateway: the service's default
# `max_text_chars` (policies/correlation.toml), and a bound on its JSON (a character may
# take up to 12 bytes escaped) that leaves the history room in the default 256 KiB frame.
MAX_TEXT_CHARS = 32_768
MAX_TEXT_BYTES = 96 * 1024

# reply field -> span attribute (the GenAI semantic conventions, then ours)
REPLY_ATTRIBUTES = {
    "conversation_id": "gen_ai.conversation.id",
    "position": "semtrace.position",
    "intent": "semtrace.intent",
    "similarity": "semtrace.similarity",
    "parent_request_id": "semtrace.parent_request_id",
    "topic_id": "semtrace.topic_id",
    "link_source": "semtrace.link_source",
}


# On the span of a call whose prompt a cluster node forwarded to its tenant's owner and
# got no answer for in time (`unanswered`): the outcome, not a conversation id.
STATUS_ATTRIBUTE = "semtrace.status"
FORWARDED_UNANSWERED = "unanswered"


def waits(timeout: float, register_wait: float) -> tuple[float, float]:
    """An adapter's (`timeout`, `register_wait`): the timeout a positive number of seconds
    (one sentence otherwise: 0, a negative one or NaN failed every request, logged as a
    service that did not answer), the wait clamped to [0, timeout]."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not 0 < timeout < math.inf:
        raise ConfigError(f"timeout={timeout!r}: it must be a positive number of seconds "
                          "(what one request to semtrace may take), such as 5.")
    if isinstance(register_wait, bool) or not isinstance(register_wait, int | float) \
            or math.isnan(register_wait):
        raise ConfigError(f"register_wait={register_wait!r}: it must be a number of seconds "
                          "(how long a call waits for its registration), such as 1.")
    return float(timeout), min(max(float(register_wait), 0.0), float(timeout))


def check_tenants(target: Any, tenants: Sequence[Any]) -> None:
    """The tenants an adapter sends for (`tenant`, `tenant_by_team`'s), checked when it is
    built: one the service or the bus refuses would have every call of it refused (over
    NATS, taken for a bus that did not answer, pausing every other tenant's calls too)."""
    from appliance.client import is_nats_url
    from appliance.cluster.partition import valid_tenant

    for tenant in tenants:
        if not isinstance(tenant, str) or not tenant.strip() or len(tenant) > 128 \
                or CONTROL_RE.search(tenant):
            raise ConfigError(f"tenant {tenant!r}: a tenant is 1-128 characters, none of "
                              "them a control character.")
        if is_nats_url(target) and not valid_tenant(tenant):
            raise ConfigError(f"tenant {tenant!r}: over NATS a tenant is 1-128 letters, "
                              "digits, '_' or '-'.")


def on_event_loop() -> bool:
    """Whether this thread runs an asyncio event loop (which a blocking wait would stall)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def error_code(reply: dict[str, Any] | None) -> str | None:
    """The code of an error reply (`busy`, `unanswered`, ...); None for an answer."""
    if not isinstance(reply, dict) or reply.get("ok"):
        return None
    error = reply.get("error")
    return str(error.get("code")) if isinstance(error, dict) else "None"


def forwarded_unanswered(reply: dict[str, Any] | None) -> bool:
    """Whether a cluster node's socket forwarded the request to its tenant's owner over
    NATS and no answer came in time (docs/protocol.md): it stays queued and is stored
    once the owner takes it (or was lost if the node's NATS connection dropped). Not a
    refusal: sent again with the same request id, a stored one is a duplicate."""
    return error_code(reply) == FORWARDED_UNANSWERED


def reply_attributes(reply: dict[str, Any]) -> dict[str, Any]:
    """The span attributes for an ingest (or lookup) reply; empty for an error reply."""
    if not isinstance(reply, dict) or not reply.get("ok"):
        return {}
    return {attr: reply[key] for key, attr in REPLY_ATTRIBUTES.items()
            if isinstance(reply.get(key), str | int | float)}


def annotate(span: Any, reply: dict[str, Any]) -> bool:
    """Set the reply's attributes on `span` if it is still recording; whether it was. A
    request forwarded and left unanswered gets `semtrace.status` `unanswered` instead."""
    if span is None or not span.is_recording():
        return False
    attrs = reply_attributes(reply)
    if attrs:
        span.set_attributes(attrs)
    elif forwarded_unanswered(reply):
        span.set_attribute(STATUS_ATTRIBUTE, FORWARDED_UNANSWERED)
    return bool(attrs)


def traceparent(span: Any = None) -> str | None:
    """The W3C traceparent of `span` (default: the current span), or None without one."""
    span = span if span is not None else trace.get_current_span()
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


# Chat roles as the protocol's history knows them ("developer" is OpenAI's newer "system").
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
         "tool": "tool", "function": "tool"}


def message_text(content: Any) -> str | None:
    """A chat message's text: string content, or the text parts of a list joined by newlines
    (`text`, `input_text`, `output_text`); images, audio and files are never read as text."""
    if isinstance(content, list):
        content = "\n".join(p["text"] for p in content
                            if isinstance(p, dict) and isinstance(p.get("text"), str)
                            and p.get("type") in ("text", "input_text", "output_text"))
    return content if isinstance(content, str) else None


def as_message(m: Any) -> dict[str, Any] | None:
    """A chat message as a dict: a dict, or the object a client library returned (an
    answer's `choices[0].message` appended to the next call's messages); else None."""
    if isinstance(m, dict):
        return m
    dump = getattr(m, "model_dump", None)
    if callable(dump) and getattr(m, "role", None) is not None:
        out = dump()
        return out if isinstance(out, dict) else None
    return None


def tool_results(m: dict[str, Any]) -> bool:
    """Whether a message is an Anthropic user message that carries only `tool_result`
    blocks: the tool's turn in the loop, not something the user wrote."""
    content = m.get("content")
    return (m.get("role") == "user" and isinstance(content, list) and bool(content)
            and all(isinstance(p, dict) and p.get("type") == "tool_result" for p in content))


def last_user(messages: Any) -> int | None:
    """Index of the last user message with text, or None (the last one the user wrote has
    none: an image alone). Tool results sent back as user messages are passed over."""
    for i in range(len(messages or []) - 1, -1, -1):
        m = as_message(messages[i])
        if m is not None and m.get("role") == "user" and not tool_results(m):
            text = message_text(m.get("content"))
            return i if text is not None and text.strip() else None
    return None


def prompt_history(messages: Sequence[Any], i: int) -> list[dict[str, str]]:
    """The `history` of the call whose prompt is `messages[i]`: the messages before it; in
    a tool loop (the model's tool calls and their results follow the prompt) the whole
    conversation so far, so the call continues the previous call of the loop (which holds
    the same prompt, or answered with text) instead of starting over as its sibling."""
    return history_digests(messages[:i] if i == len(messages) - 1 else messages)


def prompt_fields(text: str, max_chars: int = MAX_TEXT_CHARS) -> dict[str, Any]:
    """An ingest's `text`, cut before it leaves the gateway when it is longer than
    `max_chars` (or its JSON than `MAX_TEXT_BYTES`: a frame over the service's
    `max_frame_bytes` is refused whole and closes the connection). A cut text goes with
    `truncated: true` and `text_sha256`, the digest of the whole prompt, which the next
    turn's history holds: the turn is recorded, marked truncated, and threaded."""
    limit = max_chars
    cut = cut_text(text, limit)
    while len(json.dumps(cut)) > MAX_TEXT_BYTES:  # as the clients encode it (ASCII escapes)
        limit = max(1, min(limit, len(cut)) * MAX_TEXT_BYTES // len(json.dumps(cut)) - 1)
        cut = cut_text(text, limit)
    if cut == text:
        return {"text": text}
    return {"text": cut, "truncated": True, "text_sha256": content_digest(text)}


def history_digests(messages: Sequence[Any]) -> list[dict[str, str]]:
    """The protocol's `history` for these messages, as digests: the content never leaves
    the process that holds it. A message without text (an assistant's tool calls, an
    image alone) is the digest of the empty string, which no stored turn has. Of a longer
    history (an agent's long tool loop) the newest `MAX_HISTORY` messages are sent: the
    service refuses more, and the newest held turn is the parent."""
    out = []
    for given in messages:
        m = as_message(given)
        role = (None if m is None else "tool" if tool_results(m)
                else ROLES.get(str(m.get("role"))))
        if m is not None and role is not None:
            out.append({"role": role, "sha256": content_digest(message_text(m.get("content"))
                                                                or "")})
    return out[-MAX_HISTORY:]
