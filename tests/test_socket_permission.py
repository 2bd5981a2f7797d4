"""A socket this user may not connect to: whose it is and what to do, in one sentence.

Before, `semtrace send` (and a gateway's `semtrace_unavailable` warning) said only
"Permission denied on the socket /run/semtrace/semtrace.sock.", while the fix, adding the
gateway's user to the socket's group (README, Air-gapped install), was nowhere in it."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from test_service_host_checks import as_nobody


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run as another uid")
def test_send_to_a_socket_of_a_group_this_user_is_not_in_says_how_to_join_it() -> None:
    root = Path(tempfile.mkdtemp(prefix="semtrace-sock-", dir="/tmp"))
    listening = socket.socket(socket.AF_UNIX)
    try:
        os.chmod(root, 0o755)
        sock, closed = root / "semtrace.sock", root / "closed"
        listening.bind(str(sock))
        listening.listen(1)
        os.chmod(sock, 0o660)  # as the service makes it: root's here, group root
        closed.mkdir(mode=0o700)
        record, env = root / "no-service.conf", {"XDG_DATA_HOME": str(root / "home")}
        r = as_nobody(["send", "--socket", str(sock)], record, env)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.strip() == (
            f"semtrace: Permission denied on the socket {sock}: this user, nobody, is not "
            "in its group, root: add it (`usermod -aG root nobody`, which takes effect at "
            "its next login) or run as a member.")
        behind = as_nobody(["send", "--socket", str(closed / "semtrace.sock")], record, env)
        assert behind.returncode == 1
        assert f"{closed / 'semtrace.sock'}: this user, nobody, may not enter a folder on " \
            "its path" in behind.stderr
    finally:
        listening.close()
        shutil.rmtree(root)
