"""A 200-user tenant, replayed through the real pipeline: the topics screen shows its
daily release's thread counts with their 95% intervals, and reading it spends nothing."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from conftest import make_prompt
from test_tui import CLOCK, app_for, run, settle, table_keys

USERS = 200
SUBJECTS = (
    ("How do I book a hotel room near the conference centre?",
     "Which hotel in the old town has a room free on Friday night?",
     "Can I change the dates of my hotel booking without paying a fee?",
     "Is breakfast included when I book this hotel room?"),
    ("How do I restrict pod privileges in our Kubernetes cluster?",
     "What network policies should we set to secure Kubernetes namespaces?",
     "How can we scan Kubernetes container images for vulnerabilities?",
     "Which Kubernetes RBAC roles are too broad for service accounts?"),
    ("May we use customer chat logs to train an AI model under GDPR?",
     "Does GDPR require consent before personal data trains a machine learning model?",
     "How do we honour a GDPR erasure request for data already used in AI training?",
     "Is pseudonymised personal data still covered by GDPR when training AI?"),
    ("Give me a recipe for a vegetarian lasagna with spinach.",
     "What can I cook for dinner with chickpeas, rice and tomatoes?",
     "How long should I bake a vegetable quiche?",
     "Suggest a quick vegan curry recipe for four people."),
    ("How do I file a car insurance claim after a minor accident?",
     "Does my car insurance cover a cracked windscreen?",
     "What documents do I need for a car insurance claim after a theft?",
     "Will a car insurance claim raise my premium next year?"),
)
THREADS_PER_USER = 3


def _tenant() -> list[Any]:
    """Each user asks about three of the five subjects, ten hours apart (three threads)."""
    prompts = []
    for u in range(USERS):
        for j in range(THREADS_PER_USER):
            subject = SUBJECTS[(u + j) % len(SUBJECTS)]
            prompts.append(make_prompt(subject[(u // len(SUBJECTS) + j) % len(subject)],
                                       user=f"person{u:03d}", minutes=600 * j + u * 0.25))
    return sorted(prompts, key=lambda p: p.ts)


def test_a_200_user_tenant_reads_topic_counts_with_intervals_and_spends_once(
        runtime: Any, pipeline: Any) -> None:
    from appliance import analytics
    from appliance.daily import make_daily
    from appliance.privacy import CI95, COUNT_SHARE
    from appliance.runtime import open_runtime

    pipeline.process(_tenant())
    # the shipped privacy policy, but each person counted among the people of one group (all
    # their threads are in one here): the thread counts' noise and intervals are the shipped
    # ones; the people count's noise is of scale 2, not 16 (at 16 the one group's 200 people
    # were drawn under 5, and the group withheld, in one release in 400,000)
    shipped = runtime.policies
    policies = shipped.model_copy(update={"privacy": shipped.privacy.model_copy(
        update={"people_bound": 1})})
    made = {o.kind: o for o in make_daily(runtime.store, policies, now=CLOCK)}
    assert made["topics"].outcome == "released"
    topics_eps = policies.privacy.epsilon_for("topics")
    assert made["topics"].epsilon == pytest.approx(topics_eps)

    def ledger() -> list[tuple[Any, ...]]:
        return runtime.store.db.execute("SELECT spent, queries FROM privacy_budget").fetchall()

    spent = ledger()
    assert spent == [(pytest.approx(topics_eps + policies.privacy.epsilon_for("models")), 2)]
    start, end = analytics.default_window(CLOCK)
    threads = analytics.load_threads(runtime.store, "acme", start, end)
    assert len({t.user for t in threads}) == USERS
    exact = Counter(t.topic for t in threads)
    # the 95% half-width the policy promises for a topic's thread count
    half = policies.privacy.contribution_bound / (topics_eps * COUNT_SHARE) * CI95
    reader = open_runtime(runtime.data_dir, keyring=runtime.keyring, readonly=True,
                          policies=policies)
    seen: dict[str, tuple[str, str]] = {}

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await pilot.press("o")
        await settle(pilot)
        head = str(app.screen.query_one("#topics-head").render())
        assert "differentially private: ± is a 95% interval" in head
        assert "released 12:00 UTC" in head  # the service's release of the day
        table = app.screen.query_one("#topics")
        for i, key in enumerate(table_keys(app, "#topics")):
            row = table.get_row_at(i)
            seen[key.partition("\0")[2]] = (str(row[2]), str(row[4]))  # threads, people
        for _ in range(2):  # refreshes and a second release request read the same release
            await pilot.press("r")
            await settle(pilot)
            await pilot.press("n")
            await settle(pilot)
        assert ledger() == spent

    try:
        run(app_for(reader, role="analyst"), scenario)
    finally:
        reader.close()
    # the pipeline here assigns no topics: one group of the 600 threads of 200 people
    assert seen, "every topic was withheld"
    for topic, (threads_cell, people_cell) in seen.items():
        value, _, ci = threads_cell.partition("±")
        assert ci == f"{half:.0f}", threads_cell  # a count with its interval, from policy
        assert "±" in people_cell  # people go through the privacy gate too
        # a real count with noise, not noise around nothing (600 threads): P(|noise| > 8 x
        # ci) = 4e-11 (within 3 x ci, as before, failed one run in 8,000)
        assert abs(float(value) - exact[topic]) <= 8 * half, (topic, threads_cell,
                                                              exact[topic])
