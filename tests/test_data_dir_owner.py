"""A data dir given with --data-dir that belongs to another user, or whose files another
user owns (left by a command run as root), is named with its owner in one sentence, exit
2: click refused it as "Invalid value for '--data-dir': Path ... is not readable" (doctor
too, which then reported nothing), and a file root left behind was "Permission denied:
.../keyring.json", exit 1. Tests run as root: the commands run as uid 65534."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from test_service_host_checks import as_nobody
from test_spine import run_cli

COMMANDS = (["threads", "list"], ["serve", "--check"], ["audit", "verify"],
            ["retention", "run"])


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another uid")
def test_a_data_dir_of_another_user_is_named_with_its_owner(passphrase_file: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="semtrace-owner-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        theirs, mine = root / "theirs", root / "mine"
        for data in (theirs, mine):
            assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                           str(passphrase_file)).returncode == 0
        for p in (theirs, *theirs.iterdir()):
            os.chown(p, 4321, 4321)  # another user's store, 0700
        os.chown(mine, 65534, 65534)  # the caller's folder, its keyring root's (0600)
        pw = root / "pw"
        shutil.copy(passphrase_file, pw)
        os.chown(pw, 65534, 65534)
        record, env = root / "no-service.conf", {"XDG_DATA_HOME": str(root / "home")}
        said = {
            theirs: f"The data dir {theirs} belongs to uid 4321, mode 700, and this user, "
                    "nobody (uid 65534), may not read it: run semtrace as uid 4321 or as "
                    "root. Nothing was changed.",
            mine: f"{mine}/keyring.json belongs to root (uid 0) and this user, nobody "
                  "(uid 65534), may not read it: give the data dir's files back to its "
                  f"owner, nobody (uid 65534) (`chown -R 65534: {mine}`). Nothing was "
                  "changed."}
        for data, sentence in said.items():
            for argv in COMMANDS:
                r = as_nobody([*argv, "--data-dir", str(data), "--passphrase-file", str(pw)],
                              record, env)
                assert (r.returncode, r.stderr.strip()) == (2, f"semtrace: {sentence}"), argv
        r = as_nobody(["doctor", "--json", "--data-dir", str(theirs)], record, env)
        assert r.returncode == 1, r.stderr
        assert f"The data dir {theirs} cannot be read by this user (uid 65534): run doctor " \
            "as root or as its owner." in json.loads(r.stdout)["problems"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_serve_check_warns_of_a_data_dir_and_key_files_others_may_read(
        tmp_path: Path, passphrase_file: Path) -> None:
    """doctor named a data dir left 755 with its keyring.json 644 (the master key's salt and
    check, attackable offline), while `serve --check` said 'Configuration OK' and serve
    started without a word; now both warn (the check lists them, serve logs them), and
    serve still starts (a folder opened on purpose to reach its query socket)."""
    data = tmp_path / "data"
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *creds).returncode == 0
    os.chmod(data, 0o755)
    os.chmod(data / "keyring.json", 0o644)
    r = run_cli("serve", "--check", "--json", *creds)
    assert r.returncode == 0, r.stderr
    loose = [f"The data dir {data} is mode 755; it should be 700.",
             f"{data / 'keyring.json'} is readable by others; it should be 600."]
    assert json.loads(r.stdout)["warnings"] == loose
    logged = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    assert [(x["event"], x["msg"]) for x in logged if x["level"] == "warning"] == [
        ("data_dir_permissions", said) for said in loose]


def test_a_disk_with_less_room_than_the_store_takes_is_named_by_the_checks(
        tmp_path: Path, passphrase_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """doctor and serve --check said nothing of a data dir on a disk about to fill up
    (the service then refuses every prompt, disk_full, and `keys rotate` needs room for a
    copy of semtrace.db); now doctor names it and serve --check warns."""
    from collections import namedtuple

    from appliance.cli import main

    data = tmp_path / "data"
    creds = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *creds).returncode == 0
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9, 4096))
    said = f"The disk of {data} has 0 MiB free, less than its semtrace.db takes"
    main(["serve", "--check", "--json", *creds])
    out = capsys.readouterr().out
    assert [w for w in json.loads(out)["warnings"] if w.startswith(said)], out
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--json", *creds])
    assert exc.value.code == 1
    out = capsys.readouterr().out
    assert [p for p in json.loads(out)["problems"] if p.startswith(said)], out
