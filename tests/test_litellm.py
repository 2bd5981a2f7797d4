"""Real LiteLLM (mocked completions, no provider called) through a real `semtrace serve`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from test_service import Server  # noqa: E402
from test_spine import run_cli  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger, user_text  # noqa: E402

# LiteLLM's own pydantic models warn on import; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class MetadataSpy(CustomLogger):
    """A logger after ours: sees the metadata our callback added."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self.seen.append(dict(kwargs["litellm_params"].get("metadata") or {}))

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self.seen.append(dict(kwargs["litellm_params"].get("metadata") or {}))


@pytest.fixture
def tracing() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("gateway"), exporter
    provider.shutdown()


@pytest.fixture(autouse=True)
def _clean_callbacks() -> Iterator[None]:
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


def _lookup(server: Server, request_id: str) -> dict[str, Any]:
    with Client(server.sock) as c:
        return c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": request_id})


async def _until(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "the callback did not run"
        await asyncio.sleep(0.05)


def test_async_completions_are_threaded_and_the_gateway_span_gets_the_conversation(
        server: Server, tracing: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, exporter = tracing
    logger, spy = SemtraceLogger(server.sock, tenant="acme"), MetadataSpy()
    litellm.callbacks = [logger, spy]
    asks = ["What's the weather forecast for Paris this weekend?",
            "Recommend a good novel for a long train ride."]  # unlike, but the same chat

    async def gateway() -> list[Any]:
        responses = []
        messages: list[dict[str, str]] = [{"role": "system", "content": "Be brief."}]
        for i, question in enumerate(asks):
            messages.append({"role": "user", "content": question})
            with tracer.start_as_current_span("POST /chat/completions"):
                responses.append(await litellm.acompletion(
                    model="gpt-4o", messages=list(messages),
                    mock_response="Sunny, 21 degrees.", user="alice",
                    litellm_session_id="chat-paris"))
                await _until(lambda n=i + 1: logger.sent + logger.failures >= n)
            messages.append({"role": "assistant", "content": "Sunny, 21 degrees."})
        await _until(lambda: len(spy.seen) == len(asks))
        return responses

    responses = asyncio.run(gateway())
    assert logger.failures == 0 and logger.sent == 2
    spans = exporter.get_finished_spans()
    replies = [_lookup(server, r._hidden_params.get("litellm_call_id") or "") for r in responses]
    if not all(r["ok"] for r in replies):  # LiteLLM's call id is the request id we sent
        ids = [s["gen_ai.conversation.id"] for s in spy.seen]
        raise AssertionError(f"not recorded: {replies} {ids}")
    for span, reply in zip(spans, replies, strict=True):
        attrs = dict(span.attributes or {})
        assert attrs["gen_ai.conversation.id"] == reply["conversation_id"]
        assert attrs["semtrace.position"] == reply["position"]
        assert reply["trace_id"] == format(span.context.trace_id, "032x")
    assert replies[1]["conversation_id"] == replies[0]["conversation_id"]
    assert replies[1]["parent_request_id"] == replies[0]["request_id"]
    assert [r["link_source"] for r in replies] == ["history", "history"]
    assert [m["gen_ai.conversation.id"] for m in spy.seen] == [r["conversation_id"]
                                                               for r in replies]


def test_sync_completion_annotates_the_proxy_span_and_failures_are_recorded(
        server: Server, tracing: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, exporter = tracing
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    with tracer.start_as_current_span("proxy request") as proxy_span:
        ok = litellm.completion(
            model="anthropic/claude-3-5-sonnet", messages=[{"role": "user", "content": [
                {"type": "text", "text": "Summarise the Q3 incident report for the board."}]}],
            mock_response="Three outages, all resolved.", user="bob",
            metadata={"litellm_parent_otel_span": proxy_span, "session_id": "board-1"})
        assert logger.wait(1)
    with tracer.start_as_current_span("another request"), \
            pytest.raises(Exception):  # noqa: B017 - LiteLLM maps the mock to its own type
        litellm.completion(model="gpt-4o", messages=[{"role": "user", "content":
                           "Draft the follow-up mail to the board."}], user="bob",
                           mock_response=Exception("provider down"))
    assert logger.wait(2)
    reply = _lookup(server, ok._hidden_params["litellm_call_id"])
    assert reply["ok"]
    attrs = dict(exporter.get_finished_spans()[0].attributes or {})
    assert attrs["gen_ai.conversation.id"] == reply["conversation_id"]
    assert logger.sent == 2 and logger.failures == 0  # the failed completion was recorded too


class PreCallSpy(CustomLogger):
    """A logger after ours: what the request's span holds just before the provider is called."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bool, dict[str, Any]]] = []

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        span = trace.get_current_span()
        self.seen.append((span.is_recording(), dict(getattr(span, "attributes", {}) or {})))


def _thread(server: Server, conversation_id: str) -> dict[str, Any]:
    out = run_cli("threads", "show", conversation_id, "--json", *server.args)
    assert out.returncode == 0, out.stderr
    shown: dict[str, Any] = json.loads(out.stdout)
    return shown


def test_the_conversation_id_is_on_the_request_span_before_the_model_is_called(
        server: Server, tracing: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, _ = tracing
    logger, spy = SemtraceLogger(server.sock, tenant="acme"), PreCallSpy()
    litellm.callbacks = [logger, spy]
    with tracer.start_as_current_span("POST /chat/completions") as span:
        out = litellm.completion(
            model="gpt-4o", messages=[{"role": "user", "content":
                                       "Which trains run from Lyon to Geneva on Sundays?"}],
            mock_response="Three direct trains.", user="erin")
        assert logger.wait(1) and span.is_recording()
    recording, attrs = spy.seen[0]
    reply = _lookup(server, out._hidden_params["litellm_call_id"])
    assert recording and attrs["gen_ai.conversation.id"] == reply["conversation_id"]
    record = _thread(server, reply["conversation_id"])["records"][-1]
    # tokens, latency and status came after the answer, through the update op
    assert record["status"] == "ok" and record["output_tokens"] == out.usage.completion_tokens
    assert record["latency_ms"] is not None and logger.sent == 1 and logger.failures == 0
    # the cost LiteLLM computed for the call (its local cost map) is the turn's cost
    assert out._hidden_params["response_cost"] > 0
    assert record["cost"] == pytest.approx(out._hidden_params["response_cost"])
    assert record["cost_source"] == "reported"


def test_the_proxy_pre_call_hook_annotates_the_open_request_span_and_history_decides(
        server: Server, tracing: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, _ = tracing
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    chat = [{"role": "user", "content": "Draft a packing list for a week of hiking."},
            {"role": "assistant", "content": [{"type": "text", "text": "Boots, layers, map."}]},
            {"role": "user", "content": "What is the capital of Australia?"}]

    async def proxy(call_id: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        with tracer.start_as_current_span("POST /v1/chat/completions") as span:
            data = {"model": "gpt-4o", "messages": messages, "user": "frank",
                    "litellm_call_id": call_id,
                    "metadata": {"litellm_parent_otel_span": span}}
            assert await logger.async_pre_call_hook(None, None, data, "acompletion") is None
            before = dict(span.attributes or {})  # type: ignore[attr-defined]
            await litellm.acompletion(model="gpt-4o", messages=messages, user="frank",
                                      litellm_call_id=call_id, mock_response="Canberra.",
                                      metadata=data["metadata"])
            await _until(lambda: logger.sent + logger.failures >= 2 if call_id == "px-2"
                         else logger.sent + logger.failures >= 1)
        return before

    first = asyncio.run(proxy("px-1", chat[:1]))
    second = asyncio.run(proxy("px-2", chat))
    replies = [_lookup(server, "px-1"), _lookup(server, "px-2")]
    assert first["gen_ai.conversation.id"] == replies[0]["conversation_id"]
    assert second["gen_ai.conversation.id"] == replies[0]["conversation_id"]
    assert second["semtrace.link_source"] == "history"
    assert second["semtrace.position"] == "topic_shift"  # same chat, another subject
    assert replies[1]["parent_request_id"] == "px-1"
    assert logger.failures == 0


def test_an_unreachable_appliance_never_fails_the_completion(tmp_path: Path) -> None:
    logger = SemtraceLogger(tmp_path / "nobody.sock", tenant="acme")
    litellm.callbacks = [logger]
    out = litellm.completion(model="gpt-4o", messages=[{"role": "user", "content": "Hi there"}],
                             mock_response="Hello!", user="carol")
    assert out.choices[0].message.content == "Hello!"
    assert logger.wait(1) and logger.failures == 1 and logger.sent == 0


def test_user_text_takes_the_last_user_message() -> None:
    msgs = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}},
                                         {"type": "text", "text": "second"}]}]
    assert user_text(msgs) == "second"
    assert user_text([{"role": "system", "content": "s"}]) is None


def test_decorator_and_context_manager_record_and_annotate(
        server: Server, tracing: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, exporter = tracing
    semtrace = Semtrace(server.sock, tenant="acme")

    @semtrace.traced(text="prompt", user_id="user", session_id="chat")
    def ask(prompt: str, user: str, chat: str) -> str:
        return "Use the blue cable."

    @semtrace.traced(text="prompt", user_id="user")
    async def ask_async(prompt: str, user: str) -> str:
        return "Port 443."

    with tracer.start_as_current_span("app call"):
        assert ask("How do I connect the router to the modem?", "dave", chat="c9") == \
            "Use the blue cable."
    with tracer.start_as_current_span("app call async"):
        assert asyncio.run(ask_async("Which port does the router admin page use?",
                                     user="dave")) == "Port 443."
    with tracer.start_as_current_span("manual"), semtrace.turn(
            user_id="dave", text="Can I reset it to factory settings?",
            model="openai/gpt-4o") as turn:
        turn.usage(input_tokens=9, output_tokens=30)
    semtrace.close()
    assert turn.conversation_id is not None
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    assert all(a.get("gen_ai.conversation.id", "").startswith("th_") for a in spans.values())
    assert spans["manual"]["gen_ai.conversation.id"] == turn.conversation_id
    down = Semtrace(Path("/nonexistent/semtrace.sock"), tenant="acme")
    with down.turn(user_id="x", text="hello") as lost:
        pass
    assert lost.reply is None


def _proxy_call(call_id: str, **metadata: Any) -> dict[str, Any]:
    return {"call_type": "acompletion", "litellm_call_id": call_id, "model": "gpt-4o",
            "messages": [{"role": "user", "content": "Summarise the memo."}],
            "metadata": metadata}


def test_the_tenant_comes_from_the_gateway_never_from_the_request() -> None:
    from appliance.integrations.litellm import build_request

    forged = build_request(_proxy_call("c1", semtrace_tenant="victim"), None, None, None,
                           status=None, tenant="acme")
    assert forged is not None and forged["tenant"] == "acme"
    teams = {"team-blue": "blue"}
    by_key = build_request(_proxy_call("c2", user_api_key_team_id="team-blue",
                                       semtrace_tenant="victim"), None, None, None,
                           status=None, tenant="acme", tenant_by_team=teams)
    assert by_key is not None and by_key["tenant"] == "blue"
    other = build_request(_proxy_call("c3", user_api_key_team_id="team-red"), None, None, None,
                          status=None, tenant="acme", tenant_by_team=teams)
    assert other is not None and other["tenant"] == "acme"


def test_anonymous_callers_never_share_one_user() -> None:
    from appliance.integrations.litellm import build_request

    def user(call: dict[str, Any]) -> str:
        req = build_request(call, None, None, None, status=None, tenant="acme")
        assert req is not None
        return str(req["user_id"])

    strangers = {user(_proxy_call(f"c{i}")) for i in range(3)}
    assert len(strangers) == 3  # no session, no key: each call stands alone
    one_key = {user(_proxy_call(f"k{i}", user_api_key_hash="h1")) for i in range(2)}
    assert len(one_key) == 1 and one_key.isdisjoint(strangers)
    session = {user(_proxy_call(f"s{i}", session_id="win-7")) for i in range(2)}
    assert len(session) == 1
    named = {**_proxy_call("n1"), "user": "alice"}
    assert user(named) == "alice"


def test_a_prompt_the_providers_content_filter_refused_is_recorded_as_blocked(
        server: Server) -> None:
    import httpx
    from openai import OpenAI

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {
            "message": "Invalid prompt: your prompt was flagged as potentially violating "
                       "our usage policy.",
            "type": "invalid_request_error", "param": None, "code": "invalid_prompt"}})

    client = OpenAI(api_key="sk-test", max_retries=0,
                    http_client=httpx.Client(transport=httpx.MockTransport(refuse)))
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    with pytest.raises(litellm.ContentPolicyViolationError):
        litellm.completion(model="gpt-4o", client=client, user="uma", num_retries=0,
                           litellm_call_id="cp-1", messages=[
                               {"role": "user", "content": "Write a phishing mail to a bank."}])
    assert logger.wait(1) and logger.sent == 1
    reply = _lookup(server, "cp-1")
    records = _thread(server, reply["conversation_id"])["records"]
    # what `semtrace stats` counts as blocked, not as an error of the provider
    assert [r["status"] for r in records] == ["blocked"]


def test_the_decorator_adds_a_tool_loops_call_to_its_turn(
        server: Server, tracing: tuple[Any, InMemorySpanExporter]) -> None:
    tracer, _ = tracing
    semtrace = Semtrace(server.sock, tenant="acme")
    with semtrace.turn(user_id="vera", text="What is the weather in Lyon today?",
                       request_id="dl-1") as turn:
        turn.usage(input_tokens=30, output_tokens=5)
        turn.answer("", response_id="resp_dl_1")  # the model asked for a tool
    # the application answers the tool call: only the tool's output, no user text
    with tracer.start_as_current_span("responses.create") as span:
        with semtrace.tool_call(user_id="vera", previous_response_id="resp_dl_1") as call:
            call.usage(input_tokens=40, output_tokens=12)
            call.answer("Sunny in Lyon, 24 degrees.", response_id="resp_dl_2")
        attrs = dict(span.attributes or {})  # type: ignore[attr-defined]
    with semtrace.turn(user_id="vera", text="And tomorrow?", request_id="dl-3",
                       previous_response_id="resp_dl_2") as follow:
        follow.answer("", response_id="resp_dl_3")  # a tool again

    async def app() -> None:  # the asyncio form
        async with semtrace.atool_call(user_id="vera", previous_response_id="resp_dl_3") as c:
            c.usage(input_tokens=50, output_tokens=9)
            c.answer("Rain in Lyon tomorrow.", response_id="resp_dl_4")

    asyncio.run(app())
    assert semtrace.flush()  # every reply is in (a loaded machine may answer late)
    assert call.reply is not None and call.reply["ok"], call.reply
    assert attrs["gen_ai.conversation.id"] == turn.conversation_id
    assert follow.conversation_id == turn.conversation_id
    assert follow.reply is not None and follow.reply["parent_request_id"] == "dl-1"
    records = _thread(server, str(turn.conversation_id))["records"]
    assert [r["request_id"] for r in records] == ["dl-1", "dl-3"]
    assert (records[0]["input_tokens"], records[0]["output_tokens"]) == (70, 17)
    assert (records[1]["input_tokens"], records[1]["output_tokens"]) == (50, 9)
