"""Exit codes and evidence a compliance officer relies on: a credential file that is
missing or open to others is bad input (exit 2, as docs/compliance.md's table says), and a
signed report already written is never replaced by the next one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import init_store
from test_spine import run_cli


def _entries(args: list[str]) -> list[dict[str, object]]:
    out = run_cli("audit", "log", "--json", "--all", *args)
    assert out.returncode == 0, out.stderr
    entries: list[dict[str, object]] = json.loads(out.stdout)
    return entries


def _one_sentence(err: str) -> str:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("problem", ["missing", "readable by others"])
def test_a_credential_file_that_is_missing_or_open_to_others_is_bad_input(
        tmp_path: Path, problem: str) -> None:
    args, _pw, cpw = init_store(tmp_path)
    bad = tmp_path / "officer.pass"
    if problem == "readable by others":
        bad.write_text(cpw.read_text())
        bad.chmod(0o644)
    before = len(_entries(args))
    master = run_cli("audit", "verify", "--data-dir", str(tmp_path / "data"),
                     "--passphrase-file", str(bad))
    assert master.returncode == 2 and str(bad) in _one_sentence(master.stderr)
    enrol = run_cli("compliance", "enroll", *args, "--compliance-passphrase-file", str(bad))
    assert enrol.returncode == 2 and str(bad) in _one_sentence(enrol.stderr)
    reveal = run_cli("reveal", "1", "--role", "compliance", "--reason", "ticket 4",
                     "--compliance-passphrase-file", str(bad), *args)
    assert reveal.returncode == 2 and str(bad) in _one_sentence(reveal.stderr)
    assert [e["event"] for e in _entries(args)[before:]] == ["reveal_denied"]  # audited


def test_a_signed_report_already_written_is_not_replaced(tmp_path: Path) -> None:
    args, _pw, _cpw = init_store(tmp_path)
    out = tmp_path / "report-q3.md"
    first = run_cli("audit", "retention", "--out", str(out), *args)
    assert first.returncode == 0, first.stderr
    signed = out.read_text()
    issued = len(_entries(args))
    again = run_cli("audit", "retention", "--out", str(out), *args)
    assert again.returncode == 2
    assert "already exists; it was not overwritten" in _one_sentence(again.stderr)
    assert out.read_text() == signed and len(_entries(args)) == issued  # nothing issued
    assert run_cli("audit", "check-report", str(out), *args).returncode == 0


def test_a_report_checked_as_json_says_whether_a_trusted_key_vouched_for_it(
        tmp_path: Path) -> None:
    """Without a key or a data dir, check-report proves integrity only: the text says so,
    and --json said only 'ok': true, so a script took another appliance's report (or one
    signed with any key) as this one's."""
    (tmp_path / "ours").mkdir()
    (tmp_path / "other").mkdir()
    ours, _pw, _cpw = init_store(tmp_path / "ours")
    other, _pw2, _cpw2 = init_store(tmp_path / "other")
    report = tmp_path / "from-another-appliance.json"
    assert run_cli("audit", "retention", "--json", "--out", str(report), *other).returncode == 0
    alone = run_cli("audit", "check-report", str(report), "--json")
    assert alone.returncode == 0
    assert json.loads(alone.stdout) | {"key_id": None} == {
        "ok": True, "reason": "The report is intact and its signature verifies.",
        "key_id": None, "trusted_key": False}
    text = run_cli("audit", "check-report", str(report))
    assert "(no trusted key given: integrity only)" in text.stdout
    here = run_cli("audit", "check-report", str(report), "--json", *ours)
    assert here.returncode == 6
    checked = json.loads(here.stdout)
    assert checked["ok"] is False and checked["trusted_key"] is True
    assert "signed by a key this appliance does not know" in checked["reason"]
