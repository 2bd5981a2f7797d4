"""A request the gateway sent whole over the socket whose reply came after its `timeout`: the
service stores it (a slow commit, a long queue), so the adapters' `semtrace_available`
line counts it `unknown`, not with the requests nothing took (`unrecorded`). A real
`semtrace serve`; a timeout shorter than any sync reply (redaction, embedding, commit)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from test_service import Server

from appliance.client import Client
from appliance.integrations.async_channel import AsyncChannel
from appliance.integrations.breaker import RETRY_FIRST, Breaker
from appliance.integrations.channel import Delivery, SyncChannel

TOO_SHORT = 0.002  # seconds: the request is written at once, the reply takes longer


def _prompt(rid: str) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "request_id": rid, "user_id": "noor",
            "text": "Which train goes to Utrecht after nine tonight?"}


def _stored(server: Server, rid: str) -> bool:
    """Whether the service holds the record of `rid` (asked until it committed it)."""
    deadline = time.monotonic() + 30
    with Client(server.sock, timeout=30) as c:
        while time.monotonic() < deadline:
            reply = c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": rid})
            if reply.get("ok"):
                return True
            time.sleep(0.2)
    return False


def _back_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[Any, ...]]:
    return [(r.unrecorded, getattr(r, "unknown", None), r.queued, r.held)
            for r in caplog.records if getattr(r, "event", None) == "semtrace_available"]


def test_a_request_sent_whose_reply_came_late_is_stored_and_not_counted_unrecorded(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    """Before, both adapters counted such a request in `unrecorded` (the LiteLLM callback
    in `failures`): an operator reading "unrecorded 1" after a slow minute went looking for
    turns that were all stored. The blocking channel (the decorator's, the SDK's) and the
    asyncio one (the proxy's) alike."""
    caplog.set_level(logging.INFO, logger="semtrace.test")
    log = logging.getLogger("semtrace.test")
    sync = SyncChannel(server.sock, timeout=TOO_SHORT, log=log)
    late = sync.deliver(_prompt("late-sync-1"))
    time.sleep(RETRY_FIRST + 0.2)  # the pause after it is over
    sync.timeout = sync.breaker.probe = 30.0
    assert (sync.deliver(_prompt("late-sync-2")).reply or {}).get("ok")
    sync.close()

    async def asyncio_gateway() -> tuple[Delivery, Delivery]:
        channel = AsyncChannel(server.sock, timeout=TOO_SHORT, breaker=Breaker(log))
        first = await channel.deliver(_prompt("late-async-1"))
        await asyncio.sleep(RETRY_FIRST + 0.2)
        channel.timeout = channel.breaker.probe = 30.0
        return first, await channel.deliver(_prompt("late-async-2"))

    first, second = asyncio.run(asyncio_gateway())
    assert (second.reply or {}).get("ok")
    assert _back_lines(caplog) == [(0, 1, 0, 0)] * 2  # the old code: (1, None, 0, 0)
    assert [(d.reply, getattr(d, "unknown", None)) for d in (late, first)] == [(None, True)] * 2
    assert _stored(server, "late-sync-1") and _stored(server, "late-async-1")


def test_a_request_nothing_took_is_still_counted_unrecorded(
        tmp_path: Any, caplog: pytest.LogCaptureFixture) -> None:
    """The guard (passes on the old code too): a socket nobody listens on takes nothing;
    `unrecorded`, never `unknown`."""
    caplog.set_level(logging.INFO, logger="semtrace.test")
    clock = [100.0]
    breaker = Breaker(logging.getLogger("semtrace.test"), lambda: clock[0])
    channel = AsyncChannel(tmp_path / "none.sock", timeout=1.0, breaker=breaker)
    assert asyncio.run(channel.deliver(_prompt("none-1"))) == Delivery(None)
    assert (breaker.missed, getattr(breaker, "unknown", 0)) == (1, 0)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_litellm_call_whose_registration_was_answered_late_is_counted_unknown(
        server: Server) -> None:
    """The LiteLLM callback's counts, per call: the prompt registered before the call went
    whole and its reply came after `timeout`; the report after the call fell in the pause
    that followed and was not sent. The service holds the prompt, yet the old code counted
    the call in `failures`; it is `unknown` now."""
    import os

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
    litellm = pytest.importorskip("litellm")
    from gateway_fakes import openai_sync

    from appliance.integrations.litellm import SemtraceLogger

    logger = SemtraceLogger(server.sock, tenant="acme", timeout=TOO_SHORT)
    litellm.callbacks = [logger]
    try:
        answer = litellm.completion(model="gpt-4o", client=openai_sync(), user="noor",
                                    messages=[{"role": "user", "content": "Is the 21:40 "
                                               "to Utrecht on time?"}])
        assert logger.wait(1, timeout=30)
    finally:
        litellm.logging_callback_manager._reset_all_callbacks()
    counts = (logger.sent, logger.failures, getattr(logger, "unknown", None))
    assert counts == (0, 0, 1)  # the old code: (0, 1, None)
    assert _stored(server, answer._hidden_params["litellm_call_id"])
