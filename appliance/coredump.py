"""No core dump of a semtrace process: its memory holds prompts, PII and key bytes.

A crash (a segfault in llama.cpp, an abort in SQLCipher, a `kill -SEGV`) would
otherwise write the whole address space to disk under the kernel's
`core_pattern`: a `core` file in the working directory, or systemd-coredump's
and apport's stores, in plaintext, outside the data dir and beyond retention.
Every `semtrace` command forbids it at start.
"""

from __future__ import annotations

import contextlib
import ctypes
import resource
import sys

_PR_SET_DUMPABLE = 4


def forbid_core_dumps() -> None:
    """Set RLIMIT_CORE to 0 (soft and hard) and, on Linux, clear the dumpable flag.

    The limit keeps file and systemd-coredump dumps away; the flag also covers a
    pipe `core_pattern` that ignores the limit, and refuses other processes of the
    same user `ptrace` and /proc/PID/mem. Best effort: a platform without one of
    them keeps the other.
    """
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
