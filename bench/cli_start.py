"""CLI start-up benchmark: wall and CPU time of a few `semtrace` commands, as a child.

Each run is `python -m appliance ARGS` in a fresh interpreter (what an operator and the
test suite's CLI subprocesses pay: Python's start, the imports, the command), its CPU
time (user + system) read from the children's rusage. With several `--repo`, the runs of
each tree alternate (old and new code under the same load). Prints medians; asserts
nothing. `send` writes one request to a socket this script answers from a thread (a
stand-in for the service: only the client's own CPU is counted, the child's).

    nice .venv/bin/python bench/cli_start.py [--runs 15] [--repo /path/to/old/checkout]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = (
    ("--help",),
    ("--version",),
    ("threads", "list", "--help"),
    ("stats", "topics", "--help"),
    ("model", "verify", "--json"),  # a command that loads its library (the model's)
    ("send", "--socket", "{sock}", "--json"),  # one request to the stand-in socket
)
REQUEST = '{"tenant": "acme", "user_id": "u1", "text": "hello"}\n'


class Replies(socketserver.StreamRequestHandler):
    """The service's side of `send`'s connection: each request line answered with its id
    (tests/test_cli_start.py answers with it too)."""

    def handle(self) -> None:
        for line in self.rfile:
            request_id = json.loads(line)["request_id"]
            self.wfile.write(json.dumps({"v": 1, "ok": True, "request_id": request_id,
                                         "status": "recorded"}).encode() + b"\n")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_run(repo: Path, args: tuple[str, ...]) -> tuple[float, float]:
    """(wall s, CPU s) of one `python -m appliance ARGS` run from `repo` (its code first
    on sys.path)."""
    cpu0, t0 = _cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "appliance", *args], cwd=repo,
                          input=REQUEST if args[0] == "send" else "",
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    if done.returncode != 0:
        raise SystemExit(f"semtrace {' '.join(args)} failed in {repo}: {done.stderr.strip()}")
    return wall, cpu


def _runs(repos: list[Path], runs: int, sock: str
          ) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """(wall, CPU) of each run, by tree and command."""
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for command in COMMANDS:
            args = tuple(arg.replace("{sock}", sock) for arg in command)
            for repo in repos:  # alternated: every tree under the same load
                times.setdefault((str(repo), " ".join(command).replace(" --socket {sock}", "")),
                                 []).append(one_run(repo, args))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="Runs of each command and tree.")
    ap.add_argument("--repo", type=Path, action="append", default=None,
                    help="A source tree to run (repeatable; default this one).")
    ap.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    a = ap.parse_args()
    repos = [r.resolve() for r in (a.repo or [ROOT])]
    with tempfile.TemporaryDirectory(prefix="cli-start-") as tmp:
        sock = str(Path(tmp) / "semtrace.sock")
        with socketserver.ThreadingUnixStreamServer(sock, Replies) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            times = _runs(repos, a.runs, sock)
            server.shutdown()
    rows = [{"repo": repo, "command": f"semtrace {command}", "runs": len(got),
             "wall_median_s": round(statistics.median(w for w, _ in got), 3),
             "cpu_median_s": round(statistics.median(c for _, c in got), 3),
             "cpu_min_s": round(min(c for _, c in got), 3),
             "cpu_max_s": round(max(c for _, c in got), 3)}
            for (repo, command), got in times.items()]
    load = os.getloadavg()[0]
    if a.json:
        print(json.dumps({"load_1min": round(load, 1), "rows": rows}, indent=1))
        return
    print(f"load {load:.1f}, {a.runs} runs each")
    for row in rows:
        print(f"{row['repo']}  {row['command']:<32} wall {row['wall_median_s']:.3f} s  "
              f"CPU {row['cpu_median_s']:.3f} s ({row['cpu_min_s']:.3f}-"
              f"{row['cpu_max_s']:.3f})")


if __name__ == "__main__":
    main()
