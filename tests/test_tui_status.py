"""What the threads screen's status line and the help screen say stays true (the fixed store
of test_tui.py, its clock).

- `[` on the first page says "no more pages that way"; after `s`, `d` or a click on a
  header (the first page of another order, where `]` works) the status line still said it.
- Help on the thread view listed "J/K Scroll why" and again "K Scroll why up".
"""

from __future__ import annotations

from typing import Any

from test_tui import (  # noqa: F401  (fixed_store, fixed_app: fixtures)
    fixed_app,
    fixed_store,
    run,
    settle,
)

from appliance.tui.screens.help import HelpScreen


def status(pilot: Any) -> str:
    return str(pilot.app.screen.query_one("#status").render())


def test_a_note_about_the_page_before_goes_with_a_new_order(
        fixed_app: Any) -> None:  # noqa: F811
    async def scenario(pilot: Any) -> None:
        for key in ("s", "d", "header"):
            await pilot.press("[")
            await settle(pilot)
            assert "no more pages that way" in status(pilot)
            if key == "header":
                await pilot.click("#threads", offset=(40, 0))  # a sortable column's header
            else:
                await pilot.press(key)
            await settle(pilot)
            assert "no more pages that way" not in status(pilot), (key, status(pilot))
            assert status(pilot).startswith("Threads 1–"), status(pilot)
        await pilot.press("f")
        pilot.app.screen.query_one("#filter").value = "since:garbage"
        await pilot.press("enter")
        await settle(pilot)
        assert "is not a time" in status(pilot)
        await pilot.press("escape", "s")  # the filter shown is the one applied before
        await settle(pilot)
        assert "is not a time" not in status(pilot), status(pilot)

    run(fixed_app(), scenario)


def test_help_names_each_key_of_the_thread_view_once(
        fixed_app: Any) -> None:  # noqa: F811
    async def scenario(pilot: Any) -> None:
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        assert isinstance(pilot.app.screen, HelpScreen)
        rows = pilot.app.screen.groups["This screen"]
        keys = [key for key, _ in rows]
        assert "J/K" in keys and "K" not in keys and "J" not in keys, rows
        named = [part for key in keys for part in (key.split("/") if len(key) > 1 else [key])]
        assert len(named) == len(set(named)), rows  # no key listed twice
        assert dict(rows)["J/K"] == "Scroll the why panel down (J) or up (K)"

    run(fixed_app(), scenario)


def test_help_explains_what_a_turn_card_shows(fixed_app: Any) -> None:  # noqa: F811
    """A thread's first turn reads `best ▰▱▱▱▱ 0.12`, a reply `+39s` and `66→396 tok`, each
    an intent such as `managing`, a call with no answer reported `· unknown`: help's legend
    explained the similarity bar and the three statuses only."""
    from rich.console import Console

    from appliance.tui.format import INTENT_LABELS, status_label

    async def scenario(pilot: Any) -> None:
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        console = Console(width=200, record=True)
        for static in pilot.app.screen.query("Static"):
            console.print(static.content)
        legend = console.export_text()
        for shown in ("best ▰", "+39s", "→", "tok", *INTENT_LABELS.values(),
                      status_label(None)):
            assert shown in legend, shown

    run(fixed_app(), scenario)
