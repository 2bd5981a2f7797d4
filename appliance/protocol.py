"""The socket protocol, version 1: NDJSON frames -> typed requests; replies. Pure.

See docs/protocol.md. Errors become `ProtocolError(code, message)`; messages
never quote the request's text.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.errors import InputError
from appliance.ingest import (
    ID_RE,
    parse_continuation,
    parse_model,
    parse_prompt,
    parse_response,
    shown_name,
)
from appliance.records import Outcome, Prompt, Response

VERSION = 1
MAX_DEPTH = 32  # nesting of objects and lists in one frame
OPS = ("ingest", "update", "feedback", "lookup", "ping", "stats")
MODES = ("sync", "async")
TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


ERASED = ("This prompt's user was erased (semtrace erase) after the prompt was sent; it "
          "was not stored.")
UNREDACTABLE = ("This prompt's redaction did not finish (it ran past the policy's "
                "pattern_timeout_s, or a recogniser failed); it was not stored.")


class ProtocolError(Exception):
    """A request that gets an error reply: a stable code and one sentence."""

    def __init__(self, code: str, message: str, request_id: str | None = None, *,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.extra = extra or {}  # more fields of the error object (`reason`)


@dataclass(frozen=True)
class Request:
    """A parsed request of any op."""

    op: str
    request_id: str | None
    tenant: str | None = None
    prompt: Prompt | None = None
    mode: str = "sync"
    feedback: dict[str, Any] | None = None
    response: Response | None = None  # update: what the gateway learned after the answer
    model: str | None = None
    # update: the call continues the turn that answered with this response id (a tool
    # loop's call without user text), among this user's turns
    user_id: str | None = field(default=None, repr=False)
    previous_response_id: str | None = field(default=None, repr=False)


def echo_id(value: Any) -> str | None:
    """A request id fit to be sent back in a reply: a protocol id (1-128 characters of
    `A-Za-z0-9._:@/+=-`), else None. Anything else a client put there (a long string, a
    prompt pasted into the wrong field, a newline) is never echoed."""
    return value if isinstance(value, str) and ID_RE.fullmatch(value) else None


def trace_context(traceparent: Any) -> tuple[str, str]:
    """(trace id, new span id): continue a valid W3C traceparent, else start a trace."""
    span_id = secrets.token_hex(8)
    if isinstance(traceparent, str):
        m = TRACEPARENT_RE.match(traceparent.strip().lower())
        if m and m.group(1) != "ff" and set(m.group(2)) != {"0"} and set(m.group(3)) != {"0"}:
            return m.group(2), span_id
    return secrets.token_hex(16), span_id


def _feedback(obj: dict[str, Any], rid: str) -> dict[str, Any]:
    fb: dict[str, Any] = {}
    rating = obj.get("rating")
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int | float) or not -1 <= rating <= 5:
            raise ProtocolError("bad_request", "'rating' must be a number from -1 to 5.", rid)
        fb["rating"] = rating
    abandoned = obj.get("abandoned")
    if abandoned is not None:
        if not isinstance(abandoned, bool):
            raise ProtocolError("bad_request", "'abandoned' must be true or false.", rid)
        fb["abandoned"] = abandoned
    if not fb:
        raise ProtocolError("bad_request", "Feedback needs 'rating' or 'abandoned'.", rid)
    return fb


def _update(obj: dict[str, Any], rid: str, tenant: str) -> Request:
    """An `update`: tokens, latency, status, answer digest and response id after the answer."""
    for name in ("text", "history"):  # a prompt here would be dropped unseen: refused
        if obj.get(name) is not None:
            raise ProtocolError("bad_request", f"An update carries no '{name}': send the "
                                "prompt and its history with op 'ingest'.", rid)
    try:
        model = parse_model(obj)  # as on ingest: a 300-character one was "must be non-empty"
        response = parse_response(obj.get("response"))
        continues = parse_continuation(obj)
    except InputError as exc:
        raise ProtocolError("bad_request", str(exc), rid) from None
    if model is None and continues is None and (response is None or response == Response()):
        raise ProtocolError("bad_request", "An update needs 'response' fields or 'model'.", rid)
    user_id, previous = continues or (None, None)
    return Request(op="update", request_id=rid, tenant=tenant, response=response, model=model,
                   user_id=user_id, previous_response_id=previous)


def decode_frame(frame: bytes) -> dict[str, Any]:
    """Bytes of one line -> a JSON object, or ProtocolError. A field given as `null` is
    absent (its default), on either socket: before, some were (`role`, `ts`) and some
    were refused (`mode`, `synthetic`, a stats `bucket`). Not `v`: a version other than
    1 is `bad_version`, null included (docs/protocol.md)."""
    try:
        text = frame.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_frame", "The frame is not valid UTF-8.") from None
    if "\x00" in text:
        raise ProtocolError("bad_frame", "The frame contains a NUL byte.")
    try:
        obj = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ProtocolError("bad_json", "The frame is not valid JSON.") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad_json", "The frame must be a JSON object.")
    try:
        _check_structure(obj)
    except ProtocolError as exc:  # JSON all the same: its id was read (it was null, so a
        # gateway matching replies by id could not tell which prompt was refused)
        exc.request_id = echo_id(obj.get("request_id"))
        raise
    return {k: v for k, v in obj.items() if v is not None or k == "v"}


def _no_constant(name: str) -> Any:
    """NaN, Infinity and -Infinity are not JSON (RFC 8259); Python's parser allows them."""
    raise ValueError(name)


def _check_structure(obj: Any) -> None:
    """Refuse deep nesting and lone surrogates (`\\ud800` is valid JSON but no UTF-8 can
    hold it, so it would fail later, deep in a batch). Iterative: no stack to exhaust."""
    stack = [(obj, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise ProtocolError("bad_json", "The frame holds a lone UTF-16 surrogate "
                                        "escape.") from None
            continue
        if not isinstance(item, dict | list):
            continue
        if level > MAX_DEPTH:
            raise ProtocolError("bad_json", f"The frame nests deeper than {MAX_DEPTH} levels.")
        if isinstance(item, dict):
            stack.extend((k, level) for k in item)
            stack.extend((v, level + 1) for v in item.values())
        else:
            stack.extend((v, level + 1) for v in item)


def check_ts(ts: datetime, now: datetime, *, past: timedelta, future: timedelta,
             rid: str | None = None) -> None:
    """A prompt's time must lie in [now - past, now + future] of its arrival.

    A far-future time would create a bucket that never expires and prune the
    user's linking history; a far-past one lands in a day retention shreds at once.
    """
    if ts > now + future:
        raise ProtocolError("bad_request", f"'ts' is more than {_span(future)} after the "
                            "service's clock.", rid)
    if ts < now - past:
        raise ProtocolError("bad_request", f"'ts' is more than {_span(past)} before the "
                            "service's clock.", rid)


def _span(d: timedelta) -> str:
    s = d.total_seconds()
    return f"{s / 86400:g} days" if s >= 86400 else f"{s / 60:g} minutes"


def parse_request(obj: dict[str, Any], *, max_text_chars: int, now: datetime | None = None,
                  ts_past: timedelta = timedelta(days=30),
                  ts_future: timedelta = timedelta(minutes=5)) -> Request:
    """Validate one request object; an ingest's `ts` must lie within the window around `now`."""
    given = obj.get("request_id")
    rid = echo_id(given)
    v = obj.get("v", VERSION)
    if isinstance(v, bool) or v != VERSION:  # true == 1 in Python, not in JSON
        raise ProtocolError("bad_version", f"Protocol version {VERSION} is the only one served.",
                            rid)
    op = obj.get("op")
    if op not in OPS:
        raise ProtocolError("unknown_op", f"'op' must be one of {', '.join(OPS)}.", rid)
    if op in ("ping", "stats"):
        return Request(op=op, request_id=rid)
    tenant = obj.get("tenant")
    if not isinstance(tenant, str) or not tenant.strip():
        raise ProtocolError("bad_request", "'tenant' must be a non-empty string.", rid)
    if len(tenant) > 128:
        raise ProtocolError("bad_request", "'tenant' is longer than 128 characters.", rid)
    try:
        shown_name(tenant, "tenant")
    except InputError as exc:
        raise ProtocolError("bad_request", str(exc), rid) from None
    if not isinstance(given, str) or not given.strip():
        raise ProtocolError("bad_request", "'request_id' must be a non-empty string.")
    if rid is None:
        raise ProtocolError("bad_request", "'request_id' may hold only letters, digits and "
                            "._:@/+=- (1-128).")
    if op == "lookup":
        return Request(op=op, request_id=rid, tenant=tenant)
    if op == "feedback":
        return Request(op=op, request_id=rid, tenant=tenant, feedback=_feedback(obj, rid))
    if op == "update":
        return _update(obj, rid, tenant)
    mode = obj.get("mode", "sync")
    if mode not in MODES:
        raise ProtocolError("bad_request", "'mode' must be sync or async.", rid)
    trace_id, span_id = trace_context(obj.get("traceparent"))
    now = now or datetime.now(UTC)
    try:
        prompt = parse_prompt({**obj, "ts": obj.get("ts")}, max_text_chars=max_text_chars,
                              default_ts=now, truncate=True)
    except InputError as exc:
        raise ProtocolError("bad_request", str(exc), rid) from None
    check_ts(prompt.ts, now, past=ts_past, future=ts_future, rid=rid)
    prompt = replace(prompt, trace_id=trace_id, span_id=span_id)
    return Request(op=op, request_id=rid, tenant=tenant, prompt=prompt, mode=mode)


def ok_reply(o: Outcome, *, mode: str = "sync") -> dict[str, Any]:
    """The reply to a recorded ingest (or a lookup)."""
    return {"request_id": o.request_id, "ok": True, "mode": mode, "trace_id": o.trace_id,
            "span_id": o.span_id, "conversation_id": o.thread_id,
            "parent_request_id": o.parent_request_id, "position": o.position,
            "intent": o.intent,
            "similarity": None if o.similarity is None else round(float(o.similarity), 4),
            "topic_id": o.topic_id, "duplicate": o.duplicate, "link_source": o.link_source,
            "truncated": o.text_truncated}


def error_reply(code: str, message: str, request_id: str | None = None,
                **extra: Any) -> dict[str, Any]:
    return {"request_id": request_id, "ok": False,
            "error": {"code": code, "message": message, **extra}}


def encode(reply: dict[str, Any]) -> bytes:
    return (json.dumps(reply, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
