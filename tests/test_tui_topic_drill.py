"""Enter on a topic of the topics screen lists that topic's threads in the screen's window.

A product person clicked a topic whose row read "152±37 threads" for the 7 days shown and
got all 412 of its threads, of any date, with nothing saying why the two disagree. The
drill-down now applies the threads screen's `topic:`, `since:` and `until:` filters for
that window, and its heading names the window and says the row's figure is a noisy,
per-person-capped release (the fixed store of test_tui.py, its clock and releases).

The window is half-open, as the release's is: the drill-down ended at `T23:59:59` of its
last day, so a thread started in the window's last second was counted in the row and left
out of the list; one started at the midnight after it is in neither.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_tui import CLOCK, app_for, build_fixed_store, run, settle, table_keys

from appliance.keys import read_key_file
from appliance.records import Link, NewRecord, Prompt, Response
from appliance.runtime import open_runtime

IN_WINDOW = "th_0000000000000001"  # tp_accounts, 2026-03-02: inside 02-25..03-03
WINDOW_END = datetime(2026, 3, 4, tzinfo=UTC)  # the midnight after the window's last day
LAST_SECOND = "th_00000000000000a3"  # started half a second before WINDOW_END


@pytest.fixture(scope="module")
def fixed_store(tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Path:
    return build_fixed_store(tmp_path_factory.mktemp("fixed"), embedder)


def heading(app: Any) -> str:
    """The threads screen's heading as shown ('' when hidden)."""
    head = app.screen.query("#threads-head")
    return str(head.first().render()) if head and head.first().display else ""


def add_thread(rt: Any, embedder: Any, thread: str, record_id: int, ts: Any) -> None:
    """One turn of tenant acme's topic tp_accounts at `ts`, through `Store.insert`."""
    text = "How do I reset the password for <EMAIL_ADDRESS_1>?"
    vectors, _ = embedder.embed([text])
    prompt = Prompt(request_id=f"req-{thread}", tenant="acme", user_id="dave", ts=ts, text="",
                    model="gpt-4o", response=Response(input_tokens=40, output_tokens=300,
                                                      latency_ms=600.0, status="ok"))
    link = Link(parent_id=None, thread_id=thread, position="new",
                intent="information_seeking", similarity=0.1, score=0.9, evidence={})
    rt.store.insert([NewRecord(record_id=record_id, prompt=prompt,
                               user=rt.keyring.pseudonym("acme", "dave"), session_key=None,
                               link=link, thread_id=thread, text=text, vector=vectors[0],
                               model_id=embedder.model_id, topic_id="tp_accounts",
                               cost=0.004, cost_source="reported")])


def test_enter_on_a_topic_lists_its_threads_of_the_screens_window_and_says_so(
        fixed_store: Path, embedder: Any, tmp_path: Path) -> None:
    from appliance.tui.screens.threads import ThreadsScreen

    copy = tmp_path / "fixed"
    shutil.copytree(fixed_store, copy)
    rt = open_runtime(copy / "data", read_key_file(copy / "key"))
    add_thread(rt, embedder, "th_00000000000000a1", 7_000_000_000_000_001,
               CLOCK - timedelta(days=20))  # weeks before the window
    add_thread(rt, embedder, "th_00000000000000a2", 7_000_000_000_000_002,
               CLOCK + timedelta(days=2))  # after it (the screen stays open past midnight)
    add_thread(rt, embedder, LAST_SECOND, 7_000_000_000_000_003,
               WINDOW_END - timedelta(milliseconds=500))  # the window's last second
    add_thread(rt, embedder, "th_00000000000000a4", 7_000_000_000_000_004,
               WINDOW_END)  # the first instant after it
    seen: dict[str, Any] = {}

    async def scenario(pilot: Any) -> None:
        app = pilot.app
        assert {"th_00000000000000a1", "th_00000000000000a2"} <= set(
            table_keys(app, "#threads"))  # both are the topic's threads
        assert heading(app) == ""  # no drill-down, no heading
        await pilot.press("o")
        await settle(pilot)
        topics = table_keys(app, "#topics")
        app.screen.query_one("#topics").move_cursor(row=topics.index("acme\0tp_accounts"))
        row = str(app.screen.query_one("#topics").get_cell("acme\0tp_accounts", "threads"))
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, ThreadsScreen)
        seen["row"], seen["keys"] = row, table_keys(app, "#threads")
        seen["head"] = heading(app)
        seen["status"] = str(app.screen.query_one("#status").render())
        await pilot.press("f")  # a filter typed by hand is no longer the drill-down
        app.screen.query_one("#filter").value = "tenant:acme"
        await pilot.press("enter")
        await settle(pilot)
        seen["after"] = heading(app)

    try:
        run(app_for(rt, role="analyst"), scenario, size=(160, 30))
    finally:
        rt.close()
    # the old and the later threads are not listed, the window's last second is
    assert sorted(seen["keys"]) == [IN_WINDOW, LAST_SECOND], seen
    head = seen["head"]
    assert head == ("Threads of password reset link (acme) active 2026-02-25 to 2026-03-03 "
                    f"UTC, the topics screen's window, whose count ({seen['row']}) is a noisy "
                    "release capping each person's threads: the exact count may differ"), head
    assert "Threads 1–2 of 2" in seen["status"]
    assert "since:2026-02-25 until:2026-03-03" in seen["status"]
    assert seen["after"] == ""
