"""Over NATS, a gateway's tool loop calls in flight share one connection.

The blocking channel (the decorator, the LiteLLM SDK) gave each tool loop call in flight a
connection of its own, as over a socket, where the service answers a connection's requests
in order. Over NATS each reply finds its own request (by its inbox): a connection per call
only cost a NATS connection and a client thread each, and they stayed open (32 for one
decorator process after a burst of held calls). They now share one, and a call held past
the gateway's timeout leaves it open for the others. The decorator's workers kept a
connection each for their registrations and updates as well, beside that one: every request
of the adapter shares it now.

The real service and pipeline (SQLCipher, the bundled model, Presidio) with the real NATS
front door against a real nats-server, whose monitoring endpoint counts the gateway's
connections; in this process, so that the held calls stay held until the test lands their
turns' updates.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_cluster import _free_port, nats_server
from test_tool_loop_nats import SLOW_HOST_S, node
from tool_call_agents import tool_call_agents

from appliance.cluster.client import NatsClient
from appliance.integrations.decorator import Semtrace
from appliance.service import dispatch

pytestmark = pytest.mark.slow
USERS = ("ilse", "mika", "jonas")


def _gateway_connections(monitor: str) -> int:
    """The connections of gateway clients the NATS server counts."""
    with urllib.request.urlopen(f"{monitor}/connz?limit=1024", timeout=30) as r:
        connz = json.load(r)
    return sum(c.get("name") == "semtrace-gateway" for c in connz.get("connections", []))


def test_a_decorators_held_tool_loop_calls_share_one_nats_connection(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three users' tool_calls, each held by the node until its turn's update lands, are in
    flight at once on one connection (the old code: three), and each joins its turn."""
    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    held: set[str] = set()  # the users whose loop call the service holds
    looking = dispatch.Dispatch._turn_coming

    async def noting(self: Any, req: Any, queued: Any) -> bool:
        held.add(req.user_id)
        return await looking(self, req, queued)

    monkeypatch.setattr(dispatch.Dispatch, "_turn_coming", noting)
    http = _free_port()
    with nats_server(tmp_path / "nats", f"\nhttp: 127.0.0.1:{http}\n") as url, \
            node(pipeline, tmp_path, url):
        monitor = f"http://127.0.0.1:{http}"
        with NatsClient(url, timeout=60, plain_bus=True) as other:  # another gateway
            turns = {user: other.request({
                "v": 1, "op": "ingest", "tenant": "acme", "user_id": user,
                "request_id": f"{user}-1", "text": f"Is the {user} night train on time?"})
                for user in USERS}
        assert all(t["ok"] for t in turns.values()), turns
        app = Semtrace(url, tenant="acme", timeout=60.0, register_wait=0.05, plain_bus=True)
        calls: dict[str, Any] = {}

        threads = tool_call_agents(app, USERS, calls)
        deadline = time.monotonic() + SLOW_HOST_S
        try:
            for t in threads:
                t.start()
            while held != set(USERS) and time.monotonic() < deadline:
                threading.Event().wait(0.05)
            in_flight = _gateway_connections(monitor)
        finally:
            with NatsClient(url, timeout=60, plain_bus=True) as other:
                for user in USERS:
                    assert other.request({"v": 1, "op": "update", "tenant": "acme",
                                          "request_id": f"{user}-1", "response": {
                                              "id": f"resp_{user}_1", "status": "ok"}})["ok"]
            for t in threads:
                t.join(SLOW_HOST_S)
            assert app.flush(SLOW_HOST_S)
            app.close()
    assert held == set(USERS)  # all three held at once
    assert in_flight == 1  # the old code: 3
    assert {u: (c.reply or {}).get("conversation_id") for u, c in calls.items()} == \
        {u: turns[u]["conversation_id"] for u in USERS}


def test_a_decorators_turns_on_every_worker_and_a_held_loop_call_share_one_connection(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four users, one on each of the decorator's workers, each make a turn (a registration
    and its update) while ilse's tool_call is held: over NATS the old code kept a connection
    per worker (and one more for each loop worker whose `tool_call` ended) beside the loop
    calls' shared one, five here; every request now goes on the one connection, each turn
    is recorded, and the loop call joins its turn."""
    from appliance.integrations.channel import shard_of
    from appliance.integrations.outbox import WORKERS

    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    held: set[str] = set()
    looking = dispatch.Dispatch._turn_coming

    async def noting(self: Any, req: Any, queued: Any) -> bool:
        held.add(req.user_id)
        return await looking(self, req, queued)

    monkeypatch.setattr(dispatch.Dispatch, "_turn_coming", noting)
    names = (f"user{n}" for n in range(1000))
    by_worker: dict[int, str] = {}
    while len(by_worker) < WORKERS:
        name = next(names)
        by_worker.setdefault(shard_of(name, WORKERS), name)
    http = _free_port()
    with nats_server(tmp_path / "nats", f"\nhttp: 127.0.0.1:{http}\n") as url, \
            node(pipeline, tmp_path, url):
        monitor = f"http://127.0.0.1:{http}"
        with NatsClient(url, timeout=60, plain_bus=True) as other:  # another gateway
            turn = other.request({"v": 1, "op": "ingest", "tenant": "acme",
                                  "user_id": "ilse", "request_id": "ilse-1",
                                  "text": "Is the ilse night train on time?"})
        assert turn["ok"], turn
        app = Semtrace(url, tenant="acme", timeout=60.0, register_wait=0.05, plain_bus=True)
        calls: dict[str, Any] = {}
        turns: dict[str, Any] = {}
        agent = tool_call_agents(app, ["ilse"], calls)[0]
        deadline = time.monotonic() + SLOW_HOST_S
        try:
            agent.start()
            while "ilse" not in held and time.monotonic() < deadline:
                threading.Event().wait(0.05)
            for user in by_worker.values():
                with app.turn(user_id=user, text=f"Where does {user}'s bus stop?") as t:
                    t.answer("At the station.")
                    t.usage(input_tokens=9, output_tokens=4)
                turns[user] = t
            recorded = {user: t.conversation_id for user, t in turns.items()}  # sent, answered
            in_flight = _gateway_connections(monitor)
        finally:
            _update(url, "ilse")
            agent.join(SLOW_HOST_S)
            assert app.flush(SLOW_HOST_S)
            app.close()
    assert "ilse" in held
    assert in_flight == 1  # the old code: 5
    assert all(recorded.values()), recorded
    assert (calls["ilse"].reply or {}).get("conversation_id") == turn["conversation_id"]


def test_a_loop_call_held_past_the_timeout_leaves_the_shared_connection_to_the_others(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The asyncio channel (the LiteLLM proxy) over NATS: ilse's loop call, held past the
    gateway's timeout, closed the connection it shared with mika's, still in flight: his
    answer, sent once his turn's update landed, had nowhere to go, and his call was taken
    for an outage (no reply, the `semtrace_unavailable` warning, a pause). The connection
    is kept now, and mika's call joins his turn. (The pacing below only orders the two
    calls' deadlines: mika's comes 4 s after ilse's.)"""
    import asyncio
    import logging

    from appliance.integrations.async_channel import AsyncChannel
    from appliance.integrations.breaker import Breaker

    timeout, stagger = 8.0, 4.0
    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    caplog.set_level(logging.INFO, logger="semtrace")
    held: set[str] = set()
    looking = dispatch.Dispatch._turn_coming

    async def noting(self: Any, req: Any, queued: Any) -> bool:
        held.add(req.user_id)
        return await looking(self, req, queued)

    monkeypatch.setattr(dispatch.Dispatch, "_turn_coming", noting)

    def call(user: str, rid: str) -> dict[str, Any]:
        return {"v": 1, "op": "update", "tenant": "acme", "request_id": rid,
                "user_id": user, "previous_response_id": f"resp_{user}_1"}

    async def until_held(user: str) -> None:
        deadline = time.monotonic() + SLOW_HOST_S
        while user not in held and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    with nats_server(tmp_path / "nats") as url, node(pipeline, tmp_path, url):
        with NatsClient(url, timeout=60, plain_bus=True) as other:  # another gateway
            turns = {user: other.request({
                "v": 1, "op": "ingest", "tenant": "acme", "user_id": user,
                "request_id": f"{user}-1", "text": f"Is the {user} night train on time?"})
                for user in ("ilse", "mika")}
        assert all(t["ok"] for t in turns.values()), turns
        channel = AsyncChannel(url, timeout=timeout, plain_bus=True,
                               breaker=Breaker(logging.getLogger("semtrace.test")))

        async def proxy() -> tuple[Any, Any]:
            ilse = asyncio.ensure_future(channel.deliver(call("ilse", "px-ilse")))
            await until_held("ilse")
            await asyncio.sleep(stagger)
            mika = asyncio.ensure_future(channel.deliver(call("mika", "px-mika")))
            given_up = await ilse  # its turn's update never comes
            await asyncio.to_thread(_update, url, "mika")
            return given_up, await mika

        given_up, answered = asyncio.run(proxy())
        _update(url, "ilse")  # never left held
    assert (given_up.reply, given_up.held) == (None, True)
    assert answered.reply is not None, answered  # the old code: None, an outage
    assert answered.reply["conversation_id"] == turns["mika"]["conversation_id"]
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "semtrace_unavailable" not in events


def _update(url: str, user: str) -> None:
    with NatsClient(url, timeout=60, plain_bus=True) as other:
        assert other.request({"v": 1, "op": "update", "tenant": "acme",
                              "request_id": f"{user}-1", "response": {
                                  "id": f"resp_{user}_1", "status": "ok"}})["ok"]
