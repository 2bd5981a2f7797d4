"""The folders `semtrace serve` makes for its sockets (`--socket`, `--query-socket`,
`--metrics unix:`), as the installed unit runs it (UMask=0077): each folder made has the
mode the socket's users need, a folder that cannot be made is refused in one sentence
naming it, and a folder that exists is left as it is; each socket is at its path only
with its own mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_spine import run_cli


def _init(tmp_path: Path, passphrase_file: Path) -> Path:
    data = tmp_path / "data"
    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    return data


def _serve(data: Path, passphrase_file: Path, *args: str, python: tuple[str, ...] = ("-m",
           "appliance")) -> subprocess.Popen[str]:
    """`semtrace serve` under umask 0077, as the unit runs it."""
    def unit_umask() -> None:
        os.umask(0o077)

    return subprocess.Popen([sys.executable, *python, "serve", "--data-dir",
                             str(data), "--passphrase-file", str(passphrase_file), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=unit_umask)


def _mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_folders_made_for_the_sockets_let_their_users_in_under_the_units_umask(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Before: under UMask=0077 the folders above the socket's own were made 0700 (the
    metrics' own too), so the gateway's group could not reach the ingest socket, nor
    readers the query socket, nor scrapers the metrics socket, and nothing said why."""
    data = _init(tmp_path, passphrase_file)
    run = tmp_path / "run"
    run.mkdir(mode=0o711)
    run.chmod(0o711)  # someone else's folder: left as it is
    ingest, query, metrics = (run / "in" / "gw" / "s.sock", run / "q" / "readers" / "q.sock",
                              run / "m" / "scrape" / "m.sock")
    proc = _serve(data, passphrase_file, "--socket", str(ingest), "--query-socket",
                  str(query), "--metrics", f"unix:{metrics}")
    try:
        deadline = time.monotonic() + 300
        while not (ingest.exists() and query.exists() and metrics.exists()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "serve never listened"
            time.sleep(0.3)
        made = {str(p.relative_to(run)): _mode(p) for p in (
            run / "in", ingest.parent, run / "q", query.parent, run / "m", metrics.parent)}
        assert made == {"in": "0o750", "in/gw": "0o750", "q": "0o755", "q/readers": "0o755",
                        "m": "0o750", "m/scrape": "0o750"}
        assert _mode(run) == "0o711"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)


def test_a_socket_folder_that_cannot_be_made_is_refused_in_one_sentence_naming_it(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Before: `semtrace: Not a directory: <socket path>.`, which named neither the folder
    nor the option."""
    data = _init(tmp_path, passphrase_file)
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder\n")
    sock = afile / "run" / "s.sock"
    proc = _serve(data, passphrase_file, "--socket", str(sock))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0
    assert err.strip().splitlines()[-1] == (
        f"semtrace: The socket {sock} (--socket) cannot be served: the folder {sock.parent} "
        f"cannot be made: {afile} is a file, not a folder; the service did not start.")
    assert "Traceback" not in err
    assert afile.read_text() == "not a folder\n"


# `semtrace serve` on a busy host, where the service may wait for a core between a socket's
# bind() and its chmod(): here a second, every time
_SLOW_SOCKET_CHMOD = """\
import os, runpy, stat, sys, time
chmod = os.chmod
def slow(path, mode, *args, **kwargs):
    if stat.S_ISSOCK(os.stat(path).st_mode):
        time.sleep(1)
    chmod(path, mode, *args, **kwargs)
os.chmod = slow
runpy.run_module("appliance", run_name="__main__", alter_sys=True)
"""


def test_each_socket_is_at_its_path_only_with_its_own_mode(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Before: each socket was bound at its path with the unit's umask (0700, the service
    user's alone) and given its mode (0660 the gateway's group, 0666 any reader, 0660 the
    scrapers) only after: a gateway, reader or scraper connecting in between was refused
    (Permission denied), and the unit's sandbox test, which checks the modes as soon as
    the sockets are there, failed now and then on a loaded host."""
    data = _init(tmp_path, passphrase_file)
    run = tmp_path / "run"
    want = {run / "s.sock": "0o660", run / "q.sock": "0o666", run / "m.sock": "0o660"}
    ingest, query, metrics = want
    proc = _serve(data, passphrase_file, "--socket", str(ingest), "--query-socket",
                  str(query), "--metrics", f"unix:{metrics}",
                  python=("-c", _SLOW_SOCKET_CHMOD))
    seen: dict[Path, str] = {}
    try:
        deadline = time.monotonic() + 300
        while len(seen) < len(want):
            for sock in want:
                if sock not in seen and sock.exists():
                    seen[sock] = _mode(sock)  # the mode a client finds it with first
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "serve never listened"
            time.sleep(0.02)
        assert seen == want
        assert sorted(p.name for p in run.iterdir()) == ["m.sock", "q.sock", "s.sock"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert not list(run.iterdir())
