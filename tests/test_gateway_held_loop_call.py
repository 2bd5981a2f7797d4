"""Another user's tool loop call is not kept waiting behind one the service holds.

A tool loop's call reaching the service before its turn's update (which another gateway
process is still sending) is held until that update lands. The adapters sent every tool
loop call of a loop worker (the decorator) or of a process (the LiteLLM callback) on one
connection, one after another, and the service answers a connection's requests in order:
another user's call, whose turn was known, got its reply only after the held one's, past
its own `register_wait`, so its block or request went on without its conversation id.

The real service on the real pipeline (SQLCipher, the bundled model, Presidio), in this
process so that the held call stays held until the test lands its turn's update: the
assertions are on the order of the replies, never on wall-clock time.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import running_service

from appliance.client import Client
from appliance.integrations.decorator import Semtrace

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
OUTPUTS = [{"type": "function_call_output", "call_id": "call_1",
            "output": '{"sky": "fog", "celsius": 11}'}]


@pytest.fixture
def service(pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The service, holding a tool loop call until its turn's update lands (no limit), with
    two turns: ilse's, whose update is still on its way, and mika's, updated (`resp_mika_1`)."""
    from appliance.service import dispatch

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc:
        svc.sock = sock
        with Client(sock, timeout=30) as c:  # another gateway process registered both
            svc.turns = {user: c.ingest(tenant="acme", user_id=user, request_id=f"{user}-1",
                                        text=text)
                         for user, text in (("ilse", "Which platform for the night train?"),
                                            ("mika", "Is the bakery open on Sunday?"))}
            assert c.request({"v": 1, "op": "update", "tenant": "acme",
                              "request_id": "mika-1", "response": {
                                  "id": "resp_mika_1", "status": "ok"}})["ok"]
        assert all(t["ok"] for t in svc.turns.values())
        yield svc


def _held(svc: Any, alive: Any) -> None:
    """Wait until the service holds ilse's loop call."""
    while "acme" not in svc._landings:
        assert alive()
        threading.Event().wait(0.05)


def _land_ilse(svc: Any) -> None:
    """Ilse's turn's update lands: the service answers her held loop call (sent again, it
    changes nothing)."""
    with Client(svc.sock, timeout=30) as c:
        c.request({"v": 1, "op": "update", "tenant": "acme", "request_id": "ilse-1",
                   "response": {"id": "resp_ilse_1", "status": "ok"}})


def test_the_decorator_answers_a_tool_call_of_another_user_of_the_held_calls_loop_worker(
        service: Any) -> None:
    """Ilse and mika share a worker, so their tool loop calls share a loop worker. The old
    code sent mika's call after ilse's held one: his block ran without its reply."""
    from appliance.integrations.channel import shard_of
    from appliance.integrations.outbox import WORKERS

    assert shard_of("ilse", WORKERS) == shard_of("mika", WORKERS)  # one loop worker
    app = Semtrace(service.sock, tenant="acme", timeout=60.0, register_wait=20.0)
    ilse: list[Any] = []

    def agent() -> None:  # a thread of the application runs ilse's tool loop
        with app.tool_call(user_id="ilse", previous_response_id="resp_ilse_1") as call:
            call.usage(input_tokens=30, output_tokens=4)
        ilse.append(call.reply)

    looping = threading.Thread(target=agent)
    looping.start()
    try:
        _held(service, looping.is_alive)
        with app.tool_call(user_id="mika", previous_response_id="resp_mika_1") as call:
            in_block = call.reply
        ilse_then = list(ilse)  # ilse's call was still held
    finally:
        _land_ilse(service)
        looping.join(120)
        app.close()
    assert in_block is not None and in_block["ok"], in_block  # the old code: None
    assert in_block["conversation_id"] == service.turns["mika"]["conversation_id"]
    assert ilse_then == []
    assert ilse and ilse[0] is not None and ilse[0]["ok"]
    assert ilse[0]["conversation_id"] == service.turns["ilse"]["conversation_id"]


def _data(user: str, call_id: str, previous: str) -> dict[str, Any]:
    return {"model": "gpt-4o", "user": user, "litellm_call_id": call_id,
            "previous_response_id": previous, "input": OUTPUTS, "litellm_metadata": {}}


def test_the_proxy_answers_another_users_tool_loop_call_while_one_is_held(
        service: Any) -> None:
    """The proxy's pre-call hook: the old code pipelined mika's call behind ilse's held
    one on the callback's one loop connection, so its reply came after hers."""
    from appliance.integrations.litellm import SemtraceLogger

    logger = SemtraceLogger(service.sock, tenant="acme", timeout=60.0, register_wait=0.2)

    async def proxy() -> tuple[dict[str, Any], dict[str, Any], bool]:
        ilse, mika = _data("ilse", "px-ilse", "resp_ilse_1"), _data("mika", "px-mika",
                                                                     "resp_mika_1")
        await logger.async_pre_call_hook(None, None, ilse, "aresponses")  # went on unanswered
        await asyncio.to_thread(_held, service, lambda: True)
        logger.register_wait = 20.0
        await logger.async_pre_call_hook(None, None, mika, "aresponses")
        mika_then = dict(mika["litellm_metadata"])  # as his request goes on to the model
        ilse_then = "gen_ai.conversation.id" in ilse["litellm_metadata"]
        await asyncio.to_thread(_land_ilse, service)
        if logger._tasks:  # ilse's registration has its reply
            await asyncio.wait(logger._tasks, timeout=60)
        return ilse["litellm_metadata"], mika_then, ilse_then

    try:
        ilse, mika, ilse_then = asyncio.run(proxy())
    finally:
        _land_ilse(service)  # never left held, whatever failed
    turns = service.turns
    assert mika.get("gen_ai.conversation.id") == turns["mika"]["conversation_id"]  # old: {}
    assert not ilse_then  # mika's reply came while ilse's call was held
    assert ilse["gen_ai.conversation.id"] == turns["ilse"]["conversation_id"]


def test_the_sdk_answers_another_users_tool_loop_call_while_one_is_held(
        service: Any) -> None:
    """The SDK's pre-call logging (a blocking channel, from the callback's threads): the
    old code sent mika's call once ilse's held one had its reply, past his
    `register_wait`."""
    from appliance.integrations.litellm import SemtraceLogger

    logger = SemtraceLogger(service.sock, tenant="acme", timeout=60.0, register_wait=0.2)
    ilse = {**_data("ilse", "sdk-ilse", "resp_ilse_1"), "call_type": "responses"}
    mika = {**_data("mika", "sdk-mika", "resp_mika_1"), "call_type": "responses"}
    try:
        logger.log_pre_api_call("gpt-4o", None, ilse)  # went on unanswered
        _held(service, lambda: True)
        logger.register_wait = 20.0
        logger.log_pre_api_call("gpt-4o", None, mika)
        ilse_then = "gen_ai.conversation.id" in ilse["litellm_metadata"]
        mika_then = dict(mika["litellm_metadata"])
    finally:
        _land_ilse(service)
    turns = service.turns
    assert mika_then.get("gen_ai.conversation.id") == turns["mika"]["conversation_id"]  # old: {}
    assert not ilse_then
    logger._workers.shutdown(wait=True)  # ilse's registration has its reply
    assert ilse["litellm_metadata"]["gen_ai.conversation.id"] == \
        turns["ilse"]["conversation_id"]


def test_the_sdk_answers_another_users_tool_loop_call_while_two_are_held(
        service: Any) -> None:
    """The SDK's pre-call logging sends from a pool of the callback's threads: it had two,
    so two held loop calls (ilse's and jonas's) kept mika's registration queued until one
    had its reply, past his `register_wait`."""
    from appliance.integrations.litellm import SemtraceLogger

    with Client(service.sock, timeout=30) as c:  # jonas's turn, its update on its way too
        jonas_turn = c.ingest(tenant="acme", user_id="jonas", request_id="jonas-1",
                              text="Where is the lost property office?")
    assert jonas_turn["ok"]
    logger = SemtraceLogger(service.sock, tenant="acme", timeout=60.0, register_wait=0.2)
    held = [{**_data(user, f"sdk2-{user}", f"resp_{user}_1"), "call_type": "responses"}
            for user in ("ilse", "jonas")]
    mika = {**_data("mika", "sdk2-mika", "resp_mika_1"), "call_type": "responses"}
    try:
        for kwargs in held:
            logger.log_pre_api_call("gpt-4o", None, kwargs)  # went on unanswered
        _held(service, lambda: True)
        logger.register_wait = 20.0
        logger.log_pre_api_call("gpt-4o", None, mika)
        held_then = ["gen_ai.conversation.id" in k["litellm_metadata"] for k in held]
        mika_then = dict(mika["litellm_metadata"])
    finally:
        _land_ilse(service)
        with Client(service.sock, timeout=30) as c:
            c.request({"v": 1, "op": "update", "tenant": "acme", "request_id": "jonas-1",
                       "response": {"id": "resp_jonas_1", "status": "ok"}})
    assert mika_then.get("gen_ai.conversation.id") == \
        service.turns["mika"]["conversation_id"]  # old: {}
    assert held_then == [False, False]
    logger._workers.shutdown(wait=True)
    assert held[1]["litellm_metadata"]["gen_ai.conversation.id"] == \
        jonas_turn["conversation_id"]
