"""Topics a product person reads on support traffic: distinct subjects stay distinct topics,
one subject's paraphrases stay one topic (real Presidio, llama.cpp, linker, SQLCipher)."""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from support_stream import stream  # noqa: E402

from appliance.config import PrivacySettings  # noqa: E402
from appliance.records import Prompt  # noqa: E402

SUBJECTS = ["password", "api401", "refund", "shoes"]


def replay(runtime: Any, embedder: Any, redactor: Any, rows: list[dict[str, Any]], *,
           sessions: bool, **privacy: Any) -> dict[str, Counter[str]]:
    """The rows through the real pipeline (the shipped linker), refined; per subject, the
    topics of its prompts. `sessions`: the gateway sends each conversation's session id."""
    from appliance.index import VectorIndex
    from appliance.link import make_linker
    from appliance.pipeline import Pipeline
    from appliance.topics import TopicAssigner

    settings = PrivacySettings(**{**runtime.policies.privacy.model_dump(), **privacy})
    ta = TopicAssigner(runtime.store, settings)
    pipe = Pipeline(store=runtime.store, index=VectorIndex(embedder.dims),
                    keyring=runtime.keyring, redactor=redactor, embedder=embedder,
                    linker=make_linker(runtime.policies.correlation), policies=runtime.policies,
                    topics=ta)
    prompts = [Prompt(request_id=r["request_id"], tenant=r["tenant"], user_id=r["user_id"],
                      ts=datetime.fromisoformat(r["ts"].replace("Z", "+00:00")), text=r["text"],
                      session_id=r["conversation"] if sessions else None) for r in rows]
    out = []
    for s in range(0, len(prompts), 64):
        out += pipe.process(prompts[s:s + 64])
    ta.refine("acme", now=prompts[-1].ts.timestamp())
    by_subject: dict[str, Counter[str]] = defaultdict(Counter)
    for r, o in zip(rows, out, strict=True):
        by_subject[r["subject"]][ta.thread_topic("acme", o.thread_id) or ""] += 1
    return by_subject


def assert_distinct(by_subject: dict[str, Counter[str]], share: float) -> None:
    """Each subject has a topic of its own holding at least `share` of its prompts (its
    paraphrases stay together), and no two subjects share their main topic."""
    main = {s: c.most_common(1)[0] for s, c in by_subject.items()}
    for s, (_, n) in main.items():
        assert n >= share * sum(by_subject[s].values()), (s, dict(by_subject[s]))
    topics = [t for t, _ in main.values()]
    assert len(set(topics)) == len(topics), {s: dict(c) for s, c in by_subject.items()}


def test_distinct_support_subjects_are_distinct_topics(runtime: Any, embedder: Any,
                                                       redactor: Any) -> None:
    """Password resets, API 401s, refunds and shoe returns, each asked by a dozen people in
    their own words: four topics, not one big one (shipped settings; the gateway sends
    session ids, so each conversation is one thread)."""
    rows = stream(SUBJECTS, threads=12, users=24, seed=7)
    assert_distinct(replay(runtime, embedder, redactor, rows, sessions=True), 0.9)


def test_the_merge_ratio_keeps_subjects_apart_when_the_linker_joins_conversations(
        runtime: Any, embedder: Any, redactor: Any) -> None:
    """Without session ids the linker joins some of a user's consecutive conversations
    on other subjects into one thread; those threads pull two subjects' topics to a mean
    similarity just above `topic_merge_threshold` (password resets and API 401s came out
    as one topic). With `topic_merge_ratio` 0.5 two established topics also need half the
    tighter one's cohesion, and the four subjects stay four topics (a thread the linker
    joined across two subjects still has one topic, so a subject keeps a majority of its
    prompts, not all)."""
    rows = stream(SUBJECTS, threads=32, users=64, seed=7)
    assert_distinct(replay(runtime, embedder, redactor, rows, sessions=False,
                           topic_merge_ratio=0.5), 0.6)
