"""`semtrace serve` as an operator runs it: a socket a running service answers on is never
taken over, a file that is not a socket is never deleted, a stale socket is reused; a
SIGHUP that changes legal holds or retention leaves an audit entry."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import serving
from test_spine import run_cli

from appliance.client import Client


def _serve(data: Path, passphrase_file: Path, sock: Path) -> subprocess.CompletedProcess[str]:
    """`semtrace serve` on `sock`; one that starts (the old behaviour) is stopped at 90 s."""
    try:
        return subprocess.run([sys.executable, "-m", "appliance", "serve", "--data-dir",
                               str(data), "--passphrase-file", str(passphrase_file),
                               "--socket", str(sock)], capture_output=True, text=True,
                              timeout=90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"serve took {sock} and kept running") from None


def test_a_second_serve_on_a_live_socket_is_refused_and_the_first_keeps_it(
        pipeline: Any, tmp_path: Path, passphrase_file: Path) -> None:
    other = tmp_path / "other"
    assert run_cli("init", "--data-dir", str(other), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    with serving(pipeline, {}, tmp_path):
        sock = tmp_path / "s.sock"
        inode = sock.stat().st_ino
        second = _serve(other, passphrase_file, sock)
        assert second.returncode != 0
        assert second.stderr.strip() == (f"semtrace: Another service is already listening on "
                                         f"{sock}; nothing was changed.")
        assert sock.stat().st_ino == inode  # the first service's socket, still bound
        with Client(sock, timeout=30) as c:
            assert c.ping()["ok"]


def test_serve_never_deletes_a_file_that_is_not_a_socket(tmp_path: Path,
                                                          passphrase_file: Path) -> None:
    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    precious = tmp_path / "notes.txt"
    precious.write_text("not a socket\n")
    out = _serve(data, passphrase_file, precious)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "is not a socket; nothing was changed" in out.stderr
    assert precious.read_text() == "not a socket\n"


def test_a_stale_socket_left_by_a_killed_service_is_reused(pipeline: Any,
                                                           tmp_path: Path) -> None:
    from appliance.service import Service

    sock = tmp_path / "s.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))
    dead.close()  # the file stays; nobody listens
    svc = Service(pipeline, pipeline.policies, socket_path=sock)

    async def run() -> bool:
        await svc.start()
        try:
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(b'{"v":1,"op":"ping"}\n')
            reply = await reader.readline()
            writer.close()
            return b'"pong":true' in reply
        finally:
            await svc.drain()

    assert asyncio.run(run())


def test_a_policy_reload_that_changes_legal_holds_is_audited_without_naming_the_user(
        tmp_path: Path, passphrase_file: Path) -> None:
    import json
    import signal
    import time

    from test_service import Server

    srv = Server(tmp_path, passphrase_file).start()
    policies = Path(srv.env["SEMTRACE_POLICY_DIR"])
    retention = policies / "retention.toml"
    text = retention.read_text()
    assert "legal_holds = []" in text
    retention.write_text(text.replace("legal_holds = []", 'legal_holds = [{ tenant = "acme", '
                                      'user_id = "canary-7f3a@example.com", reason = "case 9" }]'))
    assert srv.proc is not None
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 60
    while "policies reloaded" not in srv.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert srv.stop() == 0
    log = json.loads(run_cli("audit", "log", "--json", *srv.args).stdout)
    changes = [e["details"] for e in log if e["event"] == "policy_change"]
    assert changes == [{"change": "policy reload", "keys": ["retention.legal_holds"],
                        "legal_holds": 1}]
    assert "canary" not in json.dumps(log) and "canary" not in srv.log.read_text()
    assert run_cli("audit", "verify", *srv.args).returncode == 0
