"""The TUI's Why panel says why a turn is a topic shift, and which rule made it one: a
turn the gateway's previous_response_id linked is one by similarity and cues alone
(docs/linking.md). Real pipeline: Presidio, llama.cpp, SQLCipher; the panel by Pilot."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conftest import make_prompt

from appliance.ingest import content_digest
from appliance.records import Message, Response


def test_the_why_panel_explains_a_topic_shift_the_gateway_linked(pipeline: Any,
                                                                 runtime: Any) -> None:
    from test_tui import why_panels

    trip = make_prompt("Plan a three-day trip to Rome.", user="ugo", minutes=0,
                       request_id="t-1")
    florence = replace(make_prompt("What about Florence instead?", user="ugo", minutes=1,
                                   request_id="t-2"),
                       history=(Message(role="user", digest=content_digest(trip.text)),),
                       response=Response(status="ok", response_id="resp_florence"))
    train = replace(make_prompt("How long is the train?", user="ugo", minutes=2,
                                request_id="t-3"), previous_response_id="resp_florence")
    out = [o for batch in ([trip], [florence], [train]) for o in pipeline.process(batch)]
    assert out[2].link_source == "previous_response_id" and out[2].parent_id == out[1].record_id
    assert out[2].position == "topic_shift"  # unlike the trip, no follow-up cue
    panels = why_panels(runtime, out[0].thread_id, 3)
    assert "topic shift" in panels[2] and "decided by previous_response_id" in panels[2]
    assert "unlike the turn it continues and the thread's last turns, with no follow-up " \
           "cue" in panels[2]
    assert "the gateway's signal, not its content, keeps it in this thread" in panels[2]
    assert not any("topic shift:" in p for p in panels[:2])  # continuations say no such thing


def test_a_content_linked_topic_shift_says_it_reads_as_an_opening() -> None:
    """Pure: the panel's text for a stored content link's evidence."""
    from datetime import UTC, datetime

    from appliance.records import Record
    from appliance.tui.tree import Turn
    from appliance.tui.widgets.evidence import explain

    ts = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def rec(rid: int, parent: int | None, position: str, ev: dict[str, object]) -> Record:
        return Record(record_id=rid, request_id=f"r{rid}", tenant="t", user="u", ts=ts,
                      thread_id="th", parent_id=parent, parent_request_id=None,
                      position=position, intent=None, similarity=0.1, topic_id=None,
                      text="x", evidence=ev)

    first = rec(1, None, "new", {"link_source": "content", "scored": 0, "cues": []})
    shift = rec(2, 1, "topic_shift", {"link_source": "content", "score": 0.8,
                                      "threshold": 0.45, "opener": 0.72, "cues": []})
    shown = explain(Turn(shift, first, 60.0, number=2, parent_number=1)).plain
    assert "decided by content" in shown
    assert "with no follow-up cue, and it reads as an opening (opener 0.72)" in shown
    assert "the gateway's signal" not in shown


def test_an_orphan_with_an_empty_history_says_it_reads_like_a_follow_up(
        pipeline: Any, runtime: Any) -> None:
    """A gateway request with no earlier message whose prompt only continues something:
    the panel says why it is `orphaned` rather than `new`, as for a content decision."""
    from test_tui import why_panels

    orphan = replace(make_prompt("How about tomorrow?", user="vera", minutes=0,
                                 request_id="o-1"), history=())
    out = pipeline.process([orphan])
    assert out[0].position == "orphaned" and out[0].link_source == "history"
    panels = why_panels(runtime, out[0].thread_id, 1)
    assert "? Orphaned" in panels[0]
    assert "reads like a follow-up (cues: " in panels[0]
    assert "message history held no earlier turn (decided by history)" in panels[0]
