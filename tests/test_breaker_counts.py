"""What the gateway adapters' `semtrace_available` line counts after an outage: requests
nothing took (`unrecorded`) apart from those the NATS bus keeps for a node that was down
(`queued`), each counted once. Pure logic: a clock of the test's, the client's own errors."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from appliance.cluster.client import NoAnswerYet
from appliance.errors import SemtraceError
from appliance.integrations.breaker import Breaker


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _req(rid: str) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "request_id": rid}


def test_queued_requests_are_not_counted_unrecorded_and_a_failed_hand_off_counts_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="semtrace.test")
    clock = _Clock()
    breaker = Breaker(logging.getLogger("semtrace.test"), clock, probe=1.0)
    assert breaker.ready()
    breaker.failed(_req("r1"), NoAnswerYet("no node answered"))  # the bus keeps it
    assert not breaker.ready() and breaker.bus_keeps()  # paused: handed to the bus ...
    breaker.kept()  # ... which took it
    assert not breaker.ready()  # the next one's publish fails: NATS itself went away
    breaker.failed(_req("r3"), SemtraceError("dropped"), counted=True)
    assert (breaker.missed, breaker.queued) == (1, 2)
    clock.now += 60
    assert breaker.ready()
    breaker.answered(_req("r4"), {"ok": True})
    back = [r for r in caplog.records if getattr(r, "event", None) == "semtrace_available"]
    assert [(r.unrecorded, r.queued) for r in back] == [(1, 2)]  # the old code: 3, no queued
    assert (breaker.missed, breaker.queued) == (0, 0)


def test_a_loop_call_held_past_the_timeout_is_counted_held_not_unrecorded(
        caplog: pytest.LogCaptureFixture) -> None:
    """A tool loop's call the service held past the adapter's timeout (its turn's update
    still on its way) is attached when its turn lands: the old code counted it with the
    requests nothing took over a socket (`unrecorded`) and with the bus's (`queued`) over
    NATS. It is counted apart now, the same over both (`held`)."""
    from appliance.integrations.channel import _failed

    caplog.set_level(logging.INFO, logger="semtrace.test")
    clock = _Clock()
    breaker = Breaker(logging.getLogger("semtrace.test"), clock, probe=1.0)
    loop_call = {**_req("r2"), "op": "update", "user_id": "ilse",
                 "previous_response_id": "resp_1"}
    assert breaker.ready() and breaker.ready()
    breaker.failed(_req("r1"), SemtraceError("hung"))  # the service stopped answering ...
    over_socket = _failed(breaker, loop_call, TimeoutError("timed out"))  # ... held before
    over_nats = _failed(breaker, loop_call, NoAnswerYet("no node answered"))
    told = [(d.reply, d.queued, getattr(d, "held", None)) for d in (over_socket, over_nats)]
    assert told == [(None, False, True)] * 2
    clock.now += 60
    assert breaker.ready()
    breaker.answered(_req("r3"), {"ok": True})
    back = [r for r in caplog.records if getattr(r, "event", None) == "semtrace_available"]
    assert [(r.unrecorded, r.queued, r.held) for r in back] == [(1, 0, 2)]
    assert (breaker.missed, breaker.queued, breaker.held) == (0, 0, 0)
