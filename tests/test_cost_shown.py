"""A cost reads the same whatever the noise drew, and `–` says "no cost known" only where
that is known.

A release's count of threads with a known cost (`costed`) has a noise scale of about a
thousand threads at the shipped budget: `stats topics`, `stats models`, `stats cost` and the
TUI's topics and models screens printed `cost –` (unknown) where the noise drew it at or
below zero and `cost noisy` where it drew it above, for topics alike (an 80-person tenant
replayed from the wide stream, 70 % of its calls priced: 40 of 119 topics read `–`, the rest
`noisy`), so a product person could not tell "no cost data" from "too noisy". A release now
reads `noisy` wherever it cannot tell, and says what that covers; `–` is left to views that
know it (one user's exact view), with a line saying what it means. The fixed store of
test_tui.py (SQLCipher), today's release stored in it.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_tui import build_fixed_store, run_on_copy, settle


@pytest.fixture(scope="module")
def fixed_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    return build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)


def _put_release(store: Path, now: datetime) -> None:
    """Today's topics release: two topics whose count of threads with a cost reaches zero,
    one drawn at 0 and one at 350 (scale 1,000, as shipped), and one clear of zero."""
    from appliance import analytics
    from appliance.keys import read_key_file
    from appliance.privacy import Figure, GroupFigures, Release
    from appliance.releases import ReleaseCache
    from appliance.runtime import open_runtime

    def group(key: str, costed: Figure, cost: Figure) -> GroupFigures:
        return GroupFigures(key, Figure(60.0, 0.9, False),
                            {"turns": Figure(150.0, 0.5, False), "costed": costed,
                             "cost": cost}, Figure(20.0, 0.9, False))

    start, end = analytics.default_window(now)
    rt = open_runtime(store / "data", read_key_file(store / "key"))
    try:
        groups = (group("tp_travel", Figure(0.0, 1000.0, False), Figure(0.0, 500.0, False)),
                  group("tp_accounts", Figure(350.0, 1000.0, False),
                        Figure(410.0, 500.0, False)),
                  group("tp_sql", Figure(60.0, 0.9, False), Figure(3.0, 0.05, False)))
        key = analytics.group_key("topics", start, end,
                                  cost_bound=rt.policies.pricing.thread_cost_bound)
        ReleaseCache(rt.store.db).put("acme", key, f"{now:%Y-%m-%d}", Release(
            groups=groups, exact=False, epsilon=2.0, k_min_users=5,
            released_at=now.timestamp()))
    finally:
        rt.close()


def test_a_cost_the_release_cannot_tell_reads_noisy_whatever_the_noise_drew(
        fixed_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        embedder: Any) -> None:
    from appliance.cli import main

    copy = tmp_path / "fixed"
    shutil.copytree(fixed_store, copy)
    now = datetime.now(UTC)
    _put_release(copy, now)
    main(["stats", "topics", "--data-dir", str(copy / "data"), "--key-file",
          str(copy / "key"), "--tenant", "acme"])
    text = capsys.readouterr().out
    rows: dict[str, str] = {}
    for line in text.splitlines():  # a row's continuation lines joined to it
        if line.startswith("  tp_"):
            key = line.split()[0]
        elif not line.startswith("      "):
            key = ""
        if key:
            rows[key] = rows.get(key, "") + " " + line.strip()
    # before: tp_travel read "cost –" (its count drawn at 0), tp_accounts "cost noisy"
    assert "cost noisy" in rows["tp_travel"] and "cost noisy" in rows["tp_accounts"], text
    assert "cost –" not in text, text
    assert "cost 3.0000±0.1498 USD (per thread 0.0500" in rows["tp_sql"], text
    said = " ".join(text.split())
    assert ("cost noisy also where the release cannot tell whether any thread has a known "
            "cost (a few, or none): `threads list` shows each thread's cost, – where none is "
            "known") in said, said

    seen: dict[str, str] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("o")
        await settle(pilot)
        table = pilot.app.screen.query_one("#topics")
        for topic in ("tp_travel", "tp_accounts", "tp_sql"):
            seen[topic] = str(table.get_cell(f"acme\0{topic}", "cost"))
        seen["head"] = str(pilot.app.screen.query_one("#topics-head").render())

    run_on_copy(copy, scenario, clock=lambda: now, embedder=embedder)
    # before: "–" and "noisy" for the two
    assert (seen["tp_travel"], seen["tp_accounts"]) == ("noisy", "noisy"), seen
    assert seen["tp_sql"].startswith("0.05±"), seen
    assert "cost in USD, noisy also where the release cannot tell whether any thread has " \
        "one" in " ".join(seen["head"].split()), seen["head"]


def test_one_users_view_says_what_a_cost_of_dash_means(
        fixed_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exact: carol's local llama has no price and reported no cost, so none is known."""
    from appliance.cli import main

    main(["stats", "models", "--data-dir", str(fixed_store / "data"), "--key-file",
          str(fixed_store / "key"), "--tenant", "globex", "--user", "carol", "--role",
          "compliance", "--from", "2026-02-25", "--to", "2026-03-04"])
    text = " ".join(capsys.readouterr().out.split())
    assert "llama-3-70b" in text and "cost –" in text, text
    assert ("cost –: none of these threads has a known cost (the gateway reported none and "
            "pricing.toml prices none of their models)") in text, text
    assert "cost noisy also" not in text  # an exact view has no noise to explain
