"""install.sh as root in --dry-run on a stand-in bundle (its scripts, checksums and no
wheels), with a stand-in `systemctl`: what it would do to a host whose service runs, and
what it refuses before doing anything. tests/test_bundle.py installs the real bundle.

A service install refuses folders under /tmp and /var/tmp (the unit's PrivateTmp=yes hides
them) and under the homes (ProtectHome=yes): its stand-in folders are made under /srv
(the `srv` fixture), as an operator's would be."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

INSTALLER = Path(__file__).resolve().parents[1] / "installer"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the service install needs root")


def _system_python() -> str | None:
    """A CPython 3.11 outside any home: the one a service install must be given (the unit
    runs it as the service user with /root and /home hidden)."""
    for exe in ("/usr/bin/python3.11", "/usr/local/bin/python3.11", "/usr/bin/python3"):
        real = os.path.realpath(exe)
        if os.path.exists(real) and not real.startswith(("/root/", "/home/")):
            out = subprocess.run([real, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True)
            if out.stdout.strip() == "(3, 11)":
                return real
    return None


SYSTEM_PYTHON = _system_python()
needs_system_python = pytest.mark.skipif(SYSTEM_PYTHON is None,
                                         reason="no system CPython 3.11 on this host")


@pytest.fixture
def srv() -> Iterator[Path]:
    """A folder a service install may use, removed after the test: not under /tmp or
    /var/tmp (PrivateTmp=yes), nor /home or /root (ProtectHome=yes)."""
    made = Path(tempfile.mkdtemp(prefix="semtrace-test-", dir="/srv"))
    made.chmod(0o755)  # as /opt or /srv: the service user may pass through
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def _bundle(tmp: Path, version: str = "0.1.0") -> Path:
    b = tmp / "bundle"
    b.mkdir()
    for name in ("install.sh", "uninstall.sh", "semtrace.service"):
        shutil.copy(INSTALLER / name, b / name)
    shutil.copytree(INSTALLER.parent / "policies", b / "policies")
    (b / "VERSION").write_text(version + "\n")
    (b / "requirements.lock").write_text("")
    (b / "models.lock").write_text("")
    subprocess.run("find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort "
                   "| xargs sha256sum > SHA256SUMS", shell=True, cwd=b, check=True)
    return b


def _host(tmp: Path, *, active: bool) -> tuple[Path, dict[str, str]]:
    """A prefix holding Semtrace 0.1.0, and a systemctl that says whether it runs."""
    prefix = tmp / "opt"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")  # a venv, as install.sh makes
    exe = prefix / "bin" / "semtrace"
    exe.write_text("#!/bin/sh\necho 'semtrace, version 0.1.0'\n")
    exe.chmod(0o755)
    fake = tmp / "fakebin"
    fake.mkdir()
    ctl = fake / "systemctl"
    ctl.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp / 'systemctl.log'}\n"
                   f"[ \"$1\" = is-active ] && exit {0 if active else 3}\nexit 0\n")
    ctl.chmod(0o755)
    return prefix, {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}


def _install(bundle: Path, prefix: Path, data: Path, env: dict[str, str],
             *extra: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(prefix),
                           "--data-dir", str(data),
                           "--python", python or SYSTEM_PYTHON or sys.executable, "--dry-run",
                           *extra], capture_output=True, text=True, env=env, timeout=120)


@needs_system_python
def test_an_upgrade_stops_the_running_service_before_replacing_its_code_and_starts_it_after(
        srv: Path) -> None:
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=True)
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    pw = srv / "pw"
    pw.write_text("x\n")
    r = _install(bundle, prefix, data, env, "--passphrase-file", str(pw))
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    stop = lines.index("would run: systemctl stop semtrace")
    pip = next(i for i, line in enumerate(lines) if "pip install" in line)
    start = lines.index("would run: systemctl start semtrace")
    assert stop < pip < start
    assert "enable with" not in r.stdout


@needs_system_python
def test_an_upgrade_that_fails_after_stopping_the_service_says_the_service_is_stopped(
        srv: Path) -> None:
    """pip failing mid-upgrade (here: a wheel missing from the bundle) left the service
    stopped with only pip's error on the screen."""
    bundle = _bundle(srv)
    (bundle / "requirements.lock").write_text(
        "semtrace-missing-wheel==9.9 --hash=sha256:" + "0" * 64 + "\n")
    subprocess.run("find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort "
                   "| xargs sha256sum > SHA256SUMS", shell=True, cwd=bundle, check=True)
    (bundle / "wheels").mkdir()
    prefix, env = _host(srv, active=True)
    etc = srv / "etc"
    etc.mkdir()
    (etc / "passphrase").write_text("x\n")
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    r = subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(prefix),
                        "--data-dir", str(data), "--config-dir", str(etc),
                        "--python", SYSTEM_PYTHON or sys.executable],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0
    assert "stop semtrace" in (srv / "systemctl.log").read_text()
    assert r.stderr.strip().splitlines()[-1].startswith(
        "install: the upgrade stopped before its end and the service is stopped"), r.stderr
    assert "systemctl start semtrace" in r.stderr.strip().splitlines()[-1]


@needs_system_python
def test_an_install_of_a_service_that_is_not_running_leaves_it_to_the_operator(
        srv: Path) -> None:
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    r = _install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "systemctl stop" not in r.stdout and "systemctl start" not in r.stdout
    assert "enable with 'systemctl enable --now semtrace'" in r.stdout


@needs_system_python
@pytest.mark.parametrize("option", ["--prefix", "--data-dir", "--config-dir"])
def test_a_service_install_into_a_home_folder_the_unit_hides_is_refused(
        srv: Path, option: str) -> None:
    """The unit runs with ProtectHome=yes: a venv, data dir or config dir under /home or
    /root installed, and the service then never found them. Refused in one sentence."""
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    home = Path("/home") / f"semtrace-test-{srv.name}" / "semtrace"
    places = {"--prefix": prefix, "--data-dir": srv / "data",
              "--config-dir": srv / "etc", option: home}
    r = subprocess.run(["bash", str(bundle / "install.sh"), *[
        x for k, v in places.items() for x in (k, str(v))], "--passphrase-file", str(pw),
        "--python", SYSTEM_PYTHON or sys.executable, "--dry-run"],
        capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"install: the service cannot reach {home} ({option}): the unit hides /root and /home "
        "(ProtectHome=yes); give a folder outside them, such as the default; nothing was "
        "installed.")
    assert "would run" not in r.stdout and not home.parent.exists()


@needs_system_python
@pytest.mark.parametrize("tmp", ["/tmp", "/var/tmp"])
@pytest.mark.parametrize("option", ["--prefix", "--data-dir", "--config-dir", "--python"])
def test_a_service_install_into_a_tmp_folder_the_unit_hides_is_refused(
        srv: Path, option: str, tmp: str) -> None:
    """The unit runs with PrivateTmp=yes: a venv, data dir, config dir or Python under /tmp
    or /var/tmp installed, and the service then saw its own empty /tmp. Refused in one
    sentence, with nothing made."""
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    there = Path(tempfile.mkdtemp(prefix="semtrace-test-", dir=tmp))
    there.chmod(0o755)  # open to the service user: only PrivateTmp hides it
    try:
        place = there / "semtrace"
        python = SYSTEM_PYTHON or sys.executable
        if option == "--python":  # an interpreter of its own there, as a standalone build
            subprocess.run([python, "-m", "venv", "--copies", "--without-pip", str(place)],
                           check=True, timeout=120)
            python = str(place / "bin" / "python3")
        places = {"--prefix": prefix, "--data-dir": srv / "data", "--config-dir": srv / "etc",
                  "--python": python}
        if option != "--python":
            places[option] = place
        before = sorted(there.rglob("*"))
        r = subprocess.run(["bash", str(bundle / "install.sh"), *[
            x for k, v in places.items() for x in (k, str(v))], "--passphrase-file", str(pw),
            "--dry-run"], capture_output=True, text=True, env=env, timeout=120)
        assert r.returncode == 1, r.stdout
        hidden = (f"the service cannot run {os.path.realpath(python)}"
                  if option == "--python" else f"the service cannot reach {place} ({option})")
        give = ("give --python a system interpreter such as /usr/bin/python3.11"
                if option == "--python" else "give a folder outside them, such as the default")
        assert r.stderr.strip() == (
            f"install: {hidden}: the unit gives the service an empty /tmp and /var/tmp of its "
            f"own (PrivateTmp=yes); {give}; nothing was installed.")
        assert "would run" not in r.stdout and sorted(there.rglob("*")) == before
    finally:
        shutil.rmtree(there, ignore_errors=True)


@pytest.mark.skipif(Path("/etc/semtrace/passphrase").exists(),
                    reason="this host has a service passphrase")
def test_a_service_install_without_a_passphrase_for_the_unit_is_refused_before_anything(
        srv: Path) -> None:
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=False)
    shutil.rmtree(prefix)
    r = _install(bundle, prefix, srv / "data", env)
    assert r.returncode != 0
    assert "/etc/semtrace/passphrase" in r.stderr and "--passphrase-file" in r.stderr
    assert "would run" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_upgrade_given_another_passphrase_file_is_refused_and_keeps_the_one_in_use(
        srv: Path) -> None:
    """Re-running the documented install command with another passphrase file replaced
    the unit's passphrase: the service never started again, and the file that opened the
    data dir was gone."""
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=True)
    etc = srv / "etc"
    etc.mkdir()
    (etc / "passphrase").write_text("the passphrase that opens the data dir\n")
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    other = srv / "pw"
    other.write_text("another passphrase\n")
    r = _install(bundle, prefix, data, env, "--passphrase-file", str(other),
                 "--config-dir", str(etc))
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"differs from {etc / 'passphrase'}" in r.stderr and "keys rotate" in r.stderr
    assert "would run" not in r.stdout and not (srv / "systemctl.log").exists()
    assert (etc / "passphrase").read_text() == "the passphrase that opens the data dir\n"
    same = srv / "same"
    shutil.copy(etc / "passphrase", same)
    r = _install(bundle, prefix, data, env, "--passphrase-file", str(same),
                 "--config-dir", str(etc))
    assert "differs from" not in r.stderr, r.stderr


def test_uninstall_removes_nothing_that_is_not_a_semtrace_install_or_data_dir(
        tmp_path: Path) -> None:
    other = tmp_path / "usr-local"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "tool").write_text("keep me\n")
    r = subprocess.run(["bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(other),
                        "--no-service"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "is not a Semtrace install" in r.stderr
    assert (other / "bin" / "tool").exists()
    prefix, _ = _host(tmp_path, active=False)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    data = tmp_path / "var-lib"
    data.mkdir()
    (data / "notes.txt").write_text("keep me\n")
    r = subprocess.run(["bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(prefix),
                        "--data-dir", str(data), "--purge", "--no-service"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "is not a Semtrace data dir" in r.stderr
    assert (data / "notes.txt").exists() and prefix.exists()
    (data / "notes.txt").unlink()
    (data / "keyring.json").write_text("{}")
    r = subprocess.run(["bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(prefix),
                        "--data-dir", str(data), "--purge", "--no-service"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not prefix.exists() and not data.exists()


def test_uninstall_purge_removes_the_data_dir_and_names_the_config_dir_it_keeps(
        tmp_path: Path) -> None:
    """--purge destroys the data; the passphrase (which still opens every backup taken)
    and the policies stay, and the operator is told where."""
    prefix, _ = _host(tmp_path, active=False)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    data = tmp_path / "var-lib"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    (data / "semtrace.db").write_bytes(b"\0" * 64)
    etc = tmp_path / "etc"
    (etc / "policies").mkdir(parents=True)
    (etc / "passphrase").write_text("x\n")
    r = subprocess.run(["bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(prefix),
                        "--data-dir", str(data), "--purge", "--no-service", "--config-dir",
                        str(etc)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not prefix.exists() and not data.exists()
    assert (etc / "passphrase").exists()
    assert f"kept {etc} (the passphrase, which opens every backup taken" in r.stdout


@needs_system_python
def test_an_upgrade_keeps_the_operators_policies_and_installs_only_missing_defaults(
        srv: Path) -> None:
    """pip rewrites the prefix's share/semtrace/policies at every upgrade: the service's
    policies live in the config dir, where an edited file is kept."""
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=False)
    etc = srv / "etc"
    (etc / "policies").mkdir(parents=True)
    (etc / "passphrase").write_text("x\n")
    edited = etc / "policies" / "retention.toml"
    edited.write_text("# the operator's retention and legal holds\n")
    (etc / "policies" / "linker-weights.json").write_text("{}")  # the previous version's
    r = _install(bundle, prefix, srv / "data", env, "--config-dir", str(etc))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"kept {edited};" in r.stdout
    writes = [line for line in r.stdout.splitlines() if line.startswith("would run:")]
    assert not any(str(edited) in line for line in writes), writes
    assert any(line.endswith(f"policies/access.toml {etc}/policies/access.toml")
               for line in writes), writes
    # the learned linker model goes with the code that reads it
    assert any(line.endswith(f"{etc}/policies/linker-weights.json") for line in writes), writes


def test_every_command_of_an_installed_host_reads_the_policies_the_service_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.config import paths

    unit = (INSTALLER / "semtrace.service").read_text()
    assert f"Environment=SEMTRACE_POLICY_DIR={paths.ETC_POLICY_DIR}" in unit
    monkeypatch.delenv("SEMTRACE_POLICY_DIR", raising=False)
    monkeypatch.setattr(paths, "_REPO_ROOT", tmp_path / "site-packages")  # no source tree
    monkeypatch.setattr(paths, "ETC_POLICY_DIR", tmp_path / "etc" / "policies")
    assert paths.policy_dir() == Path(sys.prefix) / "share" / "semtrace" / "policies"
    (tmp_path / "etc" / "policies").mkdir(parents=True)
    assert paths.policy_dir() == tmp_path / "etc" / "policies"


def test_a_service_install_with_a_python_the_service_user_cannot_run_is_refused_before_anything(
        srv: Path) -> None:
    """pyenv's or conda's Python under a home, or any interpreter behind a directory closed to
    other users, installed fine and the unit then never started ('Permission denied')."""
    bundle = _bundle(srv)
    prefix, env = _host(srv, active=False)
    shutil.rmtree(prefix)
    pw = srv / "pw"
    pw.write_text("x\n")
    closed = srv / "closed"
    closed.mkdir(mode=0o700)
    subprocess.run([SYSTEM_PYTHON or sys.executable, "-m", "venv", "--copies", "--without-pip",
                    str(closed / "py")], check=True, timeout=120)
    r = _install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw),
                 python=str(closed / "py" / "bin" / "python3"))
    assert r.returncode != 0
    assert "the service user cannot run" in r.stderr and "--python" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "would run" not in r.stdout and not prefix.exists()
    homed = os.path.realpath(sys.executable)
    if homed.startswith(("/root/", "/home/")):  # as on the machines this project is built on
        r = _install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw),
                     python=sys.executable)
        assert r.returncode != 0 and "the unit hides /root and /home" in r.stderr, r.stderr
        assert "would run" not in r.stdout


def _tree(root: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else b"")
                  for p in root.rglob("*"))


def test_a_prefix_that_is_no_venv_or_holds_the_data_dir_is_refused_before_anything(
        tmp_path: Path) -> None:
    """--prefix /opt (read as 'under /opt') put a venv among /opt's files, which
    uninstall.sh --prefix /opt then removed whole; a data dir inside the prefix went with
    any uninstall. Each is refused in one sentence, for real (no --dry-run), nothing made."""
    bundle = _bundle(tmp_path)
    opt = tmp_path / "opt"
    (opt / "other-app").mkdir(parents=True)
    (opt / "other-app" / "config").write_text("another product's file\n")
    before = _tree(tmp_path)
    for prefix, data, said in (
            (opt, tmp_path / "data", "is not a Semtrace install"),
            (tmp_path / "semtrace", tmp_path / "semtrace" / "data", "is inside --prefix"),
            (tmp_path / "data2" / "venv", tmp_path / "data2", "is inside the data dir")):
        r = subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(prefix),
                            "--data-dir", str(data), "--no-service",
                            "--python", SYSTEM_PYTHON or sys.executable],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode != 0, (prefix, r.stdout)
        assert said in r.stderr and "nothing was installed" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert _tree(tmp_path) == before, prefix


def test_relative_paths_are_the_callers_not_the_bundles(tmp_path: Path) -> None:
    """The README runs install.sh --passphrase-file ./semtrace.pass from the folder where
    the bundle was unpacked: the script worked in the bundle, so that file was not found
    once the venv, user and unit were made, and a relative --prefix went into the bundle."""
    bundle = _bundle(tmp_path)
    here = tmp_path / "admin"
    here.mkdir()
    (here / "semtrace.pass").write_text("a passphrase for the relative path test\n")
    (here / "semtrace.pass").chmod(0o600)
    r = subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", "venv", "--data-dir",
                        "./data", "--passphrase-file", "./semtrace.pass", "--no-service",
                        "--python", SYSTEM_PYTHON or sys.executable, "--dry-run"],
                       capture_output=True, text=True, timeout=120, cwd=here)
    assert r.returncode == 0, r.stderr
    assert (f"init --data-dir {here}/data --passphrase-file {here}/semtrace.pass"
            in r.stdout), r.stdout
    assert f"-m venv {here}/venv" in r.stdout and str(bundle / "venv") not in r.stdout
    missing = subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", "venv",
                              "--data-dir", "./data", "--passphrase-file", "./typo.pass",
                              "--no-service", "--python", SYSTEM_PYTHON or sys.executable],
                             capture_output=True, text=True, timeout=120, cwd=here)
    assert missing.returncode != 0
    assert f"{here}/typo.pass does not exist" in missing.stderr and "nothing was installed" \
        in missing.stderr, missing.stderr
    assert sorted(p.name for p in here.iterdir()) == ["semtrace.pass"]


def test_the_install_leaves_an_uninstaller_that_knows_its_folders(tmp_path: Path) -> None:
    """uninstall.sh was only in the bundle, often deleted after the install, and needed the
    install's --prefix and --data-dir again; the install now leaves bin/semtrace-uninstall
    with them, which works with the bundle gone (a real --no-service install of the
    stand-in bundle; its missing wheels' command is stood in for too)."""
    bundle = _bundle(tmp_path)
    prefix, data = tmp_path / "my opt", tmp_path / "data"
    r = subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(prefix),
                        "--data-dir", str(data), "--no-service",
                        "--python", SYSTEM_PYTHON or sys.executable],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"remove with {prefix}/bin/semtrace-uninstall" in r.stdout
    (prefix / "bin" / "semtrace").write_text("#!/bin/sh\n")  # the wheel's entry point
    (data / "keyring.json").write_text("{}")
    shutil.rmtree(bundle)
    gone = subprocess.run([str(prefix / "bin" / "semtrace-uninstall")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert f"removed {prefix}; the data dir {data} was kept" in gone.stdout
    assert not prefix.exists() and (data / "keyring.json").exists()
