"""What a gateway process holds open against the appliance during and after a burst of
tool loop calls, and what a connection costs to set up over NATS.

A burst: `--users` users (spread evenly over the decorator's workers and loop workers), each
with a turn registered by another process whose update has not come, call `tool_call` at
once: the service holds each call (its turn's update still on its way, `ATTACH_HOLD` =
2 s), so the calls are in flight together. With `--turns`, each user first makes a turn of
its own (a registration and its update, on the connections of the user's worker).
Counted, for the decorator (`Semtrace`):

- over a socket (a real `semtrace serve`): the connections the service holds open (its
  socket descriptors, less those it had before), at the peak of the burst, right after
  it, and `--idle` seconds later;
- over NATS (a real nats-server and a real `semtrace serve --nats` node, plain bus): the
  gateway's connections the server counts (`/connz`, named `semtrace-gateway`) at the same
  moments, and the gateway process's threads; and what opening one blocking NATS client
  costs (`open_client` to close, median of `--connects`, with the threads it adds).

Prints figures; asserts nothing. Each held call ends `not_found`: its turn's update, which
would name the response it continues, never comes here (that is what keeps the service
holding it), so the adapters would warn "semtrace refused a request" (code not_found) on
every run. The bench keeps those warnings back and says so once; any other refusal is
still printed.

    .venv/bin/python bench/gateway_connections.py [--users 32] [--idle 12] [--part both]

(`--part proxy`: the same over a socket for a LiteLLM proxy worker, `SemtraceLogger`'s
pre-call hook on its event loop, each user's registration on the worker's pipelined
connection and a held loop call.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import bus_key, cluster_key, free_port, start_nodes, wait_listening  # noqa: E402
from load import start_server  # noqa: E402

from appliance.client import Client, open_client  # noqa: E402
from appliance.cluster.partition import server_mappings  # noqa: E402
from appliance.integrations.channel import shard_of  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.outbox import WORKERS  # noqa: E402
from appliance.service.dispatch import ATTACH_HOLD  # noqa: E402
from appliance.words import plural  # noqa: E402

PARTITIONS = 12


class HeldCallsEndNotFound(logging.Filter):
    """Keeps back the adapters' `semtrace_refused` warnings of the held tool loop calls
    (an update answered `not_found` after the hold, as this bench intends), counting them;
    lets every other record through."""

    def __init__(self) -> None:
        super().__init__()
        self.kept_back = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event", None) == "semtrace_refused" \
                and getattr(record, "op", None) == "update" \
                and getattr(record, "code", None) == "not_found":
            self.kept_back += 1
            return False
        return True


def expected_refusals() -> HeldCallsEndNotFound:
    """Install the filter on the adapters' loggers (the decorator's, the proxy's)."""
    held = HeldCallsEndNotFound()
    for name in ("semtrace.integrations", "semtrace.integrations.litellm"):
        logging.getLogger(name).addFilter(held)
    return held


def users(count: int, run: str) -> list[str]:
    """`count` user ids, as many on each of the decorator's loop workers as can be."""
    by_worker: dict[int, list[str]] = {w: [] for w in range(WORKERS)}
    n = 0
    while sum(len(v) for v in by_worker.values()) < count:
        user = f"u{run}-{n}"
        n += 1
        worker = by_worker[shard_of(user, WORKERS)]
        if len(worker) < -(-count // WORKERS):
            worker.append(user)
    return [u for v in by_worker.values() for u in v][:count]


def socket_fds(pid: int) -> int:
    """How many sockets process `pid` has open."""
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fd).startswith("socket:")
    return count


def burst(app: Semtrace, who: list[str], run: str, count: Callable[[], int],
          turns: bool = False) -> int:
    """Every user's `tool_call` at once (each held by the service), after a turn of the
    user's own with `turns`; the peak of `count`."""
    peak = 0
    done = threading.Event()

    def call(user: str) -> None:
        if turns:
            with app.turn(user_id=user, text=f"Where does the {user} bus stop?") as turn:
                turn.answer("At the station.")
        with app.tool_call(user_id=user, previous_response_id=f"resp-{user}-{run}"):
            pass

    threads = [threading.Thread(target=call, args=(u,)) for u in who]
    for t in threads:
        t.start()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, count())
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    for t in threads:
        t.join()
    app.flush(30)
    done.set()
    watcher.join()
    return peak


def turned(args: argparse.Namespace) -> str:
    return "turns, then " if args.turns else ""


def register(send: Callable[[dict[str, Any]], dict[str, Any]], who: list[str],
             run: str) -> None:
    """Each user's turn, registered by another process; its update never comes."""
    for user in who:
        reply = send({"v": 1, "op": "ingest", "tenant": "bench", "user_id": user,
                      "request_id": f"t-{user}-{run}",
                      "text": f"Which platform for the train of {user}?"})
        assert reply.get("ok"), reply


def over_socket(args: argparse.Namespace, tmp: Path) -> None:
    proc, sock = start_server(tmp)
    try:
        time.sleep(1)
        base = socket_fds(proc.pid)
        who = users(args.users, "s")
        with Client(sock, timeout=60) as c:
            register(c.request, who, "s")
        time.sleep(0.5)
        app = Semtrace(sock, tenant="bench", timeout=10.0, register_wait=0.05)
        peak = burst(app, who, "s", lambda: socket_fds(proc.pid) - base, args.turns)
        after = socket_fds(proc.pid) - base
        time.sleep(args.idle)
        idle = socket_fds(proc.pid) - base
        app.close()
        print(f"socket, decorator, {len(who)} users' {turned(args)}held tool_calls at once: "
              f"the service "
              f"held {peak} of this process's connections at the peak, {after} right after "
              f"the burst, {idle} after {args.idle:g} s idle", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)


def over_socket_proxy(args: argparse.Namespace, tmp: Path) -> None:
    """The LiteLLM proxy's hooks on one worker's event loop: each user's registration (on
    the worker's pipelined connection) and a held loop call, at once."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
    from appliance.integrations.litellm import SemtraceLogger

    proc, sock = start_server(tmp)
    try:
        time.sleep(1)
        base = socket_fds(proc.pid)
        who = users(args.users, "p")
        with Client(sock, timeout=60) as c:
            register(c.request, who, "p")
        time.sleep(0.5)
        logger = SemtraceLogger(sock, tenant="bench", timeout=10.0, register_wait=0.05)
        calls = [({"model": "gpt-4o", "user": u, "litellm_call_id": f"pr-{u}", "metadata": {},
                   "messages": [{"role": "user", "content": f"Is the {u} bus late?"}]},
                  "acompletion") for u in who]
        calls += [({"model": "gpt-4o", "user": u, "litellm_call_id": f"pl-{u}",
                    "previous_response_id": f"resp-{u}-p", "litellm_metadata": {},
                    "input": [{"type": "function_call_output", "call_id": "c1",
                               "output": "{}"}]}, "aresponses") for u in who]
        peak = 0

        async def worker() -> tuple[int, int]:
            nonlocal peak
            for data, kind in calls:
                await logger.async_pre_call_hook(None, None, data, kind)
            while logger._tasks:
                peak = max(peak, socket_fds(proc.pid) - base)
                await asyncio.sleep(0.1)
            after = socket_fds(proc.pid) - base
            await asyncio.sleep(args.idle)  # the worker's event loop runs on, idle
            return after, socket_fds(proc.pid) - base

        after, idle = asyncio.run(worker())
        print(f"socket, proxy worker, {len(who)} users' registrations and held loop calls at "
              f"once: the service held {peak} of its connections at the peak, {after} right "
              f"after the burst, {idle} after {args.idle:g} s idle", flush=True)
    finally:
        proc.terminate()
        proc.wait(60)


def gateway_connections(monitor: str) -> int:
    with urllib.request.urlopen(f"{monitor}/connz?limit=1024", timeout=10) as r:
        connz = json.load(r)
    return sum(1 for c in connz.get("connections", [])
               if c.get("name") == "semtrace-gateway")


def start_nats_monitored(tmp: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port, http = free_port(), free_port()
    conf = tmp / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n"
                    f"jetstream {{ store_dir: {tmp / 'js'} }}\n" + server_mappings(PARTITIONS))
    proc = subprocess.Popen(["/usr/sbin/nats-server", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    wait_listening(http)
    return proc, f"nats://127.0.0.1:{port}", f"http://127.0.0.1:{http}"


def connect_cost(url: str, n: int) -> None:
    took, threads = [], []
    for _ in range(n):
        before = threading.active_count()
        start = time.perf_counter()
        client = open_client(url, timeout=10, plain_bus=True)
        took.append(time.perf_counter() - start)
        threads.append(threading.active_count() - before)
        client.close()
    print(f"NATS, one blocking client: connecting {statistics.median(took) * 1000:.1f} ms "
          f"median ({min(took) * 1000:.1f}-{max(took) * 1000:.1f} ms, {n} connects), "
          f"{plural(max(threads), 'thread')} of its own", flush=True)


def over_nats(args: argparse.Namespace, tmp: Path) -> None:
    nats, url, monitor = start_nats_monitored(tmp)
    nodes: list[Any] = []
    try:
        _, env = bus_key(tmp, plain=True)
        key = cluster_key(tmp)
        nodes = start_nodes(tmp, url, key, 1, env=env)
        connect_cost(url, args.connects)
        who = users(args.users, "n")
        with open_client(url, timeout=60, plain_bus=True) as c:
            register(c.request, who, "n")
        app = Semtrace(url, tenant="bench", timeout=10.0, register_wait=0.05, plain_bus=True)
        threads_before = threading.active_count()
        peak_threads = 0

        def count() -> int:
            nonlocal peak_threads
            peak_threads = max(peak_threads, threading.active_count() - threads_before)
            return gateway_connections(monitor)

        peak = burst(app, who, "n", count, args.turns)
        after = gateway_connections(monitor)
        time.sleep(args.idle)
        idle = gateway_connections(monitor)
        app.close()
        print(f"NATS, decorator, {len(who)} users' {turned(args)}held tool_calls at once: "
              f"the server "
              f"counted {peak} of this process's connections at the peak, {after} right "
              f"after the burst, {idle} after {args.idle:g} s idle; the process ran up to "
              f"{peak_threads} more threads (the burst's own {len(who)} included)",
              flush=True)
    finally:
        for proc, _ in nodes:
            proc.terminate()
        for proc, _ in nodes:
            proc.wait(120)
        nats.terminate()
        nats.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=32)
    ap.add_argument("--idle", type=float, default=12.0)
    ap.add_argument("--connects", type=int, default=20)
    ap.add_argument("--turns", action="store_true",
                    help="each user makes a turn of its own before its tool_call")
    ap.add_argument("--part", choices=("socket", "proxy", "nats", "both"), default="both",
                    help="both: the three")
    args = ap.parse_args()
    held = expected_refusals()
    with tempfile.TemporaryDirectory() as td:
        if args.part in ("socket", "both"):
            (Path(td) / "s").mkdir()
            over_socket(args, Path(td) / "s")
        if args.part in ("proxy", "both"):
            (Path(td) / "p").mkdir()
            over_socket_proxy(args, Path(td) / "p")
        if args.part in ("nats", "both"):
            (Path(td) / "n").mkdir()
            over_nats(args, Path(td) / "n")
    if held.kept_back:
        print(f"(the held tool_calls ended not_found after the service's {ATTACH_HOLD:g} s "
              "hold, as intended: their turns' updates never come here; the adapters' "
              "'semtrace refused a request' warning of that, "
              f"{plural(held.kept_back, 'line')}, was kept back)", flush=True)


if __name__ == "__main__":
    main()
