"""Retention, erasure, the audit log, signed reports and the reveal vault."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import make_prompt, scan_for, write_stream
from test_spine import run_cli

LATER = (datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=45)).isoformat()


def _audit(runtime):  # type: ignore[no-untyped-def]
    from appliance.audit import AuditLog

    return AuditLog(runtime.store.db, runtime.keyring.audit_signer())


def _shredder(runtime, pipeline=None):  # type: ignore[no-untyped-def]
    from appliance.retention import Shredder

    return Shredder(runtime.store, _audit(runtime), index=pipeline.index if pipeline else None)


def test_retention_shreds_old_buckets_and_a_pre_shred_copy_stays_unreadable(
        pipeline, runtime, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from appliance.retention import run_retention
    from appliance.store import DB_FILE, KEYS_FILE, Store

    old = pipeline.process([make_prompt("Draft a note to my landlord about the heating"),
                            make_prompt("Make it more polite", minutes=1)])
    recent = pipeline.process([make_prompt("What is a good sourdough hydration?",
                                           minutes=60 * 24 * 40)])
    runtime.store.checkpoint()
    whole_copy = tmp_path / "copy"
    shutil.copytree(data_dir, whole_copy)

    report = run_retention(_shredder(runtime, pipeline), runtime.policies.retention,
                           runtime.keyring, now=datetime.fromisoformat(LATER))
    assert report.shredded == 1 and report.records == 2
    assert runtime.store.records("r.id = ?", (old[0].record_id,)) == []
    assert runtime.store.records("r.id = ?", (recent[0].record_id,))[0].text is not None
    assert pipeline.index.user_keys("acme", runtime.keyring.pseudonym("acme", "alice")) == {
        recent[0].record_id}

    # The pre-shred copy of the database, opened with today's key store: unreadable.
    shutil.copy(data_dir / KEYS_FILE, whole_copy / KEYS_FILE)
    for suffix in ("-wal", "-shm"):
        (whole_copy / (KEYS_FILE + suffix)).unlink(missing_ok=True)
    copy = Store.open(whole_copy, runtime.keyring, readonly=True)
    texts = {r.record_id: r.text for r in copy.records("1=1", ())}
    copy.close()
    assert texts[old[0].record_id] is None and texts[old[1].record_id] is None
    assert texts[recent[0].record_id] is not None
    assert (whole_copy / DB_FILE).exists()


def test_retention_is_idempotent_and_finishes_an_interrupted_shred(
        pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance.retention import run_retention
    from appliance.store import day_of

    prompts = [make_prompt("Plan a garden", user="gina"), make_prompt("Which flowers?",
                                                                      user="gina", minutes=1)]
    out = pipeline.process(prompts)
    store = runtime.store
    bid = store.bucket_id("acme", runtime.keyring.pseudonym("acme", "gina"), day_of(prompts[0].ts))
    store.destroy_key(bid)  # the process was killed right after destroying the key
    rows = store.records("r.id = ?", (out[0].record_id,))
    assert rows and rows[0].text is None  # never readable once the key is destroyed
    report = run_retention(_shredder(runtime), runtime.policies.retention, runtime.keyring)
    assert report.finished_interrupted == 1
    assert store.records("r.id = ?", (out[0].record_id,)) == []
    again = run_retention(_shredder(runtime), runtime.policies.retention, runtime.keyring)
    assert again.finished_interrupted == 0 and again.shredded == 0


def test_legal_hold_suspends_shredding(pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance.config import LegalHold
    from appliance.retention import run_retention

    pipeline.process([make_prompt("Contract question", user="held-user"),
                      make_prompt("Another question", user="free-user")])
    settings = runtime.policies.retention.model_copy(update={"legal_holds": [
        LegalHold(tenant="acme", user_id="held-user", reason="case 12")]})
    report = run_retention(_shredder(runtime), settings, runtime.keyring,
                           now=datetime.fromisoformat(LATER))
    assert report.shredded == 1 and len(report.held) == 1
    users = {r.user for r in runtime.store.records("1=1", ())}
    assert users == {runtime.keyring.pseudonym("acme", "held-user")}


def test_tampering_with_or_deleting_audit_rows_is_detected(runtime) -> None:  # type: ignore[no-untyped-def]
    from appliance.audit import verify_chain

    log = _audit(runtime)
    for i in range(5):
        log.append("shred", {"bucket": i, "records": i})
    assert verify_chain(runtime.store.db).ok
    db = runtime.store.db
    db.execute("UPDATE audit SET details = ? WHERE seq = 3", (json.dumps({"bucket": 2,
                                                                          "records": 99}),))
    bad = verify_chain(db)
    assert not bad.ok and bad.first_bad_seq == 3 and "altered" in str(bad.problem)
    db.execute("UPDATE audit SET details = ? WHERE seq = 3", (json.dumps({"bucket": 1,
                                                                          "records": 1}),))
    assert verify_chain(db).ok
    db.execute("DELETE FROM audit WHERE seq = 4")
    gone = verify_chain(db)
    assert not gone.ok and gone.first_bad_seq == 4
    db.execute("DELETE FROM audit WHERE seq >= 4")
    assert not verify_chain(db).ok  # the tail's signed checkpoint names a missing entry


def _cli_dir(tmp_path: Path, passphrase_file: Path, compliance: bool = True) -> list[str]:
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    extra = []
    if compliance:
        cp = tmp_path / "compliance-pw"
        cp.touch(mode=0o600)
        cp.write_text("compliance officer secret\n")
        extra = ["--compliance-passphrase-file", str(cp)]
    assert run_cli("init", *args, *extra).returncode == 0
    return args


CANARY_STREAM = [
    {"tenant": "acme", "user_id": "canary-user-5531", "ts": "2026-03-02T09:00:00Z",
     "text": "Hi, I am Bartholomew Quagmire (@zorbly_quince42), email bart.quagmire@example.com, "
             "card 4111 1111 1111 1111, phone 212-555-0187."},
    {"tenant": "acme", "user_id": "canary-user-5531", "ts": "2026-03-02T09:01:00Z",
     "text": "My key sk-proj-Zq8Xw7Vt6Us5Rr4Qp3Oo2Nn1 stopped working, password=Tr0ub4dor&3. "
             "Ask @zorbly_quince42 about it."},
    # Look-alike forms: zero-width spaces, fullwidth digits, spaced and spelled-out separators.
    {"tenant": "acme", "user_id": "canary-user-5531", "ts": "2026-03-02T09:02:00Z",
     "text": "Use card 4539\u200b1488\u200b0343\u200b6467 or ４５３２.０１５１.１２８３.０３６６, "
             "call ２１２−５５５−０１９９, mail quill . vexmoor @ example . org or "
             "quill.vexmoor at example dot net, IBAN GB82.WEST.1234.5698.7654.32, "
             "SSN 219 - 09 - 9999, host 10 . 41 . 77 . 203."},
]
CANARIES = ["Bartholomew", "Quagmire", "bart.quagmire@example.com", "4111 1111 1111 1111",
            "zorbly_quince42",
            "212-555-0187", "sk-proj-Zq8Xw7Vt6Us5Rr4Qp3Oo2Nn1", "Tr0ub4dor&3", "canary-user-5531",
            # the look-alike forms as written, and their digits as a pattern would see them
            "4539\u200b1488", "4539148803436467", "４５３２.０１５１", "4532015112830366",
            "２１２−５５５−０１９９", "2125550199", "555-0199", "vexmoor", "GB82.WEST",
            "GB82WEST12345698765432", "219 - 09 - 9999", "219099999", "10 . 41 . 77 . 203",
            "104177203"]


def test_canaries_never_reach_disk_logs_or_temp_files(tmp_path: Path,
                                                      passphrase_file: Path) -> None:
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    args = _cli_dir(tmp_path, passphrase_file)
    src = write_stream(tmp_path / "in.jsonl", CANARY_STREAM)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    (tmp_path / "out").mkdir()
    result = run_cli("replay", str(src), "--out", str(tmp_path / "out" / "o.jsonl"), *args,
                     env={"TMPDIR": str(tmpdir)})
    assert result.returncode == 0, result.stderr
    listed = run_cli("threads", "list", "--json", *args)
    logs = result.stdout + result.stderr + listed.stdout + listed.stderr
    assert [c for c in CANARIES if c.lower() in logs.lower()] == []
    assert scan_for(tmp_path / "data", CANARIES) == []
    assert scan_for(tmpdir, CANARIES) == []
    assert scan_for(tmp_path / "out", CANARIES) == []
    rt = open_runtime(tmp_path / "data", read_passphrase_file(passphrase_file))
    try:  # the decrypted tables and texts hold placeholders only
        db = rt.store.db
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = "\n".join(repr(row) for t in tables for row in db.execute(f'SELECT * FROM "{t}"'))
        texts = "\n".join(r.text or "" for r in rt.store.records("1=1", ()))
    finally:
        rt.close()
    assert "<CREDIT_CARD_2>" in texts and "<EMAIL_ADDRESS_2>" in texts
    # a handle is an account, typed USERNAME, and keeps its placeholder within the thread
    assert texts.count("<USERNAME_1>") == 2 and "<USERNAME_2>" not in texts
    assert [c for c in CANARIES if c.lower() in (dump + texts).lower()] == []


def test_reveal_needs_the_compliance_credential_and_is_audited(tmp_path: Path,
                                                               passphrase_file: Path) -> None:
    args = _cli_dir(tmp_path, passphrase_file)
    src = write_stream(tmp_path / "in.jsonl", CANARY_STREAM[:1])
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    rid = json.loads(run_cli("threads", "list", "--json", *args).stdout)[0]["thread_id"]
    record = json.loads(run_cli("threads", "show", rid, "--json", *args).stdout)["records"][0]
    denied = run_cli("reveal", str(record["record_id"]), "--reason", "ticket 7", *args)
    assert denied.returncode == 4 and "have the 'reveal' permission" in denied.stderr
    no_cred = run_cli("reveal", str(record["record_id"]), "--reason", "ticket 7",
                      "--role", "compliance", *args)
    # left out, the credential is bad input (exit 2, as compliance.md's table gives for a
    # credential wrong or missing), not a role refused (4, as before); still audited below
    assert no_cred.returncode == 2 and "compliance credential" in no_cred.stderr
    wrong = tmp_path / "wrong-c"
    wrong.touch(mode=0o600)
    wrong.write_text("not the compliance secret\n")
    bad = run_cli("reveal", str(record["record_id"]), "--reason", "ticket 7", "--role",
                  "compliance", "--compliance-passphrase-file", str(wrong), *args)
    assert bad.returncode == 2
    ok = run_cli("reveal", str(record["record_id"]), "--reason", "ticket 7", "--role",
                 "compliance", "--compliance-passphrase-file", str(tmp_path / "compliance-pw"),
                 "--json", *args)
    assert ok.returncode == 0, ok.stderr
    originals = {p["original"] for p in json.loads(ok.stdout)}
    assert "bart.quagmire@example.com" in originals
    assert {"placeholder": "<USERNAME_1>", "original": "@zorbly_quince42"} in json.loads(ok.stdout)
    log = json.loads(run_cli("audit", "log", "--json", *args).stdout)
    events = [e["event"] for e in log]
    assert events.count("reveal_denied") == 3 and events.count("reveal") == 1
    # each names the role it acted as: the policy's default (analyst) when none was named
    assert [e["details"]["role"] for e in sorted(log, key=lambda e: e["seq"])
            if e["event"].startswith("reveal")] == ["analyst", *["compliance"] * 3]
    # each names the record's tenant, so a tenant-bound view keeps it after a shred
    assert {e["details"]["tenant"] for e in log if e["event"].startswith("reveal")} == {
        record["tenant"]}
    assert all("bart" not in json.dumps(e).lower() for e in log)


def test_erase_removes_the_user_and_the_report_is_signed(tmp_path: Path,
                                                         passphrase_file: Path) -> None:
    args = _cli_dir(tmp_path, passphrase_file, compliance=False)
    rows = [{"tenant": "acme", "user_id": u, "ts": "2026-03-02T09:00:00Z",
             "text": f"How do I rotate the TLS certificate on host {i}?"}
            for i, u in enumerate(["erin", "erin", "frank"])]
    src = write_stream(tmp_path / "in.jsonl", rows)
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    before = json.loads(run_cli("search", "TLS certificate rotation", "--json", *args).stdout)
    assert len(before) == 3
    erased = run_cli("erase", "--tenant", "acme", "--user", "erin", "--reason", "GDPR request",
                     "--json", *args)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["records"] == 2
    after = json.loads(run_cli("search", "TLS certificate rotation", "--json", *args).stdout)
    assert len(after) == 1

    for fmt in ("md", "json", "html"):
        out = tmp_path / f"report.{fmt}"
        made = run_cli("audit", "retention", "--format", fmt, "--out", str(out), *args)
        assert made.returncode == 0, made.stderr
        assert run_cli("audit", "check-report", str(out)).returncode == 0
        assert run_cli("audit", "check-report", str(out), *args).returncode == 0
        data = bytearray(out.read_bytes())
        pos = data.find(b"erasure") if fmt != "json" else data.find(b"GDPR request")
        data[pos] ^= 0x01  # one changed byte
        out.write_bytes(bytes(data))
        assert run_cli("audit", "check-report", str(out)).returncode == 6
    verify = run_cli("audit", "verify", "--json", *args)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
    # --json, as every command that prints data takes it: the signed JSON report on stdout
    printed = run_cli("audit", "retention", "--json", *args)
    assert printed.returncode == 0, printed.stderr
    assert "GDPR request" in json.dumps(json.loads(printed.stdout))
    both = run_cli("audit", "retention", "--json", "--format", "html", *args)
    assert both.returncode != 0 and "two formats" in both.stderr
    assert "Traceback" not in both.stderr and not both.stdout


def test_a_report_signed_by_another_appliance_is_refused(tmp_path: Path,
                                                         passphrase_file: Path) -> None:
    a = _cli_dir(tmp_path / "a", passphrase_file, compliance=False)
    b = _cli_dir(tmp_path / "b", passphrase_file, compliance=False)
    out = tmp_path / "r.json"
    assert run_cli("audit", "retention", "--format", "json", "--out", str(out), *a
                   ).returncode == 0
    assert run_cli("audit", "check-report", str(out), *a).returncode == 0
    refused = run_cli("audit", "check-report", str(out), *b)
    assert refused.returncode == 6 and "does not know" in refused.stdout


@pytest.mark.parametrize("as_of", ["not-a-date"])
def test_bad_as_of_is_one_sentence(tmp_path: Path, passphrase_file: Path, as_of: str) -> None:
    args = _cli_dir(tmp_path, passphrase_file, compliance=False)
    bad = run_cli("retention", "run", "--as-of", as_of, *args)
    assert bad.returncode != 0 and "not an ISO-8601 time" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_key_rotation_rewraps_keys_and_retires_the_old_credential(
        tmp_path: Path, passphrase_file: Path) -> None:
    args = _cli_dir(tmp_path, passphrase_file, compliance=False)
    src = write_stream(tmp_path / "in.jsonl", CANARY_STREAM)
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    new = tmp_path / "new-pw"
    new.touch(mode=0o600)
    new.write_text("a brand new passphrase\n")
    rotated = run_cli("keys", "rotate", "--new-passphrase-file", str(new), "--json", *args)
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["deks_rewrapped"] >= 1
    old = run_cli("threads", "list", "--json", *args)
    assert old.returncode == 2 and "Wrong passphrase" in old.stderr
    new_args = [args[0], args[1], "--passphrase-file", str(new)]
    threads = json.loads(run_cli("threads", "list", "--json", *new_args).stdout)
    shown = json.loads(run_cli("threads", "show", threads[0]["thread_id"], "--json",
                               *new_args).stdout)
    assert all(r["text"] for r in shown["records"])  # still decryptable under the new key
    verify = json.loads(run_cli("audit", "verify", "--json", *new_args).stdout)
    assert verify["ok"] is True  # old checkpoints verify with the retired public key


HOSTILE_TENANT = "ev--><script>alert(1)</script> END-SEMTRACE-SIGNED-REPORT -->|**x**"


def test_a_hostile_tenant_name_cannot_inject_markup_or_break_verification(
        pipeline, runtime) -> None:  # type: ignore[no-untyped-def]
    from conftest import make_prompt

    from appliance.report import check_report, issue_report

    pipeline.process([make_prompt("Where is the printer on floor 3?", tenant=HOSTILE_TENANT)])
    for fmt in ("html", "md"):
        text = issue_report(runtime.store, runtime.keyring, runtime.policies.retention, fmt=fmt)
        assert "<script>" not in text and "alert(1)</script>" not in text
        assert text.count("-->") == 1  # only the signed payload's comment closes
        assert check_report(text).ok, check_report(text).reason
        shown = text.replace("&lt;script&gt;", "&lt;scrlpt&gt;", 1)
        assert shown != text and not check_report(shown).ok


def test_a_substituted_reveal_pub_is_refused_before_anything_is_sealed_to_it(
        tmp_path: Path, passphrase_file: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    args = _cli_dir(tmp_path, passphrase_file)
    pub = tmp_path / "data" / "reveal.pub"
    assert "tag " in pub.read_text()
    mallory = X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for forged in (base64.b64encode(mallory).decode() + "\n",  # untagged
                   base64.b64encode(mallory).decode() + "\n" + pub.read_text().split("\n")[1]):
        pub.write_text(forged)
        src = write_stream(tmp_path / "in.jsonl", CANARY_STREAM[:1])
        out = run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args)
        expected = "not the compliance key" if "tag " in forged else "carries no tag"
        assert out.returncode != 0 and expected in out.stderr, out.stderr
        assert "Traceback" not in out.stderr


def test_an_untagged_reveal_pub_is_refused_until_an_operator_retags_it(
        tmp_path: Path, passphrase_file: Path) -> None:
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    args = _cli_dir(tmp_path, passphrase_file)
    pub, cp = tmp_path / "data" / "reveal.pub", tmp_path / "compliance-pw"
    key_line, tag_line = pub.read_text().split("\n")[:2]
    untagged = key_line + "\n"  # what versions before the tag wrote
    pub.write_text(untagged)
    src = write_stream(tmp_path / "in.jsonl", CANARY_STREAM[:1])

    def replay() -> subprocess.CompletedProcess[str]:
        return run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args)

    refused = replay()
    assert refused.returncode != 0 and "semtrace compliance retag" in refused.stderr
    assert "Traceback" not in refused.stderr
    wrong = tmp_path / "wrong-c"
    wrong.touch(mode=0o600)
    wrong.write_text("not the compliance secret\n")
    for extra, says in ((["--compliance-passphrase-file", str(wrong)], "compliance credential"),
                        (["--compliance-passphrase-file", str(cp), "--role", "analyst"],
                         "have the 'service' permission")):
        out = run_cli("compliance", "retag", *args, *extra)
        assert out.returncode != 0 and says in out.stderr and "Traceback" not in out.stderr
        assert pub.read_text() == untagged  # nothing changed
    done = run_cli("compliance", "retag", *args, "--compliance-passphrase-file", str(cp),
                   "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"retagged": True}
    assert pub.read_text().split("\n")[:2] == [key_line, tag_line]
    assert replay().returncode == 0  # the store writes again, originals sealed to the key
    rid = json.loads(run_cli("threads", "list", "--json", *args).stdout)[0]["thread_id"]
    record = json.loads(run_cli("threads", "show", rid, "--json", *args).stdout)["records"][0]
    shown = run_cli("reveal", str(record["record_id"]), "--reason", "ticket 9", "--role",
                    "compliance", "--compliance-passphrase-file", str(cp), "--json", *args)
    assert shown.returncode == 0, shown.stderr
    assert "bart.quagmire@example.com" in {p["original"] for p in json.loads(shown.stdout)}
    events = [e["details"].get("change") for e in
              json.loads(run_cli("audit", "log", "--json", *args).stdout)]
    assert "compliance key re-tagged" in events

    # tampered afterwards: another key under the old tag is refused, and retag will not
    # bless another key without a tag either
    mallory = base64.b64encode(X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    pub.write_text(f"{mallory}\n{tag_line}\n")
    out = replay()
    assert out.returncode != 0 and "not the compliance key" in out.stderr, out.stderr
    pub.write_text(mallory + "\n")
    out = run_cli("compliance", "retag", *args, "--compliance-passphrase-file", str(cp))
    assert out.returncode != 0 and "not the public half" in out.stderr, out.stderr
    assert pub.read_text() == mallory + "\n"
