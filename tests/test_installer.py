"""install.sh as root in --dry-run on a stand-in bundle (tests/installer_host.py), with a
stand-in `systemctl`: what it would do to a host whose service runs. What it refuses
before doing anything: tests/test_installer_refusals.py; uninstall.sh:
tests/test_uninstaller.py. tests/test_bundle.py installs the real bundle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from installer_host import (
    INSTALLER,
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
def test_an_upgrade_stops_the_running_service_before_replacing_its_code_and_starts_it_after(
        srv: Path) -> None:
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=True)
    data = srv / "data"
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    pw = srv / "pw"
    pw.write_text("x\n")
    r = dry_install(bundle, prefix, data, env, "--passphrase-file", str(pw))
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
    bundle = stand_in_bundle(srv)
    (bundle / "requirements.lock").write_text(
        "semtrace-missing-wheel==9.9 --hash=sha256:" + "0" * 64 + "\n")
    subprocess.run("find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort "
                   "| xargs sha256sum > SHA256SUMS", shell=True, cwd=bundle, check=True)
    (bundle / "wheels").mkdir()
    prefix, env = stand_in_host(srv, active=True)
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
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    r = dry_install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "systemctl stop" not in r.stdout and "systemctl start" not in r.stdout
    assert "enable with 'systemctl enable --now semtrace'" in r.stdout


def _unit_written(stdout: str) -> dict[str, str]:
    """The unit a --dry-run says it would write: its settings (comments left out)."""
    unit = {}
    for line in shown(stdout, UNIT).splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            unit[key] = value
    return unit


@needs_system_python
def test_the_unit_of_a_custom_data_dir_makes_no_folder_beside_it(srv: Path) -> None:
    """StateDirectory=semtrace made an empty /var/lib/semtrace at every start whatever
    --data-dir said. The unit written now opens the data dir chosen and names it as its state
    directory only where systemd can make one: below /var/lib."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    below = Path("/var/lib") / f"semtrace-test-{srv.name}" / "data"
    for data, state in ((srv / "data", None), (below, below.relative_to("/var/lib")),
                        (Path("/var/lib/semtrace"), "semtrace")):
        r = dry_install(bundle, prefix, data, env, "--passphrase-file", str(pw),
                        "--config-dir", str(srv / "etc"))
        assert r.returncode == 0, r.stdout + r.stderr
        unit = _unit_written(r.stdout)
        assert unit["ReadWritePaths"] == str(data)
        assert f"--data-dir {data} " in unit["ExecStart"]
        assert unit.get("StateDirectory") == (str(state) if state else None), unit
        assert ("StateDirectoryMode" in unit) == (state is not None)
        assert unit["LoadCredential"] == f"semtrace-passphrase:{srv}/etc/passphrase"
        assert unit["ExecStart"].startswith(f"{prefix}/bin/semtrace serve ")
        if state is None:
            assert "/var/lib" not in "\n".join(unit.values()), unit
        if shutil.which("systemd-analyze"):  # and systemd reads it as the unit it is
            (srv / "semtrace.service").write_text(shown(r.stdout, UNIT))
            v = subprocess.run(["systemd-analyze", "verify", str(srv / "semtrace.service")],
                               capture_output=True, text=True, timeout=120)
            said = [line for line in (v.stdout + v.stderr).splitlines()
                    if "Unknown user" not in line and "Unknown group" not in line]
            assert v.returncode == 0 and not said, said
    assert not below.parent.exists()  # a dry run


@needs_system_python
def test_the_unit_waits_for_the_mounts_of_the_installs_own_folders(srv: Path) -> None:
    """A data dir or config dir on a mount of its own (a second disk, NFS) was not named in
    the unit: at boot the service could start before the mount, find an empty folder (no
    keyring, no passphrase) and fail, or write a new store into the mount point. The unit
    now names the install's venv, data dir and config dir in RequiresMountsFor=."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    data, etc = srv / "mnt-data" / "semtrace", srv / "mnt-etc"
    r = dry_install(bundle, prefix, data, env, "--passphrase-file", str(pw),
                    "--config-dir", str(etc))
    assert r.returncode == 0, r.stdout + r.stderr
    unit = _unit_written(r.stdout)
    assert unit["RequiresMountsFor"].split() == [str(prefix), str(data), str(etc)], unit
    if shutil.which("systemd-analyze"):  # and systemd takes the line as it is written
        (srv / "semtrace.service").write_text(shown(r.stdout, UNIT))
        v = subprocess.run(["systemd-analyze", "verify", str(srv / "semtrace.service")],
                           capture_output=True, text=True, timeout=120)
        said = [line for line in (v.stdout + v.stderr).splitlines()
                if "Unknown user" not in line and "Unknown group" not in line]
        assert v.returncode == 0 and not said, said


@needs_system_python
@needs_mount_namespace
def test_an_upgrade_removes_the_empty_folder_the_earlier_unit_made_beside_the_data_dir(
        srv: Path) -> None:
    """Hosts installed before with a data dir elsewhere have the empty /var/lib/semtrace the
    earlier unit's StateDirectory= made: the upgrade removes it, and nothing that is not
    empty. (A stand-in /var/lib is bound over the host's in a mount namespace of its own.)"""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    var_lib = srv / "var-lib"
    (var_lib / "semtrace").mkdir(parents=True)

    def upgrade(data: str) -> subprocess.CompletedProcess[str]:
        return with_folders_bound({var_lib: "/var/lib"}, [
            "bash", str(bundle / "install.sh"), "--prefix", str(prefix), "--data-dir", data,
            "--config-dir", str(srv / "etc"), "--passphrase-file", str(pw),
            "--python", SYSTEM_PYTHON or sys.executable, "--dry-run"], env)

    r = upgrade(str(srv / "data"))
    assert r.returncode == 0, r.stderr
    assert ("install: removing the empty /var/lib/semtrace an earlier unit made (the data "
            f"dir is {srv / 'data'}).") in r.stdout.splitlines()
    assert "would run: rmdir /var/lib/semtrace" in r.stdout.splitlines()
    r = upgrade("/var/lib/semtrace")  # the service's own data dir: kept
    assert r.returncode == 0, r.stderr
    assert "rmdir" not in r.stdout and "removing the empty" not in r.stdout
    (var_lib / "semtrace" / "notes").write_text("not empty\n")
    r = upgrade(str(srv / "data"))
    assert r.returncode == 0, r.stderr
    assert "rmdir" not in r.stdout and "removing the empty" not in r.stdout


@needs_system_python
def test_an_upgrade_keeps_the_operators_policies_and_installs_only_missing_defaults(
        srv: Path) -> None:
    """pip rewrites the prefix's share/semtrace/policies at every upgrade: the service's
    policies live in the config dir, where an edited file is kept."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    etc = srv / "etc"
    (etc / "policies").mkdir(parents=True)
    (etc / "passphrase").write_text("x\n")
    edited = etc / "policies" / "retention.toml"
    edited.write_text("# the operator's retention and legal holds\n")
    (etc / "policies" / "linker-weights.json").write_text("{}")  # the previous version's
    r = dry_install(bundle, prefix, srv / "data", env, "--config-dir", str(etc))
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
    monkeypatch.setattr(paths, "SERVICE_RECORD", tmp_path / "no-record")
    assert paths.policy_dir() == Path(sys.prefix) / "share" / "semtrace" / "policies"
    (tmp_path / "etc" / "policies").mkdir(parents=True)
    assert paths.policy_dir() == tmp_path / "etc" / "policies"


@needs_system_python
def test_the_commands_of_an_install_with_its_own_config_dir_read_the_services_policies(
        srv: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With --config-dir elsewhere than /etc/semtrace, a command run as root read the
    bundle's default policies (the venv's), not those the service reads (another retention,
    other roles), and doctor named /var/lib/semtrace as the service's data dir. The install
    now leaves a record of the service's folders in the venv, which every command reads."""
    from appliance.cli import main
    from appliance.config import paths

    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    etc, data = srv / "etc", srv / "data"
    r = dry_install(bundle, prefix, data, env, "--passphrase-file", str(pw),
                    "--config-dir", str(etc))
    assert r.returncode == 0, r.stdout + r.stderr
    record = srv / "venv-share" / "service.conf"  # what the install writes there
    record.parent.mkdir()
    record.write_text(shown(r.stdout, f"{prefix}/share/semtrace-installer/service.conf"))
    shutil.copytree(INSTALLER.parent / "policies", etc / "policies")  # as install.sh does
    monkeypatch.delenv("SEMTRACE_POLICY_DIR", raising=False)
    monkeypatch.setattr(paths, "_REPO_ROOT", srv / "site-packages")  # no source tree
    monkeypatch.setattr(paths, "ETC_POLICY_DIR", srv / "no-etc" / "policies")
    monkeypatch.setattr(paths, "SERVICE_RECORD", record)
    assert paths.policy_dir() == etc / "policies"
    with pytest.raises(SystemExit):
        main(["doctor", "--json"])  # no --data-dir, no store of this user's: the service's
    report = json.loads(capsys.readouterr().out)
    assert report["paths"]["policies"] == str(etc / "policies")
    assert report["paths"]["data_dir"] == str(data)  # a dry run made none: named as such
    assert f"The data dir {data} of this host's service (install.sh's record {record}) " \
        "does not exist." in report["problems"], report["problems"]


def test_relative_paths_are_the_callers_not_the_bundles(tmp_path: Path) -> None:
    """The README runs install.sh --passphrase-file ./semtrace.pass from the folder where
    the bundle was unpacked: the script worked in the bundle, so that file was not found
    once the venv, user and unit were made, and a relative --prefix went into the bundle."""
    bundle = stand_in_bundle(tmp_path)
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
    bundle = stand_in_bundle(tmp_path)
    prefix, data = tmp_path / "my opt", tmp_path / "data"
    r = subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(prefix),
                        "--data-dir", str(data), "--no-service",
                        "--python", SYSTEM_PYTHON or sys.executable],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"remove with {prefix}/bin/semtrace-uninstall" in r.stdout
    # the minutes pip takes are announced (the install said nothing for 1.5 min between
    # "checksums verified" and its last line); the stand-in bundle has no wheels
    said = r.stdout.splitlines()
    assert said[1] == (f"install: installing 0 wheels into {prefix} from the bundle (pip, "
                       "offline; this takes a few minutes)..."), said
    # no service, so no record of the data dir: the last line says how to give it (doctor
    # of the new venv checked the caller's default folder, which does not exist)
    assert said[-1] == (f"install: its store is {data}: give it to the commands as "
                        f"--data-dir {data} (or export SEMTRACE_DATA_DIR={data})."), said
    (prefix / "bin" / "semtrace").write_text("#!/bin/sh\n")  # the wheel's entry point
    (data / "keyring.json").write_text("{}")
    shutil.rmtree(bundle)
    gone = subprocess.run([str(prefix / "bin" / "semtrace-uninstall")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert f"removed {prefix}; the data dir {data} was kept" in gone.stdout
    assert not prefix.exists() and (data / "keyring.json").exists()


@needs_system_python
@needs_mount_namespace
def test_a_metrics_group_of_its_own_is_written_into_the_unit_and_kept_by_an_upgrade(
        srv: Path) -> None:
    """The metrics socket could only be given the service's group, semtrace, whose members
    may also send prompts on the ingest socket: a scraper let in to read the metrics could
    ingest. --metrics-group makes the scraper's group (if missing), serves the metrics on
    /run/semtrace/metrics.sock in that group, and lets the service give the socket that
    group (SupplementaryGroups=); an upgrade without the option keeps it. (The first unit is
    put in a stand-in /etc/systemd/system bound over the host's in a namespace of its own.)"""
    import grp

    group = f"st-metrics-{srv.name[-6:].lower().replace('_', '-')}"
    assert group not in {g.gr_name for g in grp.getgrall()}
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    etc, data = srv / "etc", srv / "data"
    etc.mkdir()
    (etc / "passphrase").write_text("x\n")
    first = dry_install(bundle, prefix, data, env, "--config-dir", str(etc),
                        "--metrics-group", group)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"would run: groupadd --system {group}" in first.stdout.splitlines()
    unit = _unit_written(first.stdout)
    assert unit["SupplementaryGroups"] == group
    assert unit["ExecStart"].endswith(
        f" --metrics unix:/run/semtrace/metrics.sock --metrics-group {group}"), unit
    assert unit["Group"] == "semtrace"  # the ingest socket's group is not the scraper's
    if shutil.which("systemd-analyze"):
        (srv / "semtrace.service").write_text(shown(first.stdout, UNIT))
        v = subprocess.run(["systemd-analyze", "verify", str(srv / "semtrace.service")],
                           capture_output=True, text=True, timeout=120)
        said = [line for line in (v.stdout + v.stderr).splitlines()
                if "Unknown user" not in line and "Unknown group" not in line]
        assert v.returncode == 0 and not said, said
    units = srv / "units"
    units.mkdir()
    (units / "semtrace.service").write_text(shown(first.stdout, UNIT))

    def again(*extra: str) -> subprocess.CompletedProcess[str]:
        return with_folders_bound({units: "/etc/systemd/system"}, [
            "bash", str(bundle / "install.sh"), "--prefix", str(prefix), "--data-dir",
            str(data), "--config-dir", str(etc), "--python", SYSTEM_PYTHON or sys.executable,
            "--dry-run", *extra], env)

    kept = again()
    assert kept.returncode == 0, kept.stderr
    assert _unit_written(kept.stdout)["SupplementaryGroups"] == group
    assert (f"install: the metrics socket keeps its group {group} (--metrics-group '' turns "
            "the metrics off).") in kept.stdout.splitlines()
    off = again("--metrics-group", "")
    assert off.returncode == 0, off.stderr
    assert "SupplementaryGroups" not in _unit_written(off.stdout)
    assert "--metrics" not in _unit_written(off.stdout)["ExecStart"]
    plain = dry_install(bundle, prefix, data, env, "--config-dir", str(etc))
    assert plain.returncode == 0, plain.stderr  # no group asked for: the unit as before
    assert "SupplementaryGroups" not in _unit_written(plain.stdout)
    assert "--metrics" not in _unit_written(plain.stdout)["ExecStart"]
    assert "groupadd" not in plain.stdout


@needs_system_python
@pytest.mark.parametrize(("group", "why"), [
    ("semtrace", "--metrics-group semtrace: the members of the service's group may also send "
     "prompts on the ingest socket"),
    ("Metrics Readers", "--metrics-group Metrics Readers is not a group name"),
    ("-x", "--metrics-group -x is not a group name"),
])
def test_a_metrics_group_that_would_let_a_scraper_ingest_or_break_the_unit_is_refused(
        srv: Path, group: str, why: str) -> None:
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    r = dry_install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw),
                    "--config-dir", str(srv / "etc"), "--metrics-group", group)
    assert r.returncode == 1
    assert r.stderr.startswith(f"install: {why}") and r.stderr.strip().endswith(
        "nothing was installed."), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "would run" not in r.stdout
    no_unit = dry_install(bundle, prefix, srv / "data", env, "--no-service",
                          "--metrics-group", "semtrace-metrics")
    assert no_unit.returncode == 1
    assert "--metrics-group is written into the service's unit" in no_unit.stderr


@needs_system_python
def test_a_dry_run_ends_saying_nothing_was_changed(srv: Path) -> None:
    """`install.sh --dry-run` ended 'install: Semtrace 0.1.0 installed in /opt/semtrace;
    next: .../semtrace selftest', and said the unit 'is installed for the next boot', as
    if it had installed; it now ends saying that nothing was changed."""
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    r = dry_install(bundle, prefix, srv / "data", env, "--passphrase-file", str(pw))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == (
        f"install: dry run: nothing was changed (without --dry-run, Semtrace 0.1.0 would be "
        f"installed in {prefix}).")
    assert " installed in " not in "\n".join(r.stdout.splitlines()[:-1])
    assert "the unit is installed" not in r.stdout
    assert not (srv / "data").exists()


@needs_system_python
def test_an_upgrade_gives_an_untouched_policy_the_new_default_and_keeps_an_edited_one(
        srv: Path) -> None:
    """A policy the operator never edited was kept at the earlier version's default ('kept
    X; this version's default is Y'): a changed default never reached them. As dpkg does
    with conffiles, the install's record now holds the digest of each default it shipped;
    a file still equal to it takes the new default, an edited one is kept, and without a
    recorded digest (an install from before) the file is kept."""
    import hashlib

    old = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    pw = srv / "pw"
    pw.write_text("x\n")
    etc, data = srv / "etc", srv / "data"
    first = dry_install(old, prefix, data, env, "--passphrase-file", str(pw),
                        "--config-dir", str(etc))
    assert first.returncode == 0, first.stdout + first.stderr
    record = prefix / "share" / "semtrace-installer" / "service.conf"
    record.parent.mkdir(parents=True)
    record.write_text(shown(first.stdout, record))
    shutil.copytree(old / "policies", etc / "policies")  # as the first install wrote them
    (etc / "passphrase").write_text("x\n")
    untouched, edited = etc / "policies" / "correlation.toml", etc / "policies" / "access.toml"
    edited.write_text(edited.read_text() + "# the operator's own role\n")

    (srv / "next").mkdir()
    new = stand_in_bundle(srv / "next", version="0.2.0")  # both defaults changed
    for name in ("correlation.toml", "access.toml"):
        with (new / "policies" / name).open("a") as f:
            f.write("# a setting of 0.2.0\n")
    subprocess.run("find . -type f ! -name SHA256SUMS | sed 's|^./||' | sort "
                   "| xargs sha256sum > SHA256SUMS", shell=True, cwd=new, check=True)

    def writes(r: subprocess.CompletedProcess[str], path: Path) -> bool:
        return any(line.startswith("would run: install ") and line.endswith(f" {path}")
                   for line in r.stdout.splitlines())

    up = dry_install(new, prefix, data, env, "--config-dir", str(etc))
    assert up.returncode == 0, up.stdout + up.stderr
    assert (f"install: {untouched} was the earlier version's default, never edited: would be "
            "replaced by this version's.") in up.stdout.splitlines(), up.stdout
    assert f"would run: install -m 0640 -o root -g semtrace {new}/policies/correlation.toml " \
        f"{untouched}" in up.stdout.splitlines()
    assert f"kept {edited};" in up.stdout and not writes(up, edited)
    assert f"kept {untouched}" not in up.stdout
    # the record the upgrade writes holds the new default's digest, for the next upgrade
    digest = hashlib.sha256((new / "policies" / "correlation.toml").read_bytes()).hexdigest()
    assert f"policy_default_sha256.correlation.toml={digest}" in shown(up.stdout, record)

    record.unlink()  # an install from before digests were recorded: nothing replaced
    before = dry_install(new, prefix, data, env, "--config-dir", str(etc))
    assert before.returncode == 0, before.stdout + before.stderr
    assert f"kept {untouched};" in before.stdout and not writes(before, untouched)
    assert f"kept {edited};" in before.stdout and not writes(before, edited)
    assert "never edited" not in before.stdout
