"""Validation at the boundary: a JSON object (stream line or socket request) -> `Prompt`.

Errors are `InputError`s with one sentence that never quotes the prompt text.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
from datetime import UTC, datetime
from typing import Any

from appliance.errors import InputError
from appliance.records import HISTORY_ROLES, STATUSES, Message, Prompt, Response, from_iso

ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
MAX_ID = 256
# C0 and C1 control characters: in a name shown as it is (a tenant, a model) a newline, a tab
# or an escape sequence would break a table row or a log line, or drive the terminal.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_HISTORY = 1000  # messages in one request's history
MAX_MESSAGE_CHARS = 1_000_000  # one history message's content (the frame limit is lower)
# Largest token count and latency taken: beyond these a value is an error, not a fact (and
# 1e300 tokens would fail the whole batch's insert as a too-large SQLite integer).
MAX_COUNT = 10**12
MAX_INDEX = 2**53


def content_digest(text: str) -> str:
    """SHA-256 (hex) of a message's UTF-8 content after `" ".join(text.split())` (protocol v1)."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


CUT_BACK = 1024  # a cut moves back to a word boundary at most this many characters


def cut_text(text: str, limit: int) -> str:
    """`text` if it holds at most `limit` characters, else its first `limit` characters cut
    back to a word boundary: the word the limit splits is dropped whole (so the end of a
    cut is never half an e-mail address or number that redaction would not recognise),
    unless the text has no space in its last `CUT_BACK` characters."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    if not text[limit].isspace():
        m = re.search(r"\s\S*\Z", cut[-CUT_BACK:])
        if m is not None:
            cut = cut[:len(cut) - len(cut[-CUT_BACK:]) + m.start()]
    return cut.rstrip()


def parse_ts(value: Any) -> datetime:
    """An ISO-8601 timestamp (or epoch seconds) as an aware UTC datetime."""
    if isinstance(value, bool):
        raise InputError("'ts' must be an ISO-8601 timestamp.")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            raise InputError("'ts' is out of range.") from None
    if not isinstance(value, str):
        raise InputError("'ts' must be an ISO-8601 timestamp.")
    try:
        ts = from_iso(value)  # `z` as `Z`, as RFC 3339 allows
    except ValueError:
        raise InputError("'ts' is not a valid ISO-8601 timestamp.") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    try:  # 0001-01-01T00:00+01:00 is valid ISO-8601 but a time no datetime holds in UTC
        return ts.astimezone(UTC)
    except OverflowError:
        raise InputError("'ts' is out of range.") from None


def _str(obj: dict[str, Any], key: str, *, required: bool, max_len: int = MAX_ID) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise InputError(f"'{key}' is missing.")
        return None
    if isinstance(value, int) and not isinstance(value, bool) and key != "text":
        value = str(value)
    if not isinstance(value, str):
        raise InputError(f"'{key}' must be a string.")
    if required and not value.strip():
        raise InputError(f"'{key}' is empty.")
    if len(value) > max_len:
        raise InputError(f"'{key}' is longer than {max_len} characters.")
    if "\x00" in value:
        raise InputError(f"'{key}' contains a NUL character.")
    _utf8(value, key)
    return value


def _utf8(value: str, where: str) -> None:
    """A lone surrogate (from a `\\ud800` escape) cannot be stored as UTF-8: refuse it here."""
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"'{where}' holds a lone UTF-16 surrogate.") from None


def _opt_num(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"'response.{key}' must be a number.")
    # compared as sent: an integer past a float's range (10**400) is no float to test
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"'response.{key}' must be a finite number.")
    if value < 0:
        raise InputError(f"'response.{key}' must not be negative.")
    if value > MAX_COUNT:
        raise InputError(f"'response.{key}' must be at most {MAX_COUNT}.")
    if kind is int and isinstance(value, float) and not value.is_integer():
        # a count of tokens: 1.5 was taken as 1; 2.0 (as some clients write 2) is 2
        raise InputError(f"'response.{key}' must be a whole number.")
    return kind(value)


def _sha256(value: Any, where: str) -> str:
    if not isinstance(value, str) or not SHA256_RE.match(value):
        raise InputError(f"'{where}' must be 64 hexadecimal characters.")
    return value.lower()


def _content(value: Any, where: str) -> str:
    """The digest of a message's content; the content itself is dropped here."""
    if not isinstance(value, str):
        raise InputError(f"'{where}' must be a string.")
    if len(value) > MAX_MESSAGE_CHARS:
        raise InputError(f"'{where}' is longer than {MAX_MESSAGE_CHARS} characters.")
    _utf8(value, where)
    return content_digest(value)


def parse_response(value: Any) -> Response | None:
    """The optional `response` object; an answer's `text` is digested and dropped."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError("'response' must be an object.")
    status = value.get("status")
    if status is not None and status not in STATUSES:
        raise InputError(f"'response.status' must be one of {', '.join(STATUSES)}.")
    text, sha = value.get("text"), value.get("sha256")
    if text is not None and sha is not None:
        raise InputError("'response' takes 'text' or 'sha256', not both.")
    digest = None
    if text is not None:
        digest = _content(text, "response.text")
    elif sha is not None:
        digest = _sha256(sha, "response.sha256")
    rid = _str(value, "id", required=False)
    if rid is not None and not rid.strip():
        raise InputError("'response.id' is empty.")
    return Response(input_tokens=_opt_num(value, "input_tokens", int),
                    output_tokens=_opt_num(value, "output_tokens", int),
                    latency_ms=_opt_num(value, "latency_ms", float), status=status,
                    digest=digest, response_id=rid, cost=_opt_num(value, "cost", float))


def parse_continuation(obj: dict[str, Any]) -> tuple[str, str] | None:
    """(user id, previous response id) of an `update` that names the turn its call
    continues (a tool loop's call without user text), or None when it names none."""
    previous = _str(obj, "previous_response_id", required=False)
    if previous is None:
        return None
    if not previous.strip():
        raise InputError("'previous_response_id' is empty.")
    if obj.get("user_id") is None:
        raise InputError("An update with 'previous_response_id' needs 'user_id': the turn "
                         "is one of that user's.")
    user_id = _str(obj, "user_id", required=True)
    assert user_id is not None
    return user_id, previous


def parse_history(value: Any) -> tuple[Message, ...] | None:
    """The optional `history`: roles and content digests, oldest first.

    Each entry is {"role", "content"} or {"role", "sha256"}; content is digested
    on the spot and never kept, logged or quoted in an error.
    """
    if value is None:
        return None
    if not isinstance(value, list):
        raise InputError("'history' must be a list of messages.")
    if len(value) > MAX_HISTORY:
        raise InputError(f"'history' holds more than {MAX_HISTORY} messages.")
    out = []
    for i, entry in enumerate(value):
        where = f"history[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"'{where}' must be an object.")
        # a key given as null is absent, as everywhere in a request: {"content": null,
        # "sha256": ...} was refused as holding both
        entry = {k: v for k, v in entry.items() if v is not None}
        if entry.get("role") not in HISTORY_ROLES:
            raise InputError(f"'{where}.role' must be one of {', '.join(HISTORY_ROLES)}.")
        if set(entry) - {"role", "content", "sha256"}:
            raise InputError(f"'{where}' may hold only role and content or sha256.")
        if ("content" in entry) == ("sha256" in entry):
            raise InputError(f"'{where}' needs exactly one of content and sha256.")
        digest = (_content(entry["content"], f"{where}.content") if "content" in entry
                  else _sha256(entry["sha256"], f"{where}.sha256"))
        out.append(Message(role=entry["role"], digest=digest))
    return tuple(out)


def _text(obj: dict[str, Any], max_text_chars: int,
          truncate: bool) -> tuple[str, str | None, bool]:
    """(text, digest of the prompt as written when it differs from the text's, truncated).

    With `truncate` a text over `max_text_chars` is cut (`cut_text`) instead of refused;
    its digest is then the whole text's (or the client's `text_sha256`), so the next
    turn's history, which digests the whole message, still finds it. A client that cut
    or redacted the text itself sends `text_sha256` (and `truncated: true` if it cut)."""
    given = obj.get("text_sha256")
    digest = None if given is None else _sha256(given, "text_sha256")
    flagged = obj.get("truncated", False)
    if not isinstance(flagged, bool):
        raise InputError("'truncated' must be true or false.")
    text = _str(obj, "text", required=True,
                max_len=sys.maxsize if truncate else max_text_chars)
    assert text is not None
    if len(text) > max_text_chars:  # only when truncating: else _str refused it
        digest = digest or content_digest(text)
        text, flagged = cut_text(text, max_text_chars), True
        if not text.strip():
            raise InputError(f"'text' holds no words in its first {max_text_chars} "
                             "characters.")
    return text, digest, flagged


def shown_name(value: str | None, key: str) -> str | None:
    """`value`, refused when it holds a control character: a name shown as it is."""
    if value is not None and CONTROL_RE.search(value):
        raise InputError(f"'{key}' contains a control character (a newline, tab or escape).")
    return value


def parse_model(obj: dict[str, Any]) -> str | None:
    """The optional `model`, the same on ingest and update: a blank one is none (an ingest
    stored "" or "  " as a model's name; an update refused it, its tokens and cost lost),
    a number is no name (an ingest stored 5 as "5"; an update refused it)."""
    if isinstance(obj.get("model"), int | float):
        raise InputError("'model' must be a string.")
    model = shown_name(_str(obj, "model", required=False), "model")
    return model if model is not None and model.strip() else None


def parse_prompt(obj: Any, *, max_text_chars: int, default_request_id: str | None = None,
                 default_ts: datetime | None = None, default_tenant: str | None = None,
                 truncate: bool = False) -> Prompt:
    """Validate one prompt object (`truncate`: cut an over-long text, see `_text`)."""
    if not isinstance(obj, dict):
        raise InputError("The request must be a JSON object.")
    text, digest, truncated = _text(obj, max_text_chars, truncate)
    user_id = _str(obj, "user_id", required=True)
    tenant = shown_name(_str(obj, "tenant", required=default_tenant is None),
                        "tenant") or default_tenant
    request_id = _str(obj, "request_id", required=default_request_id is None) or default_request_id
    if request_id is not None and not ID_RE.fullmatch(request_id):
        raise InputError("'request_id' may hold only letters, digits and ._:@/+=- (1-128).")
    ts_raw = obj.get("ts")
    if ts_raw is None and default_ts is None:
        raise InputError("'ts' is missing.")
    ts = parse_ts(ts_raw) if ts_raw is not None else default_ts
    index = obj.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)
                              or abs(index) > MAX_INDEX):
        raise InputError(f"'index' must be an integer of at most {MAX_INDEX}.")
    synthetic = obj.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise InputError("'synthetic' must be true or false.")
    previous = _str(obj, "previous_response_id", required=False)
    if previous is not None and not previous.strip():
        raise InputError("'previous_response_id' is empty.")
    assert text is not None and user_id is not None and tenant is not None
    assert request_id is not None and ts is not None
    return Prompt(request_id=request_id, tenant=tenant, user_id=user_id, ts=ts, text=text,
                  session_id=_str(obj, "session_id", required=False),
                  model=parse_model(obj),
                  response=parse_response(obj.get("response")), synthetic=synthetic, index=index,
                  history=parse_history(obj.get("history")), previous_response_id=previous,
                  digest=digest, truncated=truncated)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_line(line: str | bytes, **kw: Any) -> Prompt:
    """Parse one JSON line into a Prompt (`semtrace replay`'s lines). A top-level field
    given as `null` is absent, as on both sockets (`protocol.decode_frame`): before, a
    line with `"synthetic": null` or `"truncated": null` was skipped. A replay line's `v`
    is not read, so its `null` needs no exception here."""
    try:
        obj = json.loads(line, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InputError("The line is not valid JSON.") from None
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if v is not None}
    return parse_prompt(obj, **kw)
