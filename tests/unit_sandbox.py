"""systemd's sandbox for installer/semtrace.service, approximated by hand where systemd is
not PID 1 (a build host, a container, CI): each [Service] setting of the unit install.sh
writes is read and reproduced with util-linux (unshare, mount, setpriv) and a seccomp filter,
so the service starts under the unit's own paths, user, credentials and restrictions.

What it reproduces: ProtectSystem=strict (every mount read-only) with ReadWritePaths=,
StateDirectory= and RuntimeDirectory= writable; PrivateTmp=, ProtectHome=, PrivateDevices=
(a /dev of null, zero, full, random, urandom, tty, shm), PrivateNetwork= (a network
namespace of its own), ProtectKernelTunables= and ProtectControlGroups= (read-only, as all
else), LoadCredential= (a copy owned by the user, 0400, in $CREDENTIALS_DIRECTORY),
User=/Group=/SupplementaryGroups=, NoNewPrivileges=, CapabilityBoundingSet= (empty),
RestrictAddressFamilies=AF_UNIX and SystemCallArchitectures=native (seccomp), UMask=,
LimitCORE=, Environment= on systemd's own clean environment; ProtectClock=, ProtectKernelLogs=,
ProtectHostname=, RestrictRealtime=, RestrictSUIDSGID=, ProtectKernelModules=,
RestrictNamespaces=yes and LockPersonality= as systemd's seccomp rules
(tests/sandbox_seccomp.py), with ProtectKernelLogs='s /proc/kmsg made inaccessible,
ProtectHostname='s UTS namespace, and ProtectKernelModules='s module folders hidden where
the host has them; PrivateMounts= (the sandbox's mount namespace, private);
RemoveIPC= as an IPC namespace of the sandbox's own, gone with its last process (systemd
removes the user's IPC objects at the stop instead; a service that makes none cannot tell);
SystemCallFilter= as an allow list of the calls this host's `systemd-analyze syscall-filter`
gives for its groups, plus @default, with SystemCallErrorNumber= for a call systemd knows
and ENOSYS for one it does not (systemd 247 on), or, `strict`, any other call killing the
service (a test's check that it makes none).
No probe can show that ProtectKernelModules= holds here: the service user, with no
capability, gets the same EPERM from the kernel for a module call (checked before anything
else) with the rule or without it, SystemCallFilter=@system-service refuses those calls too,
and this host has no module folder. A setting this file does not
know stops it (NotApproximated): a new directive in the unit is taken in here before the
test passes again. One thing is added that the unit does not give: the stand-in install runs
from this source tree and the test venv, which a checkout in /tmp or /home would hide; those
two folders (only) are shown back, read-only.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shlex
import shutil
import signal
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox_seccomp import Spec, expand

# Settings with no effect on how the service starts, or that a service which never tries
# what they forbid cannot tell apart (see the module docstring)
_NOT_SANDBOX = {"Type", "ExecReload", "Restart", "RestartSec", "KillSignal", "TimeoutStopSec"}
_EXPECTED = {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "PrivateNetwork": "yes", "PrivateDevices": "yes", "NoNewPrivileges": "yes",
             "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes",
             "RestrictAddressFamilies": "AF_UNIX", "SystemCallArchitectures": "native",
             "CapabilityBoundingSet": "", "LimitCORE": "0"}
# The same, where the unit has them (install.sh leaves them out for a systemd before SINCE)
_WHERE_GIVEN = {"ProtectClock": "yes", "ProtectKernelLogs": "yes", "ProtectHostname": "yes",
                "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "RemoveIPC": "yes",
                "PrivateMounts": "yes", "ProtectKernelModules": "yes",
                "RestrictNamespaces": "yes", "LockPersonality": "yes"}
# SystemCallFilter= as an allow list of groups and calls; SystemCallErrorNumber= an errno
_SYSCALLS = {"SystemCallFilter", "SystemCallErrorNumber"}
_HANDLED = {"User", "Group", "SupplementaryGroups", "ExecStart", "ExecStartPre", "Environment",
            "LoadCredential", "RuntimeDirectory", "RuntimeDirectoryMode", "StateDirectory",
            "StateDirectoryMode", "UMask", "ReadWritePaths", *_EXPECTED, *_WHERE_GIVEN,
            *_SYSCALLS}
# The unit's settings newer than the oldest systemd of a host install.sh accepts (glibc 2.28:
# RHEL 8's systemd 239), by the version that brought them (systemd's NEWS); an older systemd
# warns "Unknown key" and runs the service without them
SINCE = {"LoadCredential": 247, "ProtectHostname": 242, "RestrictSUIDSGID": 242,
         "ProtectKernelLogs": 244, "ProtectClock": 245,
         # not a version that brought it: the one whose @system-service list the service
         # is checked against (Debian 12's systemd-analyze; see install.sh)
         "SystemCallFilter": 252, "SystemCallErrorNumber": 252}
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class NotApproximated(Exception):
    """A setting of the unit that this approximation does not reproduce."""


@dataclass(frozen=True)
class Unit:
    """A unit file's settings by section; a key given twice keeps both values."""

    name: str
    sections: dict[str, dict[str, list[str]]]

    def values(self, key: str, section: str = "Service") -> list[str]:
        return self.sections.get(section, {}).get(key, [])

    def one(self, key: str, default: str | None = None) -> str | None:
        got = self.values(key)
        return got[-1] if got else default


def parse_unit(name: str, text: str) -> Unit:
    """Read a unit file as systemd does for the settings used here (no line continuations)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return Unit(name, sections)


@dataclass(frozen=True)
class Identity:
    """The service user as the host would have it (install.sh's useradd): added to copies
    of /etc/passwd and /etc/group that the sandbox binds over the host's."""

    user: str
    group: str
    uid: int
    gid: int
    home: Path
    other_groups: tuple[tuple[str, int], ...] = ()  # install.sh's groupadd (--metrics-group)


def free_id(count: int = 2, start: int = 64000) -> int:
    """The first of `count` consecutive uid and gid numbers no user or group here has."""
    taken = {int(line.split(":")[2]) for f in ("/etc/passwd", "/etc/group")
             for line in Path(f).read_text().splitlines() if line.count(":") >= 3}
    return next(n for n in range(start, 65000) if not taken & set(range(n, n + count)))


def seccomp_spec(unit: Unit, *, strict: bool = False) -> Spec:
    """The seccomp rules the unit's settings make systemd load (tests/sandbox_seccomp.py)."""
    on = {key: unit.one(key) == "yes" for key in _WHERE_GIVEN}
    allowed: tuple[str, ...] = ()
    known: tuple[str, ...] = ()
    items = " ".join(unit.values("SystemCallFilter")).split()
    if items:
        if any(item.startswith("~") for item in items) or len(unit.values("SystemCallFilter")) > 1:
            raise NotApproximated(f"SystemCallFilter={unit.values('SystemCallFilter')} (only "
                                  "one allow list is)")
        if shutil.which("systemd-analyze") is None:
            raise NotApproximated("SystemCallFilter=: no systemd-analyze here to list its calls")
        names: set[str] = set()
        for item in items:  # systemd adds @default to every allow list
            names.update(expand(item) if item.startswith("@") else (item,))
        allowed, known = tuple(sorted(names | set(expand("@default")))), expand("@known")
    code = unit.one("SystemCallErrorNumber")  # none: a refused call kills the service
    if code is not None and not hasattr(errno, code):
        raise NotApproximated(f"SystemCallErrorNumber={code} (only an errno name is)")
    return Spec(clock=on["ProtectClock"], syslog=on["ProtectKernelLogs"],
                hostname=on["ProtectHostname"], realtime=on["RestrictRealtime"],
                suid_sgid=on["RestrictSUIDSGID"], modules=on["ProtectKernelModules"],
                namespaces=on["RestrictNamespaces"], personality=on["LockPersonality"],
                allowed=allowed, known=known,
                error=getattr(errno, code) if code else None, strict=strict)


def _script(unit: Unit, ident: Identity, work: Path, runtime: Path, pid_file: Path,
            python: str, *, strict: bool = False) -> str:
    """The shell script that builds the sandbox in a new mount namespace and execs the
    service in it (bash; run by `start`)."""
    for key in unit.sections.get("Service", {}):
        if key not in _HANDLED and key not in _NOT_SANDBOX:
            raise NotApproximated(f"{key}= is not approximated by tests/unit_sandbox.py")
    for key, want in _EXPECTED.items():
        if unit.one(key, "") != want:
            raise NotApproximated(f"{key}={unit.one(key, '')} (only {key}={want} is)")
    for key, want in _WHERE_GIVEN.items():
        if unit.one(key, want) != want:
            raise NotApproximated(f"{key}={unit.one(key)} (only {key}={want} is)")
    if unit.one("User") != ident.user or unit.one("Group") != ident.group:
        raise NotApproximated(f"User={unit.one('User')} Group={unit.one('Group')}")
    q = shlex.quote
    shown = _test_paths()
    for i in range(len(shown)):
        (work / "shown" / str(i)).mkdir(parents=True, exist_ok=True)
    passwd, group = work / "passwd", work / "group"
    passwd.write_text(Path("/etc/passwd").read_text() + f"{ident.user}:x:{ident.uid}:"
                      f"{ident.gid}::{ident.home}:/usr/sbin/nologin\n")
    group.write_text(Path("/etc/group").read_text() + f"{ident.group}:x:{ident.gid}:\n"
                     + "".join(f"{g}:x:{n}:\n" for g, n in ident.other_groups))
    own = f"{ident.uid}:{ident.gid}"
    name = unit.name
    cred_dir = f"/run/credentials/{name}"
    s = ["set -euo pipefail", f"echo $$ > {q(str(pid_file))}",
         "fail() { echo \"sandbox: $*\" >&2; exit 226; }",  # 226: systemd's EXIT_NAMESPACE
         "mount --make-rprivate /",
         *(f"mount --bind {q(path)} {q(str(work / 'shown' / str(i)))}"
           for i, path in enumerate(shown)),
         f"mount --bind {q(str(passwd))} /etc/passwd", f"mount --bind {q(str(group))} /etc/group",
         # ProtectSystem=strict: every mount read-only but /proc and /dev (replaced below)
         "for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do",
         "  case $m in /proc|/proc/*|/dev|/dev/*) continue ;; esac",
         "  mount -o remount,bind,ro \"$m\" || fail \"cannot make $m read-only\"",
         "done",
         # ProtectKernelTunables=: /proc/sys read-only
         "mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys",
         # /run: a tmpfs of the sandbox's own, read-only once the runtime folder is in
         "mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run",
         # PrivateDevices=: a /dev of the usual devices only
         "mkdir /run/.dev && mount -t tmpfs -o mode=0755,nosuid,noexec tmpfs /run/.dev",
         "for d in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do",
         "  IFS=: read -r n a b <<< \"$d\"; mknod -m 0666 /run/.dev/$n c $a $b",
         "done",
         "mkdir -m 1777 /run/.dev/shm && mkdir /run/.dev/pts",
         "ln -s /proc/self/fd /run/.dev/fd && ln -s /proc/self/fd/0 /run/.dev/stdin",
         "ln -s /proc/self/fd/1 /run/.dev/stdout && ln -s /proc/self/fd/2 /run/.dev/stderr",
         "mount --move /run/.dev /dev && rmdir /run/.dev",
         "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm",
         # PrivateTmp=
         "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp",
         "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp",
         # ProtectHome=yes
         "for h in /home /root; do [ -d $h ] && mount -t tmpfs -o mode=000 tmpfs $h; done",
         # the source tree and test venv, if under a hidden folder (_test_paths)
         *(line for i, path in enumerate(shown) for line in (
             f"mkdir -p {q(path)}", f"mount --bind {q(str(work / 'shown' / str(i)))} {q(path)}",
             f"mount -o remount,bind,ro {q(path)}")),
         *(f"chmod 0711 {h}" for h in ("/home", "/root")
           if any(p.startswith(h + "/") for p in shown)),
         "for h in /home /root; do [ -d $h ] && mount -o remount,ro $h; done",
         "true"]
    if unit.one("ProtectKernelModules") == "yes":  # the module folders, where there are
        s += ["for m in /lib/modules /usr/lib/modules; do",
              "  if [ -d $m ] && [ ! -L $m ]; then",
              "    mount -t tmpfs -o mode=000,ro tmpfs $m || fail \"cannot hide $m\"",
              "  fi",
              "done"]
    if unit.one("ProtectKernelLogs") == "yes":  # /dev/kmsg: not in the /dev above
        s += ["mkdir /run/.ro && mount -t tmpfs -o mode=0000 tmpfs /run/.ro",
              ": > /run/.ro/none && chmod 0000 /run/.ro/none",
              "mount --bind /run/.ro/none /proc/kmsg || fail 'cannot hide /proc/kmsg'"]
    rw: list[str] = []
    for entry in " ".join(unit.values("ReadWritePaths")).split():
        if entry[0] in "-+":
            raise NotApproximated(f"ReadWritePaths={entry} (a prefixed path)")
        rw.append(entry)
    state_env = []
    for st in " ".join(unit.values("StateDirectory")).split():
        path = f"/var/lib/{st}"
        mode = unit.one("StateDirectoryMode", "0755")
        s.append(f"[ -d {q(path)} ] || fail 'StateDirectory={st}: {path} is not on this host "
                 "(systemd makes it; the sandbox does not write the host)'")
        s.append(f"chown {own} {q(path)} && chmod {mode} {q(path)}")
        rw.append(path)
        state_env.append(path)
    for path in rw:  # systemd: the path must exist, or the service fails at its start
        s.append(f"[ -e {q(path)} ] || fail 'ReadWritePaths={path}: no such file or folder'")
        s.append(f"mount --bind {q(path)} {q(path)} && mount -o remount,bind,rw {q(path)}")
    runtime_env = []
    for rt in " ".join(unit.values("RuntimeDirectory")).split():
        path = f"/run/{rt}"
        mode = unit.one("RuntimeDirectoryMode", "0755")
        # the host folder `runtime` stands for it, so the test reaches the sockets
        s += [f"mkdir -p {q(path)}", f"mount --bind {q(str(runtime))} {q(path)}",
              f"mount -o remount,bind,rw {q(path)}", f"chown {own} {q(path)}",
              f"chmod {mode} {q(path)}"]
        runtime_env.append(path)
    if len(runtime_env) > 1:
        raise NotApproximated("more than one RuntimeDirectory=")
    for pre in unit.values("ExecStartPre"):  # "+": as root, outside the sandbox
        if not pre.startswith("+"):
            raise NotApproximated(f"ExecStartPre={pre} (only +, full privileges, is)")
        s.append(f"{shlex.join(shlex.split(pre[1:]))} || fail {q('ExecStartPre=' + pre)}")
    creds = unit.values("LoadCredential")
    if creds:
        s += [f"mkdir -p {cred_dir}", f"mount -t tmpfs -o mode=0700,nosuid,nodev,noexec "
              f"tmpfs {cred_dir}"]
        for cred in creds:
            cname, _, source = cred.partition(":")
            if not source.startswith("/"):
                raise NotApproximated(f"LoadCredential={cred} (a relative path)")
            s += [f"[ -f {q(source)} ] || fail 'LoadCredential={cred}: no such file'",
                  f"cp {q(source)} {cred_dir}/{q(cname)}", f"chown {own} {cred_dir}/{q(cname)}",
                  f"chmod 0400 {cred_dir}/{q(cname)}"]
        s += [f"chown {own} {cred_dir}", f"chmod 0500 {cred_dir}",
              f"mount -o remount,ro {cred_dir}"]
    s.append("mount -o remount,bind,ro /run")
    s += [f"ulimit -c {unit.one('LimitCORE')}", f"umask {unit.one('UMask', '0022')}"]
    env = {"PATH": SYSTEMD_PATH, "LANG": "C.UTF-8", "USER": ident.user,
           "LOGNAME": ident.user, "HOME": str(ident.home), "SHELL": "/usr/sbin/nologin"}
    if runtime_env:
        env["RUNTIME_DIRECTORY"] = ":".join(runtime_env)
    if state_env:
        env["STATE_DIRECTORY"] = ":".join(state_env)
    if creds:
        env["CREDENTIALS_DIRECTORY"] = cred_dir
    for line in unit.values("Environment"):
        for item in shlex.split(line):
            key, _, value = item.partition("=")
            env[key] = value
    groups = " ".join(unit.values("SupplementaryGroups")).split()
    argv = shlex.split(unit.one("ExecStart") or "")
    if not argv or argv[0][0] in "-@+!:":
        raise NotApproximated(f"ExecStart={unit.one('ExecStart')}")
    priv = ["setpriv", f"--reuid={ident.uid}", f"--regid={ident.gid}",
            f"--groups={','.join(groups)}" if groups else "--clear-groups",
            "--no-new-privs", "--bounding-set=-all", "--inh-caps=-all"]
    seccomp_file = work / "seccomp.json"
    seccomp_spec(unit, strict=strict).write(seccomp_file)
    exec_line = [*priv, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                 python, str(Path(__file__).resolve()), "--exec", str(seccomp_file), *argv]
    s.append("exec " + shlex.join(exec_line))
    return "\n".join(s) + "\n"


# Where the sandbox hides the host (PrivateTmp=, ProtectHome=)
_HIDDEN = ("/tmp", "/var/tmp", "/home", "/root")


def _test_paths() -> list[str]:
    """What the stand-in install runs from that an installed one would not: this source
    tree and the test venv's packages (tests/sandbox_host.py's .pth files). A checkout or a
    venv under a folder the sandbox hides (a CI clone in /tmp, a venv in /home) is shown
    back at its own path, read-only, and nothing else of that folder."""
    import sysconfig
    paths = {str(Path(__file__).resolve().parents[1]), sysconfig.get_paths()["purelib"],
             sysconfig.get_paths()["platlib"]}
    return sorted(p for p in paths
                  if any(p == h or p.startswith(h + "/") for h in _HIDDEN))


@dataclass
class Started:
    """The service started in its sandbox: its process (unshare's), and the main pid."""

    proc: subprocess.Popen[str]
    pid_file: Path
    journal: Path  # the service's and the sandbox's output

    @property
    def main_pid(self) -> int:
        return int(self.pid_file.read_text())

    def said(self, step: str) -> str:
        """A failure message: the step, whether the service still runs or how it ended
        (226: the sandbox could not be set up, as systemd's EXIT_NAMESPACE), and the tail
        of its output."""
        rc = self.proc.poll()
        state = ("still running" if rc is None else f"exited with {rc}" if rc >= 0
                 else f"killed by signal {-rc} ({signal.Signals(-rc).name})")
        out = self.journal.read_text() if self.journal.exists() else "(no output file)"
        return f"{step}; the service {state}; its output, last 3000 characters:\n{out[-3000:]}"

    def kill(self) -> None:
        """Kill the service and its sandbox if still there (a test that failed midway): the
        main process by its pid, since the change of user clears --kill-child's signal."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                os.kill(self.main_pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait()


def start(unit_text: str, ident: Identity, *, work: Path, runtime: Path, python: str,
          name: str = "semtrace.service", systemd: int | None = None,
          strict: bool = False) -> Started:
    """Start the unit's ExecStart in the approximated sandbox, as root; its output goes to
    work/journal (the journal's stand-in). `systemd`: the version of the host's, whose
    unknown settings (SINCE) are left out, as it does. `strict`: a call outside
    SystemCallFilter= kills the service instead of failing with SystemCallErrorNumber=."""
    unit = parse_unit(name, unit_text)
    if systemd is not None:
        service = unit.sections.get("Service", {})
        for key in [k for k in service if SINCE.get(k, 0) > systemd]:
            del service[key]
    pid_file = work / "main.pid"
    script = _script(unit, ident, work, runtime, pid_file, python, strict=strict)
    namespaces = ["--mount", "--net"]  # PrivateMounts=, PrivateNetwork=
    if unit.one("ProtectHostname") == "yes":
        namespaces.append("--uts")
    if unit.one("RemoveIPC") == "yes":
        namespaces.append("--ipc")
    (work / "sandbox.sh").write_text(script)
    with open(work / "journal", "w") as journal:  # the child keeps its own copy
        proc = subprocess.Popen(["unshare", *namespaces, "--fork", "--kill-child",
                                 "bash", str(work / "sandbox.sh")], stdin=subprocess.DEVNULL,
                                stdout=journal, stderr=subprocess.STDOUT, text=True)
    return Started(proc, pid_file, work / "journal")


def _restrict_socket_families() -> None:
    """RestrictAddressFamilies=AF_UNIX and SystemCallArchitectures=native as systemd's
    seccomp filter has them: socket() of another family fails with EAFNOSUPPORT, a
    non-native system call kills the process."""
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    prog = [(ld, 0, 0, 4), (jeq, 0, 7, 0xC000003E),  # arch: x86_64, else kill
            (ld, 0, 0, 0), (jge, 5, 0, 0x40000000),  # x32 system calls: kill
            (jeq, 0, 3, 41),  # socket(): check its family, anything else: allow
            (ld, 0, 0, 16), (jeq, 1, 0, 1),  # AF_UNIX: allow
            (ret, 0, 0, 0x00050000 | 97),  # EAFNOSUPPORT
            (ret, 0, 0, 0x7FFF0000), (ret, 0, 0, 0x80000000)]
    raw = b"".join(struct.pack("HBBI", *insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw)

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = Fprog(len(prog), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, FILTER
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


if __name__ == "__main__" and sys.argv[1:2] == ["--exec"]:
    from sandbox_seccomp import load

    _restrict_socket_families()
    load(sys.argv[2])
    os.execv(sys.argv[3], sys.argv[3:])
