"""Validation at the boundary: a JSON object (stream line or socket request) -> `Prompt`.

Errors are `InputError`s with one sentence that never quotes the prompt text.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from appliance.errors import InputError
from appliance.records import STATUSES, Prompt, Response

ID_RE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
MAX_ID = 256


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
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("'ts' is not a valid ISO-8601 timestamp.") from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


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
    return value


def _opt_num(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"'response.{key}' must be a number.")
    if value < 0:
        raise InputError(f"'response.{key}' must not be negative.")
    return kind(value)


def parse_response(value: Any) -> Response | None:
    """The optional `response` object."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InputError("'response' must be an object.")
    status = value.get("status")
    if status is not None and status not in STATUSES:
        raise InputError(f"'response.status' must be one of {', '.join(STATUSES)}.")
    text = value.get("text")
    if text is not None and not isinstance(text, str):
        raise InputError("'response.text' must be a string.")
    return Response(text=text, input_tokens=_opt_num(value, "input_tokens", int),
                    output_tokens=_opt_num(value, "output_tokens", int),
                    latency_ms=_opt_num(value, "latency_ms", float), status=status)


def parse_prompt(obj: Any, *, max_text_chars: int, default_request_id: str | None = None,
                 default_ts: datetime | None = None, default_tenant: str | None = None) -> Prompt:
    """Validate one prompt object."""
    if not isinstance(obj, dict):
        raise InputError("The request must be a JSON object.")
    text = _str(obj, "text", required=True, max_len=max_text_chars)
    user_id = _str(obj, "user_id", required=True)
    tenant = _str(obj, "tenant", required=default_tenant is None) or default_tenant
    request_id = _str(obj, "request_id", required=default_request_id is None) or default_request_id
    if request_id is not None and not ID_RE.match(request_id):
        raise InputError("'request_id' may hold only letters, digits and ._:@/+=- (1-128).")
    ts_raw = obj.get("ts")
    if ts_raw is None and default_ts is None:
        raise InputError("'ts' is missing.")
    ts = parse_ts(ts_raw) if ts_raw is not None else default_ts
    index = obj.get("index")
    if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
        raise InputError("'index' must be an integer.")
    synthetic = obj.get("synthetic", False)
    if not isinstance(synthetic, bool):
        raise InputError("'synthetic' must be true or false.")
    assert text is not None and user_id is not None and tenant is not None
    assert request_id is not None and ts is not None
    return Prompt(request_id=request_id, tenant=tenant, user_id=user_id, ts=ts, text=text,
                  session_id=_str(obj, "session_id", required=False),
                  model=_str(obj, "model", required=False),
                  response=parse_response(obj.get("response")), synthetic=synthetic, index=index)


def parse_line(line: str | bytes, **kw: Any) -> Prompt:
    """Parse one JSON line into a Prompt."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise InputError("The line is not valid JSON.") from None
    return parse_prompt(obj, **kw)
