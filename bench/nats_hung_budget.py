"""How long a gateway call takes when its NATS server hangs under an open connection.

A nats-server on loopback is stopped (SIGSTOP: the kernel still accepts bytes, nothing
answers), as a frozen host would be, after the gateway's channels connected to it. Each
run times one `SyncChannel.deliver` and one `AsyncChannel.deliver` of a sync prompt: the
call's `timeout` is its whole budget, so the figure printed is the slack past it (closing
the connection given up on included).

    python bench/nats_hung_budget.py --timeout 1 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import free_port, wait_listening  # noqa: E402

from appliance.integrations.async_channel import AsyncChannel  # noqa: E402
from appliance.integrations.breaker import Breaker  # noqa: E402
from appliance.integrations.channel import SyncChannel  # noqa: E402

LOG = logging.getLogger("bench")
LOG.addHandler(logging.NullHandler())
LOG.propagate = False


def prompt(rid: str, mode: str = "sync") -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "request_id": rid,
            "user_id": "bench", "text": "hello", "mode": mode}


def stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "T"


async def one_run(binary: str, timeout: float) -> tuple[float, float]:
    """(sync, async) seconds of one call each on a connection whose server then hangs."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port),
                                   "-js", "-sd", tmp], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            url = f"nats://127.0.0.1:{port}"
            wait_listening(port)
            sync = SyncChannel(url, timeout=timeout, plain_bus=True, log=LOG)
            later = AsyncChannel(url, timeout=timeout, plain_bus=True, breaker=Breaker(LOG))
            sync.deliver(prompt("up-1", "async"))  # connected, kept
            await later.deliver(prompt("up-2", "async"))
            server.send_signal(signal.SIGSTOP)
            while not stopped(server.pid):
                time.sleep(0.01)
            start = time.monotonic()
            sync.deliver(prompt("r-1"))
            took_sync = time.monotonic() - start
            start = time.monotonic()
            await later.deliver(prompt("r-2"))
            took_async = time.monotonic() - start
            sync.close()
            return took_sync, took_async
        finally:
            server.kill()
            server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        raise SystemExit("bench/nats_hung_budget.py needs nats-server.")
    runs = [asyncio.run(one_run(binary, args.timeout)) for _ in range(args.runs)]
    for way, figures in (("sync", [r[0] for r in runs]), ("async", [r[1] for r in runs])):
        slack = [f - args.timeout for f in figures]
        print(f"{way:5}: timeout {args.timeout:g} s, call {statistics.median(figures):.3f} s "
              f"median; slack past the timeout {min(slack):.3f}-{max(slack):.3f} s "
              f"({args.runs} runs)")


if __name__ == "__main__":
    main()
