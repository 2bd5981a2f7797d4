"""A stand-in host for install.sh's tests: a stand-in bundle (its scripts, checksums and no
wheels), a prefix holding an earlier install, a stand-in `systemctl`, and folders a service
install may use. A service install refuses folders under /tmp and /var/tmp (the unit's
PrivateTmp=yes hides them) and under the homes (ProtectHome=yes): the stand-in folders are
made under /srv (or /opt; `service_folder`), as an operator's would be."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

INSTALLER = Path(__file__).resolve().parents[1] / "installer"


def _system_python() -> str | None:
    """A CPython 3.11 outside any home and /tmp: the one a service install must be given
    (the unit runs it as the service user with /root, /home and /tmp hidden)."""
    for exe in ("/usr/bin/python3.11", "/usr/local/bin/python3.11", "/usr/bin/python3"):
        real = os.path.realpath(exe)
        if os.path.exists(real) and not real.startswith(("/root/", "/home/", "/tmp/",
                                                         "/var/tmp/")):
            out = subprocess.run([real, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True)
            if out.stdout.strip() == "(3, 11)":
                return real
    return None


SYSTEM_PYTHON = _system_python()
needs_system_python = pytest.mark.skipif(SYSTEM_PYTHON is None,
                                         reason="no system CPython 3.11 on this host")


@contextmanager
def service_folder() -> Iterator[Path]:
    """A folder a service install may use, removed after: not under /tmp or /var/tmp
    (PrivateTmp=yes), nor /home or /root (ProtectHome=yes)."""
    base = next(d for d in ("/srv", "/opt", "/mnt") if os.path.isdir(d))
    made = Path(tempfile.mkdtemp(prefix="semtrace-test-", dir=base))
    made.chmod(0o755)  # as /opt or /srv: the service user may pass through
    try:
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def stand_in_bundle(tmp: Path, version: str = "0.1.0") -> Path:
    """install.sh, uninstall.sh, the unit and the policies with their checksums, no wheels."""
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


def stand_in_host(tmp: Path, *, active: bool) -> tuple[Path, dict[str, str]]:
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


def dry_install(bundle: Path, prefix: Path, data: Path, env: dict[str, str],
                *extra: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    """install.sh --dry-run of `bundle` as a service install (unless `extra` says not)."""
    return subprocess.run(["bash", str(bundle / "install.sh"), "--prefix", str(prefix),
                           "--data-dir", str(data),
                           "--python", python or SYSTEM_PYTHON or sys.executable, "--dry-run",
                           *extra], capture_output=True, text=True, env=env, timeout=120)


UNIT = Path("/etc/systemd/system/semtrace.service")


def shown(stdout: str, path: Path | str) -> str:
    """The file a --dry-run says it would write at `path`, as it would write it."""
    block = stdout.split(f"would write {path}:\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("    "):
            break
        lines.append(line[4:] + "\n")
    return "".join(lines)


def _can_mount() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


needs_mount_namespace = pytest.mark.skipif(not _can_mount(),
                                           reason="needs a mount namespace (unshare -m)")


def with_folders_bound(binds: dict[Path, str], argv: list[str], env: dict[str, str]
                       ) -> subprocess.CompletedProcess[str]:
    """Run `argv` in a mount namespace of its own where each stand-in folder is bound over
    the host's (/etc/systemd/system, /var/lib): the host's own are never touched."""
    mounts = " && ".join(f"mount --bind {shlex.quote(str(src))} {shlex.quote(dst)}"
                         for src, dst in binds.items())
    return subprocess.run(["unshare", "-m", "bash", "-c", f"{mounts} && exec {shlex.join(argv)}"],
                          capture_output=True, text=True, env=env, timeout=120)
