"""The seccomp filters systemd loads for a unit's ProtectClock=, ProtectKernelLogs=,
ProtectHostname=, RestrictRealtime=, RestrictSUIDSGID=, ProtectKernelModules=,
RestrictNamespaces=yes, LockPersonality= and SystemCallFilter= (an allow list), rebuilt for
tests/unit_sandbox.py with libseccomp, the library systemd builds them with, rule for rule as
systemd 252's src/shared/seccomp-util.c adds them (x86_64 only).

The spec (`Spec`) is worked out from the unit before the sandbox starts, written as JSON, and
loaded by the sandbox's last process just before it execs the service (`load`).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# systemd's @clock group (ProtectClock=)
CLOCK = ("adjtimex", "clock_adjtime", "clock_adjtime64", "clock_settime", "clock_settime64",
         "settimeofday")
# systemd's @module group (ProtectKernelModules=)
MODULE = ("delete_module", "finit_module", "init_module")
# the namespace flags RestrictNamespaces=yes refuses: CLONE_NEWNS, _NEWCGROUP, _NEWUTS,
# _NEWIPC, _NEWUSER, _NEWPID, _NEWNET
NAMESPACE_FLAGS = (0x20000, 0x2000000, 0x4000000, 0x8000000, 0x10000000, 0x20000000,
                   0x40000000)
_ALLOW, _KILL_PROCESS = 0x7FFF0000, 0x80000000
_NE, _EQ, _GT, _MASKED_EQ = 1, 4, 6, 7  # enum scmp_compare
_PER_LINUX = 0  # the personality LockPersonality= keeps on x86_64
_S_ISUID, _S_ISGID, _O_CREAT = 0o4000, 0o2000, 0o100
# sched_setscheduler() policies other than SCHED_OTHER, SCHED_BATCH, SCHED_IDLE (0, 3, 5)
_REALTIME_POLICIES = (1, 2, 4)


def _errno(code: int) -> int:
    return 0x00050000 | code


class _Cmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


@dataclass(frozen=True)
class Spec:
    """What the unit asks of seccomp beyond RestrictAddressFamilies= (unit_sandbox.py)."""

    clock: bool = False  # ProtectClock=yes
    syslog: bool = False  # ProtectKernelLogs=yes
    hostname: bool = False  # ProtectHostname=yes
    realtime: bool = False  # RestrictRealtime=yes
    suid_sgid: bool = False  # RestrictSUIDSGID=yes
    modules: bool = False  # ProtectKernelModules=yes
    namespaces: bool = False  # RestrictNamespaces=yes (every kind refused)
    personality: bool = False  # LockPersonality=yes
    allowed: tuple[str, ...] = ()  # SystemCallFilter=, its groups expanded; () = no list
    known: tuple[str, ...] = ()  # systemd's @known: the calls refused with `error`
    error: int | None = errno.EPERM  # SystemCallErrorNumber=; None: the process is killed
    strict: bool = False  # a test's stricter check: a refused call kills the service

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self)))
        path.chmod(0o644)


def expand(group: str) -> tuple[str, ...]:
    """A system call group's calls as this host's `systemd-analyze syscall-filter` lists
    them, its nested groups expanded (the list systemd itself loads)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        item = line.strip()
        if item and not item.startswith("#"):
            names.update(expand(item) if item.startswith("@") else (item,))
    return tuple(sorted(names))


class _Filter:
    def __init__(self, lib: ctypes.CDLL, default: int) -> None:
        self.lib = lib
        self.ctx = lib.seccomp_init(default)
        if not self.ctx:
            raise OSError("seccomp_init failed")

    def add(self, action: int, name: str, *cmp: tuple[int, int, int, int]) -> None:
        """As systemd: a call libseccomp does not know, or that x86_64 lacks, is skipped."""
        nr = self.lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return
        arr = (_Cmp * max(len(cmp), 1))(*(_Cmp(*c) for c in cmp))
        self.lib.seccomp_rule_add_exact_array(self.ctx, action, nr, len(cmp), arr)

    def load(self) -> None:
        rc = self.lib.seccomp_load(self.ctx)
        self.lib.seccomp_release(self.ctx)
        if rc != 0:
            raise OSError(-rc, f"seccomp_load: {os.strerror(-rc)}")


def load(spec_file: str) -> None:
    """Load the filters `spec_file` names into this process (inherited across execve)."""
    raw: dict[str, Any] = json.loads(Path(spec_file).read_text())
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                              for k, v in raw.items()}
    spec = Spec(**fields)
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_exact_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32,
                                                 ctypes.c_int, ctypes.c_uint,
                                                 ctypes.POINTER(_Cmp)]
    lib.seccomp_load.argtypes = lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    eperm = _errno(errno.EPERM)
    deny = _Filter(lib, _ALLOW)  # each a filter of its own in systemd; one here, same rules
    for on, names in ((spec.clock, CLOCK), (spec.syslog, ("syslog",)),
                      (spec.hostname, ("sethostname", "setdomainname")),
                      (spec.modules, MODULE)):
        for name in names if on else ():
            deny.add(eperm, name)
    if spec.namespaces:
        # clone3()'s flags are in a struct: refused with ENOSYS, so that glibc falls back
        # to clone(), whose flags are checked like unshare()'s; setns() refused outright
        deny.add(_errno(errno.ENOSYS), "clone3")
        deny.add(eperm, "setns")
        for flag in NAMESPACE_FLAGS:
            for name in ("unshare", "clone"):
                deny.add(eperm, name, (0, _MASKED_EQ, flag, flag))
    if spec.personality:  # any personality() but the one it runs with, even a query
        deny.add(eperm, "personality", (0, _NE, _PER_LINUX, 0))
    if spec.realtime:
        for policy in _REALTIME_POLICIES:
            deny.add(eperm, "sched_setscheduler", (1, _EQ, policy, 0))
        deny.add(eperm, "sched_setscheduler", (1, _GT, 5, 0))
    if spec.suid_sgid:
        for bit in (_S_ISUID, _S_ISGID):
            for name, arg in (("chmod", 1), ("fchmod", 1), ("fchmodat", 2), ("mkdir", 1),
                              ("mkdirat", 2), ("mknod", 1), ("mknodat", 2), ("creat", 1)):
                deny.add(eperm, name, (arg, _MASKED_EQ, bit, bit))
            for name, flags in (("open", 1), ("openat", 2)):
                deny.add(eperm, name, (flags, _MASKED_EQ, _O_CREAT, _O_CREAT),
                         (flags + 1, _MASKED_EQ, bit, bit))
        deny.add(_errno(errno.ENOSYS), "openat2")  # its mode is in a struct: not checkable
    deny.load()
    if spec.allowed:
        # systemd 247+: a known call outside the list fails with SystemCallErrorNumber=, one
        # systemd does not know (newer) with ENOSYS, so that a fallback is taken
        refuse = _KILL_PROCESS if spec.strict or spec.error is None else _errno(spec.error)
        allow = _Filter(lib, _KILL_PROCESS if spec.strict else _errno(errno.ENOSYS))
        allowed = set(spec.allowed)
        for name in spec.known:
            if name not in allowed:
                allow.add(refuse, name)
        for name in spec.allowed:
            allow.add(_ALLOW, name)
        allow.load()
