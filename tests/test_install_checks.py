"""What an operator's checks say about the installed files: policies, linker weights and
the bundled lists. A bad file is one sentence naming it, before any data dir is touched,
and `serve --check` and `doctor` say what `serve` would refuse."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from test_service import STARTUP_S
from test_spine import run_cli


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.py", "*.sh"))
    return dst


def _serve_check(data: Path, passphrase_file: Path, env: dict[str, str]) -> tuple[int, str]:
    r = run_cli("serve", "--check", "--data-dir", str(data), "--passphrase-file",
                str(passphrase_file), env=env)
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.returncode, r.stderr


def test_a_policy_file_that_is_not_utf8_or_is_a_folder_is_one_sentence_exit_2(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance.config import policy_dir

    pol = _copy(policy_dir(), tmp_path / "policies")
    with (pol / "pricing.toml").open("ab") as fh:
        fh.write(b"\n# caf\xe9\n")
    data = tmp_path / "data"
    env = {"SEMTRACE_POLICY_DIR": str(pol)}
    code, err = _serve_check(data, passphrase_file, env)
    assert code == 2 and f"{pol / 'pricing.toml'} is not UTF-8 text" in err
    shutil.copy(policy_dir() / "pricing.toml", pol / "pricing.toml")
    (pol / "service.toml").unlink()
    (pol / "service.toml").mkdir()
    code, err = _serve_check(data, passphrase_file, env)
    assert code == 2 and f"{pol / 'service.toml'} is a folder" in err
    assert not data.exists()
    doc = run_cli("doctor", "--data-dir", str(data), "--json", env=env)
    assert doc.returncode == 1
    assert any("service.toml is a folder" in p for p in json.loads(doc.stdout)["problems"])


def test_an_altered_name_list_is_named_and_serve_check_and_doctor_say_so(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance.config import model_dir

    models = _copy(model_dir(), tmp_path / "models")
    names = next(models.glob("names-rank*.json.gz"))
    raw = bytearray(names.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    names.write_bytes(bytes(raw))
    env = {"SEMTRACE_MODEL_DIR": str(models)}
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"tenant": "t", "user_id": "u", "ts": "2026-03-02T09:00:00Z",
                               "text": "Ask Maria about Lisbon."}) + "\n")
    red = run_cli("redact", str(src), "--out", str(tmp_path / "out.jsonl"), env=env)
    assert red.returncode == 3, red.stderr
    assert f"{names} does not match its checksum" in red.stderr
    assert len(red.stderr.strip().splitlines()) == 1, red.stderr
    code, err = _serve_check(tmp_path / "data", passphrase_file, env)
    assert code == 3 and f"{names} does not match its checksum" in err
    doc = run_cli("doctor", "--data-dir", str(tmp_path / "data"), "--json", env=env)
    assert any(f"{names} does not match" in p for p in json.loads(doc.stdout)["problems"])


def test_serve_check_and_doctor_name_unusable_linker_weights_as_serve_would(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance.config import policy_dir

    pol = _copy(policy_dir(), tmp_path / "policies")
    (pol / "linker-weights.json").write_text("{}")
    env = {"SEMTRACE_POLICY_DIR": str(pol)}
    code, err = _serve_check(tmp_path / "data", passphrase_file, env)
    assert code == 2 and f"The linker weights file {pol / 'linker-weights.json'}" in err
    doc = run_cli("doctor", "--data-dir", str(tmp_path / "data"), "--json", env=env)
    assert any("linker weights file" in p for p in json.loads(doc.stdout)["problems"])



UNIT = Path(__file__).resolve().parents[1] / "installer" / "semtrace.service"


def _unit_settings() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect under another uid")
def test_the_installed_units_query_socket_is_reachable_by_another_os_user(
        tmp_path: Path, passphrase_file: Path) -> None:
    """The service as the unit starts it, with the directories as install.sh and systemd
    make them: a reader of another uid reaches the query socket (the service then decides
    by its role). It was inside the 0700 data dir: 'Permission denied' for everyone else."""
    import shlex
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    unit = _unit_settings()
    root = Path(tempfile.mkdtemp(prefix="semtrace-unit-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        data, run = root / "var/lib/semtrace", root / "run/semtrace"
        data.parent.mkdir(parents=True)
        data.mkdir(mode=0o700)  # install.sh: install -d -m 0700
        run.mkdir(parents=True)
        os.chmod(run, int(unit["RuntimeDirectoryMode"], 8))
        os.chmod(run.parent, 0o755)
        os.chmod(data.parent, 0o755)
        argv = shlex.split(unit["ExecStart"].replace("/var/lib/semtrace", str(data))
                           .replace("/run/semtrace", str(run)))
        assert argv[0] == "/opt/semtrace/bin/semtrace"
        args = argv[1:]
        assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                       str(passphrase_file)).returncode == 0
        log = tmp_path / "serve.log"
        proc = subprocess.Popen([sys.executable, "-m", "appliance", *args, "--passphrase-file",
                                 str(passphrase_file)], stdout=subprocess.DEVNULL,
                                stderr=log.open("wb"))
        try:
            query = Path(args[args.index("--query-socket") + 1]) \
                if "--query-socket" in args else data / "query.sock"
            deadline = time.monotonic() + STARTUP_S
            while not query.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert query.exists(), log.read_text()[-2000:]
            code = ("import os, socket, json; os.setgroups([]); os.setgid(65534); "
                    "os.setuid(65534); s=socket.socket(socket.AF_UNIX); s.settimeout(30); "
                    f"s.connect({str(query)!r}); "
                    "s.sendall(json.dumps({'v':1,'op':'threads'}).encode()+b'\\n'); "
                    "print(s.makefile().readline())")
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 timeout=60)
            assert "PermissionError" not in out.stderr, out.stderr
            reply = json.loads(out.stdout)
            assert "ok" in reply  # a reply of the service: it decided, not the file system
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _can_mount() -> bool:
    import subprocess

    return os.geteuid() == 0 and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount(), reason="needs root and a mount namespace")
def test_a_read_only_data_dir_is_named_as_read_only_not_as_a_damaged_store(
        tmp_path: Path, passphrase_file: Path) -> None:
    import shlex
    import subprocess
    import sys

    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"tenant": "t", "user_id": "u", "ts": "2026-03-02T09:00:00Z",
                               "text": "Is it raining?"}) + "\n")
    creds = f"--data-dir {shlex.quote(str(data))} --passphrase-file {passphrase_file}"
    semtrace = f"{shlex.quote(sys.executable)} -m appliance"
    script = (f"mount --bind {data} {data} && mount -o remount,bind,ro {data} || exit 99\n"
              f"{semtrace} threads list {creds} 2> {tmp_path}/threads.err\n"
              f"{semtrace} replay {src} --out {tmp_path}/o.jsonl {creds} 2> {tmp_path}/replay.err\n"
              f"{semtrace} doctor --data-dir {data} --json > {tmp_path}/doctor.json\n")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 99, r.stderr
    assert (tmp_path / "threads.err").read_text() == ""  # reading needs no writing
    err = (tmp_path / "replay.err").read_text()
    assert len(err.strip().splitlines()) == 1, err
    assert f"The data dir {data} is read-only" in err and "damaged" not in err
    problems = json.loads((tmp_path / "doctor.json").read_text())["problems"]
    assert any("is read-only" in p for p in problems), problems


@pytest.mark.skipif(not _can_mount(), reason="needs root and a mount namespace")
def test_init_on_a_full_disk_leaves_nothing_and_succeeds_once_there_is_room(
        tmp_path: Path, passphrase_file: Path) -> None:
    import shlex
    import subprocess
    import sys

    mnt = tmp_path / "mnt"
    mnt.mkdir()
    data = mnt / "data"
    init = (f"{shlex.quote(sys.executable)} -m appliance init --data-dir {data} "
            f"--passphrase-file {passphrase_file}")
    script = (f"mount -t tmpfs -o size=64k tmpfs {mnt} || exit 99\n"
              f"{init} 2> {tmp_path}/full.err; echo $? > {tmp_path}/full.rc\n"
              f"ls -A {mnt} > {tmp_path}/left.txt\n"
              f"mount -o remount,size=64m {mnt}\n"
              f"{init} 2> {tmp_path}/room.err; echo $? > {tmp_path}/room.rc\n")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 99, r.stderr
    err = (tmp_path / "full.err").read_text()
    assert (tmp_path / "full.rc").read_text().strip() != "0"
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert f"{data} could not be initialised" in err and "nothing was left" in err
    assert (tmp_path / "left.txt").read_text().split() == []  # no half-made data dir
    assert (tmp_path / "room.rc").read_text().strip() == "0", (tmp_path / "room.err").read_text()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_running_a_command_on_the_service_users_data_dir_leaves_it_theirs(
        tmp_path: Path, passphrase_file: Path) -> None:
    """The passphrase is root's (/etc/semtrace/passphrase), so operators run `sudo semtrace
    keys rotate ...` on /var/lib/semtrace: the rotated keyring and stores, and the lock,
    were left to root, and the service then said 'keyring.json is unreadable or damaged'."""
    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    service_user = 65534
    for p in [data, *data.rglob("*")]:
        os.lchown(p, service_user, service_user)
    new = tmp_path / "new-passphrase"
    new.touch(mode=0o600)
    new.write_text("a new passphrase for the rotation\n")
    r = run_cli("keys", "rotate", "--data-dir", str(data), "--passphrase-file",
                str(passphrase_file), "--new-passphrase-file", str(new))
    assert r.returncode == 0, r.stderr
    owners = {p.name: p.lstat().st_uid for p in [data, *data.rglob("*")]}
    assert owners and all(uid == service_user for uid in owners.values()), owners


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_doctor_names_files_of_the_data_dir_its_owner_cannot_open(
        tmp_path: Path, passphrase_file: Path) -> None:
    """What an earlier version run as root left behind: the service cannot start."""
    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    for p in [data, *data.rglob("*")]:
        os.lchown(p, 65534, 65534)
    os.lchown(data / "keyring.json", 0, 0)
    doc = run_cli("doctor", "--data-dir", str(data), "--json")
    assert doc.returncode == 1
    problems = json.loads(doc.stdout)["problems"]
    assert any(p.startswith("keyring.json in ") and "chown -R 65534:" in p
               for p in problems), problems


def test_a_command_does_not_load_scikit_learn_or_scipy(tmp_path: Path) -> None:
    """opendp.prelude pulled in OpenDP's scikit-learn extras (scipy, sklearn) at every
    command's start: about a second and 90 MB that no command uses (`semtrace backup`'s
    peak memory was mostly that, bench/backup.py)."""
    import subprocess
    import sys

    probe = ("import sys; from appliance.cli import main; import appliance.noise; "
             "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_serve_check_derives_the_passphrases_key_once(
        tmp_path: Path, passphrase_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `serve --check` unlocked the data dir twice (the store's check, then the
    cluster's), running Argon2id twice: about 0.75 s more for every check with a
    passphrase. Counted in-process: the derivations of `serve --check`, after `init`."""
    from click.testing import CliRunner

    from appliance.cli import cli
    from appliance.keys import meta

    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    runs: list[int] = []
    real = meta.argon2id

    def counted(secret: bytes, params: object) -> bytes:
        runs.append(1)
        return real(secret, params)  # type: ignore[arg-type]

    monkeypatch.setattr(meta, "argon2id", counted)
    r = CliRunner().invoke(cli, ["serve", "--check", "--json", "--data-dir", str(data),
                                 "--passphrase-file", str(passphrase_file)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["message"] == "Configuration OK."
    assert len(runs) == 1


def test_doctor_without_a_data_dir_says_it_looked_in_the_users_default(tmp_path: Path) -> None:
    """`sudo semtrace doctor` on a service host looked in root's own default folder and said
    only that it does not exist; it now says whose default that is and where a service
    install keeps its data."""
    doc = run_cli("doctor", "--json", env={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert doc.returncode == 1 and "Traceback" not in doc.stderr
    said = [p for p in json.loads(doc.stdout)["problems"] if "does not exist" in p]
    assert len(said) == 1, said
    assert str(tmp_path / "xdg" / "semtrace") in said[0] and "default of this user" in said[0]
    assert "--data-dir" in said[0] and "/var/lib/semtrace" in said[0]
    # no install.sh record here (a source checkout, a --no-service install): no service
    # is said to be this install's (it said "this install's service's is /var/lib/semtrace")
    assert said[0].endswith("a service install, by install.sh, keeps its data in "
                            "/var/lib/semtrace)."), said[0]


def test_doctor_names_a_service_passphrase_file_other_users_can_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The service never says so (systemd hands it a private copy of the file), yet the
    passphrase opens the store and every backup taken. The service's file is the one the
    install recorded (tests/test_installer.py writes that record as install.sh does)."""
    from appliance.cli import main
    from appliance.config import paths

    pw = tmp_path / "etc" / "passphrase"
    pw.parent.mkdir()
    pw.write_text("correct horse battery staple\n")
    pw.chmod(0o644)
    record = tmp_path / "service.conf"
    record.write_text(f"policy_dir={tmp_path}/etc/policies\ndata_dir={tmp_path}/data\n"
                      f"passphrase_file={pw}\n")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)

    def said() -> list[str]:
        with pytest.raises(SystemExit):  # the data dir is not there: a problem either way
            main(["doctor", "--data-dir", str(tmp_path / "data"), "--json"])
        return [p for p in json.loads(capsys.readouterr().out)["problems"]
                if "passphrase file" in p]

    assert said() == [
        f"The service's passphrase file {pw} is readable by other users (mode 644), and it "
        f"opens the store and every backup taken; run `chmod 600 {pw}`."]
    pw.chmod(0o600)
    assert said() == []


def test_selftest_on_a_service_host_uses_none_of_its_metrics_port_or_cluster(
        tmp_path: Path) -> None:
    """`semtrace selftest` (README step 3, run again on a host whose service runs) started
    its own `serve` with the service's policies: with the metrics on 127.0.0.1:PORT
    (telemetry.toml) it could not bind the port the service holds and failed with 'No
    semtrace service is listening on /tmp/semtrace-selftest-.../semtrace.sock', the reason
    unsaid; with a NATS URL in cluster.toml it would join the service's cluster. Its serve
    now leaves telemetry and cluster at their defaults (off), and says why it stopped."""
    import socket

    policies = _copy(Path(__file__).resolve().parents[1] / "policies", tmp_path / "policies")
    with socket.socket() as held:  # the running service's metrics port
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        telemetry = policies / "telemetry.toml"
        telemetry.write_text(telemetry.read_text().replace(
            'listen = ""', f'listen = "127.0.0.1:{port}"', 1))
        assert f"127.0.0.1:{port}" in telemetry.read_text()
        r = run_cli("selftest", "--json", env={"SEMTRACE_POLICY_DIR": str(policies)})
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["ok"] is True
    # it says what it is doing before the round trip, on stderr (nothing was said for the
    # 30 s the round trip took on a 2-core host)
    assert ("semtrace: selftest: starting a service of its own on a throwaway store (it "
            "loads the models first), then sending it two prompts...") in r.stderr.splitlines()
    # the selftest's serve failing to start says why, in its one line
    (policies / "service.toml").write_text("queue_max = 'many'\n")
    r = run_cli("selftest", "--json", env={"SEMTRACE_POLICY_DIR": str(policies)})
    failed = [c for c in json.loads(r.stdout)["checks"] if not c["ok"]]
    assert r.returncode == 1 and [c["check"] for c in failed] == [
        "service round trip and encryption"]
    assert "(serve said: " in failed[0]["detail"] and "service.toml" in failed[0]["detail"]


def test_a_store_command_as_root_on_a_service_host_names_the_services_data_dir(
        tmp_path: Path, passphrase_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`sudo semtrace audit verify --passphrase-file /etc/semtrace/passphrase` on the host
    where install.sh put the service was told 'The data dir /root/.local/share/semtrace
    does not exist (run `semtrace init`)': advice that makes an empty store in root's home.
    With the install's record in the venv a command that changes data names the service's
    data dir to give (the checks and the commands that only read, audit verify and
    retention run --dry-run included, read it instead: test_service_host_checks.py)."""
    from appliance.cli import main
    from appliance.config import paths

    service = tmp_path / "var-lib-semtrace"
    record = tmp_path / "service.conf"
    record.write_text(f"data_dir={service}\npassphrase_file={passphrase_file}\n")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)
    for argv in (["retention", "run"], ["erase", "--tenant", "acme", "--user", "u1",
                                        "--reason", "T-1"]):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--passphrase-file", str(passphrase_file)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "semtrace init" not in err, err
        assert err.strip() == (
            f"semtrace: The data dir {tmp_path / 'xdg' / 'semtrace'} does not exist (the default "
            f"of this user; this host's service keeps its data in {service}: give --data-dir "
            f"{service}).")
    assert not (tmp_path / "xdg" / "semtrace").exists()
    # a data dir given, or no record: as before
    with pytest.raises(SystemExit):
        main(["audit", "verify", "--data-dir", str(tmp_path / "typo"), "--passphrase-file",
              str(passphrase_file)])
    assert "typo does not exist (run `semtrace init`)" in capsys.readouterr().err


def test_doctor_as_root_on_a_healthy_service_host_checks_the_services_data_dir(
        tmp_path: Path, passphrase_file: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """`sudo semtrace doctor` on a host where install.sh put a healthy service looked in
    root's own default folder, said 'The data dir /root/.local/share/semtrace does not
    exist' and exited 1: the operator's first health check failed a healthy host. With the
    install's record in the venv (the harness of the test above), no data dir given and no
    store of the caller's own, it checks the service's data dir and says which and why."""
    from appliance.cli import main
    from appliance.config import paths

    service = tmp_path / "var-lib-semtrace"
    assert run_cli("init", "--data-dir", str(service), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    record = tmp_path / "service.conf"
    record.write_text(f"data_dir={service}\npassphrase_file={passphrase_file}\n")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)
    own = tmp_path / "xdg" / "semtrace"

    def doctor(*argv: str) -> tuple[int, dict[str, Any]]:
        code: int | str | None = 0
        try:
            main(["doctor", *argv, "--json"])
        except SystemExit as exit_:
            code = exit_.code
        return int(code or 0), json.loads(capsys.readouterr().out)

    code, report = doctor()
    assert code == 0 and report["problems"] == [], report["problems"]
    assert report["paths"]["data_dir"] == str(service)
    assert report["data_dir_source"] == "service"
    assert str(record) in report["data_dir_why"] and str(own) in report["data_dir_why"]
    assert str(service) in report["at_start_unknown"]  # the service's store, found
    # with the service's passphrase it reads what the next start would migrate: nothing
    code, report = doctor("--passphrase-file", str(passphrase_file))
    assert code == 0 and report["at_start"] == [], report
    main(["doctor"])  # no problem: no exit
    text = capsys.readouterr().out
    assert f"Checked the data dir {service}, this host's service's" in text
    assert "No problems found." in text
    assert not own.exists()  # nothing made in root's home
    # a data dir given is checked, as before: here a missing one
    code, report = doctor("--data-dir", str(tmp_path / "typo"))
    assert code == 1 and report["data_dir_source"] == "option"
    assert f"The data dir {tmp_path / 'typo'} does not exist." in report["problems"]
    # a store of the caller's own is theirs to check
    assert run_cli("init", "--data-dir", str(own), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    code, report = doctor()
    assert report["paths"]["data_dir"] == str(own)
    assert report["data_dir_source"] == "user default"
    # a service whose data dir is gone is named as the service's
    shutil.rmtree(own)
    shutil.rmtree(service)
    code, report = doctor()
    assert code == 1 and report["data_dir_source"] == "service"
    assert [p for p in report["problems"] if "does not exist" in p] == [
        f"The data dir {service} of this host's service (install.sh's record {record}) "
        "does not exist."]
    # $SEMTRACE_DATA_DIR is a data dir given, as before
    monkeypatch.setenv("SEMTRACE_DATA_DIR", str(tmp_path / "typo"))
    code, report = doctor()
    assert code == 1 and report["paths"]["data_dir"] == str(tmp_path / "typo")
    assert report["data_dir_source"] == "environment"
    assert "$SEMTRACE_DATA_DIR" in report["data_dir_why"]
