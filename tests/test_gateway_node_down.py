"""A gateway's turns while the node that owns its tenant is down: queued, and whole.

The real decorator (`Semtrace`) and LiteLLM callback (`SemtraceLogger`, real LiteLLM, its
OpenAI client on an httpx mock transport) over a real nats-server, and the real service
and pipeline (SQLCipher, the bundled model, Presidio) behind the real NATS front door,
stopped and started again as in a rolling upgrade.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from test_cluster import nats_server
from test_tool_loop_nats import node, until_consumed

from appliance.client import open_client
from appliance.integrations.async_channel import AsyncChannel
from appliance.integrations.breaker import Breaker
from appliance.integrations.channel import RETRY_FIRST, SyncChannel
from appliance.integrations.decorator import Semtrace
from appliance.integrations.litellm import SemtraceLogger
from appliance.query import records_by_request

pytestmark = pytest.mark.slow


def test_a_turn_sent_while_its_node_is_down_keeps_its_tokens_and_its_response_id(
        pipeline: Any, tmp_path: Path) -> None:
    """No node answers the registration (it is queued on the bus: `NoAnswerYet`), so after
    the answer the decorator sends the turn whole, answer included, and that is queued
    too. The node, back, stored the registration and took the whole turn for a repeat:
    its tokens and response id were dropped, and the user's next Responses call, naming
    that id, was linked by content alone (or not at all). The repeat now sets them."""
    with nats_server(tmp_path / "nats") as url:
        with node(pipeline, tmp_path, url):  # its stream and consumer exist from now on
            pass
        semtrace = Semtrace(url, tenant="acme", timeout=1.0, register_wait=0.2,
                            plain_bus=True)
        try:
            with semtrace.turn(user_id="ines", text="Which ferry goes to Tavira island?",
                               request_id="nd-1") as first:
                assert semtrace.flush(5)  # the registration was given up: a pause began
                threading.Event().wait(RETRY_FIRST + 0.5)  # the model answers meanwhile
                first.usage(input_tokens=31, output_tokens=12)
                first.answer("The ferry from Quatro Aguas.", response_id="resp_nd_1")
            assert semtrace.flush(10)
            assert first.reply is None  # nothing answered while the node was down
            with node(pipeline, tmp_path, url) as (_, door):  # the node is back
                until_consumed(door, 2)  # both queued messages consumed
                # the user's next call (a gateway whose pause is over; its own here)
                later = Semtrace(url, tenant="acme", timeout=30.0, plain_bus=True)
                try:
                    with later.turn(user_id="ines", text="How long is the crossing?",
                                    request_id="nd-2", previous_response_id="resp_nd_1"):
                        pass
                    assert later.flush(60)
                finally:
                    later.close()
        finally:
            semtrace.close()
    turn = records_by_request(pipeline.store, "acme", "nd-1")
    assert turn is not None and (turn.input_tokens, turn.output_tokens) == (31, 12)
    follow_up = records_by_request(pipeline.store, "acme", "nd-2")
    assert follow_up is not None and follow_up.link_source == "previous_response_id"
    assert follow_up.parent_request_id == "nd-1"


def test_turns_made_while_no_node_answers_are_queued_on_the_bus_not_dropped(
        pipeline: Any, tmp_path: Path) -> None:
    """A request no node answered was queued on the bus, yet the adapter then paused as if
    the appliance were unreachable: the calls of the pause (1 s, doubling up to 30 s while
    the node stayed down, as through a node's restart) were not sent at all, though the
    bus would have kept them. They are now handed to the bus without waiting for an
    answer, and the node records them once it is back."""
    users = ["ines", "jonas", "kemal", "lea"]
    with nats_server(tmp_path / "nats") as url:
        with node(pipeline, tmp_path, url):  # its stream and consumer exist from now on
            pass
        semtrace = Semtrace(url, tenant="acme", timeout=1.0, register_wait=0.2,
                            plain_bus=True)
        try:
            for n, user in enumerate(users):  # the first one's silence starts the pause
                with semtrace.turn(user_id=user, text=f"Is the {user} ferry running today?",
                                   request_id=f"nq-{n}") as turn:
                    turn.usage(input_tokens=10 + n, output_tokens=5)
                    turn.answer("Yes, every hour.", response_id=f"resp_nq_{n}")
                assert semtrace.flush(5)
            with node(pipeline, tmp_path, url) as (_, door):  # the node is back
                until_consumed(door, 2 * len(users))  # registrations and whole ingests
        finally:
            semtrace.close()
    stored = [records_by_request(pipeline.store, "acme", f"nq-{n}") for n in range(len(users))]
    assert [r.input_tokens if r else None for r in stored] == [10, 11, 12, 13]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic's, as LiteLLM loads
@pytest.mark.parametrize("mode", ["completion", "acompletion"])
def test_litellm_counts_the_calls_queued_while_no_node_answers_apart_from_failures(
        pipeline: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str) -> None:
    """Through a node's restart the callback counted each call the bus took (no node
    answered it in time) in `failures`, and `semtrace_available` counted its requests as
    unrecorded, as if the turns were lost: the node recorded every one once back. They
    are counted as `queued` now; `failures` and `unrecorded` stay for what nothing took.
    `acompletion` goes through the asyncio channel."""
    litellm = pytest.importorskip("litellm")
    from gateway_fakes import openai_async, openai_sync

    async def acall(text: str, user: str, counted: int) -> Any:
        out = await litellm.acompletion(model="gpt-4o", client=openai_async(), user=user,
                                        messages=[{"role": "user", "content": text}])
        assert await asyncio.to_thread(logger.wait, counted, 30)  # the loop logs meanwhile
        return out

    def ask(text: str, user: str, counted: int) -> str:  # the call's id: its request id
        if mode == "acompletion":
            out = runner.run(acall(text, user, counted))
        else:
            out = litellm.completion(model="gpt-4o", client=openai_sync(), user=user,
                                     messages=[{"role": "user", "content": text}])
            assert logger.wait(counted, timeout=30)
        return str(out._hidden_params["litellm_call_id"])

    caplog.set_level(logging.INFO, logger="semtrace")
    users = ["ines", "jonas", "kemal", "lea"]
    with nats_server(tmp_path / "nats") as url, asyncio.Runner() as runner:
        with node(pipeline, tmp_path, url):  # its stream and consumer exist from now on
            pass
        logger = SemtraceLogger(url, tenant="acme", timeout=1.0, register_wait=0.2,
                                plain_bus=True)
        litellm.callbacks = [logger]
        try:
            made = [ask(f"Is the {user} ferry running today?", user, n + 1)
                    for n, user in enumerate(users)]  # the first one's silence: a pause
            down = (logger.sent, getattr(logger, "queued", None), logger.failures)
            with node(pipeline, tmp_path, url) as (_, door):  # the node is back
                until_consumed(door, 2 * len(users))  # registrations and whole ingests
                calls = len(users)
                while logger.sent == 0 and calls < len(users) + 60:  # until the pause ends
                    calls += 1
                    ask("Is the last ferry at nine?", "mona", calls)
                    threading.Event().wait(0.2)
        finally:
            litellm.logging_callback_manager._reset_all_callbacks()
    assert down == (0, len(users), 0)  # the old code: (0, None, 4): all four "failed"
    assert logger.sent == 1 and logger.failures == 0
    back = [r for r in caplog.records if getattr(r, "event", None) == "semtrace_available"]
    assert len(back) == 1 and back[0].unrecorded == 0, [vars(r) for r in back]
    assert back[0].queued >= 2 * len(users)  # registrations and whole ingests, all kept
    warned = [r for r in caplog.records if getattr(r, "event", None) == "semtrace_unavailable"]
    assert [r.getMessage() for r in warned][:1] == [
        "no semtrace node answered; calls go on, queued on the bus unanswered until one does"]
    recorded = [records_by_request(pipeline.store, "acme", rid) for rid in made]
    assert [r.output_tokens if r else None for r in recorded] == [7] * len(users)


def _ask(rid: str, user: str) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "request_id": rid, "user_id": user,
            "text": "Is the ferry to Culatra running today?"}


def test_an_asyncio_gateway_counts_a_request_no_node_answered_as_queued(
        pipeline: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The asyncio channel (LiteLLM's `acompletion`, the proxy) cut a request off at its
    timeout before the NATS client's own wait ended, which is what tells a request the bus
    kept (`NoAnswerYet`) from one nothing took: every request no node answered counted
    as a failure, its calls as unrecorded, and the pause that followed handed nothing to
    the bus. (CI saw it once the asyncio side tried the bus before the sync registration
    had: `failures` 4, `queued` 0.) The client's wait decides now."""
    caplog.set_level(logging.INFO, logger="semtrace")
    with nats_server(tmp_path / "nats") as url:
        with node(pipeline, tmp_path, url):  # its stream and consumer exist from now on
            pass
        breaker = Breaker(logging.getLogger("semtrace.test"))
        channel = AsyncChannel(url, timeout=1.0, breaker=breaker, plain_bus=True)

        async def deliver_both() -> list[Any]:
            return [await channel.deliver(_ask("aq-1", "ines")),
                    await channel.deliver(_ask("aq-2", "jonas"))]  # in the pause: the bus

        first, paused = asyncio.run(deliver_both())
        with node(pipeline, tmp_path, url) as (_, door):  # the node is back
            until_consumed(door, 2)
    assert (first.reply, first.queued) == (None, True)
    assert (paused.reply, paused.queued) == (None, True)
    assert (breaker.queued, breaker.missed) == (2, 0)
    warned = [r.getMessage() for r in caplog.records
              if getattr(r, "event", None) == "semtrace_unavailable"]
    assert warned == ["no semtrace node answered; calls go on, queued on the bus unanswered "
                      "until one does"]
    assert all(records_by_request(pipeline.store, "acme", rid) for rid in ("aq-1", "aq-2"))


def test_a_nats_connection_opened_late_in_a_request_does_not_keep_its_short_wait(
        pipeline: Any, tmp_path: Path) -> None:
    """A gateway's NATS connection is opened with what is left of the request that opens
    it (a hand-off in a pause, a request that waited for the line): a few milliseconds, and
    every later request on it waited only that long for its answer, so a healthy node's
    replies were given up and the adapter paused as if it were down. Each request now
    waits its own timeout."""
    with nats_server(tmp_path / "nats") as url, node(pipeline, tmp_path, url):
        channel = SyncChannel(url, timeout=30.0, log=logging.getLogger("semtrace.test"),
                              plain_bus=True)
        try:
            line = channel._lane(_ask("late-1", "ines"), 0).lines[0]  # main: one line
            # opened late: connected in time, its wait what was left (10 ms); a connect
            # itself that short would fail on a loaded host, so its wait is set after
            line.client = open_client(url, timeout=5.0, plain_bus=True)
            line.client.timeout = line.client._inner.timeout = 0.01
            done = channel.deliver(_ask("late-1", "ines"))
        finally:
            channel.close()
    assert done.reply is not None and done.reply.get("ok"), done
