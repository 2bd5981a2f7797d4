"""The retention screen says why data older than its limit is within policy: a bucket is a
UTC day, shredded once that whole day is past the limit, so its oldest prompt may be up to
a day older. A real store's screen read `acme  vault  7.3  7  ✔ yes` and said nothing."""

from __future__ import annotations

from typing import Any

from conftest import make_prompt
from test_tui import CLOCK, app_for, run, settle

from appliance.config import load_policies


def heading(runtime: Any) -> tuple[str, list[tuple[str, ...]]]:
    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        await pilot.press("R")
        await settle(pilot)
        table = pilot.app.screen.query_one("#holdings")
        seen["rows"] = [tuple(str(c) for c in table.get_row_at(i))
                        for i in range(table.row_count)]
        seen["head"] = str(pilot.app.screen.query_one("#holdings-head").render())

    run(app_for(runtime, role="compliance"), scenario, size=(160, 40))
    return seen["head"], seen["rows"]


def test_data_a_part_day_past_its_limit_is_said_to_be_within_policy(
        pipeline: Any, runtime: Any) -> None:
    limit = load_policies().retention.default.prompts_days
    # a prompt 0.4 days past the limit before the screen's clock (T0 is a day before it)
    back = (limit + 0.4) * 1440 - (CLOCK - make_prompt("x").ts).total_seconds() / 60
    pipeline.process([make_prompt("Where is the VPN guide?", minutes=-back)])
    head, rows = heading(runtime)
    prompts = next(r for r in rows if r[1] == "prompts")
    assert float(prompts[3]) > limit == float(prompts[4]) and "yes" in prompts[5], prompts
    assert "a day's data is shredded once that whole UTC day is past the limit: its oldest " \
           "may be up to a day older, within policy" in head, head


def test_data_within_its_limit_needs_no_word(pipeline: Any, runtime: Any) -> None:
    pipeline.process([make_prompt("Where is the VPN guide?")])
    head, rows = heading(runtime)
    assert rows and head == "Oldest data held vs limit", head
