"""Legal holds as a compliance officer meets them: a hold whose tenant or user id is not
written as the gateway sends it holds nothing, and every retention run, the service's log
and the retention screen say so (retention would otherwise shred what it meant to keep)."""

from __future__ import annotations

import json
import shutil
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import T0, make_prompt, write_stream
from test_spine import run_cli
from test_tui import app_for, run, settle

HOLDS = ('legal_holds = [{ tenant = "acme", user_id = "alice", reason = "case 7" }, '
         '{ tenant = "Acme", user_id = "alice", reason = "case 8" }, '
         '{ tenant = "initech", reason = "case 9" }]')


def _store_with_holds(tmp_path: Path, passphrase_file: Path,
                      holds: str) -> tuple[list[str], dict[str, str]]:
    """A store where alice wrote once in acme, under a policy dir whose retention.toml has
    `holds` (its `legal_holds = [...]` line): the CLI's data-dir arguments and env."""
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    text = (pdir / "retention.toml").read_text()
    (pdir / "retention.toml").write_text(text.replace("legal_holds = []", holds))
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *args).returncode == 0
    src = write_stream(tmp_path / "in.jsonl", [
        {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
         "text": "How do I renew the TLS certificate on the mail server?"}])
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args,
                   env=env).returncode == 0
    return args, env


def test_a_retention_run_names_the_legal_holds_that_match_no_stored_data(
        tmp_path: Path, passphrase_file: Path) -> None:
    args, env = _store_with_holds(tmp_path, passphrase_file, HOLDS)
    out = run_cli("retention", "run", "--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    idle = json.loads(out.stdout)["idle_holds"]
    assert [(h["index"], h["tenant"], h["reason"]) for h in idle] == [
        (1, "Acme", "case 8"), (2, "initech", "case 9")]
    assert [h["hold"] for h in idle] == [2, 3]  # as the warnings number them (from 1)
    assert idle[0]["user"].startswith("u_") and "alice" not in out.stdout + out.stderr
    warnings = out.stderr.strip().splitlines()
    assert len(warnings) == 2 and "Traceback" not in out.stderr
    assert warnings[0].startswith("Warning: legal hold 2 of retention.toml")
    assert "tenant initech" in warnings[1] and "matches no stored data" in warnings[1]
    runs = json.loads(run_cli("audit", "log", "--json", "--event", "retention_run",
                              *args, env=env).stdout)
    assert runs[-1]["details"]["legal_holds_matching_nothing"] == 2
    # the hold that matches keeps its user: erasure is refused
    held = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "ticket 3",
                   *args, env=env)
    assert held.returncode == 5 and "legal hold" in held.stdout


def test_the_retention_screen_flags_a_legal_hold_that_holds_nothing(
        runtime: Any, pipeline: Any) -> None:
    from appliance.config import LegalHold

    pipeline.process([make_prompt("Where is the VPN guide?", tenant="acme", user="alice")])
    retention = runtime.policies.retention.model_copy(update={"legal_holds": [
        LegalHold(tenant="acme", user_id="alice", reason="case 7"),
        LegalHold(tenant="acme", user_id="Alice", reason="case 8")]})
    runtime.policies = runtime.policies.model_copy(update={"retention": retention})

    async def scenario(pilot: Any) -> None:
        await pilot.press("R")
        await settle(pilot)
        policy = str(pilot.app.screen.query_one("#policy").render())
        assert "legal holds: 2" in policy and "1 match no stored data" in policy, policy
        # the hint names both ways a hold names its user, not only user_id
        assert "user_id or pseudonym" in policy, policy

    run(app_for(runtime, role="compliance"), scenario)


def test_a_hold_by_pseudonym_keeps_the_user_through_a_real_retention_run(
        tmp_path: Path, passphrase_file: Path) -> None:
    """The officer copies the held user's pseudonym from the tool's output into the policy,
    which then holds no raw user id; a malformed one is refused and changes nothing."""
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    template = (pdir / "retention.toml").read_text()

    def holds(entry: str) -> None:
        (pdir / "retention.toml").write_text(template.replace("legal_holds = []",
                                                              f"legal_holds = [{entry}]"))

    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *args).returncode == 0
    src = write_stream(tmp_path / "in.jsonl", [
        {"tenant": "acme", "user_id": user, "ts": "2026-03-02T09:00:00Z", "text": text}
        for user, text in (("alice", "How do I renew the TLS certificate on the mail server?"),
                           ("bob", "Which VPN client works on the new laptops?"))])
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args,
                   env=env).returncode == 0
    holds('{ tenant = "acme", user_id = "alice", reason = "case 7" }')
    preview = run_cli("retention", "run", "--dry-run", "--json", *args, env=env)
    assert preview.returncode == 0, preview.stderr
    [(tenant, alice, _day)] = json.loads(preview.stdout)["held"]
    assert tenant == "acme" and alice.startswith("u_")

    holds('{ tenant = "acme", pseudonym = "alice", reason = "case 7" }')
    bad = run_cli("retention", "run", "--json", *args, env=env)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "legal_holds.0.pseudonym" in bad.stderr and "is not a pseudonym" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "alice" not in bad.stderr
    holds(f'{{ tenant = "acme", pseudonym = "{alice}", user_id = "alice" }}')
    both = run_cli("retention", "run", "--json", *args, env=env)
    assert both.returncode != 0 and "by user_id or by pseudonym" in both.stderr

    holds(f'{{ tenant = "acme", pseudonym = "{alice}", reason = "case 7" }}')
    assert "alice" not in (pdir / "retention.toml").read_text()
    still = json.loads(run_cli("retention", "run", "--dry-run", "--json", *args,
                               env=env).stdout)
    # the refusals changed nothing
    assert len(still["due"]) == 1 and still["held"][0][1] == alice
    done = run_cli("retention", "run", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert (run["shredded"], run["records"]) == (1, 1)  # bob's day; alice's kept
    assert [h[1] for h in run["held"]] == [alice] and run["idle_holds"] == []
    report = json.loads(run_cli("audit", "retention", "--json", *args, env=env).stdout)
    holds_named = report["report"]["legal_holds"]
    assert [(h["tenant"], h["user"]) for h in holds_named] == [("acme", alice)]
    held = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "ticket 3",
                   *args, env=env)
    assert held.returncode == 5 and "legal hold" in held.stdout
    # a well-formed pseudonym of no one: the warning asks to check the pseudonym (there is
    # no user_id in the hold to compare with what the gateway sends, as it used to say)
    holds('{ tenant = "acme", pseudonym = "u_00000000000000000000", reason = "case 9" }')
    idle = run_cli("retention", "run", "--dry-run", *args, env=env)
    assert idle.returncode == 0 and "Traceback" not in idle.stderr
    assert "legal hold 1 of retention.toml (user u_00000000000000000000 of acme" in idle.stderr
    assert "its pseudonym, as `semtrace threads list --tenant T --user U`" in idle.stderr
    assert "user_id" not in idle.stderr


def test_data_a_legal_hold_keeps_past_its_limit_is_not_reported_out_of_policy(
        runtime: Any, pipeline: Any) -> None:
    """The signed report and the retention screen said 'NO' (out of policy) for data only a
    legal hold kept: an officer read a breach where the policy was obeyed."""
    from appliance.config import LegalHold
    from appliance.report import check_report, issue_report
    from appliance.tui.app import make_app

    pipeline.process([make_prompt("Reset my password please", user="alice"),
                      make_prompt("Where is the VPN guide?", tenant="globex", user="bob")])
    retention = runtime.policies.retention.model_copy(update={"legal_holds": [
        LegalHold(tenant="acme", user_id="alice", reason="case 7")]})
    runtime.policies = runtime.policies.model_copy(update={"retention": retention})
    text = issue_report(runtime.store, runtime.keyring, retention, fmt="md")
    assert check_report(text).ok
    rows = {(h["tenant"], h["class"]): h for h in json.loads(
        issue_report(runtime.store, runtime.keyring, retention, fmt="json"))["report"]["holdings"]}
    for cls in ("prompts", "vectors", "threads"):
        held = rows["acme", cls]
        assert held["within_policy"] and held["held_oldest"] is not None, held
        assert held["oldest"] is None  # nothing of acme is outside the hold
    assert not rows["globex", "prompts"]["within_policy"]  # bob's old day is still due
    assert rows["globex", "prompts"]["held_oldest"] is None
    assert "| acme | prompts | - | - | 30.0 | yes | 2026-03-02T09:00:00+00:00 |" in text

    async def scenario(pilot: Any) -> None:
        await pilot.press("R")
        await settle(pilot)
        table = pilot.app.screen.query_one("#holdings")
        within = {(str(table.get_row_at(i)[0]), table.get_row_at(i)[1]):
                  str(table.get_row_at(i)[5]) for i in range(table.row_count)}
        assert within["acme", "prompts"] == "✔ held", within
        assert within["globex", "prompts"] == "✖ NO", within

    later = T0 + timedelta(days=60)  # both days past their 30 days
    run(make_app(runtime, clock=lambda: later, refresh_seconds=3600, role="compliance"),
        scenario)


def test_the_signed_report_says_which_legal_holds_hold_nothing(
        runtime: Any, pipeline: Any) -> None:
    """The report listed a hold whose user id was misspelt ('Alice') like one that kept
    data: an auditor reading it believed that person's data was preserved."""
    from appliance.config import LegalHold
    from appliance.report import check_report, issue_report

    pipeline.process([make_prompt("Where is the VPN guide?", user="alice")])
    retention = runtime.policies.retention.model_copy(update={"legal_holds": [
        LegalHold(tenant="acme", user_id="alice", reason="case 7"),
        LegalHold(tenant="acme", user_id="Alice", reason="case 8"),
        LegalHold(tenant="initech", reason="case 9")]})
    signed = json.loads(issue_report(runtime.store, runtime.keyring, retention, fmt="json"))
    assert signed["report"]["idle_holds"] == [1, 2]
    text = issue_report(runtime.store, runtime.keyring, retention, fmt="md")
    assert check_report(text).ok
    lines = [line for line in text.splitlines() if "case " in line and line.startswith("- ")]
    assert len(lines) == 3 and "holds nothing" not in lines[0]
    assert all("(matches no stored data: it holds nothing)" in line for line in lines[1:])
    assert "Alice" not in text and "alice" not in text  # held users by pseudonym only


def test_the_retention_screen_shows_who_an_erasure_erased_within_its_column(
        runtime: Any, pipeline: Any) -> None:
    """The recent events' details are cut at the column's width; sorted by name, an erase
    showed 'buckets=…, completed_at=2026-…' and its tenant and user were out of view."""
    from appliance.audit import AuditLog
    from appliance.erasure import erase_user
    from appliance.retention import Shredder

    pipeline.process([make_prompt("Where is the VPN guide?", tenant="globex", user="bob")])
    shredder = Shredder(runtime.store, AuditLog(runtime.store.db, runtime.keyring.audit_signer(),
                                                anchor=runtime.store.keys_db))
    erase_user(shredder, runtime.policies.retention, runtime.keyring, tenant="globex",
               user_id="bob", reason="DSAR 12")
    bob = runtime.keyring.pseudonym("globex", "bob")

    async def scenario(pilot: Any) -> None:
        await pilot.press("R")
        await settle(pilot)
        table = pilot.app.screen.query_one("#events")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        [erase] = [r for r in rows if str(r[2]) == "erase"]
        shown = str(erase[3])[:50]  # what the column's 50 cells show
        assert shown.startswith(f"tenant=globex, user={bob}"), shown

    run(app_for(runtime, role="compliance"), scenario)


def test_a_hold_reason_naming_its_user_or_an_address_is_withheld_and_said(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A reason written 'litigation hold for Alice' or with counsel's e-mail address would
    stay in every signed report for good: the report and the idle-hold warning state it as
    withheld, and `serve --check` and `doctor` tell the officer to reword it, quoting
    nothing."""
    from appliance.report import check_report

    args, env = _store_with_holds(tmp_path, passphrase_file, (
        'legal_holds = [{ tenant = "acme", user_id = "alice", reason = "litigation hold for '
        'Alice" }, { tenant = "acme", reason = "case 7" }, { tenant = "initech", reason = '
        '"asked by counsel.quill@example.org" }]'))

    def leaks(said: str) -> bool:
        return "alice" in said.lower() or "quill" in said

    run = run_cli("retention", "run", "--json", *args, env=env)
    assert run.returncode == 0, run.stderr
    assert "legal hold 3 of retention.toml (tenant initech, reason '(withheld: it names the " \
        "held user or an e-mail address)') matches no stored data" in run.stderr
    assert not leaks(run.stdout + run.stderr)
    out = tmp_path / "report.md"
    made = run_cli("audit", "retention", "--out", str(out), *args, env=env)
    assert made.returncode == 0, made.stderr
    report = out.read_text()
    assert check_report(report).ok and not leaks(report) and "case 7" in report
    assert len([line for line in report.splitlines() if line.startswith("- ") and
                "(withheld: it names the held user or an e-mail address)" in line]) == 2
    check = run_cli("serve", "--check", "--json", *args, env=env)
    assert check.returncode == 0, check.stderr
    said = [w for w in json.loads(check.stdout)["warnings"] if "gives a reason" in w]
    assert [w.split(" gives")[0] for w in said] == ["Legal hold 1 of retention.toml",
                                                   "Legal hold 3 of retention.toml"]
    assert "reword it" in said[0] and not leaks(check.stdout + check.stderr)
    doctor = run_cli("doctor", "--json", "--data-dir", str(tmp_path / "data"), env=env)
    assert [w for w in json.loads(doctor.stdout)["warnings"] if "gives a reason" in w] == said


def test_the_buckets_a_hold_keeps_are_named_with_their_class_of_data(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A day's prompts and its vault originals are two buckets of one (tenant, user, day):
    `retention run` (dry run and real) says which class each kept bucket holds, in text and
    in `--json` (`held_buckets`), and keeps `held` as it was."""
    from appliance.config import policy_dir

    pdir = tmp_path / "policies"
    shutil.copytree(policy_dir(), pdir)
    text = (pdir / "retention.toml").read_text()
    (pdir / "retention.toml").write_text(text.replace(
        "legal_holds = []", 'legal_holds = [{ tenant = "acme", user_id = "alice", '
        'reason = "case 7" }]'))
    env = {"SEMTRACE_POLICY_DIR": str(pdir)}
    args = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    officer = tmp_path / "compliance-pw"
    officer.touch(mode=0o600)
    officer.write_text("compliance officer secret\n")
    assert run_cli("init", *args, "--compliance-passphrase-file", str(officer)).returncode == 0
    src = write_stream(tmp_path / "in.jsonl", [
        {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
         "text": "Please send the invoice to quimby.vexmoor@example.com by Friday."}])
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args,
                   env=env).returncode == 0
    preview = run_cli("retention", "run", "--dry-run", *args, env=env)
    assert preview.returncode == 0, preview.stderr
    assert ("2 buckets are kept by a legal hold (1 of prompts, 1 of vault originals). "
            "Nothing was shredded") in preview.stdout
    dry = json.loads(run_cli("retention", "run", "--dry-run", "--json", *args, env=env).stdout)
    ran = run_cli("retention", "run", "--json", *args, env=env)
    assert ran.returncode == 0, ran.stderr
    done = json.loads(ran.stdout)
    for report in (dry, done):
        (a, b) = report["held"]
        assert a == b and a[0] == "acme" and a[1].startswith("u_") and a[2] == "2026-03-02"
        kept = report["held_buckets"]
        assert sorted(h["class"] for h in kept) == ["prompts", "vault"]
        assert {(h["tenant"], h["user"], h["day"]) for h in kept} == {tuple(a)}
        assert len({h["bucket"] for h in kept}) == 2
    by_class = {h["class"]: h for h in dry["held_buckets"]}
    assert by_class["prompts"]["records"] == 1 and by_class["vault"]["vault_entries"] >= 1
    again = run_cli("retention", "run", *args, env=env)
    assert again.returncode == 0, again.stderr
    assert "2 buckets on legal hold (1 of prompts, 1 of vault originals)." in again.stdout


def test_a_backup_keeps_legal_holds_by_pseudonym_and_every_check_says_so(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A hold by `user_id` is a raw user id in the policy file. `serve --check` and `doctor`
    name it by position; `backup` writes its copy of retention.toml with the user by
    pseudonym (nothing of the id anywhere in the backup) and says so in one sentence; the
    copy holds what the original holds, and a restore under the original is not refused."""
    from conftest import scan_for

    from appliance.config import RetentionSettings

    args, env = _store_with_holds(tmp_path, passphrase_file, (
        'legal_holds = [{ tenant = "acme", user_id = "alice", reason = "litigation hold for '
        'Alice" }, { tenant = "initech", reason = "case 9" }, { tenant = "acme", user_id = '
        '"quimby-7731", reason = "case 7" }]'))
    byid = [f"Legal hold {n} of retention.toml names its user by user_id, a raw user id on "
            "disk outside the encrypted store" for n in (1, 3)]
    check = run_cli("serve", "--check", "--json", *args, env=env)
    doctor = run_cli("doctor", "--json", "--data-dir", str(tmp_path / "data"), env=env)
    for said in (check, doctor):
        assert said.returncode == 0, said.stderr
        warned = [w for w in json.loads(said.stdout)["warnings"] if "by user_id" in w]
        assert [w.split(":")[0] for w in warned] == byid
        assert "quimby" not in said.stdout and "alice" not in said.stdout.lower()

    dest = tmp_path / "copy"
    made = run_cli("backup", str(dest), "--json", *args, env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["holds_by_pseudonym"] == [1, 3]
    warned = made.stderr.strip().splitlines()
    copy = dest / "policies" / "retention.toml"
    assert [w.split(":")[2].strip() for w in warned] == byid
    assert all(w.startswith("semtrace: warning: ") and f"this backup's copy of the policy "
               f"({copy}) names the user by pseudonym instead" in w for w in warned)
    assert scan_for(dest, ["alice", "quimby-7731"]) == []  # the reason naming alice too
    kept = RetentionSettings.model_validate(tomllib.loads(copy.read_text()))
    assert [h.user_id for h in kept.legal_holds] == [None] * 3
    assert [h.tenant for h in kept.legal_holds] == ["acme", "initech", "acme"]
    preview = json.loads(run_cli("retention", "run", "--dry-run", "--json", *args,
                                 env=env).stdout)
    (alice,) = {h["user"] for h in preview["held_buckets"]}
    assert kept.legal_holds[0].pseudonym == alice

    # restored under the policy in use (holds by user_id): the same holds, not refused
    restored = ["--data-dir", str(tmp_path / "restored"), "--passphrase-file",
                str(passphrase_file)]
    back = run_cli("restore", str(dest), *restored, env=env)
    assert back.returncode == 0, back.stderr
    # and the copy's policies put in place hold the same buckets there
    copied = {"SEMTRACE_POLICY_DIR": str(dest / "policies")}
    again = run_cli("retention", "run", "--dry-run", "--json", *restored, env=copied)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["held_buckets"] == preview["held_buckets"]
    assert json.loads(again.stdout)["idle_holds"] == preview["idle_holds"]


def test_the_backups_copy_of_a_policy_reads_back_as_written() -> None:
    """The copy is written from the parsed file: odd tenant names and reasons (quotes,
    backslashes, non-ASCII, control characters) and nested tables read back the same."""
    from appliance.policy_copy import dumps

    doc = {"schedule_cron": "17 * * * *", "legal_holds": [
        {"tenant": 'a"c\\me.eu', "pseudonym": "u_3f9c0a17d2b4e6f8a1c5",
         "reason": "café\x7f\ttab\nline 😀"}, {"tenant": "initech", "reason": ""}],
        "default": {"prompts_days": 30, "vault_days": 7.5, "aggregates_days": 1e-05},
        "tenants": {"acme.eu": {"prompts_days": 14}, "globex": {"vault_days": 3}}}
    assert tomllib.loads(dumps(doc)) == doc
