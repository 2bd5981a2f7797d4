"""uninstall.sh as root on a stand-in host (tests/installer_host.py): it removes only a
Semtrace venv and data dir, keeps the config dir and the service's user and names them,
and a service uninstall is root's. The install leaving the uninstaller:
tests/test_installer.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from installer_host import (
    INSTALLER,
    needs_mount_namespace,
    stand_in_host,
    with_folders_bound,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the service install needs root")


def uninstall(*args: str) -> subprocess.CompletedProcess[str]:
    """The bundle's uninstall.sh run as root with these options."""
    return subprocess.run(["bash", str(INSTALLER / "uninstall.sh"), *args],
                          capture_output=True, text=True, timeout=60)


def test_uninstall_removes_nothing_that_is_not_a_semtrace_install_or_data_dir(
        tmp_path: Path) -> None:
    other = tmp_path / "usr-local"
    (other / "bin").mkdir(parents=True)
    (other / "bin" / "tool").write_text("keep me\n")
    r = uninstall("--prefix", str(other), "--no-service")
    assert r.returncode != 0 and "is not a Semtrace install" in r.stderr
    assert (other / "bin" / "tool").exists()
    prefix, _ = stand_in_host(tmp_path, active=False)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    data = tmp_path / "var-lib"
    data.mkdir()
    (data / "notes.txt").write_text("keep me\n")
    r = uninstall("--prefix", str(prefix), "--data-dir", str(data), "--purge", "--no-service")
    assert r.returncode != 0 and "is not a Semtrace data dir" in r.stderr
    assert (data / "notes.txt").exists() and prefix.exists()
    (data / "notes.txt").unlink()
    (data / "keyring.json").write_text("{}")
    (data / "backup.json").write_text("{}")  # what `semtrace backup` writes beside it
    r = uninstall("--prefix", str(prefix), "--data-dir", str(data), "--purge", "--no-service")
    # a backup's folder given as --data-dir was removed whole with the prefix
    assert r.returncode != 0 and "is a backup made by 'semtrace backup'" in r.stderr
    assert (data / "keyring.json").exists() and prefix.exists()
    (data / "backup.json").unlink()
    r = uninstall("--prefix", str(prefix), "--data-dir", str(data), "--purge", "--no-service")
    assert r.returncode == 0, r.stderr
    assert not prefix.exists() and not data.exists()


def test_uninstalling_the_service_as_another_user_than_root_is_one_sentence(
        srv: Path) -> None:
    """systemctl failed unseen and rm then stopped on 'Permission denied'."""
    prefix, _ = stand_in_host(srv, active=False)
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    before = _listing(srv)
    r = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(INSTALLER / "uninstall.sh"),
                        "--prefix", str(prefix), "--data-dir", str(data), "--purge"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        "uninstall: removing the service needs root (run it with sudo; --no-service for an "
        "install without one); nothing was removed.")
    assert _listing(srv) == before


@needs_mount_namespace
@pytest.mark.parametrize("purge", [True, False])
def test_uninstalling_the_service_names_the_system_user_it_keeps(srv: Path, purge: bool) -> None:
    """The semtrace user and group stayed after an uninstall, --purge too, and nothing said
    so. (A stand-in `id` says the user exists, as install.sh leaves it; the unit removed is a
    stand-in's, bound over /etc/systemd/system in a mount namespace of the test's own.)"""
    prefix, env = stand_in_host(srv, active=False)
    units = srv / "units"
    units.mkdir()
    (units / "semtrace.service").write_text("[Service]\nExecStart=/bin/true\n")
    (srv / "fakebin" / "id").write_text('#!/bin/sh\n[ "$1" = semtrace ] && exit 0\n'
                                        'exec /usr/bin/id "$@"\n')
    (srv / "fakebin" / "id").chmod(0o755)
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    r = with_folders_bound({units: "/etc/systemd/system"}, [
        "bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(prefix), "--data-dir",
        str(data), "--config-dir", str(srv / "etc"), *(["--purge"] if purge else [])], env)
    assert r.returncode == 0, r.stderr
    assert not prefix.exists() and data.exists() != purge
    assert not (units / "semtrace.service").exists()
    assert "disable --now semtrace" in (srv / "systemctl.log").read_text()
    assert r.stdout.splitlines()[-1] == (
        "uninstall: kept the system user and group semtrace (the gateway's user may be in the "
        "group); remove them with 'userdel semtrace' once nothing else uses them." if purge
        else f"uninstall: kept the system user and group semtrace, which own the data dir "
             f"{data}.")


@needs_mount_namespace
def test_uninstalling_the_service_names_the_metrics_group_it_keeps(srv: Path) -> None:
    """install.sh --metrics-group makes a system group for the metrics socket's scrapers;
    the uninstall kept it and said nothing. (A stand-in `getent` says the group exists.)"""
    prefix, env = stand_in_host(srv, active=False)
    units = srv / "units"
    units.mkdir()
    (units / "semtrace.service").write_text(
        "[Service]\nGroup=semtrace\nSupplementaryGroups=semtrace-metrics\n"
        "ExecStart=/bin/true --metrics unix:/run/semtrace/metrics.sock --metrics-group "
        "semtrace-metrics\n")
    (srv / "fakebin" / "getent").write_text(
        '#!/bin/sh\n[ "$1 $2" = "group semtrace-metrics" ] && exit 0\nexit 2\n')
    (srv / "fakebin" / "getent").chmod(0o755)
    r = with_folders_bound({units: "/etc/systemd/system"}, [
        "bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(prefix), "--data-dir",
        str(srv / "data"), "--config-dir", str(srv / "etc")], env)
    assert r.returncode == 0, r.stderr
    assert not (units / "semtrace.service").exists()
    assert r.stdout.splitlines()[-1] == (
        "uninstall: kept the system group semtrace-metrics (the metrics socket's: a scraper's "
        "user may be in it); remove it with 'groupdel semtrace-metrics' once nothing else "
        "uses it.")


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_uninstall_purge_removes_the_data_dir_and_names_the_config_dir_it_keeps(
        tmp_path: Path) -> None:
    """--purge destroys the data; the passphrase (which still opens every backup taken)
    and the policies stay, and the operator is told where."""
    prefix, _ = stand_in_host(tmp_path, active=False)
    (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    data = tmp_path / "var-lib"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    (data / "semtrace.db").write_bytes(b"\0" * 64)
    etc = tmp_path / "etc"
    (etc / "policies").mkdir(parents=True)
    (etc / "passphrase").write_text("x\n")
    r = uninstall("--prefix", str(prefix), "--data-dir", str(data), "--purge", "--no-service",
                  "--config-dir", str(etc))
    assert r.returncode == 0, r.stderr
    assert not prefix.exists() and not data.exists()
    assert (etc / "passphrase").exists()
    assert f"kept {etc} (the passphrase, which opens every backup taken" in r.stdout


def test_a_purge_of_a_data_dir_that_is_not_there_is_refused_and_removes_nothing(
        tmp_path: Path) -> None:
    """`uninstall.sh --purge --data-dir /var/lib/semtrac` (a typo) removed the venv and said
    'removed ... and the data dir /var/lib/semtrac.', while the store (records and their
    keys) stayed on disk, believed gone. It is now refused before anything is removed; a
    purge of the real data dir later, the venv gone with its semtrace-uninstall, works."""
    prefix, _ = stand_in_host(tmp_path, active=False)
    data = tmp_path / "var-lib-semtrace"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    typo = tmp_path / "var-lib-semtrac"
    r = uninstall("--prefix", str(prefix), "--data-dir", str(typo), "--purge", "--no-service")
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"uninstall: there is no data dir {typo} to purge (a mistyped --data-dir?): give the "
        "data dir to remove, or leave out --purge; nothing was removed.")
    assert prefix.exists() and (data / "keyring.json").exists() and not r.stdout
    kept = uninstall("--prefix", str(prefix), "--data-dir", str(data), "--no-service")
    assert kept.returncode == 0, kept.stderr
    assert not prefix.exists() and data.exists()
    assert f"the bundle's uninstall.sh --purge --data-dir {data}" in kept.stdout
    later = uninstall("--prefix", str(prefix), "--data-dir", str(data), "--purge", "--no-service")
    assert later.returncode == 0, later.stderr
    assert not data.exists()
    assert later.stdout.splitlines()[0] == (
        f"uninstall: removed the data dir {data} ({prefix} held no install).")


@needs_mount_namespace
def test_an_uninstall_given_other_folders_than_the_services_is_refused(srv: Path) -> None:
    """A mistyped --prefix (a folder that is not there) disabled and removed the service's
    unit, said 'removed /opt/semtrac' and left the venv; a --purge of another data dir than
    the one the service keeps (a restored copy beside it, say) removed that one and left
    the service's. Both are refused, naming the service's folder, before anything is done."""
    prefix, env = stand_in_host(srv, active=False)
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    copy = srv / "data-restored"
    copy.mkdir()
    (copy / "keyring.json").write_text("{}")
    units = srv / "units"
    units.mkdir()
    (units / "semtrace.service").write_text(
        f"[Service]\nExecStart={prefix}/bin/semtrace serve --data-dir {data} --socket "
        "/run/semtrace/semtrace.sock\n")
    typo = srv / "opt-typo"
    r = with_folders_bound({units: "/etc/systemd/system"}, [
        "bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(typo), "--data-dir",
        str(data), "--config-dir", str(srv / "etc")], env)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"uninstall: the service installed here runs from {prefix}, not {typo}: give "
        f"--prefix {prefix}; nothing was removed.")
    r = with_folders_bound({units: "/etc/systemd/system"}, [
        "bash", str(INSTALLER / "uninstall.sh"), "--prefix", str(prefix), "--data-dir",
        str(copy), "--config-dir", str(srv / "etc"), "--purge"], env)
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"uninstall: the service installed here keeps its data in {data}, not {copy}: give "
        f"--data-dir {data} to purge it; nothing was removed.")
    assert (units / "semtrace.service").exists() and prefix.exists()
    assert (data / "keyring.json").exists() and (copy / "keyring.json").exists()
    assert not (srv / "systemctl.log").exists()
