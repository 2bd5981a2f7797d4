"""The topics and models screens of a tenant whose privacy budget for today is spent: they
said "No release today for globex: n makes it (spends epsilon 1 once a day)", and `n`
opened the release dialog, whose Release then failed with "budget ... is spent". Now the
status line says the budget is spent and when figures resume, and `n` opens no dialog.
Directly (the fixed store of test_tui.py: acme released today, globex not) and over the
service's query socket."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from test_query_reads import remote_app, served  # noqa: F401  (served: a fixture)
from test_tui import CLOCK, app_for, build_fixed_store, run, settle

from appliance.keys import read_key_file
from appliance.privacy import Ledger
from appliance.runtime import open_runtime
from appliance.tui.widgets.release import ReleaseDialog


@pytest.fixture(scope="module")
def fixed_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    return build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)


def spend_all(db: Any, per_day: float, tenant: str, now: datetime) -> None:
    """What other `semtrace stats` queries of the day left: nothing."""
    ledger = Ledger(db, per_day=per_day, clock=now.timestamp)
    ledger.charge(tenant, ledger.remaining(tenant))


def status_after(app: Any, screen_key: str, tenant: str) -> list[str]:
    """The screen's status line as opened, then after `n`; no dialog may open."""
    seen: list[str] = []

    async def scenario(pilot: Any) -> None:
        await pilot.press(screen_key)
        await settle(pilot)
        seen.append(str(pilot.app.screen.query_one("#status").render()))
        await pilot.press("n")
        await settle(pilot)
        assert not isinstance(pilot.app.screen, ReleaseDialog), f"n offered {tenant}'s release"
        seen.append(str(pilot.app.screen.query_one("#status").render()))

    run(app, scenario, size=(200, 30))
    return seen


def test_a_spent_budget_is_said_not_offered_on_the_topics_and_models_screens(
        fixed_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "fixed"
    shutil.copytree(fixed_store, copy)
    rt = open_runtime(copy / "data", read_key_file(copy / "key"))
    try:
        spend_all(rt.store.db, rt.policies.privacy.epsilon_per_day, "globex", CLOCK)
        for key, kind, eps in (("o", "topics", 2), ("c", "models", 1)):
            for status in status_after(app_for(rt, role="analyst"), key, "globex"):
                assert "n makes it" not in status, status
                assert (f"No release today for globex: today's privacy budget is spent "
                        f"(epsilon 0 left, a release of {kind} needs {eps:g}); figures "
                        "resume tomorrow (UTC)") in status, status
    finally:
        rt.close()


def test_a_spent_budget_is_said_over_the_query_socket_too(
        served: dict[str, Any]) -> None:  # noqa: F811
    from appliance.config import load_policies

    per_day = load_policies().privacy.epsilon_per_day  # the service's (the shipped policy)
    for tenant in ("acme", "globex"):
        spend_all(served["store"].db, per_day, tenant, CLOCK)
    # the day after the prompts: a window that holds them (one that holds none says so
    # instead, with nothing to release: test_tui.py)
    for key in ("o", "c"):
        for status in status_after(remote_app(served, "auditor", clock=lambda: CLOCK), key,
                                   "acme"):
            assert "n makes it" not in status, status
            assert "No release today for acme, globex: today's privacy budget is spent" \
                in status, status


def test_an_empty_store_says_no_tenant_has_threads_on_both_screens(runtime: Any) -> None:
    """A store nothing was sent to yet: the models screen said '0 model(s) released', read
    as a release that showed none, and `n` on either screen 'Today's release is already
    made' where no release was made, nor can be."""
    from test_tui import app_for

    for key in ("o", "c"):
        opened, after_n = status_after(app_for(runtime, role="analyst"), key, "no tenant")
        for status in (opened, after_n):
            assert status == "No tenant has threads yet: there is nothing to release.", status

    async def compare_on_a_topic(pilot: Any) -> None:  # was "today's topic release shows
        await pilot.press("c")  # none (a topic is shown when ...)"
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        status = str(pilot.app.screen.query_one("#status").render())
        assert status == "No tenant has threads yet: there is nothing to release.", status

    run(app_for(runtime, role="analyst"), compare_on_a_topic)
