"""After a burst of tool loop calls, a gateway process gives the service its connections
back.

Each tool loop call in flight goes on a connection of its own (the service may hold one up
to 2 s, and answers a connection's requests in order), up to eight per sender. The adapters
kept every one they had opened: after one burst of held calls a decorator process kept up to
40 connections open (four loop workers of eight, and one for each of its eight workers), a
LiteLLM proxy worker eight more than its one, until the
service's own idle timeout (10 minutes), and the service takes `max_connections` (256) from
every gateway process together: a few gateway workers after one busy minute kept the others
answered `busy`. A connection left idle `channel.IDLE_S` is closed now (the decorator's
every one: its loop workers' updates that end a `tool_call` go on one more each; and the
proxy worker's one pipelined connection, which it kept for good after that change, and
never under a call that has taken it).

The real service on the real pipeline (SQLCipher, the bundled model, Presidio), in this
process, so that the held calls stay held until the test lands their turns' updates and the
connections the service holds can be counted. Nothing is asserted on wall-clock time: the
test waits (up to a bound meant for a loaded host) for the service to see them closed.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import running_service
from tool_call_agents import tool_call_agents

from appliance.client import Client
from appliance.integrations import channel
from appliance.integrations.decorator import Semtrace

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
USERS = ("ilse", "mika", "jonas")
SLOW_HOST_S = 120  # a bound for what a loaded host may make last long


@pytest.fixture
def service(pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The service, holding a tool loop call until its turn's update lands (no limit), and a
    gateway's connection closed after 1 s idle (`raising=False`: the old code had no such
    setting, and kept them)."""
    from appliance.service import dispatch

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    monkeypatch.setattr(channel, "IDLE_S", 1.0, raising=False)
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock) as svc:
        svc.sock = sock
        yield svc


def _register(svc: Any, run: str) -> dict[str, dict[str, Any]]:
    """Each user's turn, registered by another gateway process; its update is on its way."""
    with Client(svc.sock, timeout=60) as c:
        turns = {user: c.ingest(tenant="acme", user_id=user, request_id=f"{user}-{run}",
                                text=f"Which platform for the {run} train to Bergen?")
                 for user in USERS}
    assert all(t["ok"] for t in turns.values()), turns
    return turns


def _land(svc: Any, run: str) -> None:
    """The turns' updates land: the service answers the held loop calls."""
    with Client(svc.sock, timeout=60) as c:
        for user in USERS:
            assert c.request({"v": 1, "op": "update", "tenant": "acme",
                              "request_id": f"{user}-{run}", "response": {
                                  "id": f"resp_{user}_{run}", "status": "ok"}})["ok"]


def _until(what: Callable[[], bool], alive: Callable[[], bool] = lambda: True) -> bool:
    deadline = time.monotonic() + SLOW_HOST_S
    while not what():
        if not alive() or time.monotonic() > deadline:
            return False
        threading.Event().wait(0.05)
    return True


def test_the_decorator_closes_its_tool_loop_connections_once_idle(service: Any) -> None:
    """Three users' tool_calls held at once take three connections; once answered and left
    idle, the service sees every one closed (the old code kept them), and a later call
    connects again and joins its turn."""
    base = len(service._connections)
    turns = _register(service, "1")
    assert _until(lambda: len(service._connections) == base)  # that process's closed
    app = Semtrace(service.sock, tenant="acme", timeout=60.0, register_wait=0.05)
    replies: dict[str, Any] = {}

    threads = tool_call_agents(app, USERS, replies)
    try:
        for t in threads:
            t.start()
        in_burst = _until(lambda: len(service._connections) >= base + len(USERS))
    finally:
        _land(service, "1")
        for t in threads:
            t.join(SLOW_HOST_S)
        assert app.flush(SLOW_HOST_S)
    assert in_burst  # each held call on a connection of its own
    assert {u: (c.reply or {}).get("conversation_id") for u, c in replies.items()} == \
        {u: turns[u]["conversation_id"] for u in USERS}
    closed = _until(lambda: len(service._connections) == base)
    held_then = len(service._connections) - base
    try:
        with app.tool_call(user_id="mika", previous_response_id="resp_mika_1") as call:
            pass
        assert app.flush(SLOW_HOST_S)
    finally:
        app.close()
    assert closed, f"{held_then} connections still open"  # the old code kept them
    assert call.reply is not None and call.reply["conversation_id"] == \
        turns["mika"]["conversation_id"]


def test_the_proxy_closes_its_tool_loop_connections_once_idle(service: Any) -> None:
    """The proxy's pre-call hook (the asyncio channel, on the worker's event loop, which
    runs on): as the decorator."""
    from appliance.integrations.litellm import SemtraceLogger

    base = len(service._connections)
    turns = _register(service, "2")
    assert _until(lambda: len(service._connections) == base)  # that process's closed
    logger = SemtraceLogger(service.sock, tenant="acme", timeout=60.0, register_wait=0.05)
    calls = {user: {"model": "gpt-4o", "user": user, "litellm_call_id": f"px-{user}",
                    "previous_response_id": f"resp_{user}_2", "litellm_metadata": {},
                    "input": [{"type": "function_call_output", "call_id": "call_1",
                               "output": '{"platform": 4}'}]} for user in USERS}

    async def worker() -> tuple[bool, bool, int]:
        for data in calls.values():  # each goes on unanswered: held
            await logger.async_pre_call_hook(None, None, data, "aresponses")
        in_burst = await asyncio.to_thread(
            _until, lambda: len(service._connections) >= base + len(USERS))
        await asyncio.to_thread(_land, service, "2")
        if logger._tasks:
            await asyncio.wait(logger._tasks, timeout=SLOW_HOST_S)
        deadline = time.monotonic() + SLOW_HOST_S  # the event loop runs on meanwhile
        while len(service._connections) > base and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return in_burst, len(service._connections) == base, len(service._connections) - base

    try:
        in_burst, closed, held_then = asyncio.run(worker())
    finally:
        _land(service, "2")  # never left held, whatever failed
    assert in_burst
    assert {u: d["litellm_metadata"].get("gen_ai.conversation.id") for u, d in
            calls.items()} == {u: turns[u]["conversation_id"] for u in USERS}
    assert closed, f"{held_then} connections still open"  # the old code kept them


def _proxy_call(user: str, n: int) -> dict[str, Any]:
    """A proxy's chat call, as its pre-call hook is given it (a registration: `main`)."""
    return {"model": "gpt-4o", "user": user, "litellm_call_id": f"pm-{user}-{n}",
            "metadata": {}, "messages": [
                {"role": "user", "content": f"Which platform does the {n}th train leave from?"}]}


async def _until_async(what: Callable[[], bool]) -> bool:
    """`_until` with the event loop running meanwhile (the proxy worker's, which closes)."""
    deadline = time.monotonic() + SLOW_HOST_S
    while not what():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def test_the_proxy_closes_its_workers_pipelined_connection_once_idle(service: Any) -> None:
    """A proxy worker's registrations go on its one pipelined connection, which it kept
    open for good (only its loop calls' connections closed): left idle, it is closed now,
    and the worker's next call connects anew and is recorded."""
    from appliance.integrations.litellm import SemtraceLogger

    base = len(service._connections)
    logger = SemtraceLogger(service.sock, tenant="acme", timeout=60.0, register_wait=60.0)
    first, second = _proxy_call("ilse", 1), _proxy_call("ilse", 2)

    async def worker() -> tuple[bool, bool, int]:
        await logger.async_pre_call_hook(None, None, first, "acompletion")
        opened = len(service._connections) == base + 1
        closed = await _until_async(lambda: len(service._connections) == base)
        held_then = len(service._connections) - base
        await logger.async_pre_call_hook(None, None, second, "acompletion")
        return opened, closed, held_then

    opened, closed, held_then = asyncio.run(worker())
    assert opened
    assert closed, f"{held_then} connections still open"  # the old code kept it
    ids = [call["metadata"].get("gen_ai.conversation.id") for call in (first, second)]
    assert ids[0] is not None and ids[1] is not None  # both recorded
    assert logger.failures == 0


def test_a_proxy_call_that_took_the_connection_as_the_idle_close_fires_keeps_it(
        service: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: a call has taken the worker's idle connection and not written its request
    yet when the timer closing idle connections fires. The connection is in use, so it is
    not closed under the call, which is answered on it; once idle again it is closed."""
    from appliance.client import AsyncClient
    from appliance.integrations import async_lines
    from appliance.integrations.litellm import SemtraceLogger

    fired: list[int] = []  # the connections still open each time the timer fired
    reap = async_lines.LoopLines._reap

    def noting(self: Any, loop: Any) -> None:
        reap(self, loop)
        fired.append(len(self.clients))

    racing: list[bool] = []
    request = AsyncClient.request

    async def late(self: Any, obj: dict[str, Any], timeout: float | None = None) -> Any:
        if racing:  # it has its connection: the idle timer fires before it writes
            await _until_async(lambda: bool(fired))
        return await request(self, obj, timeout)

    monkeypatch.setattr(async_lines.LoopLines, "_reap", noting)
    monkeypatch.setattr(AsyncClient, "request", late)
    base = len(service._connections)
    logger = SemtraceLogger(service.sock, tenant="acme", timeout=60.0, register_wait=60.0)
    first, racer = _proxy_call("mika", 1), _proxy_call("mika", 2)

    async def worker() -> tuple[list[int], bool]:
        await logger.async_pre_call_hook(None, None, first, "acompletion")
        racing.append(True)
        await logger.async_pre_call_hook(None, None, racer, "acompletion")
        racing.clear()
        fired_then = list(fired)
        return fired_then, await _until_async(lambda: len(service._connections) == base)

    fired_then, closed = asyncio.run(worker())
    assert fired_then == [1]  # the timer fired mid-call and left the connection open
    assert racer["metadata"].get("gen_ai.conversation.id") is not None  # recorded
    assert logger.failures == 0 and closed
