"""The calls of a Responses API tool loop that carry no user text, added to the turn they
continue.

An agent answers the model's tool calls with a call whose `input` holds only the tools'
outputs (`function_call_output` items) and whose `previous_response_id` names the answer
that asked for them. Nothing in it was written by the user: it is not a turn of the
conversation, but its tokens, latency and cost are the cost of the turn it continues.
`LoopTurns` remembers, per response id this gateway saw answered, the turn it belongs to
and that turn's totals so far; such a call then becomes an `update` of that turn (the
existing op: fields are set, so the totals are sent, and a retry changes nothing) with
the new response id, so the next call, the loop's or the user's next message, continues
the turn. A loop continued on another gateway process (or after a restart) is not known
here and is not recorded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from appliance.integrations import as_message

REMEMBERED_MAX = 10_000  # response ids kept (the newest)
SUMMED = ("input_tokens", "output_tokens", "latency_ms")


def tool_outputs_only(messages: list[Any]) -> bool:
    """Whether a Responses `input` (as items) answers tool calls and holds no user message:
    a tool loop's continuation (items such as `function_call_output`)."""
    outputs = False
    for item in messages:
        m = as_message(item) or {}
        if m.get("role") == "user":
            return False
        outputs = outputs or str(m.get("type") or "").endswith("_call_output")
    return outputs


class LoopTurns:
    """Response id -> the turn it answered and that turn's totals (thread-safe, bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def answered(self, req: dict[str, Any]) -> None:
        """Remember the turn a recorded ingest or update answered with `response.id`."""
        response = req.get("response") or {}
        rid = response.get("id")
        if not isinstance(rid, str) or not rid:
            return
        turn = {"tenant": req["tenant"], "request_id": req["request_id"],
                **{k: response.get(k) for k in (*SUMMED, "cost")}}
        with self._lock:
            self._turns[rid] = turn
            while len(self._turns) > REMEMBERED_MAX:
                self._turns.popitem(last=False)

    def update(self, previous_response_id: str | None,
               response: dict[str, Any]) -> dict[str, Any] | None:
        """The `update` that adds a loop call's `response` (tokens, latency, cost, status,
        answer digest, id) to the turn its `previous_response_id` continues; None when that
        response is not one this gateway saw."""
        with self._lock:
            turn = self._turns.get(previous_response_id or "")
        if turn is None:
            return None
        total: dict[str, Any] = {k: v for k, v in response.items() if k not in SUMMED}
        for key in SUMMED:
            known = [v for v in (turn.get(key), response.get(key)) if v is not None]
            total[key] = sum(known) if known else None
        # a reported cost only when every call of the turn reported one; else the service
        # prices the summed tokens
        total.pop("cost", None)
        if turn.get("cost") is not None and response.get("cost") is not None:
            total["cost"] = turn["cost"] + response["cost"]
        return {"v": 1, "op": "update", "tenant": turn["tenant"],
                "request_id": turn["request_id"], "response": total}
