"""`keys rotate` on a data dir the service holds: what to do, in one sentence."""

from __future__ import annotations

import json
from pathlib import Path

from test_spine import run_cli


def _store(tmp_path: Path, passphrase_file: Path) -> tuple[list[str], Path]:
    """A new data dir (its options) and a 0600 file of another passphrase to rotate to."""
    common = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *common).returncode == 0
    new = tmp_path / "new.pass"
    new.touch(mode=0o600)
    new.write_text("a different passphrase for the rotation\n")
    return common, new


def test_rotating_while_the_service_runs_says_to_stop_it_and_changes_nothing(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance.lock import DataDirLock

    data = tmp_path / "data"
    common, new = _store(tmp_path, passphrase_file)
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


def test_a_rotation_says_the_audit_key_changed_and_a_report_checked_with_the_old_one_says_why(
        tmp_path: Path, passphrase_file: Path) -> None:
    """`keys rotate` replaces the audit signing key (README, Keys and crypto-shredding), so the
    public key an auditor saved, as docs/compliance.md asks, stops vouching for new reports:
    the rotation said nothing of it, and check-report only 'not proven to come from this
    appliance'. Now the rotation names the new key, the audit log's key_rotation entry names
    both, and the refusal says a rotation may be why."""
    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *common).returncode == 0
    saved = tmp_path / "audit-key.json"
    before = run_cli("audit", "public-key", "--json", *common)
    saved.write_text(before.stdout)
    old_id = json.loads(before.stdout)["key_id"]
    new = tmp_path / "new.pass"
    new.touch(mode=0o600)
    new.write_text("a different passphrase for the rotation\n")
    rotated = run_cli("keys", "rotate", "--new-passphrase-file", str(new), *common)
    assert rotated.returncode == 0, rotated.stderr
    after = ["--data-dir", str(data), "--passphrase-file", str(new)]
    new_id = json.loads(run_cli("audit", "public-key", "--json", *after).stdout)["key_id"]
    assert new_id != old_id
    assert f"signed with a new key from now on (key {new_id})" in rotated.stdout
    assert "semtrace audit public-key" in rotated.stdout
    entries = json.loads(run_cli("audit", "log", "--json", "--all", *after).stdout)
    assert entries[-1]["event"] == "key_rotation"
    assert entries[-1]["details"]["audit_key"] == {"from": old_id, "to": new_id}
    report = tmp_path / "report.md"
    assert run_cli("audit", "retention", "--out", str(report), *after).returncode == 0
    checked = run_cli("audit", "check-report", str(report), "--public-key", str(saved))
    assert checked.returncode == 6 and "Traceback" not in checked.stderr + checked.stdout
    said = checked.stdout + checked.stderr
    assert "not proven to come from this appliance" in said
    assert "keys rotate" in said and "key_rotation entry names both keys" in said
    assert run_cli("audit", "check-report", str(report), "--data-dir", str(data),
                   "--passphrase-file", str(new)).returncode == 0


def test_a_rotation_run_from_a_script_says_how_far_it_is_and_json_stays_clean(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A rotation rewrites the whole store (the service stopped meanwhile) and said nothing
    until it was done; now it reports each file it re-encrypts, by pages, as the other long
    commands do (a line every SEMTRACE_PROGRESS_INTERVAL_S off a terminal; 0: every step)."""
    common, new = _store(tmp_path, passphrase_file)
    verified = run_cli("audit", "verify", *common)  # it said '1 entries, 1 signed checkpoints'
    assert verified.stdout.strip() == "Audit log intact: 1 entry, 1 signed checkpoint."
    rotated = run_cli("keys", "rotate", "--json", "--new-passphrase-file", str(new), *common,
                      env={"SEMTRACE_PROGRESS_INTERVAL_S": "0"})
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["rotated"] is True
    lines = rotated.stderr.splitlines()
    assert any(line.startswith("semtrace: re-wrapping the data keys") for line in lines)
    keys = [line for line in lines if line.startswith("semtrace: re-encrypting keys.db: 0 of ")]
    data_db = [line for line in lines if line.startswith("semtrace: re-encrypting semtrace.db: ")]
    assert keys and data_db, rotated.stderr
    total = keys[0].split(" of ")[1].split()[0]
    assert f" of {total} " in data_db[0]
    assert lines[-1] == f"semtrace: re-encrypted: {total} of {total} (100%)"
