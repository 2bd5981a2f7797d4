"""The history decision (pure) and the parsing of `history` at the boundary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from appliance import history
from appliance.config import CorrelationSettings
from appliance.errors import InputError
from appliance.ingest import content_digest, parse_history, parse_prompt
from appliance.link import LinkInput
from appliance.protocol import ProtocolError, parse_request
from appliance.records import Candidate, GatewayContext, HeldTurn, Link, Message

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = CorrelationSettings()


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=16).astype(np.float32)
    return v / np.linalg.norm(v)


def _cand(rid: int, thread: str, minutes: float, *, parent: int | None = None,
          seed: int | None = None, session: str | None = None) -> Candidate:
    return Candidate(record_id=rid, request_id=f"r{rid}", thread_id=thread,
                     ts=T0 + timedelta(minutes=minutes), vector=_vec(seed or rid), text="x",
                     parent_id=parent, session_key=session)


def _held(c: Candidate, digest: str, kind: str = "prompt") -> HeldTurn:
    return HeldTurn(record_id=c.record_id, request_id=c.request_id, thread_id=c.thread_id,
                    ts=c.ts, parent_id=c.parent_id, kind=kind, digest=digest)


def _query(text: str, minutes: float = 30, *, seed: int = 99,
           session: str | None = None) -> LinkInput:
    return LinkInput(ts=T0 + timedelta(minutes=minutes), vector=_vec(seed), text=text,
                     session_key=session)


def _content_says(parent: Candidate | None) -> tuple[list[int], object]:
    calls: list[int] = []

    def content() -> Link:
        calls.append(1)
        if parent is None:
            return Link(parent_id=None, thread_id=None, position="new",
                        intent="information_seeking", similarity=None, evidence={"score": 0.1})
        return Link(parent_id=parent.record_id, thread_id=parent.thread_id,
                    position="continuation", intent="information_seeking", similarity=0.2,
                    evidence={"score": 0.9})
    return calls, content


def _msgs(*pairs: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(Message(role=r, digest=d) for r, d in pairs)


def test_history_ending_at_a_held_turn_decides_whatever_the_content_linker_says() -> None:
    a1, b1 = _cand(1, "A", 0), _cand(2, "B", 1)
    a2 = _cand(3, "A", 2, parent=1)
    ctx = GatewayContext(history=_msgs(("user", "da1"), ("assistant", "x"), ("user", "da2"),
                                       ("assistant", "y")),
                         held=(_held(a1, "da1"), _held(a2, "da2")))
    calls, content = _content_says(b1)  # the texts point at the other window's thread
    link = history.decide(_query("And the other one?"), ctx, [a1, b1, a2], content, S)
    assert (link.parent_id, link.thread_id) == (3, "A")
    assert link.evidence["link_source"] == "history" and not calls
    assert link.evidence["history"]["matched"] == "user"


def test_an_edit_and_resend_branches_from_where_the_history_ends() -> None:
    a1 = _cand(1, "A", 0)
    a2 = _cand(2, "A", 1, parent=1)
    a3 = _cand(3, "A", 2, parent=2)
    ctx = GatewayContext(history=_msgs(("user", "d1"), ("assistant", "x")),
                         held=(_held(a1, "d1"),))
    link = history.decide(_query("Rewritten second question"), ctx, [a1, a2, a3],
                          _content_says(a3)[1], S)
    assert link.parent_id == 1 and link.thread_id == "A"
    assert link.evidence["history"]["branch"] is True


def test_a_repeated_prompt_is_told_apart_by_its_ancestors() -> None:
    # "yes" was said twice in one thread; the history cut back to the first "yes"
    u1 = _cand(1, "A", 0)
    yes1 = _cand(2, "A", 1, parent=1)
    u3 = _cand(3, "A", 2, parent=2)
    yes2 = _cand(4, "A", 3, parent=3)
    held = (_held(u1, "d1"), _held(yes1, "dy"), _held(yes2, "dy"))
    cut = GatewayContext(history=_msgs(("user", "d1"), ("assistant", "a"), ("user", "dy")),
                         held=held)
    full = GatewayContext(history=_msgs(("user", "d1"), ("assistant", "a"), ("user", "dy"),
                                        ("assistant", "b"), ("user", "d3"), ("assistant", "c"),
                                        ("user", "dy")), held=(*held, _held(u3, "d3")))
    q = _query("go on")
    assert history.decide(q, cut, [u1, yes1, u3, yes2], _content_says(None)[1], S).parent_id == 2
    assert history.decide(q, full, [u1, yes1, u3, yes2], _content_says(None)[1], S).parent_id == 4


def test_a_held_answer_names_its_prompt_as_parent() -> None:
    a1, a2 = _cand(1, "A", 0), _cand(2, "A", 1, parent=1)
    ctx = GatewayContext(history=_msgs(("user", "d1"), ("assistant", "ans1"), ("user", "dx"),
                                       ("assistant", "ans2")),
                         held=(_held(a1, "d1"), _held(a1, "ans1", "answer"),
                               _held(a2, "ans2", "answer")))
    link = history.decide(_query("thanks"), ctx, [a1, a2], _content_says(None)[1], S)
    assert link.parent_id == 2 and link.evidence["history"]["matched"] == "assistant"


def test_empty_history_is_a_new_conversation_unless_the_prompt_refers_back() -> None:
    a1 = _cand(1, "A", 0)
    empty = GatewayContext(history=_msgs(("system", "sys")))
    calls, content = _content_says(a1)
    fresh = history.decide(_query("Plan a week in Lisbon."), empty, [a1], content, S)
    assert fresh.parent_id is None and fresh.position == "new" and not calls
    assert fresh.evidence["link_source"] == "history"
    back = history.decide(_query("Going back to the budget we discussed"), empty, [a1],
                          content, S)
    assert back.parent_id == 1 and back.evidence["back_reference"] is True
    assert back.evidence["link_source"] == "content"
    orphan = history.decide(_query("How about tomorrow?"), empty, [a1], _content_says(a1)[1], S)
    assert orphan.parent_id is None and orphan.position == "orphaned"
    # A fresh request that carries a follow-up word ("can you explain") opens a conversation.
    opener = history.decide(_query("Can you explain how the water cycle works?"), empty, [a1],
                            _content_says(a1)[1], S)
    assert opener.parent_id is None and opener.position == "new"


def test_without_history_the_content_linker_decides_and_the_session_is_credited() -> None:
    a1 = _cand(1, "A", 0, session="s1")
    calls, content = _content_says(a1)
    link = history.decide(_query("more", session="s1"), GatewayContext(), [a1], content, S)
    assert calls and link.parent_id == 1 and link.evidence["link_source"] == "session_id"
    other = history.decide(_query("more", session="s2"), GatewayContext(), [a1], content, S)
    assert other.evidence["link_source"] == "content" and other.evidence["score"] == 0.9


def test_previous_response_id_links_to_the_turn_that_answered_with_it() -> None:
    a1, b1 = _cand(1, "A", 0), _cand(2, "B", 1)
    ctx = GatewayContext(history=(), previous_response_id=True,
                         previous=_held(a1, "resp", "response_id"))
    link = history.decide(_query("and then?"), ctx, [a1, b1], _content_says(b1)[1], S)
    assert link.parent_id == 1 and link.evidence["link_source"] == "previous_response_id"
    unknown = GatewayContext(history=(), previous_response_id=True)
    calls, content = _content_says(b1)
    fallback = history.decide(_query("and then?"), unknown, [a1, b1], content, S)
    assert calls and fallback.parent_id == 2  # not treated as a fresh conversation


def test_unmatched_history_falls_back_to_content_and_says_so() -> None:
    a1 = _cand(1, "A", 0)
    ctx = GatewayContext(history=_msgs(("user", "nothing-held")))
    link = history.decide(_query("more"), ctx, [a1], _content_says(a1)[1], S)
    assert link.parent_id == 1 and link.evidence["history"] == {"messages": 1, "matched": None}


def test_a_history_link_to_an_unlike_prompt_is_a_topic_shift() -> None:
    a1 = _cand(1, "A", 0, seed=5)
    ctx = GatewayContext(history=_msgs(("user", "d1")), held=(_held(a1, "d1"),))
    unlike = -_vec(5)  # cosine -1 to the parent
    q = LinkInput(ts=T0 + timedelta(minutes=5), vector=unlike, text="Write a haiku about tea.")
    assert history.decide(q, ctx, [a1], _content_says(None)[1], S).position == "topic_shift"
    same = LinkInput(ts=q.ts, vector=_vec(5), text="Write a haiku about tea.")
    assert history.decide(same, ctx, [a1], _content_says(None)[1], S).position == "continuation"


# ---------------------------------------------------------------- the boundary

CANARY = "CANARY-7f3e-Zebulon-Quartz"


def test_history_content_is_digested_and_dropped() -> None:
    msgs = parse_history([{"role": "user", "content": f"  my  {CANARY}\n"},
                          {"role": "assistant", "sha256": content_digest(f"my {CANARY}")}])
    assert msgs is not None and msgs[0].digest == msgs[1].digest
    assert CANARY not in repr(msgs) and all(len(m.digest) == 64 for m in msgs)
    assert parse_history(None) is None and parse_history([]) == ()


@pytest.mark.parametrize("bad", [
    "not a list", [1], [{"role": "robot", "content": "x"}], [{"role": "user"}],
    [{"role": "user", "content": "x", "sha256": "0" * 64}], [{"role": "user", "sha256": "xyz"}],
    [{"role": "user", "content": 5}], [{"role": "user", "content": "x", "name": CANARY}],
    [{"role": "user", "content": "x"}] * 1001,
])
def test_bad_history_gets_one_sentence_that_never_quotes_it(bad: object) -> None:
    with pytest.raises(InputError) as err:
        parse_history(bad)
    msg = str(err.value)
    assert msg.endswith(".") and msg.count(".") <= 2 and CANARY not in msg


def test_ingest_request_carries_digests_and_previous_response_id() -> None:
    req = parse_request({"op": "ingest", "request_id": "r1", "tenant": "t", "user_id": "u",
                         "text": "hi", "history": [{"role": "user", "content": CANARY}],
                         "previous_response_id": "resp_1",
                         "response": {"text": CANARY, "id": "resp_2"}}, max_text_chars=1000)
    assert req.prompt is not None and req.prompt.previous_response_id == "resp_1"
    assert req.prompt.response is not None
    assert req.prompt.response.digest == content_digest(CANARY)
    assert CANARY not in repr(req)
    with pytest.raises(ProtocolError) as err:
        parse_request({"op": "ingest", "request_id": "r1", "tenant": "t", "user_id": "u",
                       "text": "hi", "history": {"role": "user"}}, max_text_chars=1000)
    assert err.value.code == "bad_request"


def test_update_needs_something_to_update() -> None:
    ok = parse_request({"op": "update", "request_id": "r1", "tenant": "t",
                        "response": {"output_tokens": 5, "sha256": "A" * 64}}, max_text_chars=10)
    assert ok.response is not None and ok.response.digest == "a" * 64
    for bad in ({}, {"response": {}}, {"response": {"status": "great"}}, {"model": 3}):
        with pytest.raises(ProtocolError):
            parse_request({"op": "update", "request_id": "r1", "tenant": "t", **bad},
                          max_text_chars=10)


def test_replay_lines_take_history_too() -> None:
    p = parse_prompt({"request_id": "r", "tenant": "t", "user_id": "u", "text": "x",
                      "ts": "2026-01-01T00:00:00Z", "history": []}, max_text_chars=100)
    assert p.history == ()


def test_the_evidence_panel_says_the_gateway_history_decided() -> None:
    from appliance.records import Record
    from appliance.tui.tree import Turn
    from appliance.tui.widgets.evidence import explain

    def rec(rid: int, parent: int | None, evidence: dict[str, object]) -> Record:
        return Record(record_id=rid, request_id=f"r{rid}", tenant="t", user="u", ts=T0,
                      thread_id="th", parent_id=parent, parent_request_id=None,
                      position="continuation" if parent else "new", intent=None,
                      similarity=0.1, topic_id=None, text="x", evidence=evidence)

    first = rec(1, None, {"link_source": "history", "history": {"messages": 0}, "cues": []})
    second = rec(2, 1, {"link_source": "history", "score": 1.0, "cues": [],
                        "history": {"messages": 2, "matched": "user"}})
    assert "held no earlier turn" in explain(Turn(first, None, None, number=1)).plain
    shown = explain(Turn(second, first, 60.0, number=2, parent_number=1)).plain
    assert "Linked to #1" in shown and "message history ends at this turn" in shown
