"""`semtrace --help`, every command's --help and --version load none of the heavy libraries,
nor does `semtrace send` (JSON lines to the service's socket).

Before, `import appliance.cli` loaded NumPy, SQLCipher, usearch, OpenDP and pydantic for
every command (about 0.6 s of CPU a start, `bench/cli_start.py`); a command now imports
what it needs when it runs. Checked in a fresh interpreter, on `sys.modules`, not timed.
"""

from __future__ import annotations

import json
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from cli_start import Replies  # noqa: E402  (the bench's stand-in for the service)

HEAVY = ("numpy", "sqlcipher3", "usearch", "opendp", "pydantic", "presidio_analyzer", "spacy",
         "llama_cpp", "textual", "nats", "cryptography")

PROBE = """
import contextlib, io, json, sys
import click
from appliance.cli import cli, main

def paths(group, prefix):
    for name, command in sorted(group.commands.items()):
        yield prefix + [name]
        if isinstance(command, click.Group):
            yield from paths(command, prefix + [name])

heavy = %r
loaded = {}
for args in [["--help"], ["--version"]] + [p + ["--help"] for p in paths(cli, [])]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    new = [m for m in heavy if m in sys.modules and m not in loaded]
    for m in new:
        loaded[m] = " ".join(args)
    if code not in (None, 0) or not out.getvalue().strip():
        loaded["(no help)"] = " ".join(args)
print(json.dumps({"loaded": loaded, "commands": len(list(paths(cli, [])))}))
"""


def test_help_and_version_load_no_heavy_library() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout.strip().splitlines()[-1])
    assert said["commands"] > 50  # every command's --help was asked
    assert said["loaded"] == {}, f"module: first command that loaded it: {said['loaded']}"


# `semtrace send` only writes JSON lines to the service's socket and prints its replies: it
# loaded the runtime (NumPy, SQLCipher, pydantic, cryptography) to find the socket's path,
# and asyncio with the client. Run twice in one fresh interpreter: to a socket nobody
# listens on (its refusal), then to one that answers each line as the service does.
SEND_PROBE = """
import io, json, sys
from appliance.cli import main

def send(args, stdin):
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()))
    try:
        main(["send", *args])
    except SystemExit as exc:
        return exc.code
    return 0

codes = [send(["--socket", sys.argv[1]], '{"tenant": "t"}\\n'),
         send(["--socket", sys.argv[2], "--json"], '{"tenant": "t"}\\n{"tenant": "u"}\\n')]
print(json.dumps({"codes": codes, "loaded": [m for m in %r if m in sys.modules]}))
"""


def test_send_loads_only_what_talking_to_the_socket_needs(tmp_path: Path) -> None:
    sock = tmp_path / "semtrace.sock"
    with socketserver.ThreadingUnixStreamServer(str(sock), Replies) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            out = subprocess.run(
                [sys.executable, "-c", SEND_PROBE % (HEAVY + ("asyncio",),),
                 str(tmp_path / "none.sock"), str(sock)],
                capture_output=True, text=True, timeout=120,
                cwd=Path(__file__).resolve().parents[1])
        finally:
            server.shutdown()
    assert out.returncode == 0, out.stderr
    said = json.loads(out.stdout.strip().splitlines()[-1])
    assert said["codes"] == [1, 0], out.stderr
    assert "No semtrace service is listening on" in out.stderr
    replies = [json.loads(line) for line in out.stdout.strip().splitlines()[:-1]]
    assert [r["status"] for r in replies] == ["recorded", "recorded"]
    assert said["loaded"] == [], f"`semtrace send` loaded {said['loaded']}"


class Refusals(socketserver.StreamRequestHandler):
    """A service that refuses every request it reads (its reply names the request)."""

    def handle(self) -> None:
        for line in self.rfile:
            self.wfile.write(json.dumps({
                "v": 1, "ok": False, "request_id": json.loads(line).get("request_id"),
                "error": {"code": "invalid_request", "message": "refused"}}).encode() + b"\n")


def test_send_says_how_many_requests_were_refused_in_words(tmp_path: Path) -> None:
    """Before: 'semtrace: 1 request(s) were refused.', the reader left to do the grammar."""
    sock = tmp_path / "semtrace.sock"
    said = []
    with socketserver.ThreadingUnixStreamServer(str(sock), Refusals) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            for lines in (1, 2):
                out = subprocess.run(
                    [sys.executable, "-m", "appliance", "send", "--socket", str(sock)],
                    input='{"tenant": "t", "request_id": "r"}\n' * lines, capture_output=True,
                    text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
                assert out.returncode == 1, out.stderr
                said.append(out.stderr.strip().splitlines()[-1])
        finally:
            server.shutdown()
    assert said == ["semtrace: 1 request was refused.", "semtrace: 2 requests were refused."]
