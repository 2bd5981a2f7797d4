"""`semtrace backup | restore`: a consistent, encrypted copy of a live store, restored whole."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from conftest import scan_for, write_stream
from test_service import Server, at
from test_spine import run_cli

from appliance.client import Client

CANARY = "Quixolotl"  # a word that would be found in a plaintext page


def _threads(*args: str) -> list[dict[str, object]]:
    out = run_cli("threads", "list", "--json", *args)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def _init(tmp_path: Path, passphrase_file: Path) -> list[str]:
    args = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *args).returncode == 0
    return args


def test_a_backup_of_a_live_service_restores_the_same_threads(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.touch(mode=0o600)
    pw.write_text("backup test passphrase\n")
    srv = Server(tmp_path, pw).start()
    dest, new = tmp_path / "copy", tmp_path / "restored"
    try:
        with Client(srv.sock) as c:
            for i, text in enumerate([f"How do I feed my axolotl {CANARY}?",
                                      "And how warm should its tank water be?",
                                      "Which router firmware supports WPA3?"]):
                assert c.ingest(tenant="acme", user_id="alice", text=text,
                                request_id=f"a-{i}", ts=at(i))["ok"]
        stop = threading.Event()
        sent: list[dict[str, object]] = []

        def keep_sending() -> None:  # the service keeps writing while the copy is taken
            with Client(srv.sock) as c:
                i = 0
                while not stop.is_set():
                    sent.append(c.ingest(tenant="acme", user_id="bob", request_id=f"b-{i}",
                                         text=f"Question {i} about invoices", ts=at(10 + i)))
                    i += 1

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            out = run_cli("backup", str(dest), *srv.args, "--json")
        finally:
            stop.set()
            sender.join(60)
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert sent and all(r["ok"] for r in sent)
        live = _threads(*srv.args)
    finally:
        assert srv.stop() == 0

    # the copy is encrypted: no page in the clear, no prompt word anywhere
    assert sorted(p.name for p in dest.iterdir()) == [
        "backup.json", "keyring.json", "keys.db", "policies", "semtrace.db"]
    assert (dest / "policies" / "retention.toml").is_file()  # what a restore shreds by
    for name in ("semtrace.db", "keys.db"):
        assert not (dest / name).read_bytes().startswith(b"SQLite format 3")
    assert scan_for(dest, [CANARY]) == []
    assert (dest.stat().st_mode & 0o777) == 0o700

    res = run_cli("restore", str(dest), "--data-dir", str(new), "--passphrase-file", str(pw),
                  "--json")
    assert res.returncode == 0, res.stderr
    restored_report = json.loads(res.stdout)
    assert restored_report["records"] == report["records"] >= 3
    assert restored_report["warnings"]  # erasures after the copy: not given, so it says so
    args = ["--data-dir", str(new), "--passphrase-file", str(pw)]
    restored = _threads(*args)
    by_id = {t["thread_id"]: t for t in live}
    # every restored thread is the live one (those of the writes after the copy may be
    # shorter); alice's, written before the copy, are whole
    assert restored and all(t["thread_id"] in by_id for t in restored)
    alice = [t for t in live if t["turns"] in (1, 2) and "invoices" not in str(t)]
    assert {t["thread_id"] for t in alice} <= {t["thread_id"] for t in restored}
    for t in alice:
        shown = run_cli("threads", "show", str(t["thread_id"]), "--json", *args)
        shown_live = run_cli("threads", "show", str(t["thread_id"]), "--json", *srv.args)
        assert shown.returncode == 0 and json.loads(shown.stdout) == json.loads(shown_live.stdout)
    verify = run_cli("audit", "verify", "--json", *args)
    assert verify.returncode == 0, verify.stdout
    events = [e["event"] for e in json.loads(run_cli("audit", "log", "--json", *args).stdout)]
    assert events[-1] == "restore"
    live_events = [e["event"] for e in json.loads(
        run_cli("audit", "log", "--json", *srv.args).stdout)]
    assert "backup" in live_events  # the live store records that a copy of its keys exists


def test_backup_refuses_a_bad_destination_in_one_sentence_and_writes_nothing(
        tmp_path: Path, passphrase_file: Path) -> None:
    args = _init(tmp_path, passphrase_file)
    data = tmp_path / "data"
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    unwritable = locked / "copy" if not os.access(locked, os.W_OK) \
        else Path("/proc/sys/semtrace-copy")  # root writes anywhere but there
    before = sorted(p.name for p in data.iterdir())
    for dest, words in ((full, "is not empty"), (data / "copy", "inside the data dir"),
                        (data, "inside the data dir"), (full / "notes.txt", "is a file"),
                        (tmp_path / "no" / "such", "does not exist"),
                        (unwritable, "not writable")):
        out = run_cli("backup", str(dest), *args)
        assert out.returncode == 2, (dest, out.stderr)
        assert words in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "Traceback" not in out.stderr
    assert sorted(p.name for p in data.iterdir()) == before
    assert sorted(p.name for p in full.iterdir()) == ["notes.txt"]
    events = [e["event"] for e in json.loads(run_cli("audit", "log", "--json", *args).stdout)]
    assert "backup" not in events
    missing = run_cli("backup", str(tmp_path / "c"), "--data-dir", str(tmp_path / "nowhere"),
                      "--passphrase-file", str(passphrase_file))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert not (tmp_path / "c").exists()


def test_restore_shreds_what_expired_and_reapplies_later_erasures(
        tmp_path: Path, passphrase_file: Path) -> None:
    args = _init(tmp_path, passphrase_file)
    data = tmp_path / "data"
    yesterday = at(0)
    rows = [{"tenant": "acme", "user_id": "alice", "ts": yesterday,
             "text": "How do I renew the TLS certificate on the mail host?"},
            {"tenant": "acme", "user_id": "bob", "ts": yesterday,
             "text": "Which laptop should I order for the new intern?"},
            {"tenant": "acme", "user_id": "carol", "ts": "2026-03-02T09:00:00Z",
             "text": "What was the budget for the spring offsite?"}]
    src = write_stream(tmp_path / "in.jsonl", rows)
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *args).returncode == 0
    assert len(_threads(*args)) == 3  # carol's is past retention, not yet shredded
    dest = tmp_path / "copy"
    backed = run_cli("backup", str(dest), *args)
    assert backed.returncode == 0, backed.stderr
    assert backed.stdout.startswith("Backed up 3 records ("), backed.stdout  # was record(s)
    erased = run_cli("erase", "--tenant", "acme", "--user", "alice", "--reason", "T-4711",
                     *args)
    assert erased.returncode == 0, erased.stderr

    plain = tmp_path / "plain"
    out = run_cli("restore", str(dest), "--data-dir", str(plain), "--passphrase-file",
                  str(passphrase_file))
    assert out.returncode == 0, out.stderr
    assert "erasures made after" in out.stderr and "--erasures-from" in out.stderr
    # what it holds now, counts as words (was "Restored 2 record(s) into ... shredded again
    # 1 bucket(s) past retention (1 record(s)); re-applied 0 erasure(s).")
    assert f"into {plain}: it holds 2 records now; shredded again 1 bucket past retention " \
        "(1 record), re-applied 0 erasures." in out.stdout, out.stdout
    kept = _threads("--data-dir", str(plain), "--passphrase-file", str(passphrase_file))
    assert len(kept) == 2  # carol's expired one shredded again at restore; alice's is back

    whole = tmp_path / "whole"
    out = run_cli("restore", str(dest), "--data-dir", str(whole), "--passphrase-file",
                  str(passphrase_file), "--erasures-from", str(data), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["erasures_reapplied"] == 1 and report["warnings"] == []
    assert report["buckets_shredded"] == 1
    wargs = ["--data-dir", str(whole), "--passphrase-file", str(passphrase_file)]
    left = _threads(*wargs)
    assert len(left) == 1  # only bob's: alice erased again, carol expired
    assert run_cli("audit", "verify", *wargs).returncode == 0
    # the erasure's tombstone came along: a prompt alice sent before it (on its way while
    # the copy was restored) is not stored there
    late = write_stream(tmp_path / "late.jsonl", [{
        "tenant": "acme", "user_id": "alice", "ts": yesterday, "request_id": "late-1",
        "text": "Which port does the mail host listen on?"}])
    out = run_cli("replay", str(late), "--out", str(tmp_path / "late.out"), "--json", *wargs)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["erased"] == 1 and len(_threads(*wargs)) == 1

    # a retention policy other than the one saved with the copy decides nothing unasked
    from appliance.config import policy_dir

    longer = tmp_path / "longer"
    shutil.copytree(policy_dir(), longer)
    text = (longer / "retention.toml").read_text()
    (longer / "retention.toml").write_text(text.replace("prompts_days = 30",
                                                        "prompts_days = 3650"))
    env = {"SEMTRACE_POLICY_DIR": str(longer)}
    cmd = ["restore", str(dest), "--data-dir", str(tmp_path / "p"), "--passphrase-file",
           str(passphrase_file)]
    differs = run_cli(*cmd, env=env)
    assert differs.returncode == 2 and "differs from the one saved" in differs.stderr
    assert len(differs.stderr.strip().splitlines()) == 1 and not (tmp_path / "p").exists()
    kept = run_cli(*cmd, "--current-policies", "--json", env=env)
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["buckets_shredded"] == 0  # carol's is within 3650 days

    # another store's log is not taken for this one's
    other = tmp_path / "other"
    assert run_cli("init", "--data-dir", str(other), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    refused = run_cli("restore", str(dest), "--data-dir", str(tmp_path / "x"),
                      "--passphrase-file", str(passphrase_file), "--erasures-from", str(other))
    assert refused.returncode == 2 and "not the store" in refused.stderr
    assert not (tmp_path / "x").exists()


def test_restore_refuses_a_damaged_copy_and_a_used_data_dir(tmp_path: Path,
                                                            passphrase_file: Path) -> None:
    args = _init(tmp_path, passphrase_file)
    dest = tmp_path / "copy"
    assert run_cli("backup", str(dest), *args).returncode == 0
    before = {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()}
    for cmd in (("threads", "list"), ("audit", "verify"), ("serve", "--check")):
        opened = run_cli(*cmd, "--data-dir", str(dest), "--passphrase-file",
                         str(passphrase_file))
        assert opened.returncode == 2 and "is a backup made by" in opened.stderr, opened.stderr
    assert {p.name: p.read_bytes() for p in dest.iterdir() if p.is_file()} == before
    doctor = run_cli("doctor", "--json", "--data-dir", str(dest), "--passphrase-file",
                     str(passphrase_file))  # it named the backup twice, in two wordings
    assert [p for p in json.loads(doctor.stdout)["problems"] if "is a backup" in p] == [
        f"{dest} is a backup made by `semtrace backup`: restore it with `semtrace restore` "
        "instead of serving it."]
    refused = run_cli("restore", str(dest), *args)  # onto the live store
    assert refused.returncode == 2 and "already initialised" in refused.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase it was taken under\n")
    wrong.chmod(0o600)
    target = tmp_path / "restored"
    out = run_cli("restore", str(dest), "--data-dir", str(target), "--passphrase-file",
                  str(wrong))
    assert out.returncode == 2 and "does not open the backup" in out.stderr, out.stderr
    assert not target.exists()
    db = dest / "semtrace.db"
    raw = bytearray(db.read_bytes())
    raw[5000] ^= 0xFF
    db.write_bytes(bytes(raw))
    out = run_cli("restore", str(dest), "--data-dir", str(target), "--passphrase-file",
                  str(passphrase_file))
    assert out.returncode == 2 and "damaged" in out.stderr, out.stderr
    assert not target.exists()


def test_backup_refuses_a_disk_without_room_for_the_copy(
        tmp_path: Path, passphrase_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from collections import namedtuple

    from appliance.cli import main

    args = _init(tmp_path, passphrase_file)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 4096))
    with pytest.raises(SystemExit) as exc:
        main(["backup", str(tmp_path / "copy"), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "0 MiB free; the copy needs about" in err, err
    assert not (tmp_path / "copy").exists()
    monkeypatch.undo()

    def full(_folder: Path, _ring: object) -> list[Path]:  # the disk fills up after the
        # databases are copied
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("appliance.backup._copy_policies", full)
    with pytest.raises(SystemExit) as exc:
        main(["backup", str(tmp_path / "copy"), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 1 and "its disk is full; the partial copy was removed" in err, err
    assert not (tmp_path / "copy").exists()
