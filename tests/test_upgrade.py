"""Upgrading a data dir: an older store opens and is migrated, a newer one is refused.

Each refusal is checked with the real `semtrace` command: one sentence, a non-zero exit
and the data dir's files byte for byte as they were.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_spine import run_cli


def _init(data_dir: Path, passphrase_file: Path) -> None:
    from appliance.keys import read_passphrase_file
    from appliance.runtime import init_data_dir

    init_data_dir(data_dir, read_passphrase_file(passphrase_file))


def _digests(data_dir: Path) -> dict[str, str]:
    """Every file's digest; the -shm index and an empty -wal that SQLite leaves after a
    read-only open, and the lock file (its holder's pid), hold nothing."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(data_dir.iterdir()) if p.is_file() and p.name != "semtrace.lock"
            and not p.name.endswith("-shm") and not (p.name.endswith("-wal")
                                                     and p.stat().st_size == 0)}


def _record_migration(data_dir: Path, passphrase_file: Path, file: str, name: str) -> None:
    """What a later version's migration leaves: its name in the file's `_migrations`."""
    from appliance.keys import open_keyring, read_passphrase_file
    from appliance.store import connect

    ring = open_keyring(data_dir, read_passphrase_file(passphrase_file))
    db = connect(data_dir / file, ring, purpose="keys" if file == "keys.db" else "data")
    db.execute("CREATE TABLE later_feature (x)")
    db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, 0)", (name,))
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def test_a_store_a_newer_version_migrated_is_refused_in_one_sentence_and_left_as_it_is(
        tmp_path: Path, passphrase_file: Path) -> None:
    data = tmp_path / "data"
    _init(data, passphrase_file)
    _record_migration(data, passphrase_file, "semtrace.db", "m900_later_feature")
    before = _digests(data)
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    for args in (["serve", "--check"], ["threads", "list"], ["retention", "run"]):
        r = run_cli(*args, *creds)
        assert r.returncode != 0, (args, r.stdout)
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "newer version of Semtrace" in r.stderr and "m900_later_feature" in r.stderr
    assert _digests(data) == before


def test_a_key_store_a_newer_version_migrated_is_refused_before_the_data_store_is_touched(
        tmp_path: Path, passphrase_file: Path) -> None:
    data = tmp_path / "data"
    _init(data, passphrase_file)
    _record_migration(data, passphrase_file, "keys.db", "k900_later_feature")
    before = _digests(data)
    r = run_cli("serve", "--check", "--data-dir", str(data), "--passphrase-file",
                str(passphrase_file))
    assert r.returncode != 0 and "keys.db was upgraded by a newer version" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _digests(data) == before


def test_a_keyring_file_of_a_newer_version_is_named_as_such_not_as_a_wrong_passphrase(
        tmp_path: Path, passphrase_file: Path) -> None:
    data = tmp_path / "data"
    _init(data, passphrase_file)
    ring = data / "keyring.json"
    meta = json.loads(ring.read_text())
    ring.write_text(json.dumps({**meta, "version": meta["version"] + 1}))
    before = _digests(data)
    r = run_cli("threads", "list", "--data-dir", str(data), "--passphrase-file",
                str(passphrase_file))
    assert r.returncode != 0
    assert "keyring.json was written by a newer version of Semtrace" in r.stderr
    assert "Wrong passphrase" not in r.stderr
    assert _digests(data) == before


def _older_store(tmp_path: Path, passphrase_file: Path) -> Path:
    """A data dir as an earlier version left it: the first four migrations, one record."""
    from appliance import migrations
    from appliance.keys import create_keyring, read_passphrase_file
    from appliance.runtime import prepare_dir
    from appliance.store import connect

    data = tmp_path / "data"
    prepare_dir(data)
    ring = create_keyring(data, read_passphrase_file(passphrase_file))
    db = connect(data / "semtrace.db", ring)
    migrations.migrate(db, migrations.MIGRATIONS[:4])
    db.execute("INSERT INTO buckets (id, tenant, user, day, created_at) "
               "VALUES (1, 'acme', 'u', '2026-01-01', 0)")
    db.execute("INSERT INTO records (id, tenant, request_id, user, bucket_id, ts, thread_id, "
               "position, model_id) VALUES (7, 'acme', 'r', 'u', 1, 0, 'th', 'new', 'm')")
    db.close()
    _bucket_key(data, ring, "2026-01-01")
    return data


def _bucket_key(data: Path, ring: Any, day: str) -> None:
    """keys.db at its first migration, holding bucket 1's data key (a bucket's key is made
    before its row: no store holds a live bucket without one)."""
    from appliance import migrations
    from appliance.store import connect
    from appliance.store.maintenance import _bucket_aad

    kdb = connect(data / "keys.db", ring, purpose="keys")
    migrations.migrate(kdb, migrations.KEY_MIGRATIONS[:1])
    _, wrapped = ring.new_dek(_bucket_aad("acme", "u", day, "prompts"))
    kdb.execute("INSERT INTO deks (bucket_id, wrapped, created_at) VALUES (1, ?, 0)",
                (wrapped,))
    kdb.close()


def test_serve_check_on_an_older_store_says_what_serve_will_migrate_and_migrates_nothing(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A check (of a new version, before switching to it) must leave the store as the
    running version can open it: migrated, an older version refuses it."""
    from appliance import migrations

    data = _older_store(tmp_path, passphrase_file)
    before = _digests(data)
    r = run_cli("serve", "--check", "--json", "--data-dir", str(data), "--passphrase-file",
                str(passphrase_file))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True
    assert _digests(data) == before  # not migrated
    later = [m.__name__ for m in migrations.MIGRATIONS[4:]]
    assert out["at_start"][:len(later)] == [f"apply migration {m} to semtrace.db" for m in later]
    assert "at start serve will apply migration m005" in out["message"]


def test_a_store_of_an_older_schema_is_read_only_refused_then_migrated_keeping_its_records(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A data dir as an earlier version left it: the first four migrations, one record."""
    from appliance import migrations
    from appliance.config import load_policies
    from appliance.errors import SemtraceError
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    cred = read_passphrase_file(passphrase_file)
    data = _older_store(tmp_path, passphrase_file)
    policies = load_policies()
    try:
        open_runtime(data, cred, readonly=True, policies=policies)
        raise AssertionError("a read-only open of an older store must ask for the migration")
    except SemtraceError as exc:
        assert "needs a migration" in str(exc)
    rt = open_runtime(data, cred, policies=policies)
    try:
        assert migrations.applied(rt.store.db) == [m.__name__ for m in migrations.MIGRATIONS]
        assert migrations.applied(rt.store.keys_db) == [
            m.__name__ for m in migrations.KEY_MIGRATIONS]
        assert rt.store.db.execute("SELECT count(*) FROM records WHERE id = 7").fetchone()[0] == 1
    finally:
        rt.close()


def test_a_data_dir_restored_without_its_keys_db_is_refused_not_reopened_as_all_shredded(
        tmp_path: Path, passphrase_file: Path) -> None:
    """'Keep keys.db out of long-lived backups': a restore of semtrace.db alone must not
    quietly make a new key store, under which every record reads as shredded."""
    data = tmp_path / "data"
    _init(data, passphrase_file)
    (data / "keys.db").unlink()
    before = _digests(data)
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"tenant": "t", "user_id": "u", "ts": "2026-03-02T09:00:00Z",
                               "text": "Is it raining?"}) + "\n")
    for args in (["threads", "list"], ["replay", str(src), "--out", str(tmp_path / "o.jsonl")],
                 ["serve", "--check"]):
        r = run_cli(*args, *creds)
        assert r.returncode != 0, (args, r.stdout)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"{data / 'keys.db'} is missing" in r.stderr, r.stderr
    assert _digests(data) == before and not (data / "keys.db").exists()
    doc = run_cli("doctor", "--data-dir", str(data), "--json")
    assert any("keys.db is missing" in p for p in json.loads(doc.stdout)["problems"])


def _earliest_store(tmp_path: Path, passphrase_file: Path) -> Path:
    """A data dir at the first migration of each file (the oldest schema there is), one
    record in it (a day well inside the retention period)."""
    from datetime import UTC, datetime

    from appliance import migrations
    from appliance.keys import create_keyring, read_passphrase_file
    from appliance.runtime import prepare_dir
    from appliance.store import connect

    data = tmp_path / "data"
    prepare_dir(data)
    ring = create_keyring(data, read_passphrase_file(passphrase_file))
    db = connect(data / "semtrace.db", ring)
    migrations.migrate(db, migrations.MIGRATIONS[:1])
    today = datetime.now(UTC).date().isoformat()
    db.execute("INSERT INTO buckets (id, tenant, user, day, created_at) "
               "VALUES (1, 'acme', 'u', ?, 0)", (today,))
    db.execute("INSERT INTO records (id, tenant, request_id, user, bucket_id, ts, thread_id, "
               "position, model_id) VALUES (7, 'acme', 'r', 'u', 1, 0, 'th', 'new', 'm')")
    db.close()
    _bucket_key(data, ring, today)
    return data


def _expected_upgrade() -> list[str]:
    from appliance import migrations

    return ([f"semtrace.db:{m.__name__}" for m in migrations.MIGRATIONS[1:]]
            + [f"keys.db:{m.__name__}" for m in migrations.KEY_MIGRATIONS[1:]])


def test_a_command_on_the_earliest_schema_migrates_in_order_and_says_so_once(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance import migrations
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    data = _earliest_store(tmp_path, passphrase_file)
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    r = run_cli("retention", "run", "--json", *creds)
    assert r.returncode == 0, r.stderr
    json.loads(r.stdout)  # stdout stays the report
    note = [line for line in r.stderr.splitlines() if "migrated" in line]
    assert len(note) == 1, r.stderr
    named = [f"semtrace.db:{m}" for m in note[0].split("semtrace.db ")[1].split(";")[0]
             .rstrip(".").split(", ")] + [
        f"keys.db:{m}" for m in note[0].split("keys.db ")[1].rstrip(".").split(", ")]
    assert named == _expected_upgrade()  # every one, in the order they were applied
    assert "was written by an earlier version" in note[0]
    rt = open_runtime(data, read_passphrase_file(passphrase_file), readonly=True)
    try:
        assert migrations.applied(rt.store.db) == [m.__name__ for m in migrations.MIGRATIONS]
        assert rt.store.db.execute("SELECT count(*) FROM records WHERE id = 7").fetchone()[0] == 1
    finally:
        rt.close()
    again = run_cli("retention", "run", "--json", *creds)
    assert again.returncode == 0 and "migrated" not in again.stderr, again.stderr


@pytest.mark.slow
def test_serve_on_an_older_store_logs_what_it_migrated(tmp_path: Path,
                                                       passphrase_file: Path) -> None:
    from test_service import Server

    _earliest_store(tmp_path, passphrase_file)
    srv = Server(tmp_path, passphrase_file).start()
    assert srv.stop() == 0
    lines = [json.loads(line) for line in srv.log.read_text().splitlines()
             if line.startswith("{")]
    migrated = [line for line in lines if line.get("event") == "store_migrated"]
    assert len(migrated) == 1, srv.log.read_text()
    assert migrated[0]["migrations"] == _expected_upgrade()
    assert "was written by an earlier version" in migrated[0]["msg"]
    steps = [line for line in lines if line.get("event") == "migration"]  # as each began
    assert [s["migration"] for s in steps] == [m.split(":")[1] for m in _expected_upgrade()]
    assert lines.index(steps[-1]) < lines.index(migrated[0])


@pytest.mark.slow
def test_an_upgrade_killed_mid_migration_keeps_every_step_whole_and_the_next_run_finishes_it(
        tmp_path: Path, passphrase_file: Path) -> None:
    """kill -9 at the third migration of an upgrade: the two before it are committed with
    their records, the third left no trace, and the next command applies the rest."""
    import signal

    from appliance import migrations

    data = _earliest_store(tmp_path, passphrase_file)
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    killed = run_cli("retention", "run", "--json", *creds,
                     env={"SEMTRACE_FAILPOINT": "migration:3"})
    assert killed.returncode == -signal.SIGKILL
    check = run_cli("serve", "--check", "--json", *creds)
    assert check.returncode == 0, check.stderr
    later = [m.__name__ for m in migrations.MIGRATIONS[3:]]
    assert json.loads(check.stdout)["at_start"][:len(later)] == [
        f"apply migration {m} to semtrace.db" for m in later]
    r = run_cli("retention", "run", "--json", *creds)
    assert r.returncode == 0, r.stderr
    note = next(line for line in r.stderr.splitlines() if "migrated" in line)
    assert f"semtrace.db {', '.join(later)};" in note
    check = run_cli("serve", "--check", "--json", *creds)
    assert json.loads(check.stdout)["at_start"] == []


def test_backup_and_restore_of_a_newer_versions_data_dir_are_refused_changing_nothing(
        tmp_path: Path, passphrase_file: Path) -> None:
    """`semtrace backup` wrote its audit entry into a store a newer version had migrated
    (the older code writing a newer schema), and `restore` of such a copy copied it in
    first and then named the new data dir as the newer one."""
    data = tmp_path / "data"
    _init(data, passphrase_file)
    creds = ["--passphrase-file", str(passphrase_file)]
    ok = run_cli("backup", str(tmp_path / "copy"), "--data-dir", str(data), *creds)
    assert ok.returncode == 0, ok.stderr
    _record_migration(data, passphrase_file, "semtrace.db", "m900_later_feature")
    before = _digests(data)
    r = run_cli("backup", str(tmp_path / "b"), "--data-dir", str(data), *creds)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "newer version of Semtrace" in r.stderr and "m900_later_feature" in r.stderr
    assert _digests(data) == before and not (tmp_path / "b").exists()

    # the copy taken earlier, as that newer version would have left it
    copy = tmp_path / "copy"
    _record_migration(copy, passphrase_file, "keys.db", "k900_later_feature")
    manifest = json.loads((copy / "backup.json").read_text())
    for suffix in ("-wal", "-shm"):
        (copy / f"keys.db{suffix}").unlink(missing_ok=True)
    manifest["files"]["keys.db"] = {
        "bytes": (copy / "keys.db").stat().st_size,
        "sha256": hashlib.sha256((copy / "keys.db").read_bytes()).hexdigest()}
    (copy / "backup.json").write_text(json.dumps(manifest))
    target = tmp_path / "restored"
    r = run_cli("restore", str(copy), "--data-dir", str(target), *creds)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"The backup {copy} holds a data dir a newer version" in r.stderr, r.stderr
    assert "k900_later_feature" in r.stderr and not target.exists()


def test_a_backup_of_a_store_not_yet_migrated_is_refused_in_a_sentence_that_says_why(
        tmp_path: Path, passphrase_file: Path) -> None:
    """The new bundle installed, the service not yet started: a backup with the new
    command said the database file was damaged and its audit tables removed."""
    data = _older_store(tmp_path, passphrase_file)
    before = _digests(data)
    r = run_cli("backup", str(tmp_path / "copy"), "--data-dir", str(data),
                "--passphrase-file", str(passphrase_file))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "written by an earlier version of Semtrace and is not migrated yet" in r.stderr
    # counted in words (was "migration(s) pending"): of both databases, more than one
    pending = re.search(r"\((\d+) migrations pending, from ", r.stderr)
    assert pending and int(pending.group(1)) > 1, r.stderr
    assert "damaged" not in r.stderr
    assert _digests(data) == before and not (tmp_path / "copy").exists()


def _older_backup(tmp_path: Path, passphrase_file: Path) -> Path:
    """What an earlier version's `semtrace backup` left: its files, policies, backup.json."""
    import shutil
    from datetime import UTC, datetime

    from appliance.backup import MANIFEST_FORMAT
    from appliance.config import policy_dir

    data = _older_store(tmp_path, passphrase_file)
    copy = tmp_path / "copy"
    copy.mkdir(mode=0o700)
    files = {}
    for name in ("keyring.json", "semtrace.db", "keys.db"):
        shutil.copyfile(data / name, copy / name)
    shutil.copytree(policy_dir(), copy / "policies")
    for path in sorted(p for p in copy.rglob("*") if p.is_file()):
        files[str(path.relative_to(copy))] = {
            "bytes": path.stat().st_size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    (copy / "backup.json").write_text(json.dumps({
        "format": MANIFEST_FORMAT, "semtrace": "0.0.9", "audit_seq": 0, "records": 1,
        "taken_at": datetime.now(UTC).isoformat(), "files": files}))
    return copy


def test_a_restore_of_a_copy_an_earlier_version_took_says_what_it_migrated(
        tmp_path: Path, passphrase_file: Path) -> None:
    """The copy is migrated when it is restored; the restore names each migration."""
    from appliance import migrations

    copy = _older_backup(tmp_path, passphrase_file)
    creds = ["--passphrase-file", str(passphrase_file)]
    r = run_cli("restore", str(copy), "--data-dir", str(tmp_path / "new"), *creds, "--json")
    assert r.returncode == 0, r.stderr
    later = ([f"semtrace.db:{m.__name__}" for m in migrations.MIGRATIONS[4:]]
             + [f"keys.db:{m.__name__}" for m in migrations.KEY_MIGRATIONS[1:]])
    assert json.loads(r.stdout)["migrated"] == later
    text = run_cli("restore", str(copy), "--data-dir", str(tmp_path / "again"), *creds)
    assert text.returncode == 0, text.stderr
    assert f"now migrated to this one's schema: {', '.join(later)}." in text.stderr


def test_doctor_with_the_passphrase_says_what_the_next_start_will_migrate(
        tmp_path: Path, passphrase_file: Path) -> None:
    """After installing a new bundle, before the service restarts: doctor names what the
    start will migrate, changing nothing; without a credential it asks for none."""
    from appliance import migrations

    data = _older_store(tmp_path, passphrase_file)
    before = _digests(data)
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    out = json.loads(run_cli("doctor", *creds, "--json").stdout)
    later = [m.__name__ for m in migrations.MIGRATIONS[4:]]
    assert out["at_start"][:len(later)] == [f"apply migration {m} to semtrace.db" for m in later]
    text = run_cli("doctor", *creds).stdout
    assert f"At its next start serve will apply migration {later[0]} to semtrace.db;" in text
    assert _digests(data) == before
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase of this data dir\n")
    wrong.chmod(0o600)
    bad = run_cli("doctor", "--data-dir", str(data), "--passphrase-file", str(wrong), "--json")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert any("passphrase" in p.lower() for p in json.loads(bad.stdout)["problems"])
    assert _digests(data) == before


def test_doctor_without_a_credential_says_why_it_cannot_list_migrations_and_what_to_run(
        tmp_path: Path, passphrase_file: Path) -> None:
    """A platform engineer's doctor before an upgrade, without the passphrase: the store's
    schema version is encrypted with it, so doctor says so and names the command, instead
    of saying nothing; a passphrase file named by $SEMTRACE_PASSPHRASE_FILE counts."""
    from appliance import migrations

    data = _older_store(tmp_path, passphrase_file)
    before = _digests(data)
    text = run_cli("doctor", "--data-dir", str(data))
    assert text.returncode == 0 and "Traceback" not in text.stderr
    said = [line for line in text.stdout.splitlines() if "migrate" in line]
    assert len(said) == 1, text.stdout
    assert "cannot be read without its key" in said[0]
    assert f"semtrace doctor --data-dir {data} --passphrase-file" in said[0]
    out = json.loads(run_cli("doctor", "--data-dir", str(data), "--json").stdout)
    assert out["at_start"] is None and out["at_start_unknown"] == said[0]
    env = run_cli("doctor", "--data-dir", str(data), "--json",
                  env={"SEMTRACE_PASSPHRASE_FILE": str(passphrase_file)})
    later = [m.__name__ for m in migrations.MIGRATIONS[4:]]
    found = json.loads(env.stdout)
    assert found["at_start"][:len(later)] == [f"apply migration {m} to semtrace.db"
                                               for m in later]
    assert found["at_start_unknown"] is None
    assert _digests(data) == before
