"""What the screens and `stats` say about k-suppression is what the release does.

A group (topic, model) is shown when its *noisy* count of people reaches `k_min_users`;
its true count never decides. At the shipped policy (topics epsilon 2, a quarter of it to
the people count, each person counted in at most `people_bound` 8 groups: integer Laplace
noise of scale 16) one release still shows a group of 1 person 40 % of the time, of 4
people 48 %, and a group of exactly 5 only 52 %. The topics screen's head said "topics of
fewer than 5 people withheld", `stats` "groups under 5 users (noisy count) withheld", the
models screen "a model needs 5 people to be shown": each read as a promise about the true
count. They now state the rule and the chances, computed from the release's own people
figures (`privacy.shown_odds`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from test_tui import fixed_app, fixed_store, run, settle  # noqa: F401 (fixtures)

from appliance.privacy import Figure

SHIPPED_ODDS = ("a topic is shown when its noisy count of people in the window reaches 5, "
                "not its true count: with 1 person it is still shown in 40% of releases, "
                "with 4 in 48%, with 5 in only 52%")


def test_the_chances_are_the_mechanisms_own(policies: Any) -> None:
    """`shown_chance` against the integer Laplace distribution summed term by term, and
    `people_scale` against the people-count mechanism a topics release builds."""
    from appliance.analytics import GROUP_MEASURES
    from appliance.noise import CountMechanism
    from appliance.privacy import PrivacyGate, people_scale, shown_chance

    settings = policies.privacy
    scale = people_scale(settings, "topics")
    _, eps_users, _ = PrivacyGate.shares(GROUP_MEASURES, settings.epsilon_for("topics"))
    built = CountMechanism(["t"], bound=min(settings.contribution_bound,
                                            settings.people_bound), epsilon=eps_users)
    assert scale == pytest.approx(built.scale) == pytest.approx(16.0)

    def by_terms(people: int, k: int, s: float) -> float:
        weights = {z: math.exp(-abs(z) / s) for z in range(-3000, 3001)}
        return sum(w for z, w in weights.items() if people + z >= k) / sum(weights.values())

    for people, expected in ((1, 0.40), (4, 0.48), (5, 0.52)):
        got = shown_chance(people, settings.k_min_users, scale)
        assert got == pytest.approx(by_terms(people, settings.k_min_users, scale), abs=1e-9)
        assert round(got, 2) == expected


def _report(users: Figure | None) -> Any:
    from appliance import analytics

    f = Figure(10.0, 0.9, exact=False)
    rows = () if users is None else (analytics.GroupStats(
        "tp_a", "password reset", f, f, f, f, f, f, f, users=users),)
    return analytics.Report(kind="topics", tenant="acme", start=datetime(2026, 3, 1, tzinfo=UTC),
                            end=datetime(2026, 3, 8, tzinfo=UTC), exact=False, epsilon=2.0,
                            budget_remaining=2.0, k_min_users=5, rows=rows)


def test_stats_text_states_the_noisy_rule_and_its_chances(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`stats topics` over a release whose people figures have the shipped scale (16)."""
    from appliance.cli.stats.text import _print

    _print(_report(Figure(12.0, 16.0, exact=False)), "USD")
    out = " ".join(capsys.readouterr().out.split())
    assert SHIPPED_ODDS in out, out
    assert "withheld;" not in out  # was "groups under 5 users (noisy count) withheld"
    _print(_report(None), "USD")  # nothing shown: the rule, without chances to read off
    out = " ".join(capsys.readouterr().out.split())
    assert ("a topic is shown when its noisy count of people in the window reaches 5, not "
            "its true count") in out, out


def test_the_topics_screen_states_the_noisy_rule_and_its_chances(
        fixed_app: Any) -> None:  # noqa: F811 (the fixture imported above)
    """The fixed store's topics release has people figures of scale 2.5: one person's
    topic is shown in 12% of such releases, and the head says so (it said "topics of
    fewer than 5 people withheld")."""
    seen: dict[str, str] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        seen["head"] = " ".join(str(pilot.app.screen.query_one("#topics-head").render())
                                .split())

    run(fixed_app(), scenario)
    assert ("a topic is shown when its noisy count of people in the window reaches 5, not "
            "its true count: with 1 person it is still shown in 12% of releases, with 4 in "
            "40%, with 5 in only 60%") in seen["head"], seen["head"]
    assert "people withheld" not in seen["head"]
