"""The decorator's turn when the appliance answers after the block has ended.

The real service on the real pipeline (SQLCipher, the bundled model, Presidio), in this
process so that its worker can be kept busy: nothing commits until the test lets it, so the
application's block ends, as it would with a slow appliance, before the registration's
reply comes.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import running_service

from appliance.client import Client
from appliance.integrations.decorator import Semtrace


def _lookup(sock: Path, rid: str) -> dict[str, Any]:
    with Client(sock, timeout=30) as c:
        return c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": rid})


def test_a_turns_late_reply_is_read_after_the_block_without_a_flush(
        pipeline: Any, tmp_path: Path) -> None:
    """A slow appliance answers a turn's registration after `register_wait`: the block
    goes on without it, as it should. The old code left `turn.reply` (and
    `conversation_id`) None after the block unless the application remembered to call
    `semtrace.flush()` first; read after the block, the turn now waits for its requests
    (`timeout` at most), in blocking and in asyncio code."""
    sock = tmp_path / "s.sock"
    gate, slow = threading.Event(), threading.Event()
    with running_service(pipeline, sock) as svc:
        app = Semtrace(sock, tenant="acme", timeout=60.0, register_wait=0.1)
        try:
            svc._pool.submit(gate.wait)  # the service's worker is busy: nothing commits
            with app.turn(user_id="rosa", text="When does the ferry to Bergen leave?") as turn:
                during = turn.reply  # the model is called meanwhile: not waited for
                turn.usage(input_tokens=9, output_tokens=21)
            threading.Timer(0.3, gate.set).start()  # the appliance answers, late
            after = turn.conversation_id  # no flush

            async def ask() -> tuple[Any, Any]:
                svc._pool.submit(slow.wait)
                async with app.aturn(user_id="rosa", text="And the one to Oslo?") as later:
                    waited = later.reply
                asyncio.get_running_loop().call_later(0.3, slow.set)
                return waited, await later.areply()

            during_async, later_reply = asyncio.run(ask())
        finally:
            gate.set()
            slow.set()
            app.close()
        record = _lookup(sock, turn.request["request_id"])
        record_async = _lookup(sock, later_reply["request_id"] if later_reply else "none")
    assert during is None and during_async is None  # the blocks did not wait for them
    assert after is not None and after == record["conversation_id"]
    assert later_reply is not None and later_reply["ok"]
    assert later_reply["conversation_id"] == record_async["conversation_id"]


def test_a_held_tool_call_does_not_delay_another_users_turn(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The decorator sent every thread's requests from one worker, one at a time: a tool
    loop's call the service held (its turn's update still on its way from another process)
    kept every other user's registration waiting, up to the whole hold, so their blocks ran
    without their conversation id. A user's requests now go to a worker of their own
    (kept in order there): another user's turn is registered while the call is held, which
    then joins its turn when the update lands."""
    from appliance.integrations.channel import shard_of
    from appliance.integrations.outbox import WORKERS
    from appliance.service import dispatch

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    assert shard_of("ilse", WORKERS) != shard_of("jonas", WORKERS)  # two workers
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc:
        with Client(sock, timeout=30) as c:  # another process registered ilse's turn
            turn = c.ingest(tenant="acme", user_id="ilse", request_id="dt-1",
                            text="Which platform does the night train leave from?")
        assert turn["ok"]
        app = Semtrace(sock, tenant="acme", timeout=30.0, register_wait=10.0)
        calls: list[Any] = []

        def agent() -> None:  # a thread of the application runs ilse's tool loop
            with app.tool_call(user_id="ilse", previous_response_id="resp_ilse_3") as call:
                call.usage(input_tokens=30, output_tokens=4)
            calls.append(call)

        looping = threading.Thread(target=agent)
        looping.start()
        try:
            while "acme" not in svc._landings:  # the service holds the loop call
                assert looping.is_alive()
                threading.Event().wait(0.05)
            with app.turn(user_id="jonas", text="Is the bakery open on Sunday?") as other:
                in_block = other.reply
        finally:
            with Client(sock, timeout=30) as c:  # ilse's turn's update lands
                assert c.request({"v": 1, "op": "update", "tenant": "acme",
                                  "request_id": "dt-1", "response": {
                                      "id": "resp_ilse_3", "status": "ok"}})["ok"]
            looping.join(60)
            app.close()
    assert in_block is not None and in_block["ok"], in_block
    assert in_block["conversation_id"] != turn["conversation_id"]
    assert calls and calls[0].conversation_id == turn["conversation_id"]


def test_a_held_tool_call_does_not_delay_the_users_sharing_its_worker(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's requests go to one of four workers, each sending one request at a time: a
    tool loop's call the service held (its turn's update still on its way from another
    process) kept the registrations of every other user of its worker waiting (one in four
    on average), so their blocks ran without their conversation id. The loop call now goes
    to a worker of its own for loop calls: another user of the same worker is registered
    while it is held. The loop call's own user still waits for it: her next turn, which
    names the loop call's answer, is sent after it and continues her turn by that id."""
    from appliance.integrations.channel import shard_of
    from appliance.integrations.outbox import WORKERS
    from appliance.service import dispatch

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    assert shard_of("ilse", WORKERS) == shard_of("mika", WORKERS)  # one worker
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc:
        with Client(sock, timeout=30) as c:  # another process registered ilse's turn
            turn = c.ingest(tenant="acme", user_id="ilse", request_id="dw-1",
                            text="Which carriage of the night train has the dining car?")
        assert turn["ok"]
        app = Semtrace(sock, tenant="acme", timeout=60.0, register_wait=20.0)
        calls: list[Any] = []

        def agent() -> None:  # a thread of the application runs ilse's tool loop
            with app.tool_call(user_id="ilse", previous_response_id="resp_ilse_3") as call:
                call.usage(input_tokens=30, output_tokens=4)
                call.answer("The dining car is carriage 9.", response_id="resp_ilse_4")
            calls.append(call)
            with app.turn(user_id="ilse", text="Is it open at breakfast?",
                          previous_response_id="resp_ilse_4") as follow:
                pass
            calls.append(follow)

        looping = threading.Thread(target=agent)
        looping.start()
        try:
            while "acme" not in svc._landings:  # the service holds the loop call
                assert looping.is_alive()
                threading.Event().wait(0.05)
            with app.turn(user_id="mika", text="Is the bakery open on Sunday?") as other:
                in_block = other.reply
            held_then = not calls  # ilse's loop call was still held
        finally:
            with Client(sock, timeout=30) as c:  # ilse's turn's update lands
                assert c.request({"v": 1, "op": "update", "tenant": "acme",
                                  "request_id": "dw-1", "response": {
                                      "id": "resp_ilse_3", "status": "ok"}})["ok"]
            looping.join(120)
            app.close()
    assert in_block is not None and in_block["ok"], in_block  # the old code: None
    assert in_block["conversation_id"] != turn["conversation_id"]
    assert held_then
    assert len(calls) == 2 and calls[0].conversation_id == turn["conversation_id"]
    follow_reply = calls[1].reply
    assert follow_reply is not None and follow_reply["ok"], follow_reply
    assert follow_reply["conversation_id"] == turn["conversation_id"]
    assert follow_reply["link_source"] == "previous_response_id"
