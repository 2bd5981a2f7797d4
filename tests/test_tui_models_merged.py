"""The TUI's models screen compared on a topic a refinement merged another into since the
morning: it showed that topic's morning release alone, while `semtrace stats models --topic`
adds the merged topic's own release of the day or says it is not counted; now the screen
shows the same (the fixed store of test_tui.py, its clock and releases)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from test_tui import CLOCK, app_for, build_fixed_store, run, settle

from appliance import analytics
from appliance.keys import read_key_file
from appliance.privacy import Figure, GroupFigures, Release
from appliance.releases import ReleaseCache
from appliance.runtime import open_runtime

TRAVEL = "trip museums spring"


@pytest.fixture(scope="module")
def fixed_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    return build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)


def put_topic_release(rt: Any, topic: str, threads: dict[str, float]) -> None:
    """The morning's `stats models --topic` release of `topic` (covering it alone)."""
    start, end = analytics.default_window(CLOCK)
    key = analytics.group_key("models", start, end, cost_bound=rt.policies.pricing
                              .thread_cost_bound, extra=(f"topic={topic}",))
    at = CLOCK.timestamp() - 7200
    groups = tuple(GroupFigures(m, Figure(n, 0.9, exact=False),
                                {"turns": Figure(3 * n, 20.0, exact=False)},
                                Figure(6.0, 2.5, exact=False)) for m, n in threads.items())
    ReleaseCache(rt.store.db, clock=lambda: at).put("acme", key, f"{CLOCK:%Y-%m-%d}", Release(
        groups=groups, exact=False, epsilon=1.0, k_min_users=5, released_at=at,
        covers=(topic,)))


def compared(rt: Any) -> tuple[dict[str, str], str]:
    """The compare table's thread cells by model and the status line, on the travel topic."""
    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await pilot.press("c")
        await settle(pilot)
        for _ in range(4):
            await pilot.press("p")
            await settle(pilot)
            if TRAVEL in str(app.screen.query_one("#models-head").render()):
                break
        screen = app.screen
        table = screen.query_one("#compare")
        cells = {}
        for col in list(table.columns)[1:]:
            model = str(table.columns[col].label).split(" ")[-1]
            cells[model] = str(table.get_cell("threads", col))
        seen.update(cells=cells, status=str(screen.query_one("#status").render()))

    run(app_for(rt, role="analyst"), scenario)
    return seen["cells"], seen["status"]


def test_the_models_screen_on_a_topic_merged_into_since_adds_or_names_the_merged_topic(
        fixed_store: Path, tmp_path: Path) -> None:
    copy = tmp_path / "fixed"
    shutil.copytree(fixed_store, copy)
    rt = open_runtime(copy / "data", read_key_file(copy / "key"))
    try:
        put_topic_release(rt, "tp_travel", {"gpt-4o": 10, "claude-3-5": 8})
        with rt.store.db:
            rt.store.db.execute("UPDATE topics SET merged_into = 'tp_travel', label = NULL "
                                "WHERE topic_id = 'tp_accounts'")
        cells, status = compared(rt)
        assert "not counted: tp_accounts, merged into this topic since" in status
        assert cells and all(c.startswith(("10±", "8±")) for c in cells.values()), cells

        put_topic_release(rt, "tp_accounts", {"gpt-4o": 5, "claude-3-5": 1})
        cells, status = compared(rt)
        assert "not counted" not in status
        assert sorted(c.split("±")[0] for c in cells.values()) == ["15", "9"], cells
    finally:
        rt.close()
