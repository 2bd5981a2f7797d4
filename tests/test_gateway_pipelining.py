"""A proxy worker's concurrent calls reach the service together, on its one connection.

The real service on the real pipeline (SQLCipher, the bundled model, Presidio), in this
process so that its worker can be kept busy: the adapter's asyncio client sent one request
at a time on the worker's connection, so the calls of a busy proxy worker queued in the
gateway, each waiting for the commit of the one before (`register_wait` ran out for the
later ones, whose spans then lacked their conversation id), and the service could never
take them together in one commit.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("litellm")

from conftest import running_service  # noqa: E402
from test_litellm import _until  # noqa: E402

from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

ASKED = {"amira": "Which gate does the Oslo flight leave from?",
         "bruno": "How do I reset my badge PIN?",
         "chloe": "Is the canteen open on Saturday?",
         "dario": "Where is the nearest defibrillator?"}


def test_a_proxy_workers_concurrent_calls_are_all_sent_while_the_first_is_committed(
        pipeline: Any, tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    gate = threading.Event()
    with running_service(pipeline, sock) as svc:
        logger = SemtraceLogger(sock, tenant="acme", timeout=60.0, register_wait=0.1)
        svc._pool.submit(gate.wait)  # the service's worker is busy: nothing commits
        try:
            async def proxy() -> list[dict[str, Any]]:
                calls = [{"model": "gpt-4o", "user": user, "litellm_call_id": f"pl-{i}",
                          "metadata": {}, "messages": [{"role": "user", "content": text}]}
                         for i, (user, text) in enumerate(ASKED.items())]
                await asyncio.gather(*(logger.async_pre_call_hook(None, None, data,
                                                                  "acompletion")
                                       for data in calls))
                # every call's registration reached the service before the first committed
                await _until(lambda: len(svc._pending) == len(ASKED), 30)
                gate.set()
                await _until(lambda: all("gen_ai.conversation.id" in c["metadata"]
                                         for c in calls), 60)
                return [c["metadata"] for c in calls]

            registered = asyncio.run(proxy())
        finally:
            gate.set()
    assert len({m["gen_ai.conversation.id"] for m in registered}) == len(ASKED)
    assert {m["semtrace.position"] for m in registered} == {"new"}
    assert logger.failures == 0


def test_a_request_given_up_on_leaves_the_next_reply_to_the_next_request(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request the caller stops waiting for (a timeout) still has its reply read when it
    comes: the request after it on the connection gets its own reply, not that one."""
    from appliance.client import AsyncClient, Client
    from appliance.service import dispatch

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc:
        with Client(sock, timeout=30) as c:
            assert c.ingest(tenant="acme", user_id="ilse", request_id="gu-1",
                            text="Does the ferry take bicycles?")["ok"]

        async def gateway() -> dict[str, Any]:
            client = await AsyncClient.connect(sock)
            held = asyncio.ensure_future(client.request({
                "v": 1, "op": "update", "tenant": "acme", "request_id": "gu-2",
                "user_id": "ilse", "previous_response_id": "resp_ilse_7"}))
            await _until(lambda: "acme" in svc._landings, 30)  # the service holds it
            held.cancel()  # the gateway gives up on it
            ping = asyncio.ensure_future(client.request({"v": 1, "op": "ping"}))
            with Client(sock, timeout=30) as c:  # the turn's update releases the held call
                assert c.request({"v": 1, "op": "update", "tenant": "acme",
                                  "request_id": "gu-1",
                                  "response": {"id": "resp_ilse_7", "status": "ok"}})["ok"]
            pong = await asyncio.wait_for(ping, 60)
            await client.close()
            return pong

        pong = asyncio.run(gateway())
    assert pong["ok"] and pong["pong"] is True
