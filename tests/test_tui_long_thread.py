"""An engineer opens a 400-turn conversation in the TUI (prompts through the real pipeline:
Presidio, llama.cpp, SQLCipher; linked by the message history each request carries)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conftest import make_prompt
from test_thread_reading import _history
from test_tui import app_for, card_ids, run, settle, shown_turns

TURNS = 400


def _on_screen(app: Any) -> str:
    """The lines the thread view draws in its viewport now (what the engineer sees)."""
    from appliance.tui.widgets.turns import TurnList

    turns = app.screen.query_one(TurnList)
    rows = turns.scrollable_content_region.height
    return "\n".join(turns.render_line(y).text for y in range(rows)).replace("\xa0", " ")


def test_a_400_turn_thread_opens_and_end_reaches_its_last_turn_and_that_turns_parent(
        runtime: Any, pipeline: Any) -> None:
    from appliance.query import get_thread

    asked: list[str] = []
    prompts = []
    for k in range(TURNS):  # one conversation: each request carries the ones before it
        text = f"Step {k}: how many orders shipped from warehouse {k % 7} in week {k}?"
        if k % 3 == 0:  # turns of different heights: some wrap over several lines
            text += " Break it down by carrier and by region, then" * (k % 5)
        prompts.append(replace(make_prompt(text, user="lee", minutes=k),
                               history=_history(*(t for q in asked[-300:] for t in (q, "ok")))))
        asked.append(text)
    out = pipeline.process(prompts)
    thread = get_thread(runtime.store, out[-1].thread_id)
    assert thread is not None and thread.turns == TURNS
    last, before = thread.records[-1], thread.records[-2]
    assert last.parent_id == before.record_id  # the history linked it to the turn before
    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        await pilot.press("enter")  # the most recent thread: this one
        while not app.screen.query("TurnList") or not card_ids(app):
            await pilot.pause(0.01)
        await pilot.press("end")  # at once: while the turns further down are being wrapped
        await settle(pilot)
        seen["end"] = _on_screen(app)
        seen["last"] = shown_turns(app)[-1]
        seen["why end"] = str(app.screen.query_one("#why-text").render())
        await pilot.resize_terminal(90, 30)  # every turn wrapped again, the last one in view
        await settle(pilot)
        seen["resized"] = _on_screen(app)
        seen["last resized"] = shown_turns(app)[-1]
        await pilot.press("home")
        await settle(pilot)
        seen["order"] = card_ids(app)
        seen["widgets"] = len(list(app.screen.query("*")))
        seen["top"] = _on_screen(app)
        await pilot.press("pagedown", "pagedown")
        await settle(pilot)
        seen["why 21"] = str(app.screen.query_one("#why-text").render())

    run(app_for(runtime), scenario, size=(120, 40))
    # every turn, in the thread's order, none missing
    assert seen["order"] == [r.record_id for r in thread.records]
    # the view stays a handful of widgets however long the thread (one a turn before)
    assert seen["widgets"] < 40, seen["widgets"]
    assert "#1 " in seen["top"] and "Step 0:" in seen["top"] and "#400" not in seen["top"]
    # End draws the last turn, and the panel explains it: its parent and its record id
    assert f"#{TURNS} " in seen["end"] and f"Step {TURNS - 1}:" in seen["end"]
    for screen, turn in (("end", "last"), ("resized", "last resized")):
        drawn = " ".join(w for w in seen[screen].split() if w not in "█▌┃")
        assert drawn.endswith(" ".join(seen[turn].split())), screen  # whole, at the foot
    assert "#1 " not in seen["end"]
    assert f"Why #{TURNS}:" in seen["why end"]
    assert f"Linked to #{TURNS - 1}" in seen["why end"]
    assert f"record {last.record_id}" in seen["why end"]
    assert "Why #21:" in seen["why 21"]  # PgDn: ten turns a press


def test_a_thread_that_runs_past_utc_midnight_dates_its_later_turns_and_its_heading(
        runtime: Any, pipeline: Any) -> None:
    """A conversation from 23:58 to 00:01 (UTC): the view was headed by its first day only
    and its later turns read '00:01:00', before the thread started on that day."""
    late = 14 * 60 + 58  # T0 is 09:00: 23:58 on T0's day
    texts = ("Which train goes from Lyon to Geneva tonight?", "Is there a later one?",
             "And on Sunday morning?")
    prompts = [replace(make_prompt(t, user="noa", minutes=late + 1.5 * k),
                       history=_history(*(x for q in texts[:k] for x in (q, "ok"))))
               for k, t in enumerate(texts)]
    pipeline.process(prompts)
    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("enter")
        await settle(pilot)
        seen["turns"] = shown_turns(pilot.app)
        seen["head"] = str(pilot.app.screen.query_one("#thread-head").render())

    run(app_for(runtime), scenario, size=(120, 40))
    assert [t.split()[1] for t in seen["turns"]] == ["23:58:00", "23:59:30", "03-03"]
    assert "03-03 00:01:00" in seen["turns"][2]
    assert "3 turns in 0:03:00 · 2026-03-02 to 2026-03-03 UTC" in seen["head"]
