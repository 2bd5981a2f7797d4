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


def test_a_rotation_given_no_new_credential_or_a_wrong_current_one_is_bad_input(
        tmp_path: Path, passphrase_file: Path) -> None:
    """No new credential exited 1 ('another error' in docs/compliance.md's table) where a bad
    option is 2; a wrong current passphrase repeated as the new one was told 'The new
    credential is the one in use', which sent the operator looking at the new file."""
    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *common).returncode == 0
    none = run_cli("keys", "rotate", *common)
    assert none.returncode == 2 and "Traceback" not in none.stderr
    assert "Give exactly one of --new-passphrase-file or --new-key-file" in none.stderr
    wrong = tmp_path / "wrong.pass"
    wrong.touch(mode=0o600)
    wrong.write_text("not the passphrase of this data dir\n")
    same = run_cli("keys", "rotate", "--data-dir", str(data), "--passphrase-file", str(wrong),
                   "--new-passphrase-file", str(wrong))
    assert same.returncode == 2 and len(same.stderr.strip().splitlines()) == 1
    assert "Wrong passphrase or key" in same.stderr and "in use" not in same.stderr
    assert json.loads(run_cli("threads", "list", "--json", *common).stdout) == []  # unchanged
