"""What a gateway sends for the messages applications really send: answers appended as the
client library's objects, tool calls, images beside text; and the decorator's arguments."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

from conftest import scan_for  # noqa: E402
from gateway_fakes import StandIn, openai_sync  # noqa: E402
from test_litellm import _lookup, _thread  # noqa: E402
from test_service import Server  # noqa: E402

from appliance.ingest import content_digest  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger, build_request  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
OK = b'{"ok": true, "conversation_id": "th_0123456789abcdef", "position": "new"}\n'
CANARY = "Brindlewick-Oskarsund-2291"


@pytest.fixture(autouse=True)
def _clean_callbacks() -> Iterator[None]:
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


def test_an_answer_appended_as_the_clients_message_object_is_in_the_history(
        server: Server) -> None:
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    messages: list[Any] = [{"role": "user", "content": "Plan a weekend in Lisbon for two."}]
    first = litellm.completion(model="gpt-4o", messages=messages, client=openai_sync(),
                               user="hana")
    assert logger.wait(1)
    messages.append(first.choices[0].message)  # the OpenAI idiom: the object, not a dict
    messages.append({"role": "user", "content": "Which restaurants should we book?"})
    second = litellm.completion(model="gpt-4o", messages=messages, client=openai_sync(),
                                user="hana")
    assert logger.wait(2) and logger.failures == 0
    reply = _lookup(server, second._hidden_params["litellm_call_id"])
    assert reply["parent_request_id"] == first._hidden_params["litellm_call_id"]
    evidence = _thread(server, reply["conversation_id"])["records"][-1]["evidence"]
    # the old code dropped the object: its history was the first prompt alone
    assert evidence["history"]["messages"] == 2 and evidence["history"]["matched"] == "assistant"


def test_images_are_never_sent_as_text_and_tool_calls_have_a_defined_digest(
        server: Server) -> None:
    picture = "data:image/png;base64," + base64.b64encode(CANARY.encode()).decode()
    call = {"call_type": "completion", "litellm_call_id": "mm-1", "model": "gpt-4o",
            "user": "ines", "messages": [
                {"role": "user", "content": [{"type": "text", "text": "What is in it?"},
                                             {"type": "image_url",
                                              "image_url": {"url": picture}}]},
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "describe", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "A lighthouse."},
                {"role": "assistant", "content": "It is a lighthouse."},
                {"role": "user", "content": [{"type": "image_url",
                                              "image_url": {"url": picture}},
                                             {"type": "text", "text": "And this one?"}]}]}
    req = build_request(call, None, None, None, status=None, tenant="acme")
    assert req is not None and req["text"] == "And this one?"
    assert [h["role"] for h in req["history"]] == ["user", "assistant", "tool", "assistant"]
    assert [h["sha256"] for h in req["history"]] == [
        content_digest("What is in it?"), content_digest(""), content_digest("A lighthouse."),
        content_digest("It is a lighthouse.")]
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    litellm.completion(model="gpt-4o", messages=call["messages"], client=openai_sync(),
                       user="ines")
    assert logger.wait(1) and logger.failures == 0
    encoded = picture.split(",", 1)[1]
    assert scan_for(server.tmp, [CANARY, encoded]) == []


def test_the_decorator_takes_defaults_and_parts_and_survives_its_redactor(
        tmp_path: Path) -> None:
    sock = tmp_path / "app.sock"
    seen = StandIn(sock, OK)
    app = Semtrace(sock, tenant="acme")

    @app.traced(text="prompt", user_id="user", session_id="chat")
    def ask(prompt: Any, user: str = "kiosk-3", chat: str | None = "front-desk") -> str:
        return "Answered."

    assert ask("Where is the cloakroom?") == "Answered."  # the old code: KeyError('user')
    assert app.flush()
    parts = [{"type": "text", "text": "What does this sign say?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}}]
    assert ask(parts, "lena") == "Answered."
    ingests = [r for r in seen.received if r["op"] == "ingest"]
    assert [(r["text"], r["user_id"], r.get("session_id")) for r in ingests] == [
        ("Where is the cloakroom?", "kiosk-3", "front-desk"),
        ("What does this sign say?", "lena", "front-desk")]

    with app.turn(user_id="lena", text="Book the meeting room.") as turn:
        turn.answer("")  # the model answered with tool calls only
    assert app.flush()
    update = seen.received[-1]
    assert update["op"] == "update" and "sha256" not in update["response"]

    def broken(text: str) -> str:
        raise RuntimeError(f"cannot redact {text}")

    careful = Semtrace(sock, tenant="acme", redact=broken)

    @careful.traced(text="prompt", user_id="user")
    async def ask_async(prompt: str, user: str) -> str:
        return "Still answered."

    before = seen.lines
    with careful.turn(user_id="lena", text=f"Call {CANARY}") as turn:
        ran = True
    assert ran and turn.reply is None  # the old code raised before the block ran
    assert asyncio.run(ask_async(f"Mail {CANARY}", "lena")) == "Still answered."
    assert seen.lines == before  # nothing unredacted left the process


def test_no_prompt_history_or_user_reaches_the_gateways_logs_or_span(
        server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from appliance.integrations import REPLY_ATTRIBUTES

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("gateway")
    caplog.set_level(logging.DEBUG, logger="semtrace")
    busy = StandIn(tmp_path / "busy.sock", b'{"ok": false, "error": {"code": "busy", '
                   b'"message": "The service is busy; retry shortly.", "retry_after_ms": 1}}\n')
    assert busy.lines == 0
    user, session = f"user-{CANARY}", f"chat-{CANARY}"
    messages = [{"role": "system", "content": f"The code word is {CANARY}."},
                {"role": "user", "content": f"Remind me what {CANARY} means."},
                {"role": "assistant", "content": f"{CANARY} is the project name."},
                {"role": "user", "content": f"Write a haiku about {CANARY}."}]
    for target in (server.sock, tmp_path / "nobody.sock", tmp_path / "busy.sock"):
        logger = SemtraceLogger(target, tenant="acme", timeout=2.0)
        litellm.callbacks = [logger]
        with tracer.start_as_current_span("POST /chat/completions"):
            litellm.completion(model="gpt-4o", messages=messages, client=openai_sync(),
                               user=user, litellm_session_id=session)
        assert logger.wait(1)
        litellm.logging_callback_manager._reset_all_callbacks()
    spans = exporter.get_finished_spans()
    attrs = dict(spans[0].attributes or {})
    assert attrs["gen_ai.conversation.id"].startswith("th_")  # recorded, annotated
    for span in spans:  # only the reply's attributes, never the request's
        assert set(span.attributes or {}) <= set(REPLY_ATTRIBUTES.values())
        assert CANARY not in repr(dict(span.attributes or {}))
    lines = [caplog.handler.format(r) + repr(r.__dict__) for r in caplog.records
             if r.name.startswith("semtrace") or r.levelno >= logging.WARNING]
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "semtrace_unavailable" in events and "semtrace_refused" in events
    assert not [line for line in lines if CANARY in line]


def test_a_registered_call_that_never_finishes_leaves_no_prompt_in_the_gateway(
        tmp_path: Path) -> None:
    sock = tmp_path / "ok.sock"
    StandIn(sock, OK)
    logger = SemtraceLogger(sock, tenant="acme")

    async def proxy() -> None:
        for n in range(3):  # the client drops each stream: no success or failure event
            data = {"model": "gpt-4o", "user": "kim", "litellm_call_id": f"gone-{n}",
                    "metadata": {}, "messages": [
                        {"role": "user", "content": f"Forward {CANARY}'s file, part {n}."}]}
            await logger.async_pre_call_hook(None, None, data, "acompletion")
            assert data["metadata"]["gen_ai.conversation.id"] == "th_0123456789abcdef"

    asyncio.run(proxy())
    assert len(logger._registered) == 3  # awaiting their updates
    assert CANARY not in repr(vars(logger))


def test_a_prompt_the_appliance_refuses_is_a_failure_logged_once(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    caplog.set_level(logging.INFO, logger="semtrace")
    user = "lou-" + "x" * 300  # a user id over 256 characters is refused
    for n in range(2):
        litellm.completion(model="gpt-4o", client=openai_sync(), user=user, messages=[
            {"role": "user", "content": f"Summarise part {n} of the budget report."}])
        assert logger.wait(n + 1)
    # refused, so not recorded (the old code counted both as sent, and logged each
    # refusal, before and after each call; an over-long prompt is now cut and recorded:
    # test_gateway_limits.py)
    assert logger.failures == 2 and logger.sent == 0
    refusals = [r for r in caplog.records if getattr(r, "event", "") == "semtrace_refused"]
    assert [getattr(r, "code", None) for r in refusals] == ["bad_request"]


def test_a_traced_generator_is_one_turn_that_ends_with_its_stream(tmp_path: Path) -> None:
    sock = tmp_path / "stream.sock"
    seen = StandIn(sock, OK)
    app = Semtrace(sock, tenant="acme")

    @app.traced(text="prompt", user_id="user")
    def stream(prompt: str, user: str) -> Iterator[str]:
        yield "Take "
        yield "the 9:04."

    @app.traced(text="prompt", user_id="user")
    async def stream_async(prompt: str, user: str) -> Any:
        for chunk in ("Gate ", "B12."):
            yield chunk

    chunks = stream("Which train to Geneva?", "max")
    assert next(chunks) == "Take "
    # the answer is still streaming: registered, not yet updated (the old code had sent
    # the update, with the latency of creating the generator, before the first chunk)
    assert [r["op"] for r in seen.received] == ["ingest"]
    assert "".join(chunks) == "the 9:04."
    assert app.flush()
    assert [r["op"] for r in seen.received] == ["ingest", "update"]
    assert seen.received[-1]["response"]["status"] == "ok"

    async def consume() -> str:
        return "".join([c async for c in stream_async("Which gate?", "max")])

    assert asyncio.run(consume()) == "Gate B12."
    assert app.flush()
    assert [r["op"] for r in seen.received][2:] == ["ingest", "update"]


def _anthropic(request: Any) -> Any:
    """Anthropic's /v1/messages."""
    import httpx

    return httpx.Response(200, json={
        "id": f"msg_{len(request.content)}", "type": "message", "role": "assistant",
        "model": "claude-3-5-sonnet-20241022", "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "Gate B12, boarding at 9:40."}],
        "usage": {"input_tokens": 12, "output_tokens": 9}})


def test_anthropic_messages_calls_are_threaded_like_chat(server: Server) -> None:
    import httpx
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    chat = [{"role": "user", "content": "Which gate does the Oslo flight leave from?"}]

    async def gateway(call_id: str, messages: list[Any]) -> Any:
        out = await litellm.anthropic.messages.acreate(
            model="anthropic/claude-3-5-sonnet-20241022", max_tokens=100, messages=messages,
            system="Be brief.", api_key="sk-ant-test", litellm_call_id=call_id,
            metadata={"user_id": "nils"},  # Anthropic's way to name the user
            client=AsyncHTTPHandler(transport=httpx.MockTransport(_anthropic)))
        deadline = time.monotonic() + 30
        while logger.sent + logger.failures < (1 if call_id == "am-1" else 2):
            assert time.monotonic() < deadline, "the call was not recorded"
            await asyncio.sleep(0.05)
        return out

    first = asyncio.run(gateway("am-1", chat))
    chat += [{"role": "assistant", "content": first["content"]},
             {"role": "user", "content": [{"type": "text", "text": "And when does it board?"}]}]
    asyncio.run(gateway("am-2", chat))
    assert logger.failures == 0 and logger.sent == 2  # the old code recorded neither
    one, two = _lookup(server, "am-1"), _lookup(server, "am-2")
    assert two["conversation_id"] == one["conversation_id"]
    evidence = _thread(server, one["conversation_id"])["records"][-1]["evidence"]
    assert evidence["history"]["matched"] == "assistant"  # the answer's digest was sent


def test_gateway_redaction_loads_in_the_background_and_never_holds_a_call(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sock = tmp_path / "red.sock"
    seen = StandIn(sock, OK)
    caplog.set_level(logging.INFO, logger="semtrace")
    logger = SemtraceLogger(sock, tenant="acme", redact=True, timeout=0.2)
    litellm.callbacks = [logger]
    out = litellm.completion(model="gpt-4o", client=openai_sync(), user="ola", messages=[
        {"role": "user", "content": "Email jane.roe@example.com about the invoice."}])
    assert out.choices[0].message.content and logger.wait(1)
    # Presidio takes seconds to load: the call was neither held for it (the old code
    # loaded it on the first call's path) nor sent unredacted
    assert seen.lines == 0 and logger.failures == 1
    assert {getattr(r, "error", None) for r in caplog.records
            if getattr(r, "event", "") == "semtrace_redaction_failed"} == {"RedactorLoading"}
    assert logger.redact._ready.wait(300)  # type: ignore[union-attr]
    litellm.completion(model="gpt-4o", client=openai_sync(), user="ola", messages=[
        {"role": "user", "content": "Email jane.roe@example.com about the refund."}])
    assert logger.wait(2) and logger.sent == 1
    sent = [r for r in seen.received if r["op"] == "ingest"][0]["text"]
    assert "jane.roe" not in sent and "<EMAIL_ADDRESS>" in sent


def test_a_gateway_forked_while_its_redactor_loads_loads_it_again() -> None:
    """gunicorn --preload and the like build the adapter, then fork the workers."""
    import threading
    import types

    from appliance.integrations.redaction import GatewayRedactor

    started = threading.Event()

    class Slow(GatewayRedactor):
        def _build(self) -> Any:
            started.set()
            time.sleep(1.0)  # Presidio takes seconds; the fork comes meanwhile
            return types.SimpleNamespace(redact=lambda p: types.SimpleNamespace(
                text=p.text.replace("Oslo", "<LOCATION>")))

    redactor = Slow(wait=5.0)
    redactor.warm()
    assert started.wait(10)
    pid = os.fork()
    if pid == 0:  # the worker: the loading thread was not forked with it
        try:
            ok = redactor("Flights to Oslo") == "Flights to <LOCATION>"
        except Exception:  # noqa: BLE001 - reported through the exit code
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # the old code: RedactorLoading after 5 s
    assert redactor("Oslo again") == "<LOCATION> again"  # and the parent still works


class AnthropicTools:
    """Anthropic's /v1/messages for a tool loop: a tool call until the request carries two
    tool results, then a text answer; keeps the bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: Any) -> Any:
        import json

        import httpx

        body = json.loads(request.content)
        self.bodies.append(body)
        results = sum(1 for m in body["messages"] if isinstance(m["content"], list)
                      and any(p.get("type") == "tool_result" for p in m["content"]))
        n = len(self.bodies)
        if results >= 2 or body["messages"][-1]["content"] == "And tomorrow?":
            content: list[dict[str, Any]] = [{"type": "text", "text": f"Rain after {n} pm."}]
            stop = "end_turn"
        else:
            content = [{"type": "tool_use", "id": f"toolu_{n}", "name": "forecast",
                        "input": {"city": "Bergen"}}]
            stop = "tool_use"
        return httpx.Response(200, json={
            "id": f"msg_tools_{n}", "type": "message", "role": "assistant",
            "model": "claude-3-5-sonnet-20241022", "stop_reason": stop, "content": content,
            "usage": {"input_tokens": 20 + n, "output_tokens": 9}})


def _anthropic_call(logger: SemtraceLogger, provider: AnthropicTools, call_id: str,
                    messages: list[Any], count: int, **kw: Any) -> Any:
    import httpx
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    async def gateway() -> Any:
        out = await litellm.anthropic.messages.acreate(
            model="anthropic/claude-3-5-sonnet-20241022", max_tokens=100, messages=messages,
            api_key="sk-ant-test", litellm_call_id=call_id,
            client=AsyncHTTPHandler(transport=httpx.MockTransport(provider)), **kw)
        deadline = time.monotonic() + 10
        while logger.sent + logger.failures < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return out

    return asyncio.run(gateway())


def test_each_call_of_an_anthropic_tool_loop_continues_the_one_before(server: Server) -> None:
    logger, provider = SemtraceLogger(server.sock, tenant="acme"), AnthropicTools()
    litellm.callbacks = [logger]
    tools = [{"name": "forecast", "description": "The weather forecast for a city.",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    chat: list[Any] = [{"role": "user", "content": "Will it rain in Bergen today?"}]
    user = {"metadata": {"user_id": "sigrid"}, "tools": tools}
    for n in (1, 2):  # the model calls the tool twice before it answers
        out = _anthropic_call(logger, provider, f"tl-{n}", chat, n, **user)
        assert out["stop_reason"] == "tool_use"
        chat += [{"role": "assistant", "content": out["content"]},
                 {"role": "user", "content": [{"type": "tool_result",
                                               "tool_use_id": out["content"][0]["id"],
                                               "content": "Showers from 15:00."}]}]
    out = _anthropic_call(logger, provider, "tl-3", chat, 3, **user)
    assert out["content"][0]["type"] == "text"
    chat += [{"role": "assistant", "content": out["content"]},
             {"role": "user", "content": "And tomorrow?"}]
    out = _anthropic_call(logger, provider, "tl-4", chat, 4, **user)
    # the old code registered neither call after the first (their last user message holds
    # only tool results): three calls, their tokens and cost, missing from the conversation
    assert logger.failures == 0 and logger.sent == 4
    replies = [_lookup(server, f"tl-{n}") for n in (1, 2, 3, 4)]
    assert len({r["conversation_id"] for r in replies}) == 1
    assert [r["parent_request_id"] for r in replies] == [None, "tl-1", "tl-2", "tl-3"]
    records = _thread(server, replies[0]["conversation_id"])["records"]
    assert [r["text"] for r in records][-1] == "And tomorrow?"
    assert [r["input_tokens"] for r in records] == [21, 22, 23, 24]


def test_a_chat_tool_loop_call_carries_the_conversation_so_far_as_its_history() -> None:
    question = "Book me a table for two tonight."
    loop = [{"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "book", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Booked for 19:30."}]
    req = build_request({"call_type": "completion", "litellm_call_id": "loop-2",
                         "model": "gpt-4o", "user": "ines", "messages": loop},
                        None, None, None, status=None, tenant="acme")
    assert req is not None and req["text"] == question
    # the old code sent the history before the question (empty: a new conversation), so
    # each call of the loop started a conversation of its own
    assert [h["role"] for h in req["history"]] == ["user", "assistant", "tool"]
    assert req["history"][0]["sha256"] == content_digest(question)


def test_the_proxy_registers_a_v1_messages_call_on_its_open_span(server: Server) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("gateway")
    logger, provider = SemtraceLogger(server.sock, tenant="acme"), AnthropicTools()
    litellm.callbacks = [logger]
    seen: list[dict[str, Any]] = []

    def proxy(call_id: str, messages: list[Any], count: int) -> Any:
        with tracer.start_as_current_span("POST /v1/messages") as span:
            # on /v1/messages `metadata` is Anthropic's parameter (its `user_id`), sent on
            # as the client gave it; the proxy keeps its own in `litellm_metadata`
            data: dict[str, Any] = {
                "model": "anthropic/claude-3-5-sonnet-20241022", "max_tokens": 100,
                "messages": messages, "litellm_call_id": call_id,
                "metadata": {"user_id": "tove"},
                "litellm_metadata": {"litellm_parent_otel_span": span,
                                     "user_api_key_hash": "hashed-key"}}
            asyncio.run(logger.async_pre_call_hook(None, None, data, "anthropic_messages"))
            seen.append(dict(span.attributes or {}))  # type: ignore[attr-defined]
            return _anthropic_call(logger, provider, call_id, data["messages"], count,
                                   metadata=data["metadata"])

    first = proxy("pm-1", [{"role": "user", "content": "Which platform for Trondheim?"}], 1)
    proxy("pm-2", [{"role": "user", "content": "Which platform for Trondheim?"},
                   {"role": "assistant", "content": first["content"]},
                   {"role": "user", "content": "Is it on time?"}], 2)
    assert logger.failures == 0 and logger.sent == 2
    one, two = _lookup(server, "pm-1"), _lookup(server, "pm-2")
    # registered before the call, on the proxy's request span
    assert [s.get("gen_ai.conversation.id") for s in seen] == [one["conversation_id"]] * 2
    assert two["parent_request_id"] == "pm-1"
    # the provider got Anthropic's metadata untouched: nothing of ours was added to it
    assert [b["metadata"] for b in provider.bodies] == [{"user_id": "tove"}] * 2


def _anthropic_stream(request: Any) -> Any:
    """Anthropic's /v1/messages as server-sent events (`stream: true`)."""
    import json

    import httpx

    assert json.loads(request.content)["stream"] is True
    start = {"id": "msg_stream_1", "type": "message", "role": "assistant", "content": [],
             "model": "claude-3-5-sonnet-20241022", "stop_reason": None,
             "usage": {"input_tokens": 14, "output_tokens": 1}}
    events = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text",
                                                                      "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                              "text": "Platform 4, "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta",
                                                              "text": "at 10:12."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": 8}},
        {"type": "message_stop"}]
    sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=sse.encode())


# LiteLLM 1.110 streams Anthropic Messages only with its proxy's packages installed
# (fastapi, orjson, backoff, redis, soundfile: the [test] extra has them).
def test_a_streamed_anthropic_call_is_recorded_with_its_answer(server: Server) -> None:
    import httpx
    from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    chat: list[Any] = [{"role": "user", "content": "When does the Bodø train leave?"}]

    async def stream() -> str:
        out = await litellm.anthropic.messages.acreate(
            model="anthropic/claude-3-5-sonnet-20241022", max_tokens=100, messages=chat,
            stream=True, api_key="sk-ant-test", litellm_call_id="st-1",
            metadata={"user_id": "nils"},
            client=AsyncHTTPHandler(transport=httpx.MockTransport(_anthropic_stream)))
        body = b"".join([chunk async for chunk in out])
        deadline = time.monotonic() + 10
        while logger.sent + logger.failures < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return body.decode()

    assert "at 10:12." in asyncio.run(stream())
    assert logger.failures == 0 and logger.sent == 1
    chat += [{"role": "assistant", "content": "Platform 4, at 10:12."},
             {"role": "user", "content": "Is there a dining car?"}]
    _anthropic_call(logger, AnthropicTools(), "st-2", chat, 2,
                    metadata={"user_id": "nils"})
    record = _thread(server, _lookup(server, "st-1")["conversation_id"])["records"][0]
    assert (record["input_tokens"], record["output_tokens"]) == (14, 8)
    # the streamed answer's digest was sent: the next turn continues it
    assert _lookup(server, "st-2")["parent_request_id"] == "st-1"
