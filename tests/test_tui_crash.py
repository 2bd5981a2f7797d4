"""The TUI stopping on an unexpected error prints where it happened, never what it held.

A real store (Presidio, llama.cpp, SQLCipher) and the real app under Pilot; the fault
is injected where the thread screen lays out its turns, the decrypted records in hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import make_prompt
from test_tui import app_for, settle
from textual.worker import WorkerFailed

CANARY = "zorblaxian"


def test_a_tui_crash_prints_where_it_failed_and_no_prompt_record_or_user(
        runtime: Any, pipeline: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import appliance.tui.screens.thread as thread_screen

    out = pipeline.process([make_prompt(f"Why does the {CANARY} turbine keep overheating?",
                                        user="user17")])
    pseudonym = runtime.keyring.pseudonym("acme", "user17")

    def broken_layout(records: Any) -> Any:  # a rendering bug, decrypted records in hand
        raise RuntimeError(f"cannot lay out {records!r}")

    monkeypatch.setattr(thread_screen, "layout", broken_layout)
    app = app_for(runtime)

    async def scenario() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await pilot.press("enter")  # open the thread
            await settle(pilot)

    capsys.readouterr()
    with pytest.raises(WorkerFailed):  # Pilot re-raises what stopped the app
        asyncio.run(scenario())
    report = capsys.readouterr().err  # what the terminal shows once the app has exited
    assert "RuntimeError" in report and "appliance/tui/screens/thread.py" in report
    assert CANARY not in report.lower() and "turbine" not in report
    assert pseudonym not in report and str(out[0].record_id) not in report
    assert "Traceback" not in report and "locals" not in report
