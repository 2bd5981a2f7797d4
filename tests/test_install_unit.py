"""The systemd unit install.sh writes, checked by systemd's own tools where systemd is not
PID 1: `systemd-analyze verify` (a typo, an unknown directive, a value systemd refuses),
`systemd-analyze security` (the hardening score), and the service started under the unit's
sandbox as tests/unit_sandbox.py approximates it (read-only root, private network, only the
unit's writable paths, its credential, its user), answering an ingest through its socket
with the real pipeline. What only a real PID-1 systemd shows stays unchecked (README)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from installer_host import (
    SYSTEM_PYTHON,
    needs_mount_namespace,
    needs_system_python,
    stand_in_bundle,
    stand_in_host,
    with_folders_bound,
)
from sandbox_host import (
    REPO,
    install_says,
    installed_unit,
    needs_setpriv,
    service_host,
    stand_in_prefix,
    systemd_analyze,
    verify_unit,
    wait_for,
)
from unit_sandbox import SINCE, parse_unit, start

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the service install needs root")


@needs_system_python
@needs_mount_namespace
def test_the_installed_unit_passes_systemd_analyze_verify(srv: Path) -> None:
    """systemd warns and carries on past an unknown or misspelt directive (the service then
    runs without it): verify must say nothing at all, for the default layout (/opt,
    /var/lib, /etc, StateDirectory=) and for folders of the operator's own, with a metrics
    group (SupplementaryGroups=, a longer ExecStart=)."""
    prefix = stand_in_prefix(srv)
    for unit_text, in_opt in (
            (installed_unit(srv / "a", Path("/opt/semtrace"), Path("/var/lib/semtrace"),
                             Path("/etc/semtrace")), True),
            (installed_unit(srv / "b", prefix, srv / "data", srv / "etc",
                             "--metrics-group", "semtrace-metrics"), False)):
        v = verify_unit(unit_text, srv, in_opt=in_opt)
        said = [line for line in (v.stdout + v.stderr).splitlines()
                # the service user and groups are made by install.sh, not on this host
                if "Unknown user" not in line and "Unknown group" not in line]
        assert v.returncode == 0 and not said, said


def test_the_units_hardening_keeps_its_score(tmp_path: Path) -> None:
    """`systemd-analyze security`: 1.0 ("OK") for the unit as shipped (3.0 before
    ProtectClock=, ProtectKernelLogs=, ProtectHostname=, RestrictRealtime=,
    RestrictSUIDSGID=, RemoveIPC=, PrivateMounts=, 2.3 before SystemCallFilter=), and never
    worse; a directive dropped, misspelt or weakened (PrivateNetwork=no, ProtectSystem=full)
    raises the exposure."""
    tool = systemd_analyze()
    unit = tmp_path / "semtrace.service"
    shutil.copy(REPO / "installer" / "semtrace.service", unit)
    r = subprocess.run([tool, "security", "--offline=yes", str(unit)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("→ Overall exposure level for semtrace.service: "), last
    assert float(last.split(": ", 1)[1].split()[0]) <= 1.0, last


_PROBE = """\
import ctypes, errno, json, mmap, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as exc:
        return exc.__class__.__name__ + ":" + (os.strerror(exc.errno) if exc.errno else "")
def call(fn, *args):  # a C call: its errno's name, "ok" if it worked
    return "ok" if fn(*args) >= 0 else errno.errorcode[ctypes.get_errno()]
page = ctypes.c_char.from_buffer(mmap.mmap(-1, 4096))  # kept mapped: it holds the map
def setuid_bit(path, mode):
    open(path, "w").close()
    return attempt(lambda: os.chmod(path, mode))
def write(p):
    return attempt(lambda: open(p, "w").write("x"))
def in_child(fn):  # a call that would change the probe itself: made in a child of it
    pid = os.fork()
    if pid == 0:
        os._exit(0 if fn() >= 0 else ctypes.get_errno())
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return "ok" if code == 0 else errno.errorcode.get(code, code)
L = ctypes.c_long
data, outside, host_tmp = sys.argv[1:4]
cred = os.path.join(os.environ["CREDENTIALS_DIRECTORY"], "semtrace-passphrase")
print(json.dumps({
    "uid": os.getuid(), "groups": os.getgroups(),
    "data": write(os.path.join(data, "probe")), "runtime": write("/run/semtrace/probe"),
    "outside": write(outside), "etc": write("/etc/semtrace-probe"),
    "tmp": write("/tmp/probe"), "host_tmp_seen": os.path.exists(host_tmp),
    "root": attempt(lambda: os.listdir("/root")),
    "inet": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)),
    "unix": attempt(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)),
    "net": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]),
    "cred_mode": oct(os.stat(cred).st_mode & 0o777), "cred_owner": os.stat(cred).st_uid,
    "status": {k: v.strip() for k, v in (l.split(":", 1) for l in open("/proc/self/status"))
               if k in ("CapBnd", "CapEff", "NoNewPrivs", "Seccomp")},
    "umask": oct(os.umask(0)), "devices": sorted(os.listdir("/dev")),
    # each call below fails otherwise for another reason than a missing permission (an
    # invalid clock, a priority FIFO does not take) or works for any user: EPERM is the
    # unit's seccomp rule
    "set_clock": call(libc.clock_settime, 1, ctypes.create_string_buffer(16)),  # MONOTONIC
    "kernel_log_size": call(libc.klogctl, 10, None, 0),  # SYSLOG_ACTION_SIZE_BUFFER
    "kmsg_mode": oct(os.stat("/proc/kmsg").st_mode & 0o777),
    "realtime": attempt(lambda: os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(0))),
    "setuid_bit": setuid_bit(os.path.join(data, "suid"), 0o4600),
    "setgid_bit": setuid_bit(os.path.join(data, "sgid"), 0o2600),
    "uts": os.readlink("/proc/self/ns/uts"), "ipc": os.readlink("/proc/self/ns/ipc"),
    # mincore(), a page of its own: any process may; systemd took it out of @system-service
    "mincore": call(libc.mincore, ctypes.c_void_p(ctypes.addressof(page)), 4096,
                    ctypes.create_string_buffer(1)),
    # LockPersonality=: any user may set ADDR_NO_RANDOMIZE on itself otherwise
    "personality": in_child(lambda: libc.personality(ctypes.c_ulong(0x0040000))),
    # RestrictNamespaces=: a user namespace, which any user may make otherwise, and
    # clone3() (its flags unreadable to seccomp: ENOSYS, where a NULL argument gives EINVAL)
    "user_namespace": in_child(lambda: libc.unshare(0x10000000)),  # CLONE_NEWUSER
    "clone3": call(libc.syscall, L(435), ctypes.c_void_p(None), L(0)),
    # ProtectKernelModules=: init_module(), EPERM with the rule and without it (below)
    "init_module": call(libc.syscall, L(175), ctypes.c_void_p(None), L(0),
                        ctypes.c_char_p(b"")),
}))
"""


def _probe(srv: Path, *, without: tuple[str, ...] = ()) -> tuple[dict[str, Any], int]:
    """What _PROBE says, run as the unit's ExecStart in its sandbox (the unit install.sh
    writes, less the settings `without`), and the service's uid."""
    host = service_host(srv, init=False)
    probe = host.work / "probe.py"
    probe.write_text(_PROBE)
    probe.chmod(0o644)
    marker = Path("/tmp") / f"semtrace-host-{srv.name}"  # the host's /tmp, hidden
    marker.write_text("")
    try:
        unit_text = "\n".join(
            f"ExecStart={SYSTEM_PYTHON} {probe} {host.data} {srv / 'outside'} {marker}"
            if line.startswith("ExecStart=") else line
            for line in host.unit_text.splitlines()
            if line.partition("=")[0] not in without)
        started = start(unit_text, host.ident, work=host.work, runtime=host.runtime,
                        python=SYSTEM_PYTHON or "python3")
        try:
            with contextlib.suppress(subprocess.TimeoutExpired):
                started.proc.wait(timeout=120)
            assert started.proc.returncode == 0, started.said("the probe")
        finally:
            started.kill()
    finally:
        marker.unlink()
    said: dict[str, Any] = json.loads(started.journal.read_text().splitlines()[-1])
    return said, host.ident.uid


@needs_system_python
@needs_mount_namespace
@needs_setpriv
def test_the_sandbox_holds_the_service_to_what_the_unit_allows(srv: Path) -> None:
    """The approximation is no stand-in that lets everything through: a probe run as the
    unit's ExecStart writes its data dir and runtime folder only, sees no host /tmp, no
    /root, no network but loopback, no socket but AF_UNIX, no capability, its credential
    as systemd hands it over, and no other personality and no namespace of its own."""
    said, uid = _probe(srv)
    assert said["uid"] == uid and said["groups"] == []
    assert said["data"] == said["runtime"] == said["tmp"] == "ok", said
    assert said["outside"].startswith("OSError:Read-only") and said["etc"] != "ok", said
    assert said["host_tmp_seen"] is False and said["root"].startswith("PermissionError"), said
    assert said["inet"] == "OSError:Address family not supported by protocol", said
    assert said["unix"] == "ok" and said["net"] == ["lo"], said
    assert said["status"]["CapBnd"] == said["status"]["CapEff"] == "0000000000000000", said
    assert said["status"]["NoNewPrivs"] == "1" and said["status"]["Seccomp"] == "2", said
    assert said["cred_mode"] == "0o400" and said["cred_owner"] == uid, said
    assert said["umask"] == "0o77"
    assert said["devices"] == sorted(["null", "zero", "full", "random", "urandom", "tty",
                                      "shm", "pts", "fd", "stdin", "stdout", "stderr"])
    assert not (srv / "outside").exists()
    # ProtectClock=, ProtectKernelLogs=, RestrictRealtime=, RestrictSUIDSGID=: seccomp (the
    # kernel log's size is refused to a user anyway where kernel.dmesg_restrict=1), and
    # /proc/kmsg an inaccessible file (0400, root's, without)
    assert said["set_clock"] == said["kernel_log_size"] == "EPERM", said
    assert said["kmsg_mode"] == "0o0", said
    assert said["realtime"] == said["setuid_bit"] == said["setgid_bit"] == (
        "PermissionError:Operation not permitted"), said
    # ProtectHostname=: a hostname of its own; RemoveIPC=: IPC objects gone with the sandbox
    assert said["uts"] != os.readlink("/proc/self/ns/uts"), said
    assert said["ipc"] != os.readlink("/proc/self/ns/ipc"), said
    # SystemCallFilter=@system-service with SystemCallErrorNumber=EPERM
    assert said["mincore"] == "EPERM", said
    # LockPersonality=, RestrictNamespaces=yes (personality(), unshare() and clone3() are
    # in @system-service: only these settings refuse them), ProtectKernelModules=
    assert said["personality"] == said["user_namespace"] == "EPERM", said
    assert said["clone3"] == "ENOSYS" and said["init_module"] == "EPERM", said


_WITHOUT = ("LockPersonality", "RestrictNamespaces", "ProtectKernelModules")


@needs_system_python
@needs_mount_namespace
@needs_setpriv
def test_the_probe_tells_a_unit_without_lock_personality_or_restrict_namespaces(
        srv: Path) -> None:
    """The sandbox reads these settings from the unit rather than always applying their
    rules: from a unit without them, the same probe changes its personality and makes a user
    namespace (where this host lets any user make one). ProtectKernelModules= is the one
    no probe tells (tests/unit_sandbox.py): a module call is refused to a user without
    capabilities by the kernel itself, with the same EPERM."""
    if Path("/proc/sys/user/max_user_namespaces").read_text().strip() == "0":
        pytest.skip("this host lets no user make a user namespace")
    said, _ = _probe(srv, without=_WITHOUT)
    assert said["personality"] == said["user_namespace"] == "ok", said
    assert said["clone3"] == "EINVAL", said
    assert said["init_module"] == "EPERM" and said["mincore"] == "EPERM", said


@pytest.mark.slow
@needs_system_python
@needs_mount_namespace
@needs_setpriv
@pytest.mark.parametrize("systemd", [None, 239], ids=["systemd-current", "systemd-239"])
def test_the_service_starts_in_the_units_sandbox_and_answers_an_ingest(
        srv: Path, systemd: int | None) -> None:
    """The unit install.sh writes, its ExecStart run under its sandbox (tests/unit_sandbox.py):
    the service reads its passphrase from the credential, its policies from the config dir,
    writes only its data dir and runtime folder, serves both sockets with the modes the
    README gives, threads a prompt through the real pipeline, reloads on ExecReload= and
    stops cleanly on its KillSignal=, all under SystemCallFilter=@system-service (this host's
    systemd-analyze's list), with any call outside it killing the service rather than failing
    with the unit's EPERM: none is made. On RHEL 8's systemd 239, which ignores
    LoadCredential= (247), the service said "No passphrase given" at every start: the unit
    written for it copies the passphrase itself (ExecStartPre=+)."""
    host = service_host(srv, systemd=systemd)
    prefix, unit_text, ident, data = host.prefix, host.unit_text, host.ident, host.data
    runtime, work, uid = host.runtime, host.work, host.ident.uid
    # strict: a call outside SystemCallFilter= kills the service here, where the unit's
    # SystemCallErrorNumber=EPERM would let it go on with the call failed (possibly unseen)
    started = start(unit_text, ident, work=work, runtime=runtime,
                    python=SYSTEM_PYTHON or "python3", systemd=systemd, strict=True)
    journal = work / "journal"

    def gateway(request: str, *command: str, user: int = uid + 1
                ) -> subprocess.CompletedProcess[str]:
        """`semtrace send` (or `command`) run by the gateway's user, a member of the
        service's group (or by `user`)."""
        argv = ["setpriv", f"--reuid={user}", f"--regid={uid}", "--clear-groups", "--",
                "env", "-i", "HOME=/", f"PATH={os.environ['PATH']}",
                str(prefix / "bin" / "semtrace"),
                *(command or ("send", "--socket", str(runtime / "semtrace.sock")))]
        try:
            return subprocess.run(argv, input=request + "\n", capture_output=True,
                                  text=True, timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail(started.said(f"no answer to `semtrace {' '.join(argv[9:])}` in 300 s"))

    try:
        for name in ("semtrace.sock", "query.sock"):
            wait_for(runtime / name, started, journal)
        # the address families', the Protect*= and Restrict*= settings' and, from systemd
        # 252, SystemCallFilter='s seccomp filters on the service itself
        filtered = "SystemCallFilter=@system-service" in unit_text.splitlines()
        assert filtered is (systemd is None), unit_text
        status = Path(f"/proc/{started.main_pid}/status").read_text()
        assert f"Seccomp_filters:\t{3 if filtered else 2}\n" in status, started.said(
            f"its seccomp filters:\n{status}")
        # the gateway's group may send, any local user may ask (README); each socket is at
        # its path only with its mode (tests/test_serve_socket_folders.py)
        modes = {name: (oct(stat.S_IMODE(st.st_mode)), st.st_gid) for name in (
            "semtrace.sock", "query.sock") for st in [(runtime / name).stat()]}
        assert modes == {"semtrace.sock": ("0o660", uid), "query.sock": ("0o666", uid)}, (
            started.said(f"the sockets' modes and groups: {modes}"))
        if systemd == 239:  # the copy as LoadCredential= makes it: the service user's alone
            copy = runtime / "credentials" / "semtrace-passphrase"
            made = (oct(stat.S_IMODE(copy.parent.stat().st_mode)),
                    oct(stat.S_IMODE(copy.stat().st_mode)), copy.stat().st_uid)
            assert made == ("0o700", "0o400", uid), started.said(
                f"the credential's copy (folder mode, mode, owner): {made}")
        line = json.dumps({"op": "ingest", "request_id": "unit-1", "tenant": "acme",
                           "user_id": "u-unit-1", "text": "How do I reset my VPN token?"})

        def answered(step: str, sent: subprocess.CompletedProcess[str]) -> str:
            return started.said(f"{step}: exit {sent.returncode}, stdout {sent.stdout!r}, "
                                f"stderr {sent.stderr!r}")

        sent = gateway(line)
        assert sent.returncode == 0, answered("the ingest", sent)
        reply = json.loads(sent.stdout)
        assert reply["ok"] is True and reply["conversation_id"].startswith("th_"), (
            answered("the ingest", sent))
        # ExecReload=: the policies read again, the service still up and answering
        reload = [a.replace("$MAINPID", str(started.main_pid))
                  for a in _exec_reload(unit_text)]
        assert subprocess.run(reload, timeout=60).returncode == 0, started.said("ExecReload=")
        again = gateway(line.replace("unit-1", "unit-2"))
        assert again.returncode == 0 and json.loads(again.stdout)["ok"] is True, (
            answered("the ingest after ExecReload=", again))
        # the query socket: a search (the model, the index) answered, to the service's user
        # (the default role, bound to no uid: access.toml)
        found = gateway("", "search", "VPN token reset", "--tenant", "acme", "--user",
                        "u-unit-1", "--socket", str(runtime / "query.sock"), "--json",
                        user=uid)
        assert found.returncode == 0, answered("the search", found)
        assert reply["conversation_id"] in found.stdout, answered("the search", found)
        os.kill(started.main_pid, signal.SIGTERM)  # KillSignal=SIGTERM
        with contextlib.suppress(subprocess.TimeoutExpired):
            started.proc.wait(timeout=120)
        assert started.proc.returncode == 0, started.said("the stop (SIGTERM)")
    finally:
        started.kill()
    said = journal.read_text()
    assert "Traceback" not in said and "sandbox:" not in said, started.said("after the stop")
    assert list(data.iterdir()), "nothing written to the data dir"


def _exec_reload(unit_text: str) -> list[str]:
    line = next(x for x in unit_text.splitlines() if x.startswith("ExecReload="))
    return line.split("=", 1)[1].split()


_SCRAPE = """\
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n")
print(b"".join(iter(lambda: s.recv(65536), b"")).decode())
"""


@pytest.mark.slow
@needs_system_python
@needs_mount_namespace
@needs_setpriv
def test_the_metrics_socket_of_its_own_group_is_served_in_the_units_sandbox(
        srv: Path) -> None:
    """install.sh --metrics-group: the unit's SupplementaryGroups= and longer ExecStart= run
    in the sandbox. The metrics socket is in the scraper's group, 0660, and answers a
    member of it, who may not send prompts on the ingest socket (docs/metrics.md)."""
    host = service_host(srv, "--metrics-group", "semtrace-metrics")
    assert "SupplementaryGroups=semtrace-metrics" in host.unit_text.splitlines()
    uid = host.ident.uid
    started = start(host.unit_text, host.ident, work=host.work, runtime=host.runtime,
                    python=SYSTEM_PYTHON or "python3", strict=True)
    journal = host.work / "journal"

    def scraper(sock: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["setpriv", f"--reuid={uid + 2}", f"--regid={uid + 2}",
                               "--clear-groups", "--", "env", "-i", "HOME=/",
                               SYSTEM_PYTHON or "python3", "-c", _SCRAPE,
                               str(host.runtime / sock)],
                              capture_output=True, text=True, timeout=120)

    try:
        for name in ("semtrace.sock", "metrics.sock"):
            wait_for(host.runtime / name, started, journal)
        metrics = (host.runtime / "metrics.sock").stat()
        assert stat.S_IMODE(metrics.st_mode) == 0o660 and metrics.st_gid == uid + 2, (
            started.said(f"the metrics socket: {oct(metrics.st_mode)}, gid {metrics.st_gid}"))
        scraped = scraper("metrics.sock")
        assert scraped.returncode == 0, started.said(f"the scrape: {scraped.stderr}")
        assert scraped.stdout.startswith("HTTP/1.") and " 200 " in scraped.stdout.split(
            "\n", 1)[0], scraped.stdout[:300]
        assert "semtrace_" in scraped.stdout
        assert "PermissionError" in scraper("semtrace.sock").stderr
        os.kill(started.main_pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            started.proc.wait(timeout=120)
        assert started.proc.returncode == 0, started.said("the stop (SIGTERM)")
    finally:
        started.kill()
    said = journal.read_text()
    assert "Traceback" not in said and "sandbox:" not in said, started.said("after the stop")


@needs_system_python
@needs_mount_namespace
def test_on_a_systemd_without_load_credential_the_unit_copies_the_passphrase_itself(
        srv: Path) -> None:
    """systemd 239 (RHEL 8) and 245 (Ubuntu 20.04) warn "Unknown key 'LoadCredential'" and
    start the service without its passphrase. install.sh reads the host's version: below
    247 the unit copies the root-only file into the runtime folder before each start, and
    says so; from 247 on, and where systemctl gives no version, LoadCredential= stays. Either
    unit passes `systemd-analyze verify`; an upgrade still finds the config dir in it."""
    prefix = stand_in_prefix(srv)
    data, etc = srv / "data", srv / "etc"
    for systemd, copies in ((239, True), (245, True), (247, False), (None, False)):
        text = installed_unit(srv / f"v{systemd}", prefix, data, etc, systemd=systemd)
        lines = text.splitlines()
        assert any(x.startswith("LoadCredential=") for x in lines) is not copies, text
        if copies:
            assert (f"ExecStartPre=+/usr/bin/install -m 0400 -o semtrace -g semtrace "
                    f"{etc}/passphrase /run/semtrace/credentials/semtrace-passphrase") in lines
            assert ("Environment=SEMTRACE_PASSPHRASE_FILE="
                    "/run/semtrace/credentials/semtrace-passphrase") in lines
        v = verify_unit(text, srv)
        said = [x for x in (v.stdout + v.stderr).splitlines()
                if "Unknown user" not in x and "Unknown group" not in x]
        assert v.returncode == 0 and not said, said
    # an upgrade over the unit written for systemd 239, naming another config dir: refused
    bundle = stand_in_bundle(srv)
    _, env = stand_in_host(srv, active=False)
    etc.mkdir()
    (etc / "passphrase").write_text("sandbox test passphrase\n")
    data.mkdir()
    (data / "keyring.json").write_text("{}")
    units = srv / "units"
    units.mkdir()
    (units / "semtrace.service").write_text(
        installed_unit(srv / "old", prefix, data, etc, systemd=239))
    r = with_folders_bound({units: "/etc/systemd/system"}, [
        "bash", str(bundle / "install.sh"), "--prefix", str(prefix), "--data-dir", str(data),
        "--python", SYSTEM_PYTHON or "python3", "--dry-run"], env)
    assert r.returncode == 1, r.stdout
    assert r.stderr.strip() == (
        f"install: the service installed here reads its passphrase and policies from {etc}, "
        f"not /etc/semtrace: give --config-dir {etc} to upgrade it; nothing was installed.")


@needs_system_python
@needs_mount_namespace
def test_the_unit_leaves_out_the_settings_the_hosts_systemd_does_not_know(srv: Path) -> None:
    """ProtectHostname= and RestrictSUIDSGID= came with systemd 242, ProtectKernelLogs= with
    244, ProtectClock= with 245 (NEWS): an older one warned "Unknown key" for each at every
    start. The unit install.sh writes has each setting from the version that knows it on,
    and the others gone, with a sentence naming them; where systemctl gives no version, all.
    SystemCallFilter= (with its SystemCallErrorNumber=) only from 252, whose list of calls
    the service runs under here, with its own sentence below."""
    prefix = stand_in_prefix(srv)
    shipped = parse_unit("semtrace.service", (REPO / "installer" / "semtrace.service")
                         .read_text()).sections["Service"]
    newer = {k: v for k, v in SINCE.items() if k in shipped and k != "LoadCredential"}
    assert newer, "the unit has no setting newer than systemd 239"
    filtered = {"SystemCallFilter", "SystemCallErrorNumber"}
    assert filtered <= set(newer)
    for systemd in (239, 241, 242, 244, 245, 251, 252, None):
        text, out = install_says(srv / f"v{systemd}", prefix, srv / "data", srv / "etc",
                                 systemd=systemd)
        service = parse_unit("semtrace.service", text).sections["Service"]
        gone = sorted(k for k, v in newer.items() if systemd is not None and v > systemd)
        assert sorted(k for k in newer if k not in service) == gone, (systemd, text)
        assert all(service[k] == shipped[k] for k in newer if k not in gone), text
        said = [x for x in out.splitlines() if x.startswith("install: ") and "know" in x]
        unknown = sorted(set(gone) - filtered, key=lambda k: (newer[k], k))
        assert said == ([f"install: systemd {systemd} does not know "
                         f"{' '.join(k + '=' for k in unknown)}: the unit is written without "
                         "them."] if unknown else []), out
        said = [x for x in out.splitlines() if x.startswith("install: ") and "@system" in x]
        assert said == ([f"install: systemd {systemd}'s @system-service is not the list the "
                         "service was checked under (252's): the unit is written without "
                         "SystemCallFilter=."] if filtered <= set(gone) else []), out
