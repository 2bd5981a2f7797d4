"""Real LiteLLM Responses API calls (`litellm.responses` / `aresponses`, the proxy's pre-call
hook for `/v1/responses`) through a real `semtrace serve`.

The provider is an httpx transport that answers as OpenAI's `/v1/responses` does: LiteLLM's
own request, logging and response code runs, nothing leaves the process. (`mock_response`
would return before LiteLLM's pre-call logging, and always with the same response id.)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

import httpx  # noqa: E402
from conftest import scan_for  # noqa: E402
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler, HTTPHandler  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from test_litellm import PreCallSpy, _lookup, _thread, _until  # noqa: E402
from test_service import Server  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def tracer() -> Iterator[Any]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    yield provider.get_tracer("gateway")
    provider.shutdown()


@pytest.fixture(autouse=True)
def _clean_callbacks() -> Iterator[None]:
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


class Provider:
    """OpenAI's `/v1/responses`, answering each request with a new id; keeps the bodies."""

    def __init__(self, answer: str = "Take the 9:04 from Lyon Part-Dieu.") -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []
        self._ids = itertools.count(1)

    def _reply(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        n = next(self._ids)
        given = body.get("input")
        answered = isinstance(given, list) and any(
            isinstance(i, dict) and i.get("type") == "function_call_output" for i in given)
        # offered tools and not answered yet: the model calls the first one
        output: list[dict[str, Any]] = [{
            "type": "function_call", "id": f"fc_test_{n}", "call_id": f"call_{n}",
            "name": body["tools"][0]["name"], "arguments": "{}", "status": "completed"}] \
            if body.get("tools") and not answered else [{
                "type": "message", "id": f"msg_test_{n}", "status": "completed",
                "role": "assistant", "content": [
                    {"type": "output_text", "text": self.answer, "annotations": []}]}]
        done = {
            "id": f"resp_test_{n}", "object": "response", "created_at": 1767225600 + n,
            "status": "completed", "model": "gpt-4o-2024-08-06", "tools": [],
            "parallel_tool_calls": True, "tool_choice": "auto", "output": output,
            "usage": {"input_tokens": 31 + n, "output_tokens": 12, "total_tokens": 43 + n}}
        if not body.get("stream"):
            return httpx.Response(200, json=done)
        events = [{"type": "response.created", "response": {
                       **done, "status": "in_progress", "output": [], "usage": None}},
                  {"type": "response.output_text.delta", "item_id": f"msg_test_{n}",
                   "output_index": 0, "content_index": 0, "delta": self.answer},
                  {"type": "response.completed", "response": done}]
        sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
        return httpx.Response(200, headers={"content-type": "text/event-stream"},
                              content=sse.encode())

    def sync(self) -> HTTPHandler:
        return HTTPHandler(client=httpx.Client(transport=httpx.MockTransport(self._reply)))

    def async_(self) -> AsyncHTTPHandler:
        return AsyncHTTPHandler(transport=httpx.MockTransport(self._reply))


def test_a_follow_up_by_previous_response_id_joins_the_conversation_before_the_call(
        server: Server, tracer: Any) -> None:
    provider = Provider()
    logger, spy = SemtraceLogger(server.sock, tenant="acme"), PreCallSpy()
    litellm.callbacks = [logger, spy]
    asks = ["Which trains run from Lyon to Geneva on Sundays?",
            "Recommend a good novel for the journey."]  # unlike, but the same conversation
    out: list[Any] = []
    for i, question in enumerate(asks):
        with tracer.start_as_current_span("POST /v1/responses") as span:
            answer = litellm.responses(
                model="gpt-4o", input=question, instructions="Be brief.", user="grace",
                previous_response_id=out[-1].id if out else None, litellm_call_id=f"rs-{i}",
                client=provider.sync(), api_key="sk-test", stream=i == 1)
            if i == 1:  # streamed: the stream's completed event holds the response
                answer = next(e.response for e in answer if e.type == "response.completed")
            out.append(answer)
            assert logger.wait(i + 1) and span.is_recording()
    assert logger.sent == 2 and logger.failures == 0
    first, second = _lookup(server, "rs-0"), _lookup(server, "rs-1")
    assert first["ok"] and second["ok"], (first, second)
    # a string input and no previous response: a new conversation (its empty history)
    assert first["position"] == "new" and first["link_source"] == "history"
    assert second["conversation_id"] == first["conversation_id"]
    assert second["parent_request_id"] == "rs-0"
    assert second["link_source"] == "previous_response_id"
    # the provider was sent LiteLLM's decoding of the id the caller got back
    assert out[0].id != "resp_test_1" and provider.bodies[1]["previous_response_id"] == \
        "resp_test_1"
    # on the request's span while it is open, before the provider is called
    for (recording, attrs), reply in zip(spy.seen, (first, second), strict=True):
        assert recording and attrs["gen_ai.conversation.id"] == reply["conversation_id"]
    assert spy.seen[1][1]["semtrace.link_source"] == "previous_response_id"
    # the update after the answer: the Responses usage's input and output tokens
    records = _thread(server, first["conversation_id"])["records"]
    assert [(r["input_tokens"], r["output_tokens"], r["status"]) for r in records] == \
        [(32, 12, "ok"), (33, 12, "ok")]


def test_the_proxy_registers_a_responses_call_on_its_open_span(
        server: Server, tracer: Any) -> None:
    provider = Provider(answer="Canberra.")
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]

    async def proxy(call_id: str, given: Any, previous: str | None) -> tuple[dict[str, Any], Any]:
        with tracer.start_as_current_span("POST /v1/responses") as span:
            # on /v1/responses the proxy keeps its own metadata in `litellm_metadata`:
            # `metadata` is the provider's parameter, sent on as the client gave it
            data: dict[str, Any] = {
                "model": "gpt-4o", "input": given, "user": "heidi", "litellm_call_id": call_id,
                "metadata": {"app": "helpdesk"},
                "litellm_metadata": {"litellm_parent_otel_span": span}}
            if previous is not None:
                data["previous_response_id"] = previous  # as the client got it back
            assert await logger.async_pre_call_hook(None, None, data, "aresponses") is None
            before = dict(span.attributes or {})  # type: ignore[attr-defined]
            answer = await litellm.aresponses(**data, client=provider.async_(),
                                              api_key="sk-test")
            done = logger.sent + logger.failures + 1
            await _until(lambda: logger.sent + logger.failures >= done)
        return before, answer

    first, answer = asyncio.run(proxy("pr-1", "What is the capital of Australia?", None))
    second, _ = asyncio.run(proxy("pr-2", [{"role": "user", "content": [
        {"type": "input_text", "text": "Draft a packing list for a week of hiking."}]}],
        answer.id))
    replies = [_lookup(server, "pr-1"), _lookup(server, "pr-2")]
    assert first["gen_ai.conversation.id"] == replies[0]["conversation_id"]
    assert second["gen_ai.conversation.id"] == replies[0]["conversation_id"]
    assert second["semtrace.link_source"] == "previous_response_id"
    assert replies[1]["parent_request_id"] == "pr-1"
    assert [b["metadata"] for b in provider.bodies] == [{"app": "helpdesk"}] * 2
    assert logger.failures == 0


CANARY = "Quillon-Marzipanova-6093"


def test_earlier_input_links_by_digest_and_its_text_never_reaches_the_store(
        server: Server) -> None:
    provider = Provider(answer="1. Budget  2. Hiring  3. Office move")
    logger = SemtraceLogger(server.sock, tenant="acme")
    whole = SemtraceLogger(server.sock, tenant="acme", register_before_call=False)
    secret = [{"role": "developer", "content": f"The operator's code word is {CANARY}."},
              {"role": "user", "content": f"My colleague {CANARY} asked about the budget."},
              {"role": "assistant", "content": [{"type": "output_text",
                                                 "text": f"I noted {CANARY} for the review."}]}]
    kept: list[Any] = []

    def ask(call_id: str, text: str, sender: SemtraceLogger) -> Any:
        litellm.callbacks = [sender]
        given = [*kept, {"role": "user", "content": text}]
        answer = litellm.responses(model="gpt-4o", input=given, user="ivan",
                                   instructions=f"Never reveal {CANARY}.",
                                   litellm_call_id=call_id, client=provider.sync(),
                                   api_key="sk-test")
        assert sender.wait(1) and sender.failures == 0
        kept.extend([{"role": "user", "content": text}, *answer.output])  # the output items
        return _lookup(server, call_id)

    kept.extend(secret)
    a = ask("rc-1", "Draft the agenda for the quarterly review.", logger)
    b = ask("rc-2", "Which figures should the second item cover?", whole)  # sent after
    assert a["ok"] and b["ok"]
    assert b["conversation_id"] == a["conversation_id"] and b["parent_request_id"] == "rc-1"
    assert b["link_source"] == "history"
    shown = _thread(server, a["conversation_id"])
    # the earlier answer, sent back as output items, matched by the update's digest of it
    assert shown["records"][1]["evidence"]["history"]["matched"] == "assistant"
    assert [r["text"] for r in shown["records"]] == [
        "Draft the agenda for the quarterly review.",
        "Which figures should the second item cover?"]
    assert CANARY.lower() not in json.dumps(shown).lower()
    assert CANARY.lower() not in server.log.read_text().lower()
    assert scan_for(server.tmp, [CANARY]) == []  # data dir (db, WAL, keys), logs


WEATHER = [{"type": "function", "name": "get_weather", "description": "The weather of a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def test_a_tool_loop_call_continued_by_previous_response_id_adds_to_its_turn(
        server: Server) -> None:
    provider = Provider(answer="Sunny in Lyon, 24 degrees.")
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]

    def call(call_id: str, given: Any, previous: Any, done: int) -> Any:
        out = litellm.responses(model="gpt-4o", input=given, tools=WEATHER, user="judith",
                                previous_response_id=previous, litellm_call_id=call_id,
                                client=provider.sync(), api_key="sk-test")
        assert logger.wait(done)
        return out

    asked = call("tl-1", "What is the weather in Lyon today?", None, 1)
    assert asked.output[0].type == "function_call"  # the model asks for the tool
    # the agent answers the tool call: the tool's output and nothing the user wrote
    answer = call("tl-2", [{"type": "function_call_output", "call_id": asked.output[0].call_id,
                            "output": '{"sky": "sunny", "celsius": 24}'}], asked.id, 2)
    assert answer.output[0].type == "message"
    follow = call("tl-3", "And tomorrow?", answer.id, 3)
    assert follow is not None and logger.failures == 0
    turn, loop, next_turn = (_lookup(server, c) for c in ("tl-1", "tl-2", "tl-3"))
    # the loop's call is no turn of its own
    assert turn["ok"] and loop["error"]["code"] == "not_found"
    records = _thread(server, turn["conversation_id"])["records"]
    assert [r["request_id"] for r in records] == ["tl-1", "tl-3"]
    # the user's next message continues the turn, through the loop's response id
    assert next_turn["parent_request_id"] == "tl-1"
    assert next_turn["link_source"] == "previous_response_id"
    # the turn's tokens and cost are both calls' (the provider's usage of each call, the
    # cost LiteLLM computed for each)
    assert (records[0]["input_tokens"], records[0]["output_tokens"]) == (32 + 33, 12 + 12)
    assert records[0]["cost_source"] == "reported"
    costs = [o._hidden_params["response_cost"] for o in (asked, answer)]
    assert all(c > 0 for c in costs) and records[0]["cost"] == pytest.approx(sum(costs))


@pytest.mark.parametrize("before", [True, False], ids=["registered", "sent-after"])
def test_a_tool_loop_continued_on_another_proxy_worker_adds_to_its_turn(
        server: Server, tracer: Any, before: bool) -> None:
    """Two proxy workers (two callbacks, one service): the model's tool call is answered by
    one, the agent's tool output reaches the other, the user's next message the first."""
    provider = Provider(answer="Rain in Nantes, 14 degrees.")
    workers = [SemtraceLogger(server.sock, tenant="acme"),
               SemtraceLogger(server.sock, tenant="acme", register_before_call=before)]
    tag = "xb" if before else "xa"

    def call(worker: int, call_id: str, given: Any, previous: Any) -> tuple[Any, dict[str, Any]]:
        logger = workers[worker]
        litellm.logging_callback_manager._reset_all_callbacks()  # this worker's alone
        litellm.callbacks = [logger]
        done = logger.sent + logger.failures + 1
        with tracer.start_as_current_span("POST /v1/responses") as span:
            out = litellm.responses(model="gpt-4o", input=given, tools=WEATHER,
                                    user=f"karim-{tag}",
                                    previous_response_id=previous, litellm_call_id=call_id,
                                    client=provider.sync(), api_key="sk-test")
            assert logger.wait(done)
            attrs = dict(span.attributes or {})  # type: ignore[attr-defined]
        return out, attrs

    asked, _ = call(0, f"{tag}-1", "What is the weather in Nantes today?", None)
    assert asked.output[0].type == "function_call"
    answer, loop_span = call(1, f"{tag}-2", [{"type": "function_call_output",
                                              "call_id": asked.output[0].call_id,
                                              "output": '{"sky": "rain", "celsius": 14}'}],
                             asked.id)
    assert answer.output[0].type == "message"
    call(0, f"{tag}-3", "Do I need an umbrella tomorrow?", answer.id)
    assert [(w.sent, w.failures) for w in workers] == [(2, 0), (1, 0)]
    turn, next_turn = _lookup(server, f"{tag}-1"), _lookup(server, f"{tag}-3")
    assert turn["ok"] and next_turn["ok"]
    if before:  # the loop's call, registered on the other worker: its span says so
        assert loop_span["gen_ai.conversation.id"] == turn["conversation_id"]
    records = _thread(server, turn["conversation_id"])["records"]
    assert [r["request_id"] for r in records] == [f"{tag}-1", f"{tag}-3"]
    assert next_turn["parent_request_id"] == f"{tag}-1"
    assert next_turn["link_source"] == "previous_response_id"
    assert (records[0]["input_tokens"], records[0]["output_tokens"]) == (32 + 33, 12 + 12)
    # the loop call's update sent again (a retry) adds nothing twice
    with Client(server.sock) as c:
        again = c.request({"v": 1, "op": "update", "request_id": f"{tag}-2", "tenant": "acme",
                           "user_id": f"karim-{tag}", "previous_response_id": "resp_test_1",
                           "response": {"input_tokens": 33, "output_tokens": 12,
                                        "status": "ok"}})
    assert again["ok"] and again["conversation_id"] == turn["conversation_id"]
    records = _thread(server, turn["conversation_id"])["records"]
    assert (records[0]["input_tokens"], records[0]["output_tokens"]) == (32 + 33, 12 + 12)


def test_a_tool_loop_update_is_refused_in_one_sentence_without_its_user_or_turn(
        server: Server) -> None:
    loop = {"v": 1, "op": "update", "request_id": "lx-2", "tenant": "acme",
            "previous_response_id": "resp_never_seen", "response": {"status": "ok"}}
    with Client(server.sock) as c:
        anonymous = c.request(loop)
        unknown = c.request({**loop, "user_id": "karim"})
        other_user = c.ingest(tenant="acme", user_id="lena", text="What is the tide in Brest?",
                              request_id="lx-1", response={"id": "resp_lena_1", "status": "ok"})
        stranger = c.request({**loop, "user_id": "karim", "previous_response_id": "resp_lena_1"})
    assert anonymous["error"]["code"] == "bad_request"
    assert "'user_id'" in anonymous["error"]["message"]
    assert unknown["error"]["code"] == "not_found" and other_user["ok"]
    # another user's response id does not reach her turn: refused as such
    assert stranger["error"]["code"] == "other_user"
    assert "must carry the user of the turn" in stranger["error"]["message"]


def test_every_response_id_of_a_tool_loop_still_continues_its_turn(
        server: Server, tracer: Any) -> None:
    """The loop's first response id stays its turn's after the loop answered with another:
    the agent retrying a tool step from it, and the user branching from it, continue the
    turn (the old code kept the latest response id only)."""
    provider = Provider(answer="Snow in Grenoble, -2 degrees.")
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]

    def call(call_id: str, given: Any, previous: Any) -> tuple[Any, dict[str, Any]]:
        done = logger.sent + logger.failures + 1
        with tracer.start_as_current_span("POST /v1/responses") as span:
            out = litellm.responses(model="gpt-4o", input=given, tools=WEATHER, user="noor",
                                    previous_response_id=previous, litellm_call_id=call_id,
                                    client=provider.sync(), api_key="sk-test")
            assert logger.wait(done)
            attrs = dict(span.attributes or {})  # type: ignore[attr-defined]
        return out, attrs

    asked, _ = call("ri-1", "What is the weather in Grenoble today?", None)
    outputs = [{"type": "function_call_output", "call_id": asked.output[0].call_id,
                "output": '{"sky": "snow", "celsius": -2}'}]
    answer, _ = call("ri-2", outputs, asked.id)
    assert answer.output[0].type == "message" and logger.failures == 0
    # the agent sends the tool step again from the turn's first response id
    _, retried = call("ri-2b", outputs, asked.id)
    # and the user asks on from the turn's first answer, not from the loop's last
    _, branched = call("ri-3", "Is the road to the pass open?", asked.id)
    turn, next_turn = _lookup(server, "ri-1"), _lookup(server, "ri-3")
    assert logger.failures == 0, logger.failures
    assert retried["gen_ai.conversation.id"] == turn["conversation_id"]
    assert branched["gen_ai.conversation.id"] == turn["conversation_id"]
    assert next_turn["parent_request_id"] == "ri-1"
    assert next_turn["link_source"] == "previous_response_id"
    records = _thread(server, turn["conversation_id"])["records"]
    assert [r["request_id"] for r in records] == ["ri-1", "ri-3"]
    # the turn's tokens: its own call's and both of the loop's
    assert records[0]["input_tokens"] == sum(31 + n for n in (1, 2, 3))


def test_a_tool_loop_call_carrying_another_user_is_refused_as_such_and_added_to_nothing(
        server: Server, tracer: Any, caplog: pytest.LogCaptureFixture) -> None:
    """An agent that sends its loop's call as another user (its service account) than the
    turn's: the call is never added to the turn of the user who asked, and the gateway
    says why in one line (the old code said `not_found`, as for an id never seen)."""
    provider = Provider(answer="Wind in Biarritz, 40 km/h.")
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]

    def call(call_id: str, user: str, given: Any, previous: Any) -> tuple[Any, dict[str, Any]]:
        done = logger.sent + logger.failures + 1
        with tracer.start_as_current_span("POST /v1/responses") as span:
            out = litellm.responses(model="gpt-4o", input=given, tools=WEATHER, user=user,
                                    previous_response_id=previous, litellm_call_id=call_id,
                                    client=provider.sync(), api_key="sk-test")
            assert logger.wait(done)
            attrs = dict(span.attributes or {})  # type: ignore[attr-defined]
        return out, attrs

    caplog.set_level(logging.WARNING, logger="semtrace")
    asked, _ = call("ou-1", "paula", "What is the wind in Biarritz today?", None)
    _, loop_span = call("ou-2", "agent-svc", [
        {"type": "function_call_output", "call_id": asked.output[0].call_id,
         "output": '{"wind_kmh": 40}'}], asked.id)
    turn, loop = _lookup(server, "ou-1"), _lookup(server, "ou-2")
    refusals = [getattr(r, "code", None) for r in caplog.records
                if getattr(r, "event", "") == "semtrace_refused"]
    assert refusals == ["other_user"]  # once, though refused before and after the call
    assert (logger.sent, logger.failures) == (1, 1)
    assert "gen_ai.conversation.id" not in loop_span and loop["error"]["code"] == "not_found"
    records = _thread(server, turn["conversation_id"])["records"]
    assert [(r["request_id"], r["input_tokens"]) for r in records] == [("ou-1", 32)]


def test_a_tool_loop_call_that_comes_before_its_turns_update_waits_for_it(
        server: Server, tracer: Any) -> None:
    """Another proxy worker's loop call reaches the service while the turn's update (its
    response id) is still on its way from the first: the service holds it until the update
    lands, so the call is part of its turn before its model answers and its open request
    span has the turn's conversation id (the old code refused it at once: not recorded
    before the call, and its span had none)."""
    logger = SemtraceLogger(server.sock, tenant="acme", register_wait=0.3)
    with Client(server.sock) as c:  # the first worker registered the turn
        turn = c.ingest(tenant="acme", user_id="ottilie", request_id="hd-1",
                        text="What is the weather in Brest today?")
    assert turn["ok"]

    async def proxy() -> tuple[dict[str, Any], dict[str, Any]]:
        with tracer.start_as_current_span("POST /v1/responses") as span:
            data: dict[str, Any] = {
                "model": "gpt-4o", "user": "ottilie", "litellm_call_id": "hd-2",
                "previous_response_id": "resp_hold_1", "tools": WEATHER,
                "input": [{"type": "function_call_output", "call_id": "call_1",
                           "output": '{"sky": "fog", "celsius": 11}'}],
                "litellm_metadata": {"litellm_parent_otel_span": span}}
            await logger.async_pre_call_hook(None, None, data, "aresponses")
            # the request went on to the model; the first worker's update lands now
            with Client(server.sock) as c:
                updated = c.request({"v": 1, "op": "update", "tenant": "acme",
                                     "request_id": "hd-1", "response": {
                                         "id": "resp_hold_1", "status": "ok",
                                         "input_tokens": 30, "output_tokens": 5}})
            await _until(lambda: "gen_ai.conversation.id" in data["litellm_metadata"], 30)
            attrs = dict(span.attributes or {})  # type: ignore[attr-defined]
        return updated, attrs

    updated, attrs = asyncio.run(proxy())
    assert updated["ok"]
    assert attrs["gen_ai.conversation.id"] == turn["conversation_id"]
    assert attrs["semtrace.parent_request_id"] == "hd-1"
