"""The search screen's redacted prompt column takes the width a terminal has: it was 60
columns whatever the terminal, so on a wide one a hit's prompt was cut at 60 characters
beside an empty half of the screen (the fixed store of test_tui.py)."""

from __future__ import annotations

from typing import Any

from test_tui import (  # noqa: F401  (fixed_store, fixed_app: fixtures)
    fixed_app,
    fixed_store,
    run,
    settle,
)


def test_a_wide_terminal_shows_a_hits_whole_prompt(fixed_app: Any) -> None:  # noqa: F811
    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("slash")
        await settle(pilot)
        pilot.app.screen.query_one("#query").value = "password reset problems"
        await pilot.press("enter")
        await settle(pilot)
        table = pilot.app.screen.query_one("#hits")
        texts = [str(table.get_row_at(i)[-1]) for i in range(table.row_count)]
        seen.update(width=table.columns["text"].width, longest=max(map(len, texts)),
                    inside=table.size.width, used=sum(
                        c.get_render_width(table) for c in table.columns.values()))
        await pilot.resize_terminal(100, 30)  # narrower: the column keeps its 60, scrolls
        await settle(pilot)
        table = pilot.app.screen.query_one("#hits")
        seen.update(narrow=table.columns["text"].width, rows=table.row_count)

    run(fixed_app("compliance"), scenario, size=(220, 30))
    assert seen["longest"] > 60  # a prompt the old column cut
    assert seen["width"] >= seen["longest"], seen
    assert seen["used"] <= seen["inside"], seen  # no horizontal scrolling on a wide screen
    assert seen["narrow"] == 60 and seen["rows"] > 0, seen
