"""The calls of a Responses API tool loop that carry no user text, added to the turn they
continue.

An agent answers the model's tool calls with a call whose `input` holds only the tools'
outputs (`function_call_output` items) and whose `previous_response_id` names the answer
that asked for them. Nothing in it was written by the user: it is not a turn of the
conversation, but its tokens, latency and cost are the cost of the turn it continues.
Such a call is sent as an `update` naming that `previous_response_id` (and the user, whose
turns the service looks it up among): the service finds the turn by the response id its
update reported, keyed per tenant and user, attaches the call to it and adds the call's
figures (set per call, so a retry adds nothing twice); the call's response id is added to
the turn's (its earlier ones stay), so the loop's next call and the user's next message
continue the turn, whichever of its responses they name. The
mapping lives in the service: any gateway process (another proxy worker, one restarted
since) can send the loop's next call.
"""

from __future__ import annotations

from typing import Any

from appliance.integrations import as_message


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


def loop_request(*, request_id: str, tenant: str, user_id: str, previous_response_id: str,
                 response: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `update` that attaches a tool loop's call to the turn its `previous_response_id`
    continues, with what the call cost when it is known (`response`: after the call);
    None for a caller that is anonymous per call (the turn, one of that caller's, cannot be
    found: every call is another user)."""
    if user_id.startswith("anonymous:call:"):
        return None
    req: dict[str, Any] = {"v": 1, "op": "update", "request_id": request_id, "tenant": tenant,
                           "user_id": user_id, "previous_response_id": previous_response_id}
    if response is not None:
        req["response"] = response
    return req
