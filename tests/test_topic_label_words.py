"""A topic's label is made of words that say what it is about (the real pipeline).

Product people read the labels: a label that is an acknowledgement ("correct"), a count
("two"), a form of address ("sir") or a word of every topic says nothing, and one whose
threads share no better word is left unlabelled (`tp_… · unlabelled`, with the reason).
"""

from __future__ import annotations

from typing import Any

from conftest import make_prompt
from test_topics import PASSWORD, assigner, new_thread_linker, thread_topics

from appliance.topics.terms import phrase_label

# Orders whose only shared content words, once the names are redacted, are a count and
# a confirmation (as coffee orders read when the drinks' names were taken for people's).
ORDERS = [
    "Two for Olivia Bennett, is that correct?",
    "Two for Marcus Reid please, correct?",
    "Correct, two for Hannah Schmidt",
    "Two for Daniel Okafor, correct",
    "That is correct, two for Sophie Laurent",
    "Two for Lucas Moreau, yes correct",
    "correct, two for Emma Lindqvist",
]


def test_threads_sharing_only_a_confirmation_and_a_count_get_no_such_label(
        pipeline: Any, runtime: Any) -> None:
    """Seven people confirm orders for named people (the names redacted): the topic was
    labelled "correct" or "two"; it now has none, while the password topic of the same
    tenant keeps "password"."""
    from appliance.query import topic_label

    pipeline.linker = new_thread_linker
    pipeline.topics = ta = assigner(runtime)
    prompts = [make_prompt(t, user=f"barista{i}", minutes=9 * i) for i, t in enumerate(ORDERS)]
    prompts += [make_prompt(t, user=f"staff{i}", minutes=9 * i + 4)
                for i, t in enumerate(PASSWORD)]
    out = pipeline.process(prompts)
    ta.refine("acme")
    topics = thread_topics(ta, out)
    orders, password = set(topics[:len(ORDERS)]), set(topics[len(ORDERS):])
    assert len(orders) == 1 and orders != password
    label = topic_label(runtime.store, topics[0])
    assert label is None, label  # was "correct" / "two": words that say nothing
    assert "password" in (topic_label(runtime.store, topics[len(ORDERS)]) or "")


def test_acknowledgements_counts_and_forms_of_address_are_never_label_words() -> None:
    """Pure label rule: "sir" was half of a label ("global status, sir"), "two" and
    "correct" whole ones; a phrase with such a word never qualifies."""
    from appliance.topics.terms import LABEL_STOP

    assert {"correct", "two", "sir", "verify", "accurate", "believe"} <= LABEL_STOP
    counts = {"global status": (3, 3), "sir": (5, 4), "server": (3, 3)}
    background = {"global status": 3, "sir": 7, "server": 3}
    label = phrase_label(counts, background, units=8) or ""
    assert "sir" not in label.split(", ") and label.startswith("global status")
    assert phrase_label({"two": (10, 9), "correct": (9, 8)}, {"two": 86, "correct": 109},
                        units=13) is None


def test_a_word_of_most_topics_or_a_weak_phrase_is_no_label() -> None:
    """A word two or more people use in most of the tenant's topics ("time") is no label
    on its own; a best phrase that neither most of the topic's threads use nor mostly its
    threads ("information": 4 of its 16 threads, 41 others) leaves it unlabelled."""
    counts = {"time": (40, 30), "appointment": (30, 25)}
    background = {"time": 60, "appointment": 30}
    assert phrase_label(counts, background, units=60, common={"time"}) == "appointment"
    assert phrase_label({"time": (40, 30)}, background, units=60, common={"time"}) is None
    assert phrase_label({"information": (4, 4)}, {"information": 45}, units=16) is None
