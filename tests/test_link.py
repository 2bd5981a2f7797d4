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


def test_question_about_what_an_answer_described_stays_in_its_conversation(pipeline) -> None:  # type: ignore[no-untyped-def]
    # No session id: "it" has nothing to refer to in the prompt itself, so it follows the
    # recipe the user asked for a minute before (the shipped model read 0.36 and split it off).
    a, b, c = _run(pipeline, make_prompt("Suggest a vegetarian lasagne recipe", minutes=0),
                   make_prompt("Can I make it without ricotta?", minutes=1),
                   make_prompt("How long does it keep in the fridge?", minutes=2))
    assert b.thread_id == a.thread_id and b.parent_id == a.record_id
    assert c.thread_id == a.thread_id and c.parent_id is not None
    assert c.position == "continuation"


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


def test_a_reference_that_nothing_in_the_prompt_resolves_is_told_apart() -> None:
    from appliance.link import cue_names

    # "it" points back at something the prompt never names: it depends on what came before.
    for text in ("How long does it keep in the fridge?", "Can I make it without ricotta?",
                 "What are its side effects?", "Is this one cheaper?",
                 "How long can they last?"):
        assert "unresolved" in cue_names(text), text
    # The prompt names what its pronoun means, or the "it" is the weather's or a greeting's.
    for text in ("Tell me about the Eiffel tower and its history.",
                 "I bought a new laptop, how do I set it up?",
                 "Is it going to rain in <LOCATION_1> tomorrow?", "How's it going?",
                 "Is it safe to eat raw eggs?", "Hi, this is <PERSON_1>, I need a taxi.",
                 "Give me a recipe for a vegetarian lasagna."):
        assert "unresolved" not in cue_names(text), text
    # "their" or "themselves" after a plural noun binds to it; a possessive ("my sister's")
    # names a thing as a determiner's noun does ("that's", "it's" do not).
    for text in ("Do planets spin faster than their moons?", "Why do cats groom themselves?",
                 "My sister's birthday is on Friday, what could we give her?"):
        assert "unresolved" not in cue_names(text), text
    # "they" / "them" after a plural most often mean something from before
    for text in ("What are good ways to store them?", "Which songs did they record first?",
                 "No, that's not it.", "Why do they purr?"):
        assert "unresolved" in cue_names(text), text


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


def test_a_self_contained_prompt_with_an_it_or_a_this_is_new_not_orphaned(  # type: ignore[no-untyped-def]
        policies, embedder) -> None:
    """The demo showed 'orphaned' (a follow-up with nothing to follow) on prompts that open
    a conversation: the weather's "it", an "it" the prompt itself resolves, "this weekend"."""
    from appliance.link import LinkInput, make_linker

    linker = make_linker(policies.correlation)
    opening = ["Will it rain in <LOCATION_1> this weekend? I need the weather forecast.",
               "How do I reset my password? The reset link says it has expired.",
               "Is this laptop good for gaming?"]
    following = ["Why is it so expensive?", "How about tomorrow?", "Tell me more about that.",
                 "Is this one cheaper?"]
    vecs = embedder.embed(opening + following)[0]
    got = {t: linker(LinkInput(ts=datetime(2026, 3, 2, tzinfo=UTC), vector=v, text=t), []).position
           for t, v in zip(opening + following, vecs, strict=True)}
    assert got == {**dict.fromkeys(opening, "new"), **dict.fromkeys(following, "orphaned")}


OPENERS_WITH_FOLLOW_UP_WORDS = [
    "Can you explain how machine learning algorithms are trained?",
    "Can you tell me more about the health benefits of green tea?",
    "My dog has been shaking and tilting its head a lot recently. What could be wrong?",
    "How far are planets from their stars?",
    "What does it mean to be a vegan?",
    "I just bought a new car and I'm considering getting insurance. Can you explain it to me?",
    "Set a reminder for a dentist appointment at 9am on Friday, my brother will be there as well.",
    "Hi! Can I get an iced latte with oat milk? Add a splash of hazelnut too.",
]
FOLLOW_UPS_WITH_NOTHING_TO_FOLLOW = [
    "Why is it so expensive?", "How about tomorrow?", "Tell me more about that.",
    "What causes it?", "No, I meant the other one.", "Can you explain it again?",
    "And what about the price?",
]


def test_a_first_prompt_that_opens_a_conversation_is_new_and_a_bare_follow_up_is_orphaned(
        pipeline) -> None:  # type: ignore[no-untyped-def]
    """A fresh request was shown as "? orphaned" (a follow-up with nothing to follow) when it
    carried a follow-up word: "can you explain...", "...what could be wrong?", a noun before
    its pronoun ("planets ... their"). Each prompt here is a different user's first, through
    the real pipeline (Presidio, llama.cpp, the shipped linker, SQLCipher)."""
    from tests.conftest import make_prompt

    texts = OPENERS_WITH_FOLLOW_UP_WORDS + FOLLOW_UPS_WITH_NOTHING_TO_FOLLOW
    out = pipeline.process([make_prompt(t, user=f"u{k}") for k, t in enumerate(texts)])
    got = {t: o.position for t, o in zip(texts, out, strict=True)}
    assert got == {**dict.fromkeys(OPENERS_WITH_FOLLOW_UP_WORDS, "new"),
                   **dict.fromkeys(FOLLOW_UPS_WITH_NOTHING_TO_FOLLOW, "orphaned")}


def test_an_opener_after_an_unrelated_thread_hours_later_is_new(pipeline) -> None:  # type: ignore[no-untyped-def]
    """The same on a user with history: a fresh request hours after an unrelated thread
    starts a thread labelled `new`, not `orphaned`."""
    from tests.conftest import make_prompt

    for k, text in enumerate(["Can you explain the concept of 'biting the bullet'?",
                              "My dog has been acting strange lately. What could be wrong?"]):
        first, later = pipeline.process([
            make_prompt("What's the weather in Paris?", user=f"u{k}"),
            make_prompt(text, user=f"u{k}", minutes=6 * 60)])
        assert (later.thread_id != first.thread_id, later.position) == (True, "new"), text


def test_replies_to_the_assistant_and_references_are_recognised() -> None:
    from appliance.cues import ack_then_request, cue_names

    assert ack_then_request("Great, and could you also find a place to stay nearby?")
    assert not ack_then_request("Great, thanks!")
    assert "answer" in cue_names("Just for two of us.")
    assert "answer" in cue_names("Yes, the first option.")
    assert "answer" in cue_names("the cheaper one")
    assert "deictic" in cue_names("Anything cheaper?")
    assert "deictic" in cue_names("Can I stay there that day too?")
    assert "closing" in cue_names("That's all, thanks, bye!")
    assert "opening" in cue_names("Hi, I'm looking for a hotel in <LOCATION_1>.")
    # A greeting opens a conversation; "I'd like" also asks for the next thing inside one.
    assert "greeting" in cue_names("Good morning, can I get a latte?")
    assert "greeting" in cue_names("Hi, I'm looking for a hotel in <LOCATION_1>.")
    assert "greeting" not in cue_names("I'd like the cheaper one, please.")
    assert "greeting" not in cue_names("Say hi to the team for me.")
    assert not cue_names("Give me a recipe for a vegetarian lasagna.") & {
        "deictic", "answer", "closing"}


def test_opener_model_is_evaluated_from_plain_arrays_and_checks_its_inputs() -> None:
    from appliance.opener import TEXT_FEATURES, OpenerModel

    n = 4 + len(TEXT_FEATURES)
    coef = [0.0] * n
    coef[0] = 3.0  # the first embedding dimension says "opener"
    spec = {"text_features": list(TEXT_FEATURES), "mean": [0.0] * n, "scale": [1.0] * n,
            "coef": coef, "intercept": 0.0}
    model = OpenerModel(spec)
    up, down = np.array([1, 0, 0, 0], np.float32), np.array([-1, 0, 0, 0], np.float32)
    assert model.proba(up, "Hello") > 0.9 > 0.1 > model.proba(down, "Hello")
    with pytest.raises(ValueError, match="other text features"):
        OpenerModel({**spec, "text_features": ["words"]})
    with pytest.raises(ValueError, match="embedding size"):
        model.proba(np.ones(8, np.float32), "Hello")


def test_unusable_weights_file_is_a_config_error_naming_it(tmp_path, policies) -> None:  # type: ignore[no-untyped-def]
    import json

    from appliance.config import policy_dir
    from appliance.errors import ConfigError
    from appliance.link import load_model

    spec = json.loads((policy_dir() / policies.correlation.weights_file).read_text())
    spec["opener"]["text_features"] = ["words"]
    path = tmp_path / "w.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ConfigError, match="w.json"):
        load_model(policies.correlation.model_copy(update={"weights_file": str(path)}))


def test_shipped_opener_tells_a_reply_from_an_opening(policies, embedder) -> None:  # type: ignore[no-untyped-def]
    from appliance.link import load_model

    model = load_model(policies.correlation)
    assert model.opener is not None
    openers = ["Give me a recipe for a vegetarian lasagna.",
               "Hi, I need a taxi to the airport tomorrow morning."]
    replies = ["Just for two of us.", "Yes, the first one.", "Anything cheaper?",
               "Sure, go ahead."]
    vecs = embedder.embed(openers + replies)[0]
    p = [model.opener.proba(v, t) for v, t in zip(vecs, openers + replies, strict=True)]
    assert min(p[:2]) > 0.5 > max(p[2:])


def test_shipped_closer_tells_a_goodbye_from_a_turn_that_asks_for_more(policies, embedder) -> None:  # type: ignore[no-untyped-def]
    from appliance.link import load_model

    model = load_model(policies.correlation)
    assert model.closer is not None
    closers = ["Thank you, that's all I needed.", "Great, thanks a lot. Bye!"]
    others = ["What's the weather in Paris?", "Can you find me a cheaper hotel?",
              "How about tomorrow?"]
    vecs = embedder.embed(closers + others)[0]
    p = [model.closer.proba(v, t) for v, t in zip(vecs, closers + others, strict=True)]
    assert min(p[:2]) > 0.5 > max(p[2:])


def test_request_after_a_closed_conversation_starts_a_new_one(pipeline) -> None:  # type: ignore[no-untyped-def]
    a, b, c, d = _run(pipeline,
                      make_prompt("Find me the quickest route to the nearest gas station.",
                                  minutes=0),
                      make_prompt("Is there heavy traffic on the way?", minutes=1),
                      make_prompt("Thanks, that's all I needed.", minutes=2),
                      make_prompt("Set a reminder for my dentist appointment on Friday at 10am.",
                                  minutes=5))
    assert b.thread_id == a.thread_id and c.thread_id == a.thread_id
    assert d.parent_id is None and d.thread_id != a.thread_id


def test_topic_shift_is_a_change_of_subject_that_could_open_a_conversation(policies) -> None:  # type: ignore[no-untyped-def]
    from appliance.link import LinkInput
    from appliance.link.decide import _linked_position

    s = policies.correlation
    e = np.eye(4, dtype=np.float32)
    parent = _cand(1, e[0])
    ts = datetime(2026, 3, 2, 0, 5, tzinfo=UTC)

    def position(text: str, opener: float) -> str:
        q = LinkInput(ts=ts, vector=e[1], text=text)
        return _linked_position(q, [parent], parent, (0.0, opener), frozenset(), s)  # type: ignore[list-item, arg-type]

    assert position("Write a poem about the sea.", 0.9) == "topic_shift"
    assert position("Should I bring an umbrella?", 0.2) == "continuation"  # reads as a follow-up
    from appliance.cues import cue_names
    q = LinkInput(ts=ts, vector=e[1], text="Book a table there too.")
    assert _linked_position(q, [parent], parent, (0.0, 0.9),  # type: ignore[list-item, arg-type]
                            cue_names(q.text), s) == "continuation"
