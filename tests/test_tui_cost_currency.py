"""The threads screen's cost column says its currency, as `threads list` ('cost USD') and
the thread view ('cost 0.0063 USD') do: its header read 'cost' over '0.0040' (the fixed
store of test_tui.py; pricing.toml's currency is USD)."""

from __future__ import annotations

from typing import Any

from test_tui import (  # noqa: F401  (fixed_store, fixed_app: fixtures)
    fixed_app,
    fixed_store,
    run,
    settle,
)


def test_the_cost_column_names_its_currency(fixed_app: Any) -> None:  # noqa: F811
    async def scenario(pilot: Any) -> None:
        table = pilot.app.screen.query_one("#threads")
        assert str(table.columns["cost"].label) == "cost USD"
        await pilot.press("s", "s", "s", "s")  # from last seen: turns, topic, tokens, cost
        await settle(pilot)
        assert pilot.app.screen.sort == "cost", pilot.app.screen.sort
        assert str(table.columns["cost"].label) == "cost USD ▼"

    run(fixed_app(), scenario)
