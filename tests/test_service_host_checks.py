"""`serve --check`, `audit verify` and the commands that only read the store (`audit log`,
`retention run --dry-run`, ...) on a service host, run by a user with no store of their own
(root, say) and no data dir given: they check the service's data dir, as doctor does, and
say which they checked and why (appliance/cli/check_target.py); commands that change data
keep refusing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt
from test_spine import run_cli


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from appliance.cli import main

    code: int | str | None = 0
    try:
        main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return int(code or 0), out.out, out.err


@pytest.fixture
def service_host(tmp_path: Path, passphrase_file: Path,
                 monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A healthy service's data dir and install.sh's record of it in the venv."""
    from appliance.config import paths

    service = tmp_path / "var-lib-semtrace"
    assert run_cli("init", "--data-dir", str(service), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    record = tmp_path / "service.conf"
    record.write_text(f"data_dir={service}\npassphrase_file={passphrase_file}\n")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)
    return service, record


def test_serve_check_and_audit_verify_as_root_on_a_service_host_check_the_services_data_dir(
        tmp_path: Path, passphrase_file: Path, service_host: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`sudo semtrace audit verify --passphrase-file /etc/semtrace/passphrase` on the host
    of a healthy service refused, naming the service's data dir to give, while `sudo
    semtrace doctor` checked it: two answers to the same question. Now both check the
    service's and say so in doctor's words; a data dir given, or the caller's own store,
    is checked as before."""
    service, record = service_host
    own = tmp_path / "xdg" / "semtrace"
    pw = ("--passphrase-file", str(passphrase_file))
    why = (f"Checked the data dir {service}, this host's service's (install.sh's record "
           f"{record}): no --data-dir or $SEMTRACE_DATA_DIR was given and this user has no "
           f"store in {own}.")

    code, out, err = _main(capsys, "audit", "verify", *pw)
    assert code == 0, err
    assert out.splitlines()[0] == why
    assert out.splitlines()[1].startswith("Audit log intact: ")
    code, out, _ = _main(capsys, "audit", "verify", "--json", *pw)
    report: dict[str, Any] = json.loads(out)
    assert code == 0 and report["ok"] and report["data_dir"] == str(service)
    assert report["data_dir_source"] == "service" and report["data_dir_why"] == why
    code, out, err = _main(capsys, "serve", "--check", *pw)
    assert code == 0 and out.splitlines() == [why, "Configuration OK."], (out, err)
    code, out, err = _main(capsys, "serve", "--check", "--json", *pw)
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["data_dir"] == str(service)
    assert report["data_dir_source"] == "service" and report["data_dir_why"] == why
    assert not own.exists()  # nothing made in root's home

    # a data dir given is checked, as before
    for argv in (["audit", "verify"], ["serve", "--check"]):
        code, _, err = _main(capsys, *argv, "--data-dir", str(tmp_path / "typo"), *pw)
        assert code == 2 and "typo does not exist (run `semtrace init`)" in err, err
    code, out, _ = _main(capsys, "serve", "--check", "--json", "--data-dir", str(service), *pw)
    assert json.loads(out)["data_dir_source"] == "option"
    monkeypatch.setenv("SEMTRACE_DATA_DIR", str(service))
    code, out, _ = _main(capsys, "audit", "verify", "--json", *pw)
    assert code == 0 and json.loads(out)["data_dir_source"] == "environment"
    monkeypatch.delenv("SEMTRACE_DATA_DIR")

    # a store of the caller's own is theirs to check
    assert run_cli("init", "--data-dir", str(own), *pw).returncode == 0
    for argv in (["audit", "verify", "--json"], ["serve", "--check", "--json"]):
        code, out, _ = _main(capsys, *argv, *pw)
        assert code == 0 and json.loads(out)["data_dir"] == str(own)
        assert json.loads(out)["data_dir_source"] == "user default"

    # a service whose data dir is gone is named as the service's, exit 2 (doctor's words)
    shutil.rmtree(own)
    shutil.rmtree(service)
    for argv in (["audit", "verify"], ["serve", "--check"]):
        code, out, err = _main(capsys, *argv, *pw)
        assert code == 2 and out == ""
        assert err.strip() == (f"semtrace: The data dir {service} of this host's service "
                               f"(install.sh's record {record}) does not exist.")
    assert not service.exists() and not own.exists()


# every command that only reads the store, with what makes it print the same data twice
READERS = (["audit", "log", "--json"], ["audit", "public-key"],
           ["retention", "run", "--dry-run", "--as-of", "2027-01-01T00:00:00Z", "--json"],
           ["thresholds", "--json"], ["threads", "list", "--json"],
           ["search", "sourdough hydration", "--tenant", "acme", "--user", "alice", "--json"],
           ["stats", "topics", "--tenant", "acme", "--user", "alice", "--role", "compliance",
            "--from", "2026-03-01",
            "--to", "2026-03-08", "--json"])
# and some that change data (a shred, an issued report, a spent privacy budget)
WRITERS = (["retention", "run"], ["audit", "retention"],
           ["stats", "topics", "--tenant", "acme"])


def _without_target(out: str) -> Any:
    """The JSON printed, less what says which data dir was read (or the text, if not
    JSON)."""
    try:
        found = json.loads(out)
    except ValueError:
        return out
    if isinstance(found, dict):
        for key in ("data_dir", "data_dir_source", "data_dir_why"):
            found.pop(key, None)
    return found


def test_read_only_commands_as_root_on_a_service_host_read_the_services_data_dir(
        tmp_path: Path, passphrase_file: Path, pipeline: Any, runtime: Any, data_dir: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`sudo semtrace audit log --passphrase-file /etc/semtrace/passphrase` on the host of
    a healthy service refused, naming the service's data dir to give, while `sudo semtrace
    audit verify` read it: a compliance officer got two answers from one store. Now every
    command that only reads the store reads the service's, says so on stderr in doctor's
    words, and prints what it prints given --data-dir; commands that change data still
    refuse root's empty default folder. They said "Checked the data dir ...", the doctor's
    report, before a listing that checked nothing: now "Reading the data dir ..."."""
    from appliance.config import paths

    pipeline.process([make_prompt("What is a good sourdough hydration?"),
                      make_prompt("And for a rye loaf?", minutes=2)])
    runtime.store.checkpoint()
    record = tmp_path / "service.conf"
    record.write_text(f"data_dir={data_dir}\npassphrase_file={passphrase_file}\n")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)
    own = tmp_path / "xdg" / "semtrace"
    pw = ("--passphrase-file", str(passphrase_file))
    why = (f"semtrace: Reading the data dir {data_dir}, this host's service's (install.sh's "
           f"record {record}): no --data-dir or $SEMTRACE_DATA_DIR was given and this user has "
           f"no store in {own}.")

    code, out, err = _main(capsys, "threads", "list", "--json", *pw)
    assert code == 0 and why in err.splitlines(), err
    (thread,) = json.loads(out)  # the service's thread, not an empty store
    assert thread["tenant"] == "acme" and thread["turns"] == 2
    for argv in (*READERS, ["threads", "show", thread["thread_id"], "--json"]):
        code, out, err = _main(capsys, *argv, *pw)
        assert code == 0 and why in err.splitlines(), (argv, err)
        given_code, given, given_err = _main(capsys, *argv, "--data-dir", str(data_dir), *pw)
        assert given_code == 0 and why not in given_err.splitlines(), (argv, given_err)
        assert _without_target(out) == _without_target(given), argv
    code, out, _ = _main(capsys, "retention", "run", "--dry-run", "--json", *pw)
    report = json.loads(out)
    assert report["data_dir"] == str(data_dir) and report["data_dir_source"] == "service"
    assert report["data_dir_why"] == why.removeprefix("semtrace: ")
    code, out, err = _main(capsys, "audit", "log", *pw)  # the text: the why on stderr only
    assert code == 0 and why not in out and " init " in out and why in err.splitlines()

    # commands that change data: refused, naming the service's data dir to give
    for argv in WRITERS:
        code, out, err = _main(capsys, *argv, *pw)
        assert code == 2 and err.strip() == (
            f"semtrace: The data dir {own} does not exist (the default of this user; this "
            f"host's service keeps its data in {data_dir}: give --data-dir {data_dir})."), err
    assert not own.exists()  # nothing made in root's home

    # a store of the caller's own is theirs to read, and nothing is said of it
    assert run_cli("init", "--data-dir", str(own), *pw).returncode == 0
    code, out, err = _main(capsys, "threads", "list", "--json", *pw)
    assert code == 0 and json.loads(out) == [] and "the data dir" not in err

    # a service whose data dir is gone is named as the service's, exit 2 (doctor's words)
    shutil.rmtree(own)
    runtime.close()
    shutil.rmtree(data_dir)
    for argv in READERS:
        code, out, err = _main(capsys, *argv, *pw)
        assert code == 2 and out == "", argv
        assert err.strip() == (f"semtrace: The data dir {data_dir} of this host's service "
                               f"(install.sh's record {record}) does not exist."), err


def as_nobody(argv: list[str], record: Path,
              env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`semtrace ARGV` as uid 65534 (root drops to it), with install.sh's record `record`:
    a user who may not read root's folders, for checks of what they cannot read."""
    # the interpreter's own files may be root's alone (a pyenv in /root): the command is
    # run once as root first, on a data dir that does not exist, so that what it loads on
    # its way to the data dir check is loaded before the uid is dropped
    code = f"""
import contextlib, io, os, sys
from appliance.cli import main
from appliance.config import paths
with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
    try:
        main([*sys.argv[1:], "--data-dir", "/nonexistent/semtrace"])
    except SystemExit:
        pass
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
paths.SERVICE_RECORD = paths.Path({str(record)!r})
main(sys.argv[1:])
"""
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=600,
                          cwd=Path(__file__).parent.parent)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another uid")
def test_a_service_data_dir_the_caller_cannot_read_is_one_sentence(
        passphrase_file: Path) -> None:
    """An operator without root on the service's host: `semtrace audit verify`, `semtrace
    serve --check` and the commands that only read (`audit log`, `retention run --dry-run`)
    name the service's data dir they may not read, in doctor's words, instead of a
    traceback (PermissionError) or a wrong store."""
    root = Path(tempfile.mkdtemp(prefix="semtrace-host-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        service = root / "var-lib-semtrace"
        assert run_cli("init", "--data-dir", str(service), "--passphrase-file",
                       str(passphrase_file)).returncode == 0  # 0700, root's
        record = root / "service.conf"
        record.write_text(f"data_dir={service}\n")
        os.chmod(record, 0o644)
        shutil.copy(passphrase_file, root / "pw")
        os.chown(root / "pw", 65534, 65534)
        env = {"XDG_DATA_HOME": str(root / "home")}  # nobody's: no store there
        for argv in (["audit", "verify"], ["serve", "--check"], ["audit", "log"],
                     ["retention", "run", "--dry-run"]):
            r = as_nobody([*argv, "--passphrase-file", str(root / "pw")], record, env)
            assert "Traceback" not in r.stderr, r.stderr
            assert r.returncode == 2 and r.stderr.strip() == (
                f"semtrace: The data dir {service} cannot be read by this user (uid 65534): "
                f"run {' '.join(argv)} as root or as its owner."), r.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another uid")
def test_doctor_names_a_data_dir_the_caller_cannot_read(passphrase_file: Path) -> None:
    """doctor run by a user who may not look into the data dir (the service's, 0700, with
    them not its owner; or one inside a folder closed to them) names it as unreadable, in
    one problem, exit 1, instead of a traceback. Tests run as root, whom no folder stops:
    doctor runs as uid 65534 here."""
    root = Path(tempfile.mkdtemp(prefix="semtrace-host-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        service = root / "var-lib-semtrace"
        assert run_cli("init", "--data-dir", str(service), "--passphrase-file",
                       str(passphrase_file)).returncode == 0  # 0700, root's
        closed = root / "closed"
        closed.mkdir(mode=0o700)
        inner = closed / "data"
        assert run_cli("init", "--data-dir", str(inner), "--passphrase-file",
                       str(passphrase_file)).returncode == 0
        record = root / "service.conf"
        record.write_text(f"data_dir={service}\n")
        os.chmod(record, 0o644)
        env = {"XDG_DATA_HOME": str(root / "home")}  # nobody's: no store there
        # no data dir given: the service's; one given inside a closed folder (one given
        # that the caller cannot read: tests/test_data_dir_owner.py)
        for argv, path in (([], service), (["--data-dir", str(inner)], inner)):
            r = as_nobody(["doctor", "--json", *argv], record, env)
            assert "Traceback" not in r.stderr, r.stderr
            report = json.loads(r.stdout)
            assert r.returncode == 1 and report["paths"]["data_dir"] == str(path)
            named = [p for p in report["problems"] if str(path) in p]
            assert named == [f"The data dir {path} cannot be read by this user (uid 65534): "
                             "run doctor as root or as its owner."], report["problems"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
