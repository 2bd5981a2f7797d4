"""A LiteLLM callback: each chat completion or Responses API call is registered before
the call, updated after.

    import litellm
    from appliance.integrations.litellm import SemtraceLogger

    litellm.callbacks = [SemtraceLogger("/run/semtrace/semtrace.sock", tenant="acme")]
    # or, to a cluster: SemtraceLogger("nats://10.0.0.5:4222", tenant="acme",
    #                                  bus_key_file="/etc/semtrace/bus.key")
    # (a NATS URL without a bus key is refused, unless plain_bus=True)

Before the provider is called (`async_pre_call_hook` on the proxy,
`log_pre_api_call` in the SDK) the callback sends the last user message, the
digests of the messages before it (`history`: their content never leaves the
gateway process), the user, the session id LiteLLM knows (`litellm_session_id`
or `metadata.session_id`), the model and the traceparent of the request's span.
A Responses API call (`litellm.responses` / `aresponses`, the proxy's
`/v1/responses`) is sent the same way from its `input` (a string is the user's
message), with its `previous_response_id`; its update carries the response's id.
The reply's `gen_ai.conversation.id` and `semtrace.*` attributes go on that span
while the request is still open (`metadata.litellm_parent_otel_span` on the
proxy, else the current span) and in the call's metadata, where loggers after
this one in `litellm.callbacks` see them. After the answer (success or failure)
an `update` sends tokens, latency, status, the cost LiteLLM computed
(`response_cost`), the answer's digest and its id; a Responses tool loop's call that
carries only the tools' outputs is attached to the turn it continues, which the service
finds by its `previous_response_id` whatever worker saw the turn (`tool_loops.py`). A call
that could not be registered before is sent whole after the answer. The
appliance being slow never holds a call past `register_wait` (its late reply is still
taken); down, hung, busy or answering nonsense, it never fails a call nor holds it past
`register_wait`: one warning, then calls go on unrecorded (counted in
`failures`) until it answers again (`channel.py`); no hook ever raises. Over NATS, a call
the bus took while no node answered (a node restarting) is counted in `queued` instead:
its node records it once back. A tool loop's call the service held past `timeout` (its
turn's update still on its way; over NATS, kept by the bus) is counted in `held`: the
service attaches it when its turn lands. One sent whole over the socket whose reply did not
come within `timeout` is counted in `unknown`: the service has it, and records it unless
it fails before its commit. One a cluster node's socket forwarded to its tenant's owner and
got no answer for in time (`unanswered`) is counted in `unanswered`: queued for the owner,
which stores it once it takes the partition.

The callback is `logger.py` (what its hooks keep to, `hooks.py`); the requests it sends
are built in `requests.py`, whose public names are importable from here as well.
"""

from __future__ import annotations

from appliance.integrations.litellm.logger import REGISTERED_MAX, SemtraceLogger, log
from appliance.integrations.litellm.requests import (
    ANTHROPIC_CALLS,
    BLOCKING_ERRORS,
    CHAT_CALLS,
    PROXY_ISSUED,
    RESPONSES_CALLS,
    TURN_ENDS,
    WEBSOCKET_CALLS,
    build_request,
    build_update,
    call_messages,
    failure_status,
    input_messages,
    is_responses,
    loop_call,
    output_text,
    parent_span,
    provider_response_id,
    response_cost,
    tenant_of,
    user_of,
    user_text,
    websocket_turn,
)

__all__ = ["ANTHROPIC_CALLS", "BLOCKING_ERRORS", "CHAT_CALLS", "PROXY_ISSUED",
           "REGISTERED_MAX", "RESPONSES_CALLS", "SemtraceLogger", "TURN_ENDS",
           "WEBSOCKET_CALLS", "build_request", "build_update", "call_messages",
           "failure_status", "input_messages", "is_responses", "log", "loop_call",
           "output_text", "parent_span", "provider_response_id", "response_cost", "tenant_of",
           "user_of", "user_text", "websocket_turn"]
