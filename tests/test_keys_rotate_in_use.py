"""`keys rotate` on a data dir the service holds: what to do, in one sentence."""

from __future__ import annotations

import json
from pathlib import Path

from test_spine import run_cli


def test_rotating_while_the_service_runs_says_to_stop_it_and_changes_nothing(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance.lock import DataDirLock

    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *common).returncode == 0
    new = tmp_path / "new.pass"
    new.touch(mode=0o600)
    new.write_text("a different passphrase for the rotation\n")
    lock = DataDirLock(data)
    lock.acquire()  # as `semtrace serve` does
    try:
        held = run_cli("keys", "rotate", "--new-passphrase-file", str(new), *common)
    finally:
        lock.release()
    # it said 'Another semtrace service is already running', odd for a command, and not
    # that the rotation must wait for a stop (an operator rotating the service's passphrase)
    assert held.returncode != 0 and "is running on this data dir" in held.stderr
    assert "stop it first (`systemctl stop semtrace`" in held.stderr
    assert "Nothing was changed." in held.stderr
    assert "Traceback" not in held.stderr and len(held.stderr.strip().splitlines()) == 1
    # the old passphrase still opens the store
    assert json.loads(run_cli("threads", "list", "--json", *common).stdout) == []
