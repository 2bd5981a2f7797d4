"""The threading engine: prompts linked into conversations by the real pipeline.

Behavioural tests run the real Presidio redactor, llama.cpp embedder, learned
linker and encrypted store (the `pipeline` fixture); unit tests cover the pure
parts (cues, intents, the vector cache, evidence) with plain lists.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from conftest import make_prompt


def _run(pipeline, *prompts):  # type: ignore[no-untyped-def]
    return [pipeline.process([p])[0] for p in prompts]


def test_weather_follow_ups_form_one_thread(pipeline) -> None:  # type: ignore[no-untyped-def]
    a, b, c = _run(pipeline,
                   make_prompt("What's the weather in Paris?", minutes=0),
                   make_prompt("How about tomorrow?", minutes=1),
                   make_prompt("Should I bring an umbrella?", minutes=2))
    assert a.parent_id is None and a.position == "new"
    assert b.thread_id == a.thread_id and b.parent_id == a.record_id
    assert c.thread_id == a.thread_id and c.parent_id == b.record_id
    assert b.position == "continuation"


def test_narrowing_request_joins_its_topic(pipeline) -> None:  # type: ignore[no-untyped-def]
    a, b = _run(pipeline, make_prompt("Tell me about machine learning", minutes=0),
                make_prompt("Focus on neural networks", minutes=1))
    assert b.thread_id == a.thread_id and b.parent_id == a.record_id


def test_identical_question_of_another_user_is_never_linked(pipeline) -> None:  # type: ignore[no-untyped-def]
    text = "How do I reset my password?"
    a, b = _run(pipeline, make_prompt(text, user="alice", minutes=0),
                make_prompt(text, user="bob", minutes=0.5))
    assert b.parent_id is None and b.thread_id != a.thread_id


def test_correction_is_error_recovery_and_joins(pipeline) -> None:  # type: ignore[no-untyped-def]
    a, _, c = _run(pipeline, make_prompt("What's the weather in Paris?", minutes=0),
                   make_prompt("How about tomorrow?", minutes=1),
                   make_prompt("Actually, I meant the Paris in Texas", minutes=2))
    assert c.intent == "error_recovery"
    assert c.thread_id == a.thread_id and c.parent_id is not None


def test_unrelated_request_in_same_session_later_is_a_new_conversation(pipeline) -> None:  # type: ignore[no-untyped-def]
    # The same chat window, a quarter of an hour later, a different task: a new
    # conversation is `new`; `topic_shift` is a change of subject inside a thread.
    a, b, c = _run(
        pipeline,
        make_prompt("What's the weather in Paris?", minutes=0, session_id="win-1"),
        make_prompt("How about tomorrow?", minutes=1, session_id="win-1"),
        make_prompt("Write a Python function that sorts a list of invoices by due date.",
                    minutes=16, session_id="win-1"))
    assert b.thread_id == a.thread_id
    assert c.parent_id is None and c.thread_id != a.thread_id
    assert c.position == "new"


def test_new_topic_after_three_days_starts_a_thread(pipeline) -> None:  # type: ignore[no-untyped-def]
    a, b = _run(pipeline, make_prompt("What's the weather in Paris?", minutes=0),
                make_prompt("Recommend a novel about the sea.", minutes=3 * 24 * 60 + 5))
    assert b.parent_id is None and b.thread_id != a.thread_id
    assert b.position == "new"


def test_evidence_holds_numbers_and_cue_names_only(pipeline) -> None:  # type: ignore[no-untyped-def]
    from appliance.link import QUERY_CUES

    _run(pipeline, make_prompt("What's the weather in Paris?", minutes=0))
    rid = _run(pipeline, make_prompt("And how about tomorrow in Paris?", minutes=1))[0].record_id
    rec = pipeline.store.records("r.id = ?", (rid,))[0]
    ev = rec.evidence
    assert ev is not None and set(ev["cues"]) <= set(QUERY_CUES)
    assert all(isinstance(v, float | int) for v in ev["features"].values())
    assert "Paris" not in repr(ev) and "tomorrow" not in repr(ev)


# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("text", "intent"), [
    ("Actually, I meant the one in Texas", "error_recovery"),
    ("That's not what I meant", "error_recovery"),
    ("Can you repeat that?", "conversation_management"),
    ("Thanks!", "conversation_management"),
    ("Write a haiku about autumn", "task_execution"),
    ("What is the capital of <LOCATION>?", "information_seeking"),
])
def test_intent_from_generic_cues(text: str, intent: str) -> None:
    from appliance.link import intent_of

    assert intent_of(text) == intent


def test_follow_up_cues_are_detected_on_redacted_text() -> None:
    from appliance.link import cue_names

    assert {"ellipsis"} <= cue_names("How about <DATE_TIME>?")
    assert {"pronoun"} <= cue_names("Why is it so expensive?")
    assert {"elaboration"} <= cue_names("Tell me more about angel rounds.")
    assert {"correction"} <= cue_names("No, the other one")
    assert "pronoun" not in cue_names("What is the tallest mountain in <LOCATION_1>?")


def _cand(i: int, vec: np.ndarray, thread: str = "t") -> object:
    from appliance.records import Candidate

    ts = datetime(2026, 3, 2, tzinfo=UTC) + timedelta(minutes=i)
    return Candidate(record_id=i, request_id=str(i), thread_id=thread, ts=ts, vector=vec,
                     text="x")


def test_vector_cache_follows_appends_and_pruning() -> None:
    from appliance.link import VectorCache

    rng = np.random.default_rng(0)
    hist = [_cand(i, rng.standard_normal(4).astype(np.float32)) for i in range(50)]
    cache = VectorCache()
    for lo, hi in [(0, 10), (0, 11), (3, 12), (3, 12), (7, 30), (0, 5), (20, 50)]:
        view = hist[lo:hi]
        got = cache.matrix(view, 0)
        assert np.array_equal(got, np.stack([c.vector for c in view]))  # type: ignore[attr-defined]
        assert np.array_equal(cache.matrix(view, 2), got[2:])


def test_empty_history_starts_a_new_thread(policies) -> None:  # type: ignore[no-untyped-def]
    from appliance.link import LinkInput, make_linker

    link = make_linker(policies.correlation)(
        LinkInput(ts=datetime(2026, 3, 2, tzinfo=UTC), vector=np.ones(384, np.float32) / 384**0.5,
                  text="What is the tallest mountain?"), [])
    assert link.parent_id is None and link.thread_id is None and link.position == "new"


def test_follow_up_with_no_antecedent_is_orphaned(policies, embedder) -> None:  # type: ignore[no-untyped-def]
    from appliance.link import LinkInput, make_linker

    vec = embedder.embed(["Why is it so expensive?"])[0][0]
    link = make_linker(policies.correlation)(
        LinkInput(ts=datetime(2026, 3, 2, tzinfo=UTC), vector=vec,
                  text="Why is it so expensive?"), [])
    assert link.parent_id is None and link.position == "orphaned"
