"""What a gateway's NATS connection does while the gateway is idle, and when the server
restarts under idle gateways (docs/gateways.md, "An idle gateway over NATS").

A real nats-server (JetStream, the partition mappings, a monitoring port) whose PING
interval is `--ping` seconds (the server's default is 2 minutes), a real `semtrace serve
--nats` node (plain bus), and decorators (`Semtrace`) in this process:

1. one decorator makes a turn, stays idle `--idle` seconds (so many of the server's PINGs),
   then makes another: is it still the same connection (`/connz` cid), answered, without a
   reconnection?
2. `--gateways` decorators each make a turn and stay idle; the server stops and starts
   again `--down` seconds later: how long until the server counts all their connections
   again, without a call, and is each next turn recorded?

Prints figures; asserts nothing.

    .venv/bin/python bench/nats_idle.py [--ping 1] [--idle 30] [--gateways 20] [--down 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import bus_key, cluster_key, free_port, start_nodes, stop, wait_listening  # noqa: E402

from appliance.cluster.partition import server_mappings  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402

PARTITIONS = 12


class Server:
    """A nats-server that can be stopped and started again on the same port and store."""

    def __init__(self, tmp: Path, ping_s: float) -> None:
        self.port, self.http = free_port(), free_port()
        self.conf = tmp / "nats.conf"
        self.conf.write_text(
            f"listen: 127.0.0.1:{self.port}\nhttp: 127.0.0.1:{self.http}\n"
            f"ping_interval: \"{ping_s:g}s\"\nping_max: 2\n"
            f"jetstream {{ store_dir: {tmp / 'js'} }}\n" + server_mappings(PARTITIONS))
        self.url = f"nats://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; when it listened (time.monotonic())."""
        self.proc = subprocess.Popen(["/usr/sbin/nats-server", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(self.port)
        up = time.monotonic()
        wait_listening(self.http)
        return up

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None

    def gateways(self) -> list[dict[str, Any]]:
        """The gateway connections the server counts (`/connz`)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/connz?limit=4096",
                                    timeout=10) as r:
            connz = json.load(r)
        return [c for c in connz.get("connections") or []
                if c.get("name") == "semtrace-gateway"]


def turn(app: Semtrace, user: str, text: str) -> bool:
    """A turn of `user`; whether the appliance answered its registration."""
    with app.turn(user_id=user, text=text) as t:
        t.answer("Noted.")
    app.flush(30)
    return t.reply is not None and bool(t.reply.get("ok"))


def reconnects(app: Semtrace) -> int:
    """How many times the decorator's shared NATS connection came back after it dropped."""
    shared = app._channel._shared
    client = shared.client if shared is not None else None
    return 0 if client is None else client._inner._reconnects()


def idle_one(args: argparse.Namespace, server: Server) -> None:
    app = Semtrace(server.url, tenant="bench", timeout=10.0, plain_bus=True)
    try:
        first = turn(app, "idle-user", "Which platform does the night train leave from?")
        before = [c["cid"] for c in server.gateways()]
        time.sleep(args.idle)
        during = server.gateways()
        second = turn(app, "idle-user", "And when does it arrive?")
        after = [c["cid"] for c in server.gateways()]
        print(f"one decorator idle {args.idle:g} s ({args.idle / args.ping:.0f} server PINGs "
              f"at {args.ping:g} s): connection ids {before} before, "
              f"{[c['cid'] for c in during]} while idle (server says idle "
              f"{[c.get('idle') for c in during]}), {after} after; turns answered "
              f"{first}/{second}; reconnections {reconnects(app)}", flush=True)
    finally:
        app.close()


def restart(args: argparse.Namespace, server: Server) -> None:
    apps = [Semtrace(server.url, tenant="bench", timeout=10.0, plain_bus=True)
            for _ in range(args.gateways)]
    try:
        answered = sum(turn(a, f"r{i}", "Is the ferry running today?")
                       for i, a in enumerate(apps))
        counted = len(server.gateways())
        server.stop()
        time.sleep(args.down)
        up = server.start()
        seen: list[float] = []
        while time.monotonic() - up < 30:
            n = len(server.gateways())
            if n > len(seen):
                seen.extend([time.monotonic() - up] * (n - len(seen)))
            if n >= args.gateways:
                break
            time.sleep(0.05)
        time.sleep(2)  # the node's consumers back too
        again = sum(turn(a, f"r{i}", "And tomorrow?") for i, a in enumerate(apps))
        spread = f"{seen[0]:.2f}-{seen[-1]:.2f} s" if seen else "none"
        print(f"{args.gateways} idle decorators ({answered} turns answered, {counted} "
              f"connections): the server stopped {args.down:g} s; once it listened again it "
              f"counted {len(seen)} of their connections back within {spread}, before any "
              f"call; then {again} of {args.gateways} turns answered; reconnections "
              f"{sum(reconnects(a) for a in apps)}", flush=True)
    finally:
        for a in apps:
            a.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ping", type=float, default=1.0, help="the server's ping_interval, s")
    ap.add_argument("--idle", type=float, default=30.0)
    ap.add_argument("--gateways", type=int, default=20)
    ap.add_argument("--down", type=float, default=3.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        server = Server(tmp, args.ping)
        server.start()
        nodes: list[Any] = []
        try:
            _, env = bus_key(tmp, plain=True)
            nodes = start_nodes(tmp, server.url, cluster_key(tmp), 1, env=env)
            idle_one(args, server)
            restart(args, server)
        finally:
            stop(nodes)
            server.stop()


if __name__ == "__main__":
    main()
