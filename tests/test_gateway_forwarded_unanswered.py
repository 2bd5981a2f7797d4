"""A gateway on a cluster node's socket whose tenant another node owns, that owner stopped.

Real nats-server and `semtrace serve --nats` nodes; the real LiteLLM callback (real
LiteLLM, its OpenAI client on an httpx mock transport) and the real decorator. Node a's
socket forwards the prompts of b's tenant to b over NATS; with b not running it answers
`unanswered` at once (docs/protocol.md): the prompt stays queued on the bus and b stores it
once it starts. Before, the adapters took that for a refusal: "semtrace refused a request"
in the gateway's log and the call counted in the callback's `failures`, though nothing was
lost.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

from cluster_nodes import arrived, sealed_cluster, tenant_in  # noqa: E402
from gateway_fakes import openai_sync  # noqa: E402
from test_cluster import start_all  # noqa: E402

from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]
PROXY_PROMPT = "Is the VPN down again for the Lisbon office?"
APP_PROMPT = "Which train leaves Porto for Braga after six?"
ASYNC_PROMPT = "Can I still book the Faro shuttle for Friday?"


async def _proxy_call(logger: SemtraceLogger, span: Any) -> None:
    messages = [{"role": "user", "content": ASYNC_PROMPT}]
    data = {"model": "gpt-4o", "messages": messages, "user": "omar",
            "litellm_call_id": "fwd-proxy-2", "metadata": {"litellm_parent_otel_span": span}}
    await logger.async_pre_call_hook(None, None, data, "acompletion")
    await litellm.acompletion(model="gpt-4o", messages=messages, user="omar",
                              litellm_call_id="fwd-proxy-2", mock_response="Yes, until noon.",
                              metadata=data["metadata"])
    for _ in range(200):  # its update is sent from the loop's tasks
        if logger.unanswered + logger.failures + logger.sent >= 2:
            return
        await asyncio.sleep(0.05)


def test_a_prompt_forwarded_to_a_stopped_owner_is_counted_queued_not_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("gateway")
    caplog.set_level(logging.INFO, logger="semtrace.integrations")
    other = tenant_in(2)  # b's partition
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        start_all(a)
        logger = SemtraceLogger(a.sock, tenant=other, timeout=3.0)
        litellm.callbacks = [logger]
        try:
            with tracer.start_as_current_span("POST /chat/completions"):
                litellm.completion(model="gpt-4o", client=openai_sync(), user="omar",
                                   messages=[{"role": "user", "content": PROXY_PROMPT}],
                                   litellm_call_id="fwd-proxy-1")
            assert logger.wait(1)
            # as the proxy calls it: its pre-call hook, then the call, on its event loop
            with tracer.start_as_current_span("POST /chat/completions") as span:
                asyncio.run(_proxy_call(logger, span))
            assert logger.wait(2)
        finally:
            litellm.logging_callback_manager._reset_all_callbacks()
        # registered, then sent whole after the answer: both forwarded, both unanswered
        assert (logger.failures, logger.unanswered, logger.sent) == (0, 2, 0)
        semtrace = Semtrace(a.sock, tenant=other, timeout=3.0)
        try:
            with tracer.start_as_current_span("chat gpt-4o"), semtrace.turn(
                    user_id="ines", text=APP_PROMPT, request_id="fwd-app-1") as turn:
                turn.usage(input_tokens=14, output_tokens=9)
                turn.answer("The 18:15 regional.")
            assert semtrace.flush(10)
            assert turn.reply is not None and turn.reply["error"]["code"] == "unanswered"
        finally:
            semtrace.close()
        spans = exporter.get_finished_spans()
        assert len(spans) == 3
        for span in spans:  # the outcome, and no conversation id made up for it
            attrs = dict(span.attributes or {})
            assert attrs == {"semtrace.status": "unanswered"}, attrs
        ours = [r for r in caplog.records if r.name.startswith("semtrace.integrations")]
        events = [getattr(r, "event", None) for r in ours]
        assert "semtrace_unanswered" in events, events
        assert "semtrace_refused" not in events, events
        said = " ".join(caplog.handler.format(r) + repr(r.__dict__) for r in ours)
        assert "forwarded" in said and "queued" in said
        assert all(p not in said for p in (PROXY_PROMPT, ASYNC_PROMPT, APP_PROMPT))
        assert "omar" not in said and "ines" not in said
        start_all(b)  # the owner starts: it stores what stayed queued, once each
        arrived(b, other, "fwd-proxy-1", "the proxy's prompt queued while b was stopped")
        arrived(b, other, "fwd-proxy-2", "the async call's prompt queued while b was stopped")
        arrived(b, other, "fwd-app-1", "the application's prompt queued while b was stopped")
        assert b.records() == 3 and a.records() == 0
