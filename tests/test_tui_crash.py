"""The TUI stopping on an unexpected error prints where it happened, never what it held.

A real store (Presidio, llama.cpp, SQLCipher) and the real app under Pilot; the fault
is injected where the thread screen lays out its turns, the decrypted records in hand.
"""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
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


def test_semtrace_tui_stopped_by_an_error_exits_1_with_its_report_on_the_terminal(
        runtime: Any, pipeline: Any, data_dir: Path, passphrase_file: Path) -> None:
    """`semtrace tui` on a real terminal (a pty) exited 0 after a crash, as if quit."""
    pipeline.process([make_prompt("Why does the turbine keep overheating?", user="user17")])
    runtime.close()
    code = ("import appliance.tui.screens.thread as t\n"
            "def broken(records): raise RuntimeError('layout')\n"
            "t.layout = broken\n"
            "from appliance.cli import main\n"
            f"main(['tui', '--data-dir', {str(data_dir)!r}, '--passphrase-file', "
            f"{str(passphrase_file)!r}])\n")
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=follower, stdout=follower,
                            stderr=follower, env={**os.environ, "TERM": "xterm-256color",
                                                  "COLUMNS": "100", "LINES": "30"})
    os.close(follower)
    drawn = b""
    try:
        deadline = time.monotonic() + 120
        sent = False
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                drawn += chunk
            if not sent and b"Threads" in drawn:
                time.sleep(2)  # the list loads in a worker
                os.write(leader, b"\r")  # open the first thread: its layout fails
                sent = True
            if proc.poll() is not None and not ready:
                break
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    assert proc.wait(timeout=30) == 1
    assert b"stopped on an internal error (RuntimeError)" in drawn
