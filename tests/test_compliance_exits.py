"""Exit codes and evidence a compliance officer relies on: a credential file that is
missing or open to others is bad input (exit 2, as docs/compliance.md's table says), and a
signed report already written is never replaced by the next one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import init_store, write_stream
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


def test_a_command_given_no_credential_at_all_is_bad_input(tmp_path: Path) -> None:
    """An officer who left out --passphrase-file (no terminal to ask on) read 'No passphrase
    given: ...' with exit 1, 'another error' in docs/compliance.md's table, where a missing
    or wrong credential file is 2 (bad input). It is 2 now, one sentence, nothing done."""
    args, _pw, _cpw = init_store(tmp_path)
    before = len(_entries(args))
    data = ["--data-dir", str(tmp_path / "data")]
    for command in (["audit", "verify"], ["audit", "log"], ["audit", "retention"],
                    ["erase", "--tenant", "acme", "--user", "u1", "--reason", "DSAR 7"],
                    ["retention", "run", "--dry-run"]):
        out = run_cli(*command, *data, stdin="")
        assert out.returncode == 2 and out.stdout == "", (command, out.stderr)
        assert "No passphrase given" in _one_sentence(out.stderr), command
    assert len(_entries(args)) == before  # nothing audited, nothing erased


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
    """Without a key or a data dir, check-report proves integrity only: --json said only
    'ok': true, so a script took another appliance's report (or one signed with any key)
    as this one's; it now says which key vouched for the signer, or that none did."""
    (tmp_path / "ours").mkdir()
    (tmp_path / "other").mkdir()
    ours, _pw, _cpw = init_store(tmp_path / "ours")
    other, _pw2, _cpw2 = init_store(tmp_path / "other")
    report = tmp_path / "from-another-appliance.json"
    assert run_cli("audit", "retention", "--json", "--out", str(report), *other).returncode == 0
    alone = run_cli("audit", "check-report", str(report), "--json")
    assert alone.returncode == 0
    checked = json.loads(alone.stdout)
    assert checked["ok"] is True and checked["trusted_key"] is False
    assert checked["trusted_by"] is None and "signer was NOT checked" in checked["reason"]
    here = run_cli("audit", "check-report", str(report), "--json", *ours)
    assert here.returncode == 6
    checked = json.loads(here.stdout)
    assert checked["ok"] is False and checked["trusted_key"] is True
    assert "signed by a key this appliance does not know" in checked["reason"]
    assert checked["trusted_by"] == f"a key the data dir {tmp_path / 'ours' / 'data'} has " \
        "signed with"


def test_a_report_checked_without_a_key_is_not_said_to_verify(tmp_path: Path) -> None:
    """check-report without --public-key or --data-dir printed 'The report is intact and
    its signature verifies. (no trusted key given: integrity only)': an officer read that
    the report was verified, though any key could have signed it. The one sentence now
    says what was checked and that the signer was not; with a key it names that key."""
    args, _pw, _cpw = init_store(tmp_path)
    report = tmp_path / "q3.md"
    assert run_cli("audit", "retention", "--out", str(report), *args).returncode == 0
    alone = run_cli("audit", "check-report", str(report))
    assert alone.returncode == 0 and "signature verifies" not in alone.stdout
    said = _one_sentence(alone.stdout)
    assert said.startswith("The report is intact (it matches the signature of key ")
    assert "but its signer was NOT checked: no trusted key was given (--public-key or " \
        "--data-dir)" in said
    key = tmp_path / "public.key"
    key.write_text(run_cli("audit", "public-key", *args).stdout)
    trusted = run_cli("audit", "check-report", str(report), "--public-key", str(key))
    assert trusted.returncode == 0
    assert f"intact and signed by the key in --public-key {key} (key " in trusted.stdout
    stored = run_cli("audit", "check-report", str(report), *args)
    assert stored.returncode == 0
    assert f"signed by a key the data dir {tmp_path / 'data'} has signed with" in stored.stdout


def test_check_report_refuses_a_trust_it_would_not_use(tmp_path: Path) -> None:
    """--public-key with --data-dir checked against the key file alone, and a
    --passphrase-file without --data-dir opened nothing and checked integrity only, both
    without a word: the officer's choice went unused. Each is refused in one sentence."""
    args, pw, _cpw = init_store(tmp_path)
    report = tmp_path / "q3.md"
    assert run_cli("audit", "retention", "--out", str(report), *args).returncode == 0
    key = tmp_path / "public.key"
    key.write_text(run_cli("audit", "public-key", *args).stdout)
    both = run_cli("audit", "check-report", str(report), "--public-key", str(key), *args)
    assert both.returncode == 2 and both.stdout == ""
    assert "each name the keys to trust; give one of them" in _one_sentence(both.stderr)
    lone = run_cli("audit", "check-report", str(report), "--passphrase-file", str(pw))
    assert lone.returncode == 2 and lone.stdout == ""
    assert "--passphrase-file opens a data dir's keys, but no --data-dir was given" in \
        _one_sentence(lone.stderr)


def test_the_signed_report_says_what_each_erasure_erased(tmp_path: Path) -> None:
    """The report's 'Erasure requests' read 'erase acme/u_..., completed ...' alike for an
    erasure of two records and for one that found none, with no reason: the officer proving
    a request was carried out had to open the JSON. Each line now says what was erased."""
    args, _pw, _cpw = init_store(tmp_path, compliance=False)
    rows = [{"tenant": "acme", "user_id": u, "ts": "2026-03-02T09:00:00Z",
             "text": f"How do I rotate the TLS certificate on host {i}?"}
            for i, u in enumerate(["erin", "erin", "frank"])]
    src = write_stream(tmp_path / "in.jsonl", rows)
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    done = []
    for reason in ("DSAR 1", "DSAR 2"):
        out = run_cli("erase", "--tenant", "acme", "--user", "erin", "--reason", reason,
                      "--json", *args)
        assert out.returncode == 0, out.stderr
        done.append(json.loads(out.stdout))
    assert done[0]["records"] == 2 and done[1]["records"] == 0
    report = tmp_path / "q1.md"
    assert run_cli("audit", "retention", "--out", str(report), *args).returncode == 0
    text = report.read_text()
    lines = text.split("## Erasure requests (2)\n\n")[1].split("\n\n")[0].splitlines()
    user = done[0]["user"].replace("_", "\\_")
    assert [line.split(": ", 1)[1].split(", completed ")[0] for line in lines] == [
        f"acme/{user}: erased 2 records in {done[0]['buckets']} "  # was 2 record(s) ...
        f"bucket{'' if done[0]['buckets'] == 1 else 's'} (reason DSAR 1)",
        f"acme/{user}: 0 records (none stored, or all already shredded) (reason DSAR 2)"]
    assert "intact and signed by" in run_cli("audit", "check-report", str(report),
                                             *args).stdout


def test_the_signed_report_states_the_period_it_covers(tmp_path: Path) -> None:
    """A report issued with --since counted only that period's shreds and erasures, but
    its readable part never said so (only the JSON held period_from): 'Erasure requests
    (0)' read as none ever. It states its period now, and a --since still to come (a
    report of zeros) is refused before anything is issued."""
    args, _pw, _cpw = init_store(tmp_path)
    since, whole = tmp_path / "since.md", tmp_path / "whole.md"
    assert run_cli("audit", "retention", "--since", "2026-01-01T00:00:00Z", "--out", str(since),
                   *args).returncode == 0
    assert run_cli("audit", "retention", "--out", str(whole), *args).returncode == 0
    assert "\nPeriod: from 2026-01-01T00:00:00+00:00 to the report's generation.\n" in \
        since.read_text()
    assert "\nPeriod: the whole audit log.\n" in whole.read_text()
    issued = len(_entries(args))
    future = run_cli("audit", "retention", "--since", "2999-01-01", *args)
    assert future.returncode == 2 and future.stdout == ""
    assert "--since 2999-01-01 is in the future" in _one_sentence(future.stderr)
    assert len(_entries(args)) == issued  # no report issued
