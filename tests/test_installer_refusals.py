"""What install.sh refuses, in one sentence, before doing anything (as root, on a stand-in
bundle: tests/installer_host.py): folders and interpreters the unit cannot reach, a
passphrase it could not load or that would replace the one in use, a prefix that is no
venv or holds the data dir."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from installer_host import (
    SYSTEM_PYTHON,
    UNIT,
    dry_install,
    needs_mount_namespace,
    needs_system_python,
    shown,
    stand_in_bundle,
    stand_in_host,
    with_folders_bound,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the service install needs root")


@needs_system_python
@pytest.mark.parametrize("option", ["--prefix", "--data-dir", "--config-dir"])
def test_a_service_install_into_a_home_folder_the_unit_hides_is_refused(
        srv: Path, option: str) -> None:
    """The unit runs with ProtectHome=yes: a venv, data dir or config dir under /home or
    /root installed, and the service then never found them. Refused in one sentence."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
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
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
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


@needs_system_python
@pytest.mark.parametrize("place", ["/run/semtrace/data", "/run/semtrace-store", "/dev/shm/st"])
@pytest.mark.parametrize("option", ["--prefix", "--data-dir", "--config-dir"])
def test_a_service_install_into_a_folder_emptied_at_boot_or_stop_is_refused(
        srv: Path, option: str, place: str) -> None:
    """/run and /dev/shm are tmpfs, emptied at every boot, and the unit's
    RuntimeDirectory=semtrace removes /run/semtrace at every stop: a data dir there lost the
    store and its keys, a config dir the passphrase."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    places = {"--prefix": str(prefix), "--data-dir": str(srv / "data"),
              "--config-dir": str(srv / "etc"), option: f"{place}-{srv.name}"}
    r = subprocess.run(["bash", str(bundle / "install.sh"), *[
        x for k, v in places.items() for x in (k, v)], "--passphrase-file", str(pw),
        "--python", SYSTEM_PYTHON or sys.executable, "--dry-run"],
        capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stdout
    assert r.stderr.strip() == (
        f"install: the service cannot keep {places[option]} ({option}): /run and /dev/shm are "
        "emptied at every boot, and /run/semtrace at every stop of the service "
        "(RuntimeDirectory=semtrace); give a folder outside them, such as the default; "
        "nothing was installed.")
    assert "would run" not in r.stdout and not Path(places[option]).exists()


@needs_system_python
@pytest.mark.parametrize("name", ["semtrace data", "semtrace%d", 'semtrace"x', "semtrace\\x"])
@pytest.mark.parametrize("option", ["--prefix", "--data-dir", "--config-dir"])
def test_a_service_install_into_a_folder_the_unit_cannot_name_is_refused(
        srv: Path, option: str, name: str) -> None:
    """The unit names the folders in ExecStart=, ReadWritePaths= and LoadCredential=:
    systemd split '/srv/semtrace data' at the space (the service never started: 'Command
    /srv/semtrace is not executable') and read '%d' as its credentials folder."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    place = srv / name
    places = {"--prefix": prefix, "--data-dir": srv / "data", "--config-dir": srv / "etc",
              option: place}
    r = subprocess.run(["bash", str(bundle / "install.sh"), *[
        x for k, v in places.items() for x in (k, str(v))], "--passphrase-file", str(pw),
        "--python", SYSTEM_PYTHON or sys.executable, "--dry-run"],
        capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 1, r.stdout
    assert r.stderr.strip() == (
        f"install: the service's unit cannot name {place} ({option}): systemd splits its "
        "lines at spaces and reads %, quotes and backslashes itself; give a folder without "
        "them, such as the default; nothing was installed.")
    assert "would run" not in r.stdout and not place.exists()
    no_service = subprocess.run(["bash", str(bundle / "install.sh"), "--prefix",
                                 str(srv / "venv x"), "--data-dir", str(srv / "data x"),
                                 "--no-service", "--python", SYSTEM_PYTHON or sys.executable,
                                 "--dry-run"], capture_output=True, text=True, timeout=120)
    assert no_service.returncode == 0, no_service.stderr  # no unit: any folder will do


@needs_system_python
@needs_mount_namespace
def test_an_upgrade_naming_another_data_or_config_dir_than_the_services_is_refused(
        srv: Path) -> None:
    """Re-running the install without the first install's --data-dir pointed the unit at a
    new, empty store: the service's threads were gone from view and retention no longer
    shredded the old store. (The unit the first install wrote is put in a stand-in
    /etc/systemd/system, bound over the host's in a mount namespace of the test's own.)"""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=True)
    etc, data = srv / "etc", srv / "data"
    etc.mkdir()
    (etc / "passphrase").write_text("x\n")
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    first = dry_install(bundle, prefix, data, env, "--config-dir", str(etc))
    assert first.returncode == 0, first.stderr
    units = srv / "units"
    units.mkdir()
    (units / "semtrace.service").write_text(shown(first.stdout, UNIT))

    def again(*folders: str) -> subprocess.CompletedProcess[str]:
        install = ["bash", str(bundle / "install.sh"), "--prefix", str(prefix), "--python",
                   SYSTEM_PYTHON or sys.executable, "--dry-run", *folders]
        return with_folders_bound({units: "/etc/systemd/system"}, install, env)

    r = again("--config-dir", str(etc))  # the README's command: the default data dir
    assert r.returncode == 1, r.stdout
    assert r.stderr.strip() == (
        f"install: the service installed here keeps its data in {data}, not /var/lib/semtrace: "
        f"give --data-dir {data} to upgrade it (uninstall it first to start a new store "
        "elsewhere); nothing was installed.")
    assert "would run" not in r.stdout
    r = again("--data-dir", str(data))
    assert r.returncode == 1, r.stdout
    assert r.stderr.strip() == (
        f"install: the service installed here reads its passphrase and policies from {etc}, "
        f"not /etc/semtrace: give --config-dir {etc} to upgrade it; nothing was installed.")
    r = again("--data-dir", str(data), "--config-dir", str(etc))
    assert r.returncode == 0, r.stderr
    assert "would run: systemctl stop semtrace" in r.stdout  # the upgrade goes ahead


@pytest.mark.skipif(Path("/etc/semtrace/passphrase").exists(),
                    reason="this host has a service passphrase")
def test_a_service_install_without_a_passphrase_for_the_unit_is_refused_before_anything(
        srv: Path) -> None:
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    shutil.rmtree(prefix)
    r = dry_install(bundle, prefix, srv / "data", env)
    assert r.returncode != 0
    assert "/etc/semtrace/passphrase" in r.stderr and "--passphrase-file" in r.stderr
    assert "would run" not in r.stdout
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_an_upgrade_given_another_passphrase_file_is_refused_and_keeps_the_one_in_use(
        srv: Path) -> None:
    """Re-running the documented install command with another passphrase file replaced
    the unit's passphrase: the service never started again, and the file that opened the
    data dir was gone."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=True)
    etc = srv / "etc"
    etc.mkdir()
    (etc / "passphrase").write_text("the passphrase that opens the data dir\n")
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    other = srv / "pw"
    other.write_text("another passphrase\n")
    r = dry_install(bundle, prefix, data, env, "--passphrase-file", str(other),
                 "--config-dir", str(etc))
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"differs from {etc / 'passphrase'}" in r.stderr and "keys rotate" in r.stderr
    assert "would run" not in r.stdout and not (srv / "systemctl.log").exists()
    assert (etc / "passphrase").read_text() == "the passphrase that opens the data dir\n"
    same = srv / "same"
    shutil.copy(etc / "passphrase", same)
    r = dry_install(bundle, prefix, data, env, "--passphrase-file", str(same),
                 "--config-dir", str(etc))
    assert "differs from" not in r.stderr, r.stderr


def test_a_service_install_with_a_python_the_service_user_cannot_run_is_refused_before_anything(
        srv: Path) -> None:
    """pyenv's or conda's Python under a home, or any interpreter behind a directory closed to
    other users, installed fine and the unit then never started ('Permission denied')."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    shutil.rmtree(prefix)
    pw = srv / "pw"
    pw.write_text("x\n")
    closed = srv / "closed"
    closed.mkdir(mode=0o700)
    subprocess.run([SYSTEM_PYTHON or sys.executable, "-m", "venv", "--copies", "--without-pip",
                    str(closed / "py")], check=True, timeout=120)
    r = dry_install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw),
                 python=str(closed / "py" / "bin" / "python3"))
    assert r.returncode != 0
    assert "the service user cannot run" in r.stderr and "--python" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "would run" not in r.stdout and not prefix.exists()
    homed = os.path.realpath(sys.executable)
    if homed.startswith(("/root/", "/home/")):  # as on the machines this project is built on
        r = dry_install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw),
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
    bundle = stand_in_bundle(tmp_path)
    opt = tmp_path / "opt"
    (opt / "other-app").mkdir(parents=True)
    (opt / "other-app" / "config").write_text("another product's file\n")
    copy = tmp_path / "backup"  # what `semtrace backup` writes: taken for a store before
    copy.mkdir()
    for name in ("keyring.json", "backup.json"):
        (copy / name).write_text("{}")
    before = _tree(tmp_path)
    for prefix, data, said in (
            (opt, tmp_path / "data", "is not a Semtrace install"),
            (tmp_path / "semtrace2", copy, "is a backup made by 'semtrace backup'"),
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


@needs_system_python
def test_a_users_install_into_folders_it_may_not_write_is_one_sentence(srv: Path) -> None:
    """`install.sh --no-service` run by a user with folders it may not write (the default
    /opt/semtrace, here a root-owned folder) ended after the checksums on python's
    "Error: [Errno 13] Permission denied: '/opt/semtrace'"; it now says what to give, and
    nothing is made."""
    bundle = stand_in_bundle(srv)
    before = sorted(p.name for p in srv.iterdir())
    r = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(bundle / "install.sh"),
                        "--no-service", "--prefix", str(srv / "venv"), "--data-dir",
                        str(srv / "data"), "--python", SYSTEM_PYTHON or sys.executable],
                       capture_output=True, text=True, timeout=120, cwd=srv)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"install: nobody may not write {srv}/venv (--prefix; {srv} is not writable): give "
        "--prefix and --data-dir folders of your own with --no-service, or run it as root; "
        "nothing was installed."), r.stderr
    assert sorted(p.name for p in srv.iterdir()) == before


@needs_system_python
def test_a_user_without_a_name_is_refused_in_one_sentence_too(srv: Path) -> None:
    """A container's user often has a uid and no name (`docker run --user 4242`): the
    refusal above came with `id`'s own "id: cannot find name for user ID 4242" line before
    it. It is the one sentence, naming the uid."""
    bundle = stand_in_bundle(srv)
    r = subprocess.run(["setpriv", "--reuid", "4242", "--regid", "4242", "--clear-groups",
                        "bash", str(bundle / "install.sh"), "--no-service", "--prefix",
                        str(srv / "venv"), "--data-dir", str(srv / "data"),
                        "--python", SYSTEM_PYTHON or sys.executable],
                       capture_output=True, text=True, timeout=120, cwd="/")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"install: 4242 may not write {srv}/venv (--prefix; {srv} is not writable): give "
        "--prefix and --data-dir folders of your own with --no-service, or run it as root; "
        "nothing was installed."), r.stderr
