"""A passphrase typed at the terminal is asked for once a command. `keys rotate` and
`compliance enroll` read the master credential before opening the store and again to open
it, so an officer at a terminal was asked 'Semtrace passphrase:' twice, with no word of why
(the second reads like a refusal of the first)."""

from __future__ import annotations

import os
import pty
import select
import sys
from pathlib import Path

import pytest
from test_spine import run_cli

PASSPHRASE = "operator pass phrase one"


def _at_terminal(args: list[str]) -> tuple[int, str]:
    """Run `semtrace ARGS` on a terminal of its own, typing the passphrase at each prompt:
    its exit code and what it showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling one (getpass reads it)
        os.execv(sys.executable, [sys.executable, "-m", "appliance", *args])
    shown, answered = b"", 0
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 300)
            if not ready:  # a guard against a hang, not a timing assertion
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            while shown.count(b"Semtrace passphrase:") > answered and answered < 5:
                os.write(fd, PASSPHRASE.encode() + b"\n")
                answered += 1
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


@pytest.mark.parametrize("command", ["keys rotate", "compliance enroll"])
def test_a_passphrase_typed_at_the_terminal_is_asked_for_once(
        tmp_path: Path, command: str) -> None:
    pw, other = tmp_path / "pw", tmp_path / "other"
    for path, text in ((pw, PASSPHRASE), (other, "another pass phrase two")):
        path.touch(mode=0o600)
        path.write_text(text + "\n")
    data = ["--data-dir", str(tmp_path / "data")]
    assert run_cli("init", *data, "--passphrase-file", str(pw)).returncode == 0
    option = ("--new-passphrase-file" if command == "keys rotate"
              else "--compliance-passphrase-file")
    code, shown = _at_terminal([*command.split(), *data, option, str(other)])
    assert code == 0, shown
    assert shown.count("Semtrace passphrase:") == 1, shown
    assert "Traceback" not in shown
