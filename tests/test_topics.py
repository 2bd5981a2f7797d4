"""Topics: assignment with the real embedder, stable ids across refinement, labels, scopes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import make_prompt

from appliance.config import PrivacySettings
from appliance.records import Link
from appliance.topics import TopicAssigner, content_terms, ctfidf_labels, merge_groups

WEATHER = [
    "What's the weather going to be like in Paris tomorrow?",
    "Will it rain in Berlin this weekend?",
    "Show me the forecast for Madrid for the next 5 days",
    "Is it going to snow in Denver today?",
    "How hot will it be in Phoenix this afternoon?",
    "check the weather forecast for Seattle",
]
PASSWORD = [
    "How do I reset my password?",
    "I forgot my password, how can I change it?",
    "My account is locked after too many login attempts",
    "How can I recover access to my account without my password?",
    "The password reset email never arrives",
    "Can I change my login password from the mobile app?",
]


def new_thread_linker(query: Any, candidates: Any) -> Link:
    """Every prompt starts a thread: these tests do not depend on the linker."""
    return Link(parent_id=None, thread_id=None, position="new", intent="information_seeking",
                similarity=None)


@pytest.fixture
def pipeline(runtime: Any, embedder: Any, redactor: Any) -> Any:
    """The real pipeline (Presidio, llama.cpp, SQLCipher, usearch) with a trivial linker."""
    from appliance.index import VectorIndex
    from appliance.pipeline import Pipeline

    return Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                    keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                    linker=new_thread_linker, policies=runtime.policies)


def assigner(runtime: Any, **settings: Any) -> TopicAssigner:
    base = runtime.policies.privacy.model_dump()
    return TopicAssigner(runtime.store, PrivacySettings(**{**base, **settings}))


def unit(i: int, dims: int = 384) -> np.ndarray:
    v = np.zeros(dims, dtype=np.float32)
    v[i] = 1.0
    return v


def near(i: int, j: int, w: float = 0.3, dims: int = 384) -> np.ndarray:
    v = unit(i, dims) + w * unit(j, dims)
    return v / np.linalg.norm(v)


def test_content_terms_drop_placeholders_stop_words_and_courtesies() -> None:
    assert content_terms("Thanks <PERSON_1>, what's the weather in <LOCATION>?") == ["weather"]
    assert content_terms("thank you car!") == ["car"]
    assert content_terms("OK, thanks.") == []


def test_weather_prompts_from_six_users_share_one_topic(pipeline: Any, runtime: Any) -> None:
    pipeline.topics = assigner(runtime)
    prompts = []
    for i, (w, p) in enumerate(zip(WEATHER, PASSWORD, strict=True)):
        prompts += [make_prompt(w, user=f"user{i}", minutes=10 * i),
                    make_prompt(p, user=f"user{i}", minutes=10 * i + 3)]
    out = pipeline.process(prompts)
    topics = [pipeline.topics.resolve("acme", o.topic_id) for o in out]
    weather, password = set(topics[0::2]), set(topics[1::2])
    assert len(weather) == 1 and len(password) == 1 and weather != password
    stored = runtime.store.records("r.tenant = ?", ("acme",))
    assert {pipeline.topics.resolve("acme", r.topic_id) for r in stored} == weather | password
    labels = pipeline.topics.labels("acme")
    assert {"weather", "forecast"} & set(labels[topics[0]])
    assert {"password", "account"} & set(labels[topics[1]])
    assert not any(w.startswith("<") for lab in labels.values() for w in lab)


def test_small_topics_are_rebuilt_from_their_encrypted_records(pipeline: Any,
                                                               runtime: Any) -> None:
    pipeline.topics = assigner(runtime, k_min_users=50)  # nothing is big enough to persist
    out = pipeline.process([make_prompt(w, user=f"user{i}", minutes=i)
                            for i, w in enumerate(WEATHER[:4])])
    tid = pipeline.topics.resolve("acme", out[0].topic_id)
    assert runtime.store.db.execute("SELECT count(*) FROM topics WHERE centroid IS NOT NULL "
                                    "OR label IS NOT NULL").fetchone() == (0,)
    assert runtime.store.db.execute("SELECT count(*) FROM topic_terms").fetchone() == (0,)
    restarted = assigner(runtime, k_min_users=50)
    vec, _ = pipeline.embedder.embed([WEATHER[4]])
    assert restarted.assign(tenant="acme", thread_id="fresh", vector=vec[0],
                            text=WEATHER[4], synthetic=False, user="user9") == tid


def test_topic_ids_stay_valid_across_refinement_and_restart(runtime: Any) -> None:
    ta = assigner(runtime, topic_threshold=0.99, topic_refine_every=10_000,
                  topic_merge_threshold=0.8, topic_merge_cohesion=0.5, k_min_users=1)
    ids = {}
    for n, (i, j) in enumerate([(0, 1), (0, 2), (0, 3), (5, 6)]):
        for k in range(3 if n == 0 else 1):
            ids[(n, k)] = ta.assign(tenant="acme", thread_id=f"t{n}-{k}", vector=near(i, j),
                                    text="weather forecast rain", synthetic=False,
                                    user=f"u{n}{k}")
    big = ids[(0, 0)]
    assert len(set(ids.values())) == 4  # threshold 0.99: every direction is its own topic
    mapping = ta.refine("acme")
    assert set(mapping) == {ids[(1, 0)], ids[(2, 0)]} and set(mapping.values()) == {big}
    assert ta.resolve("acme", ids[(1, 0)]) == big  # the largest topic keeps its id
    assert ta.resolve("acme", ids[(3, 0)]) == ids[(3, 0)]
    # a thread of a merged topic continues under the surviving id
    assert ta.assign(tenant="acme", thread_id="t1-0", vector=near(0, 2), text="more rain",
                     synthetic=False, user="u10") == big
    again = assigner(runtime, topic_threshold=0.9)  # a restart: state from the store
    assert again.resolve("acme", ids[(2, 0)]) == big
    assert again.assign(tenant="acme", thread_id="new", vector=near(5, 6), text="sunny days",
                        synthetic=False, user="u9") == ids[(3, 0)]


def test_refining_twice_changes_nothing_more(runtime: Any) -> None:
    ta = assigner(runtime, topic_threshold=0.99, topic_merge_threshold=0.8,
                  topic_merge_cohesion=0.5)
    for n in range(4):
        ta.assign(tenant="acme", thread_id=f"t{n}", vector=near(0, n + 1), text="x words",
                  synthetic=False)
    assert len(ta.refine("acme")) == 3
    assert ta.refine("acme") == {}


def test_topics_are_per_user_unless_policy_allows_cross_user(runtime: Any) -> None:
    private = assigner(runtime, cross_user_topics={})
    a = private.assign(tenant="acme", thread_id="ta", vector=unit(0), text="weather today",
                       synthetic=False, user="alice")
    b = private.assign(tenant="acme", thread_id="tb", vector=unit(0), text="weather today",
                       synthetic=False, user="bob")
    assert a != b
    shared = assigner(runtime, cross_user_topics={"acme": True})
    c = shared.assign(tenant="acme", thread_id="tc", vector=unit(3), text="weather today",
                      synthetic=False, user="carol")
    d = shared.assign(tenant="acme", thread_id="td", vector=unit(3), text="weather today",
                      synthetic=False, user="dave")
    assert c == d


def test_synthetic_and_contentless_prompts_do_not_steer_topics(runtime: Any) -> None:
    ta = assigner(runtime)
    assert ta.assign(tenant="acme", thread_id="t", vector=unit(0), text="weather",
                     synthetic=True) is None
    first = ta.assign(tenant="acme", thread_id="t1", vector=unit(1), text="weather in <LOCATION>",
                      synthetic=False, user="u")
    # "thanks!" in a thread of its own takes the user's recent topic and moves no centroid
    assert ta.assign(tenant="acme", thread_id="t2", vector=unit(2), text="Thanks!",
                     synthetic=False, user="u") == first
    assert ta.assign(tenant="acme", thread_id="t3", vector=unit(2), text="Thanks!",
                     synthetic=False) is None
    assert first is not None
    topic = ta._topics["acme"][first]
    assert topic.n == 1 and set(topic.terms) == {"weather"}


def test_small_topics_keep_no_centroid_or_keywords_in_the_store(runtime: Any) -> None:
    ta = assigner(runtime, k_min_users=3)
    tid = ta.assign(tenant="acme", thread_id="t", vector=unit(0), text="rare keyword zebra",
                    synthetic=False, user="u1")
    db = runtime.store.db
    assert db.execute("SELECT centroid FROM topics WHERE topic_id=?", (tid,)).fetchone() == (None,)
    for i, user in enumerate(["u1", "u2", "u3"]):
        ta.assign(tenant="acme", thread_id=f"t{i}", vector=unit(0), text="zebra crossing",
                  synthetic=False, user=user)
    row = db.execute("SELECT centroid, contributors FROM topics WHERE topic_id=?",
                     (tid,)).fetchone()
    assert row[0] is not None and row[1] == 3
    terms = dict(db.execute("SELECT term, n FROM topic_terms WHERE topic_id=?", (tid,)))
    assert terms == {"zebra": 4, "crossing": 3}  # seen once ("rare", "keyword"): never stored


def test_ctfidf_prefers_distinctive_words_over_shared_ones() -> None:
    labels = ctfidf_labels({
        "a": Counter({"weather": 9, "today": 6, "forecast": 4}),
        "b": Counter({"password": 8, "today": 6, "reset": 3, "once": 1}),
    }, top=2)
    assert labels == {"a": ("weather", "forecast"), "b": ("password", "reset")}


def test_merge_groups_joins_close_topics_but_not_a_broad_one() -> None:
    tight = [near(0, 1, 0.1), near(0, 2, 0.1), near(0, 3, 0.1)]
    totals = np.vstack([v * 10 for v in tight] + [unit(9) * 10])
    groups = merge_groups(totals, np.array([10, 10, 10, 10]), similarity=0.9, cohesion=0.5)
    assert groups == [[0, 1, 2]] or sorted(map(sorted, groups)) == [[0, 1, 2]]
    # a broad topic: its centroid is close (cosine 0.78), its members are not (mean 0.4)
    broad = sum(unit(i) for i in range(20, 30)) + unit(0) * 4
    totals = np.vstack([tight[0] * 10, broad])
    assert merge_groups(totals, np.array([10, 10]), similarity=0.3, cohesion=0.5) == []
    assert merge_groups(totals, np.array([10, 10]), similarity=0.3, cohesion=0.0) == [[0, 1]]


@pytest.mark.parametrize("text", ["<PERSON_1> <LOCATION_2>", "thanks so much!", "ok."])
def test_contentless_texts_have_no_terms(text: str) -> None:
    assert content_terms(text) == []
