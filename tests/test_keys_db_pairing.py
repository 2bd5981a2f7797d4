"""A data dir whose keys.db is older than its semtrace.db (the two copied at different
moments while the service ran, or put back from two backups) is refused in one sentence,
changing nothing: it opened, read the records it had no key for as `[shredded]`, and the
next prompt of such a user and day closed their bucket for good."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from test_spine import run_cli
from test_upgrade import _digests


def test_a_keys_db_older_than_its_semtrace_db_is_refused_and_the_right_one_reads_all(
        tmp_path: Path, passphrase_file: Path) -> None:
    data = tmp_path / "data"
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *creds).returncode == 0
    early_keys = tmp_path / "keys.db.early"
    shutil.copy2(data / "keys.db", early_keys)  # a copy of the key store taken before...
    ts = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"tenant": "acme", "user_id": u, "ts": ts,
                                       "text": "How do I book the large meeting room?"}) + "\n"
                           for u in ("ana", "ben")))
    replayed = run_cli("replay", str(src), "--out", str(tmp_path / "out.jsonl"), *creds)
    assert replayed.returncode == 0, replayed.stderr  # ...these prompts were stored
    right_keys = tmp_path / "keys.db.right"
    shutil.copy2(data / "keys.db", right_keys)
    shutil.copy2(early_keys, data / "keys.db")
    before = _digests(data)

    sentence = (f"{data}/keys.db is older than {data}/semtrace.db (the two were copied at "
                "different moments, or from two backups): 2 buckets holding 2 records "
                "have no data key in it")
    for args in (["threads", "list"], ["serve", "--check"], ["audit", "verify"],
                 ["retention", "run"], ["backup", str(tmp_path / "copy")]):
        r = run_cli(*args, *creds)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.strip().splitlines() == [
            f"semtrace: {sentence}, and would read as shredded; put back the keys.db copied "
            "with this semtrace.db, or restore both from one `semtrace backup`. Nothing was "
            "changed."], (args, r.stderr)
    doctor = run_cli("doctor", "--json", *creds)
    assert doctor.returncode == 1
    assert any(p.startswith(sentence) for p in json.loads(doctor.stdout)["problems"])
    assert _digests(data) == before and not (tmp_path / "copy").exists()

    shutil.copy2(right_keys, data / "keys.db")  # the pair put back: every record reads
    listed = run_cli("threads", "list", "--json", *creds)
    assert listed.returncode == 0, listed.stderr
    threads = json.loads(listed.stdout)
    assert len(threads) == 2
    assert all(t["title"] and "meeting room" in t["title"] for t in threads), threads


def test_a_semtrace_db_behind_its_keys_db_is_named_by_serve_check_and_doctor(
        tmp_path: Path, passphrase_file: Path) -> None:
    """The other way round it opens (what was stored since is simply not there), but
    doctor said 'No problems found' and serve --check 'Configuration OK' while `audit
    verify` said the log's tail was cut off."""
    data = tmp_path / "data"
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *creds).returncode == 0
    early = tmp_path / "semtrace.db.early"
    shutil.copy2(data / "semtrace.db", early)
    assert run_cli("retention", "run", *creds).returncode == 0  # an audit entry more
    shutil.copy2(early, data / "semtrace.db")
    for stale in ("semtrace.db-wal", "semtrace.db-shm"):
        (data / stale).unlink(missing_ok=True)
    sentence = (f"{data}/semtrace.db is behind {data}/keys.db: its audit log ends at entry 1, "
                "keys.db had recorded entry 2")
    check = run_cli("serve", "--check", "--json", *creds)
    assert check.returncode == 0, check.stderr
    assert [w for w in json.loads(check.stdout)["warnings"] if w.startswith(sentence)]
    doctor = run_cli("doctor", "--json", *creds)
    assert doctor.returncode == 1
    assert [p for p in json.loads(doctor.stdout)["problems"] if p.startswith(sentence)]
    verify = run_cli("audit", "verify", *creds)
    assert verify.returncode == 6 and "its tail was cut off" in verify.stdout
