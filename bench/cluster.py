"""Scale-out benchmark: throughput of 1, 2 and 3 nodes through NATS JetStream on this host,
and end-to-end latency (p50/p99) of request-reply through NATS versus the Unix socket.

Everything runs on loopback: one `nats-server -js` and N `semtrace serve --nats` nodes
sharing this host's cores, so the ratio between 1, 2 and 3 nodes shows what the bus costs
and what parallel nodes buy here, not what N hosts would do. Prints figures; asserts nothing.

    .venv/bin/python bench/cluster.py [--prompts 600] [--tenants 24] [--latency 200]
                                      [--nodes 1,2,3] [--plain-bus]

The nodes and the gateway seal every payload with a bus key, the default
(docs/scale-out.md, "Security on the bus"). `--plain-bus`: both opt out
explicitly (`plain_bus`) and payloads cross the bus in plain text; run it against
a default run to see what sealing costs end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.client import Client  # noqa: E402
from appliance.cluster.client import NatsClient, open_reply, sealed_request  # noqa: E402
from appliance.cluster.partition import (  # noqa: E402
    format_ranges,
    partition_of,
    server_mappings,
)
from appliance.words import plural  # noqa: E402

# the shared data sit next to the checkout (/work/shared beside /work/main) or next to its
# parent (a worktree in /work/wt/NAME)
DEV = next((p / "shared" / "bench" / "threads-dev.jsonl" for p in Path(__file__).resolve().parents
            if (p / "shared" / "bench").is_dir()),
           Path(__file__).resolve().parents[2] / "shared" / "bench" / "threads-dev.jsonl")
PARTITIONS = 12


def texts() -> list[str]:
    if DEV.exists():
        return [json.loads(x)["text"] for x in DEV.read_text().splitlines()]
    return [f"Please summarise the notes of meeting {i} about the storage migration."
            for i in range(1000)]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nats(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    conf = tmp / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {tmp / 'js'} }}\n"
                    + server_mappings(PARTITIONS))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(port)
    return proc, f"nats://127.0.0.1:{port}"


def wait_listening(port: int) -> None:
    """Until something accepts connections on 127.0.0.1:`port` (at most about 10 s)."""
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)


def start_nodes(tmp: Path, url: str, key: Path, count: int,
                env: dict[str, str] | None = None) -> list[tuple[Any, Path]]:
    """`count` nodes splitting the partitions evenly; returns (process, socket) pairs."""
    nodes = []
    per = PARTITIONS // count
    for i in range(count):
        own = list(range(i * per, PARTITIONS if i == count - 1 else (i + 1) * per))
        data = tmp / f"node{count}-{i}"
        subprocess.run([sys.executable, "-m", "appliance", "init", "--data-dir", str(data),
                        "--key-file", str(key)], check=True, capture_output=True)
        log = tmp / f"node{count}-{i}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "serve", "--data-dir", str(data), "--key-file",
             str(key), "--nats", url, "--partitions", str(PARTITIONS), "--own",
             format_ranges(own), "--node", f"n{count}-{i}"],
            stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=env)
        nodes.append((proc, data / "semtrace.sock", log))
    for proc, _, log in nodes:
        while '"cluster_start"' not in log.read_text():
            if proc.poll() is not None:
                raise SystemExit(f"a node exited: {log.read_text()[-1000:]}")
            time.sleep(0.5)
    return [(p, s) for p, s, _ in nodes]


def stop(nodes: list[tuple[Any, Path]]) -> None:
    for proc, _ in nodes:
        proc.terminate()
    for proc, _ in nodes:
        proc.wait(timeout=120)


def rows(prefix: str, n: int, tenants: int, pool: list[str]) -> list[dict[str, Any]]:
    # one second apart, ending now: the service refuses a ts more than 5 minutes ahead
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=n)
    return [{"v": 1, "op": "ingest", "tenant": f"tenant{i % tenants}",
             "user_id": f"user{i % (tenants * 4)}", "request_id": f"{prefix}-{i}",
             "text": pool[i % len(pool)],
             "ts": (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
            for i in range(n)]


def throughput(url: str, batch: list[dict[str, Any]], keys: Any = None) -> float:
    """Publish fire-and-forget; prompts/s until every enrichment is back."""
    import nats

    wanted = {r["request_id"] for r in batch}
    seen: set[str] = set()
    refused: list[dict[str, Any]] = []
    done = threading.Event()

    async def run() -> float:
        nc = await nats.connect(url)

        async def cb(msg: Any) -> None:
            reply = open_reply(msg.data, msg.subject.rsplit(".", 1)[-1], keys)
            if not reply.get("ok"):  # a refusal is fast: it must not count as throughput
                refused.append(reply)
                done.set()
            seen.add(reply.get("request_id"))
            if wanted <= seen:
                done.set()

        await nc.subscribe("semtrace.enriched.>", cb=cb)
        await nc.flush()
        t0 = time.perf_counter()
        for r in batch:  # built (and sealed) inside the timed loop, as a gateway does
            await nc.publish(*sealed_request(r, keys))
        await nc.flush()
        while not done.is_set():
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        await nc.close()
        if refused:
            raise SystemExit(f"{plural(len(refused), 'prompt')} refused, e.g. "
                             f"{refused[0]['error']}")
        return len(batch) / elapsed

    return asyncio.run(run())


def socket_throughput(sock: Path, batch: list[dict[str, Any]]) -> float:
    """The same prompts pipelined through the node's Unix socket (sync replies)."""
    t0 = time.perf_counter()
    with Client(sock, timeout=120) as c:
        for reply in c.stream(batch, window=256):
            assert reply.get("ok"), reply
    return len(batch) / (time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def latency(url: str, sock: Path, n: int, pool: list[str],
            keys: Any = None) -> dict[str, list[float]]:
    """Sequential request-reply: milliseconds per prompt through NATS and through the socket."""
    out: dict[str, list[float]] = {"nats": [], "socket": []}
    with NatsClient(url, timeout=60, bus_keys=keys, plain_bus=keys is None) as bus, \
            Client(sock, timeout=60) as local:
        for i, r in enumerate(rows("lat", 2 * n, 1, pool)):
            r["tenant"] = "tenant0"
            via = "nats" if i % 2 == 0 else "socket"
            t0 = time.perf_counter()
            reply = bus.request(r) if via == "nats" else local.request(r)
            out[via].append((time.perf_counter() - t0) * 1000)
            assert reply.get("ok"), reply
    return out


def cluster_key(tmp: Path) -> Path:
    """A new cluster key file in `tmp` (made by `semtrace init --new-key-file`)."""
    key = tmp / "cluster.key"
    subprocess.run([sys.executable, "-m", "appliance", "init", "--data-dir",
                    str(tmp / "seed"), "--new-key-file", str(key)], check=True,
                   capture_output=True)
    return key


def bus_key(tmp: Path, plain: bool) -> tuple[Any, dict[str, str]]:
    """The gateway's bus keys (None with the plain-text opt-out), and the nodes' environment:
    a policy dir whose cluster.toml names the same key file, or sets plain_bus = true."""
    from appliance.config import policy_dir
    from appliance.keys.bus import create_key_file, load_bus_keys

    policies = tmp / "policies"
    shutil.copytree(policy_dir(), policies)
    env = {**os.environ, "SEMTRACE_POLICY_DIR": str(policies)}
    if plain:
        (policies / "cluster.toml").write_text("[security]\nplain_bus = true\n")
        return None, env
    create_key_file(tmp / "bus.key")
    (policies / "cluster.toml").write_text(f'[security]\nbus_key_file = "{tmp / "bus.key"}"\n')
    return load_bus_keys(tmp / "bus.key"), env


def need_nats(script: str) -> None:
    """Exit with one sentence when this host has no nats-server."""
    if not (shutil.which("nats-server") or os.path.exists("/usr/sbin/nats-server")):
        raise SystemExit(f"bench/{script} needs nats-server (apt-get install nats-server).")


def tenant_of(second: bool) -> str:
    """A tenant of the second of two nodes' partitions (start_nodes splits evenly), or of
    the first's."""
    return next(f"tenant{i}" for i in range(1000)
                if (partition_of(f"tenant{i}", PARTITIONS) >= PARTITIONS // 2) == second)


@contextmanager
def two_sealed_nodes(tmp: Path) -> Iterator[tuple[str, Any, list[tuple[Any, Path]]]]:
    """A nats-server and two nodes splitting the partitions, the bus sealed with a new bus
    key: (its url, the gateway's bus keys, the nodes); all stopped on leaving."""
    nats_proc, url = start_nats(tmp)
    try:
        key = cluster_key(tmp)
        keys, env = bus_key(tmp, False)
        nodes = start_nodes(tmp, url, key, 2, env)
        try:
            yield url, keys, nodes
        finally:
            stop(nodes)
    finally:
        nats_proc.terminate()
        nats_proc.wait(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=600)
    ap.add_argument("--tenants", type=int, default=24)
    ap.add_argument("--latency", type=int, default=200, help="requests per front door")
    ap.add_argument("--nodes", default="1,2,3", help="node counts to run, e.g. 1")
    ap.add_argument("--plain-bus", action="store_true",
                    help="opt out of sealing: payloads cross the bus in plain text")
    args = ap.parse_args()
    need_nats("cluster.py")
    pool = texts()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        nats_proc, url = start_nats(tmp)
        key = cluster_key(tmp)
        keys, env = bus_key(tmp, args.plain_bus)
        print(f"host: {os.cpu_count()} cores; one nats-server and every node on loopback; "
              f"{args.prompts} prompts over {args.tenants} tenants, {PARTITIONS} partitions; "
              f"payloads {'sealed with a bus key' if keys else 'plain'}")
        try:
            for count in (int(c) for c in args.nodes.split(",")):
                nodes = start_nodes(tmp, url, key, count, env)
                throughput(url, rows(f"warm{count}", 24, args.tenants, pool), keys)
                rate = throughput(url, rows(f"run{count}", args.prompts, args.tenants, pool),
                                  keys)
                print(f"{plural(count, 'node')}: {rate:7.1f} prompts/s end to end (publish -> "
                      "committed -> enrichment received)")
                if count == 1:
                    proc, sock = nodes[0]
                    rss0 = rss_mb(proc.pid)
                    records = Client(sock).request({"v": 1, "op": "stats"})["store"]["records"]
                    disk = sum(f.stat().st_size for f in sock.parent.glob("*.db*"))
                    print(f"1 node: RSS {rss0:.0f} MB after {records} prompts; store "
                          f"{disk / max(records, 1) / 1024:.1f} KiB per prompt on disk")
                    local = socket_throughput(nodes[0][1], rows("sock", args.prompts,
                                                                args.tenants, pool))
                    print(f"1 node, Unix socket instead: {local:7.1f} prompts/s "
                          f"(NATS / socket: {rate / local:.2f})")
                    lat = latency(url, nodes[0][1], args.latency, pool, keys)
                    for via in ("socket", "nats"):
                        v = lat[via]
                        print(f"latency via {via:<6}: p50 {pct(v, 50):6.1f} ms, p99 "
                              f"{pct(v, 99):6.1f} ms ({len(v)} sequential requests, sync)")
                    ratio = pct(lat["nats"], 50) / pct(lat["socket"], 50)
                    print(f"NATS / socket p50 ratio: {ratio:.2f}")
                stop(nodes)
        finally:
            nats_proc.terminate()
            nats_proc.wait(timeout=30)


if __name__ == "__main__":
    main()
