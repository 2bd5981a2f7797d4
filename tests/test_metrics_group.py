"""The metrics socket's own group: a scraper given the metrics reads them and cannot send
prompts. The service runs as install.sh's unit starts it (its ExecStart= from a --dry-run
with --metrics-group), with the sockets in a stand-in /run/semtrace; the scraper is another
OS user whose only group is the metrics group."""

from __future__ import annotations

import grp
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from installer_host import (
    UNIT,
    dry_install,
    needs_system_python,
    shown,
    stand_in_bundle,
    stand_in_host,
)
from test_service import STARTUP_S
from test_spine import run_cli

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root to run a scraper under another uid")

NOBODY = 65534


def _host_group() -> grp.struct_group:
    """A group of this host that is neither root's nor nobody's (the scraper's, here)."""
    for name in ("adm", "daemon", "users", "staff"):
        try:
            g = grp.getgrnam(name)
        except KeyError:
            continue
        if g.gr_gid not in (0, NOBODY):
            return g
    pytest.skip("no spare group on this host")


def _as_nobody(code: str, groups: list[int]) -> subprocess.CompletedProcess[str]:
    """Run `code` as uid 65534 whose only groups are `groups` (modules imported before:
    this interpreter's library may be in a folder closed to that user)."""
    gid = groups[0] if groups else NOBODY
    drop = (f"import os, socket; os.setgroups({groups!r}); os.setgid({gid}); "
            f"os.setuid({NOBODY}); ")
    return subprocess.run([sys.executable, "-c", drop + code], capture_output=True, text=True,
                          timeout=60)


SCRAPE = """
import socket
def ask(path, data):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    try:
        s.connect(path)
    except PermissionError:
        return "refused"
    s.sendall(data)
    got = b""
    while chunk := s.recv(65536):
        got += chunk
    return got.decode()
"""


@ROOT_ONLY
@needs_system_python
def test_a_scraper_in_the_metrics_group_reads_the_metrics_and_cannot_send_prompts(
        srv: Path, tmp_path: Path, passphrase_file: Path) -> None:
    """Before, the metrics socket took the service's group, which may also use the ingest
    socket: an agent let in to scrape could send prompts. Now the unit's --metrics-group
    gives the metrics socket a group of its own."""
    group = _host_group()
    bundle = stand_in_bundle(srv)
    prefix, env = stand_in_host(srv, active=False)
    r = dry_install(bundle, prefix, srv / "data", env, "--passphrase-file", str(passphrase_file),
                    "--config-dir", str(srv / "etc"), "--metrics-group", group.gr_name)
    assert r.returncode == 0, r.stdout + r.stderr
    exec_start = next(line.split("=", 1)[1] for line in shown(r.stdout, UNIT).splitlines()
                      if line.startswith("ExecStart="))
    root = Path(tempfile.mkdtemp(prefix="semtrace-unit-", dir="/tmp"))
    try:
        os.chmod(root, 0o755)
        data, run = root / "data", root / "run/semtrace"
        data.mkdir(mode=0o700)
        run.mkdir(parents=True)
        os.chmod(run, 0o755)  # RuntimeDirectoryMode=0755
        os.chmod(run.parent, 0o755)
        args = shlex.split(exec_start.replace(str(srv / "data"), str(data))
                           .replace("/run/semtrace", str(run)))[1:]
        metrics, ingest = run / "metrics.sock", run / "semtrace.sock"
        assert args[args.index("--metrics") + 1] == f"unix:{metrics}"
        assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                       str(passphrase_file)).returncode == 0
        log = tmp_path / "serve.log"
        proc = subprocess.Popen([sys.executable, "-m", "appliance", *args, "--passphrase-file",
                                 str(passphrase_file)], stdout=subprocess.DEVNULL,
                                stderr=log.open("wb"))
        try:
            deadline = time.monotonic() + STARTUP_S
            while not (metrics.exists() and ingest.exists()) and proc.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.1)
            assert metrics.exists() and ingest.exists(), log.read_text()[-2000:]
            st = metrics.stat()
            assert (st.st_gid, st.st_mode & 0o777) == (group.gr_gid, 0o660)
            code = SCRAPE + (
                f"print(ask({str(metrics)!r}, b'GET /metrics HTTP/1.0\\r\\n\\r\\n')"
                ".splitlines()[0])\n"
                f"print(ask({str(ingest)!r}, b'{{}}\\n'))\n")
            scraper = _as_nobody(code, [group.gr_gid])
            assert scraper.returncode == 0, scraper.stderr
            status, ingest_said = scraper.stdout.splitlines()
            assert status.startswith("HTTP/1.0 200"), scraper.stdout
            assert ingest_said == "refused", scraper.stdout
            outsider = _as_nobody(code, [])
            assert outsider.stdout.splitlines()[0] == "refused"  # no group: no metrics either
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@ROOT_ONLY
def test_a_metrics_group_the_service_cannot_give_its_socket_is_one_sentence_before_start(
        tmp_path: Path) -> None:
    """A group the host lacks, or one the service's user is not in (the unit's
    SupplementaryGroups= missing), is refused before the models load, in one sentence."""
    from appliance.metrics import check_listen

    group = _host_group()
    os.chmod(tmp_path, 0o755)
    sock = f"unix:{tmp_path}/metrics.sock"
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # a service user outside the group: the check as serve makes it
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            check_listen(sock, group=group.gr_name)
            said = "accepted"
        except ValueError as exc:
            said = str(exc)
        finally:
            os.write(writer, said.encode())
            os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    with os.fdopen(reader) as fh:
        said = fh.read()
    assert said == (f"this process is not in the group {group.gr_name}, so it cannot give the "
                    f"socket that group (the unit needs SupplementaryGroups={group.gr_name}, "
                    "which install.sh --metrics-group writes)"), said
    missing = run_cli("serve", "--check", "--data-dir", str(tmp_path / "data"), "--metrics",
                      sock, "--metrics-group", "no-such-group-here")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"semtrace: Metrics cannot listen on {sock}: this host has no group no-such-group-here "
        "(groupadd --system no-such-group-here, or install.sh --metrics-group makes it)."], \
        missing.stderr
    tcp = run_cli("serve", "--check", "--data-dir", str(tmp_path / "data"), "--metrics",
                  "127.0.0.1:0", "--metrics-group", group.gr_name)
    assert tcp.returncode == 2 and "Traceback" not in tcp.stderr, tcp.stderr
    assert len(tcp.stderr.strip().splitlines()) == 1
    assert "socket_group (serve --metrics-group) is the group of a Unix socket" in tcp.stderr
    assert not list(tmp_path.glob("*.sock"))  # nothing was served


def test_doctor_warns_of_a_metrics_socket_in_the_group_that_may_send_prompts(
        tmp_path: Path) -> None:
    """Nothing said that a metrics socket in the service's group lets its scrapers ingest
    (allow_same_gid, the default); doctor now says so, until the metrics have a group of
    their own or the ingest socket stops taking the group."""
    import json

    from appliance.config import policy_dir

    pol = tmp_path / "policies"
    shutil.copytree(policy_dir(), pol, ignore=shutil.ignore_patterns("*.py", "*.sh"))
    telemetry = (pol / "telemetry.toml").read_text()
    env = {"SEMTRACE_POLICY_DIR": str(pol)}

    def warnings() -> list[str]:
        r = run_cli("doctor", "--data-dir", str(tmp_path / "data"), "--json", env=env)
        return [w for w in json.loads(r.stdout)["warnings"] if "metrics socket" in w]

    assert warnings() == []  # metrics off, as shipped
    (pol / "telemetry.toml").write_text(telemetry.replace(
        'listen = ""', 'listen = "unix:/run/semtrace/metrics.sock"', 1))
    assert warnings() == [
        "The metrics socket /run/semtrace/metrics.sock takes the service's group, whose "
        "members may also send prompts on the ingest socket (allow_same_gid in access.toml): "
        "a scraper added to it could ingest; give the metrics a group of their own ([metrics] "
        "socket_group in telemetry.toml, or install.sh --metrics-group)."]
    (pol / "telemetry.toml").write_text(telemetry.replace(
        'listen = ""', 'listen = "unix:/run/semtrace/metrics.sock"', 1).replace(
        'socket_group = ""', 'socket_group = "semtrace-metrics"', 1))
    assert warnings() == []
