"""A node killed and started again on its host takes its own claims back at once, while a
copy of its data dir that runs still finds them watched. A real nats-server, real data dir
locks, the killed run a real process (SIGKILL), and a real `semtrace serve`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import ingest, nodes_of, sealed_cluster
from test_cluster import start_all
from test_cluster_restart import RestartableNats

from appliance.cluster.owners import Ownership, owners_bucket, read_claims
from appliance.errors import SemtraceError
from appliance.lock import DataDirLock

pytestmark = pytest.mark.slow
nats = pytest.importorskip("nats")

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR_ID = "data-dir-of-a"
TTL_S = 600.0  # a dead run's claims would be watched for 400 s

RUN = """
import asyncio, sys
from pathlib import Path
import nats
from appliance.cluster.owners import Ownership, owners_bucket
from appliance.lock import DataDirLock

async def main():
    lock = DataDirLock(Path(sys.argv[2]))
    lock.acquire()
    nc = await nats.connect(sys.argv[1])
    kv = await owners_bucket(nc.jetstream(), ttl_s=float(sys.argv[3]), replicas=1)
    await Ownership(kv, "a", [0, 1], float(sys.argv[3]), data_dir=sys.argv[4],
                    lock=lock.identity()).claim()
    print("claimed", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def _killed_run(url: str, data: Path) -> None:
    """Node 'a' on `data`, its partitions 0-1 claimed, then killed (no release)."""
    run = subprocess.Popen([sys.executable, "-c", RUN, url, str(data), str(TTL_S), DATA_DIR_ID],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout is not None
    try:
        assert run.stdout.readline().strip() == "claimed", run.stderr.read() if run.stderr \
            else ""
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=60)


async def _start(nc: Any, lock: DataDirLock, ttl_s: float) -> Ownership:
    """Node 'a' claims partitions 0-1 for the data dir `lock` is held on."""
    kv = await owners_bucket(nc.jetstream(), ttl_s=ttl_s, replicas=1)
    own = Ownership(kv, "a", [0, 1], ttl_s, data_dir=DATA_DIR_ID, lock=lock.identity())
    await asyncio.wait_for(own.claim(), 120)  # far below the 400 s a watch would take
    return own


def test_a_node_killed_and_started_again_takes_its_claims_back_at_once(
        tmp_path: Path) -> None:
    """Before: the start found its claims refreshed by nobody and could not tell its own
    dead run from a copy of its data dir that runs elsewhere, so it watched them for
    2 x owner_ttl_s / 3 before taking them (10 s at the default 15 s; here 400 s, and
    the start gave up after 120). Claims now carry the identity of the data dir's lock
    their process held (boot id, lock file's device and inode): this start holds that
    very lock, so their writer is dead, and it takes them at once."""
    data = tmp_path / "a"
    data.mkdir()
    server = RestartableNats(tmp_path).start()
    try:
        _killed_run(server.url, data)
        lock = DataDirLock(data)
        lock.acquire()  # the killed run's lock is free: its process is gone

        async def restart() -> dict[int, str | None]:
            nc = await nats.connect(server.url)
            try:
                own = await _start(nc, lock, TTL_S)
                claims = await read_claims(own.kv)
                await own.release()
            finally:
                await nc.close()
            return {p: c.lock for p, c in claims.items()}

        assert asyncio.run(restart()) == {0: lock.identity(), 1: lock.identity()}
        lock.release()
    finally:
        server.stop(signal.SIGKILL)


def test_a_copy_of_the_data_dir_still_finds_the_live_runs_claims_watched(
        tmp_path: Path) -> None:
    """The same data dir id under another lock (a copy restored from a backup, another
    host) is refused while the original runs and refreshes its claims, as before."""
    original, copy = tmp_path / "a", tmp_path / "restored"
    original.mkdir()
    copy.mkdir()
    server = RestartableNats(tmp_path).start()
    ttl_s = 3.0  # refreshed every second: the watch sees it within two
    try:
        first, second = DataDirLock(original), DataDirLock(copy)
        first.acquire()
        second.acquire()
        assert first.identity() != second.identity() != ""

        async def both() -> str:
            nc = await nats.connect(server.url)
            try:
                live = await _start(nc, first, ttl_s)
                with pytest.raises(SemtraceError) as refused:
                    await _start(nc, second, ttl_s)
                await live.release()
            finally:
                await nc.close()
            return str(refused.value)

        assert asyncio.run(both()).startswith("A copy of this data dir runs as node 'a' ")
        first.release()
        second.release()
    finally:
        server.stop(signal.SIGKILL)


def test_serve_killed_and_started_again_consumes_without_watching_its_claims(
        tmp_path: Path) -> None:
    """The same through `semtrace serve` (node a, partitions 0-3, owner_ttl_s = 600): killed
    with SIGKILL and started again at once, it consumes again. Before, its start watched its
    own claims for 400 s before the models even loaded, and the node did not come up within
    the 240 s the test gives a start."""
    with sealed_cluster(tmp_path) as bus:
        a = bus.node("a", "0-3")
        toml = a.policies / "cluster.toml"
        toml.write_text(toml.read_text().replace("owner_ttl_s = 6\n", f"owner_ttl_s = {TTL_S:g}\n"))
        start_all(a)
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        start_all(a)
        assert nodes_of(bus.url) == {"a": [0, 1, 2, 3]}
        with bus.gateway() as gateway:
            reply = gateway.request(ingest("acme", "after-kill", "Is my VPN down?", 0))
        assert reply["ok"], reply
        assert "Traceback" not in a.log.read_text()
        assert a.stop() == 0
