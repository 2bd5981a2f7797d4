"""A host as install.sh leaves it, for the unit's checks (tests/test_install_unit.py): the
unit its --dry-run writes for folders of the test's own, a venv of the system Python in
--prefix, the data dir, config dir and passphrase install.sh makes, systemd-analyze."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from installer_host import SYSTEM_PYTHON, UNIT, dry_install, shown, stand_in_bundle, stand_in_host
from unit_sandbox import Identity, Started, free_id

REPO = Path(__file__).resolve().parents[1]
needs_setpriv = pytest.mark.skipif(shutil.which("setpriv") is None,
                                   reason="no setpriv (util-linux) to drop to the unit's user")


def systemd_analyze() -> str:
    """systemd-analyze, which `make test` installs (Debian's systemd package)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("no systemd-analyze: `make test` installs it (the systemd package)")
        pytest.skip("no systemd-analyze on this host (apt-get install systemd; `make test` "
                    "does it)")
    return found


def stand_in_prefix(srv: Path) -> Path:
    """A venv of the system Python, as install.sh makes in --prefix, that runs this source
    tree with the test venv's packages: the venv the tests run in may be made from a Python
    under /root or /home (pyenv), which the unit hides, as install.sh says when refusing it."""
    prefix = srv / "venv"
    subprocess.run([SYSTEM_PYTHON or "python3", "-m", "venv", "--without-pip", str(prefix)],
                   check=True)
    site = next(prefix.glob("lib/python3*/site-packages"))
    (site / "00-semtrace-tree.pth").write_text(f"{REPO}\n")
    dirs = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    (site / "semtrace-test-packages.pth").write_text(
        "".join(f"import site; site.addsitedir({d!r})\n" for d in dirs))
    exe = prefix / "bin" / "semtrace"
    exe.write_text(f"#!{prefix}/bin/python\nimport sys\nfrom appliance.cli import main\n"
                   "sys.exit(main())\n")
    exe.chmod(0o755)
    return prefix


def installed_unit(srv: Path, prefix: Path, data: Path, etc: Path, *extra: str,
                   systemd: int | None = None) -> str:
    """The unit install.sh writes for these folders, as its --dry-run shows it; `systemd`:
    the version the host's `systemctl --version` gives (none: it gives none)."""
    return install_says(srv, prefix, data, etc, *extra, systemd=systemd)[0]


def install_says(srv: Path, prefix: Path, data: Path, etc: Path, *extra: str,
                 systemd: int | None = None) -> tuple[str, str]:
    """installed_unit's unit, and what install.sh said on its way."""
    srv.mkdir(exist_ok=True)
    bundle = stand_in_bundle(srv)
    _, env = stand_in_host(srv, active=False)
    if systemd is not None:
        ctl = srv / "fakebin" / "systemctl"
        ctl.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo 'systemd {systemd} "
                       f"({systemd}-1)' && echo '+PAM +AUDIT' && exit 0\n"
                       + ctl.read_text().split("\n", 1)[1])
    pw = srv / "pw"
    pw.write_text("sandbox test passphrase\n")
    pw.chmod(0o600)
    r = dry_install(bundle, prefix, data, env, "--passphrase-file", str(pw),
                    "--config-dir", str(etc), *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    return shown(r.stdout, UNIT), r.stdout


def verify_unit(unit_text: str, where: Path, *, in_opt: bool = False
            ) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` of the unit, with every line it says; `in_opt`: in a mount
    namespace whose /opt holds an executable /opt/semtrace/bin/semtrace (the default
    layout's ExecStart; verify refuses a command that is not there)."""
    tool = systemd_analyze()
    unit = where / "semtrace.service"
    unit.write_text(unit_text)
    argv = [tool, "verify", "--man=no", str(unit)]
    if in_opt:
        argv = ["unshare", "-m", "bash", "-c", "mount -t tmpfs tmpfs /opt && mkdir -p "
                "/opt/semtrace/bin && printf '#!/bin/sh\\n' > /opt/semtrace/bin/semtrace && "
                "chmod 755 /opt/semtrace/bin/semtrace && exec \"$@\"", "-", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120)


def wait_for(path: Path, started: Started, journal: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout  # a bound on a hang, not a speed assertion
    while not path.exists():
        if started.proc.poll() is not None:
            pytest.fail(f"the service exited ({started.proc.returncode}) before serving "
                        f"{path.name}:\n{journal.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {path.name} after {timeout} s:\n{journal.read_text()[-3000:]}")
        time.sleep(0.5)


@dataclass(frozen=True)
class ServiceHost:
    """A host as install.sh leaves it (step 4), its folders under `srv`."""

    prefix: Path
    unit_text: str
    ident: Identity
    data: Path
    runtime: Path  # stands for /run/semtrace
    work: Path


def service_host(srv: Path, *extra: str, init: bool = True,
                 systemd: int | None = None) -> ServiceHost:
    """The unit install.sh writes for folders under `srv` (with the options `extra`), and
    what install.sh makes on the host, by number: the service user and groups exist only in
    the sandbox's /etc/passwd and /etc/group. The service's uid and gid are `uid`, the
    gateway's uid is uid + 1, a scraper's uid and the metrics group's gid uid + 2."""
    systemd_analyze()  # the sandbox lists SystemCallFilter='s calls with it
    prefix = stand_in_prefix(srv)
    data, etc = srv / "data", srv / "etc"
    unit_text = installed_unit(srv / "install", prefix, data, etc, *extra, systemd=systemd)
    uid = free_id(3)
    metrics = extra[extra.index("--metrics-group") + 1] if "--metrics-group" in extra else ""
    ident = Identity("semtrace", "semtrace", uid, uid, data,
                     ((metrics, uid + 2),) if metrics else ())
    pw = srv / "install" / "pw"
    data.mkdir(mode=0o700)
    etc.mkdir(mode=0o750)
    shutil.copytree(REPO / "policies", etc / "policies")
    for p in (etc, etc / "policies", *(etc / "policies").iterdir()):
        os.chown(p, 0, uid)
        p.chmod(0o750 if p.is_dir() else 0o640)
    shutil.copy(pw, etc / "passphrase")
    (etc / "passphrase").chmod(0o600)
    if init:
        r = subprocess.run([str(prefix / "bin" / "semtrace"), "init", "--data-dir", str(data),
                            "--passphrase-file", str(pw)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
    subprocess.run(["chown", "-R", f"{uid}:{uid}", str(data)], check=True)
    (srv / "run-semtrace").mkdir()
    (srv / "sandbox").mkdir()
    return ServiceHost(prefix, unit_text, ident, data, srv / "run-semtrace", srv / "sandbox")
