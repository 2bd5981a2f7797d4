"""A tool loop's call whose turn is not found yet: held only while that turn may still come.

The real service on the real pipeline (SQLCipher, the bundled model, Presidio), in this
process so the hold can be made an hour long: a call held when nothing can bring its turn
would then never be answered (the client gives up), where the gateway needs its reply at
once (a held request delays the replies after it on a proxy worker's one connection).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest
from conftest import running_service

from appliance.client import Client
from appliance.integrations.channel import SyncChannel
from appliance.service import dispatch


def _loop_call(rid: str, user: str, previous: str) -> dict[str, Any]:
    return {"v": 1, "op": "update", "tenant": "acme", "request_id": rid, "user_id": user,
            "previous_response_id": previous}


def test_a_loop_call_is_held_only_while_its_turn_may_still_come(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock), Client(sock, timeout=30) as c:
        # no turn of hanna waits for its update: an unknown id is refused at once (the
        # code before held every such call: no reply within the client's timeout)
        alone = c.request(_loop_call("hd-a", "hanna", "resp_never_given"))
        assert alone["error"]["code"] == "not_found"
        # ilse's turn is registered, its update not sent yet: her loop call is held ...
        turn = c.ingest(tenant="acme", user_id="ilse", request_id="hd-1",
                        text="Which platform does the night train leave from?")
        assert turn["ok"]
        with futures.ThreadPoolExecutor(1) as pool, Client(sock, timeout=30) as other:
            held = pool.submit(other.request, _loop_call("hd-2", "ilse", "resp_ilse_1"))
            # ... until the update reports the response id it names (another worker's)
            updated = c.request({"v": 1, "op": "update", "tenant": "acme",
                                 "request_id": "hd-1",
                                 "response": {"id": "resp_ilse_1", "status": "ok"}})
            attached = held.result(timeout=30)
        assert updated["ok"] and attached["ok"], attached
        assert attached["conversation_id"] == turn["conversation_id"]
        assert attached["parent_request_id"] == "hd-1"
        # the loop call answered too (its update): nothing of hers waits for an update,
        # so an id none of her turns gave is refused at once
        answered = c.request({"v": 1, "op": "update", "tenant": "acme", "request_id": "hd-2",
                              "response": {"id": "resp_ilse_2", "status": "ok",
                                           "input_tokens": 40, "latency_ms": 900.0}})
        assert answered["ok"], answered
        late = c.request(_loop_call("hd-3", "ilse", "resp_never_given"))
        assert late["error"]["code"] == "not_found"


def test_a_held_loop_call_does_not_delay_the_other_calls_of_its_proxy_worker(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy worker sends everything on its connection one request at a time, and the
    service answers a connection's requests in order: a loop call held there (its turn's
    update still on its way from another worker) kept every registration behind it
    waiting, up to the whole hold (the old code: another user's call was not registered
    before the gateway's timeout). The loop call now goes on a connection of its own."""
    pytest.importorskip("litellm")
    from test_litellm import _until

    from appliance.integrations.litellm import SemtraceLogger

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc:
        with Client(sock, timeout=30) as c:  # another worker registered ilse's turn
            turn = c.ingest(tenant="acme", user_id="ilse", request_id="hl-1",
                            text="Which platform does the night train leave from?")
        assert turn["ok"]
        logger = SemtraceLogger(sock, tenant="acme", timeout=10.0, register_wait=0.1)

        async def proxy() -> tuple[dict[str, Any], dict[str, Any], bool]:
            looped: dict[str, Any] = {
                "model": "gpt-4o", "user": "ilse", "litellm_call_id": "hl-2",
                "previous_response_id": "resp_ilse_1", "litellm_metadata": {},
                "input": [{"type": "function_call_output", "call_id": "call_1",
                           "output": '{"platform": 7}'}]}
            await logger.async_pre_call_hook(None, None, looped, "aresponses")
            # the service has the loop call (its tenant waits for a turn to land)
            await _until(lambda: "acme" in svc._landings, 30)
            other: dict[str, Any] = {
                "model": "gpt-4o", "user": "jonas", "litellm_call_id": "hl-3", "metadata": {},
                "messages": [{"role": "user", "content": "Is the bakery open on Sunday?"}]}
            await logger.async_pre_call_hook(None, None, other, "acompletion")
            await _until(lambda: "gen_ai.conversation.id" in other["metadata"], 60)
            held_then = "gen_ai.conversation.id" in looped["litellm_metadata"]
            with Client(sock, timeout=30) as c:  # the first worker's update lands
                assert c.request({"v": 1, "op": "update", "tenant": "acme",
                                  "request_id": "hl-1", "response": {
                                      "id": "resp_ilse_1", "status": "ok"}})["ok"]
            await _until(lambda: "gen_ai.conversation.id" in looped["litellm_metadata"], 60)
            return looped["litellm_metadata"], other["metadata"], held_then

        looped, other, held_then = asyncio.run(proxy())
    # jonas's call was registered while ilse's loop call was still held ...
    assert not held_then
    assert other["gen_ai.conversation.id"] != turn["conversation_id"]
    # ... which then joined its turn, and nothing went unrecorded
    assert looped["gen_ai.conversation.id"] == turn["conversation_id"]
    assert looped["semtrace.parent_request_id"] == "hl-1"
    assert logger.failures == 0


def test_a_held_loop_call_does_not_delay_the_other_threads_of_an_sdk_gateway(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for the adapters' blocking channel (the SDK callback's worker threads): the
    old code had every other thread wait for the held call's connection, then give up."""
    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc:
        channel = SyncChannel(sock, timeout=10.0, log=logging.getLogger("semtrace.test"))
        turn = channel.send({"v": 1, "op": "ingest", "tenant": "acme", "user_id": "ilse",
                             "request_id": "hs-1", "text": "Is the night train on time?"})
        assert turn is not None and turn["ok"]
        with futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(channel.send, _loop_call("hs-2", "ilse", "resp_ilse_9"))
            while "acme" not in svc._landings:  # the service has the loop call
                assert not held.done(), held.result()
                time.sleep(0.05)
            other = channel.send({"v": 1, "op": "ingest", "tenant": "acme",
                                  "user_id": "jonas", "request_id": "hs-3",
                                  "text": "Is the bakery open on Sunday?"})
            held_then = held.done()
            updated = channel.send({"v": 1, "op": "update", "tenant": "acme",
                                    "request_id": "hs-1",
                                    "response": {"id": "resp_ilse_9", "status": "ok"}})
            attached = held.result(timeout=30)
        channel.close()
    assert other is not None and other["ok"] and not held_then
    assert updated is not None and updated["ok"]
    assert attached is not None and attached["parent_request_id"] == "hs-1"
    assert attached["conversation_id"] == turn["conversation_id"]


def test_a_loop_call_held_past_the_gateways_timeout_pauses_no_other_call(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A gateway whose `timeout` is under the hold gives up on a held loop call: the old
    code took that for a hung appliance (the `semtrace_unavailable` warning, then a pause
    in which the next calls went unrecorded). A held loop call is not a hung appliance:
    the next call of the worker is registered, and nothing is logged."""
    pytest.importorskip("litellm")
    from test_litellm import _until

    from appliance.integrations.litellm import SemtraceLogger

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    caplog.set_level(logging.INFO, logger="semtrace")
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock):
        with Client(sock, timeout=30) as c:  # another worker registered ilse's turn
            turn = c.ingest(tenant="acme", user_id="ilse", request_id="ht-1",
                            text="Does the night train have a dining car?")
        assert turn["ok"]
        logger = SemtraceLogger(sock, tenant="acme", timeout=1.0, register_wait=1.0)

        async def proxy() -> dict[str, Any]:
            looped: dict[str, Any] = {
                "model": "gpt-4o", "user": "ilse", "litellm_call_id": "ht-2",
                "previous_response_id": "resp_ilse_5", "litellm_metadata": {},
                "input": [{"type": "function_call_output", "call_id": "call_1",
                           "output": '{"dining_car": true}'}]}
            await logger.async_pre_call_hook(None, None, looped, "aresponses")
            await _until(lambda: not logger._tasks, 60)  # it gave up on the held call
            other: dict[str, Any] = {
                "model": "gpt-4o", "user": "jonas", "litellm_call_id": "ht-3", "metadata": {},
                "messages": [{"role": "user", "content": "Is the museum free on Sundays?"}]}
            await logger.async_pre_call_hook(None, None, other, "acompletion")
            await _until(lambda: not logger._tasks, 60)
            return other["metadata"]

        other = asyncio.run(proxy())
        with Client(sock, timeout=30) as c:  # the turn's update releases the held call
            assert c.request({"v": 1, "op": "update", "tenant": "acme", "request_id": "ht-1",
                              "response": {"id": "resp_ilse_5", "status": "ok"}})["ok"]
    assert "gen_ai.conversation.id" in other
    assert other["gen_ai.conversation.id"] != turn["conversation_id"]
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "semtrace_unavailable" not in events and "semtrace_available" not in events


def test_a_loop_call_held_past_the_gateways_timeout_is_counted_held_not_failed(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A loop call the service holds past the gateway's `timeout` is attached when its turn
    lands, its tokens in the turn's: the old code counted it in `SemtraceLogger.failures`
    (nothing recorded) over the socket, and in `queued` over NATS. It is counted in `held`
    now, over either (`test_tool_loop_nats.py` for the bus)."""
    pytest.importorskip("litellm")
    from appliance.integrations.litellm import SemtraceLogger
    from appliance.query import records_by_request

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    caplog.set_level(logging.INFO, logger="semtrace")
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock):
        with Client(sock, timeout=30) as c:  # another worker registered ilse's turn
            turn = c.ingest(tenant="acme", user_id="ilse", request_id="hc-1",
                            text="Is there a sleeper car on the night train?")
        assert turn["ok"]
        logger = SemtraceLogger(sock, tenant="acme", timeout=1.0, register_wait=1.0)
        looped: dict[str, Any] = {
            "model": "gpt-4o", "user": "ilse", "litellm_call_id": "hc-2",
            "call_type": "aresponses", "previous_response_id": "resp_ilse_8",
            "litellm_metadata": {},
            "input": [{"type": "function_call_output", "call_id": "call_1",
                       "output": '{"sleeper": true}'}]}
        answer = {"id": "resp_ilse_9", "object": "response", "status": "completed",
                  "output": [], "usage": {"input_tokens": 41, "output_tokens": 6}}

        async def proxy() -> None:  # the call is made, answered, and reported
            await logger.async_log_success_event(looped, answer, None, None)

        asyncio.run(proxy())
        counted = (logger.sent, logger.failures, logger.queued, getattr(logger, "held", None))
        with Client(sock, timeout=30) as c:  # the turn's update releases the held call
            assert c.request({"v": 1, "op": "update", "tenant": "acme", "request_id": "hc-1",
                              "response": {"id": "resp_ilse_8", "status": "ok",
                                           "input_tokens": 30}})["ok"]
        for _ in range(600):  # the service attaches it: the turn has its tokens
            record = records_by_request(pipeline.store, "acme", "hc-1")
            if record is not None and record.input_tokens == 30 + 41:
                break
            time.sleep(0.05)
    assert counted == (0, 0, 0, 1)
    assert record is not None and record.input_tokens == 30 + 41
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "semtrace_unavailable" not in events
