"""The decorator's outbox: a user's requests in order across the turn and loop workers,
without holding other users' back. Pure logic: jobs are plain functions (the real service
is in `test_decorator_late_reply.py`)."""

from __future__ import annotations

import logging
import threading

from appliance.integrations.breaker import Breaker
from appliance.integrations.outbox import Outbox


def test_a_users_next_request_waits_for_her_held_loop_call_and_no_one_elses_does() -> None:
    breaker = Breaker(logging.getLogger("semtrace.test"))
    box = Outbox(breaker, workers=1)  # one worker for turns, its twin for loop calls
    gate, ran = threading.Event(), []
    try:
        box.submit(lambda: (gate.wait(30), ran.append("ilse's loop call"))[1],
                   box.loop_worker(0), key="ilse")
        after = box.submit(lambda: ran.append("ilse's next turn"), 0, key="ilse")
        other = box.submit(lambda: ran.append("mika's turn"), 0, key="mika")
        assert Outbox.wait(other, 30) and not after.done()  # mika is not held back
        gate.set()
        assert Outbox.wait(after, 30) and box.flush(30)
    finally:
        gate.set()
    assert ran == ["mika's turn", "ilse's loop call", "ilse's next turn"]
    # closed while a request waits for its user's earlier one: not sent, counted, no hang
    gate.clear()
    box.submit(lambda: gate.wait(30), box.loop_worker(0), key="ilse")
    late = box.submit(lambda: ran.append("never"), 0, key="ilse")
    box.close()
    gate.set()
    assert Outbox.wait(late, 30) and box.flush(30)
    assert "never" not in ran and breaker.missed == 1


def test_a_held_loop_call_keeps_only_its_own_users_next_calls_on_its_loop_worker() -> None:
    breaker = Breaker(logging.getLogger("semtrace.test"))
    box = Outbox(breaker, workers=1, loop_senders=2)  # a loop worker of two senders
    gate, ran = threading.Event(), []
    try:
        box.submit(lambda: (gate.wait(30), ran.append("ilse's loop call"))[1],
                   box.loop_worker(0), key="ilse")
        after = box.submit(lambda: ran.append("ilse's next loop call"), box.loop_worker(0),
                           key="ilse")
        other = box.submit(lambda: ran.append("mika's loop call"), box.loop_worker(0),
                           key="mika")
        assert Outbox.wait(other, 30) and not after.done()  # mika is not held back
        gate.set()
        assert Outbox.wait(after, 30) and box.flush(30)
    finally:
        gate.set()
        box.close()
    assert ran == ["mika's loop call", "ilse's loop call", "ilse's next loop call"]
