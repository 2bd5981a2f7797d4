"""A node restarted under another name (`--node`, `node` in cluster.toml) over its data dir.

The name a data dir consumed each partition under is noted in its store once the
partition's JetStream consumer names it; a node refuses at start a partition whose
consumer names another node, unless that name is the one its own store noted. So a
renamed node keeps its partitions, and a node given the name of the node that took
its partitions does not slip past the check. A real nats-server and real nodes.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from test_cluster import PARTITIONS, Node, nats_server, start_all
from test_cluster_handover import _exit_or_start, _ingest, _lag
from test_spine import run_cli

from appliance.cluster.partition import partition_of

pytestmark = pytest.mark.slow


def _setup(tmp_path: Path) -> tuple[Path, Path, str]:
    bus_key, key = tmp_path / "bus.key", tmp_path / "cluster.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    tenant = next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == 1)
    return bus_key, key, tenant


def test_a_renamed_node_keeps_its_partitions_even_if_its_first_start_died(
        tmp_path: Path) -> None:
    """Before: the new name was noted as the partitions' consumer as the node began to
    load its models; killed then (OOM, a reboot, a unit stopped), it was refused at every
    later start: `Partition 0 was consumed by node 'a' since this node last did` (its own
    old name), and only `cluster reclaim` let it serve again."""
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    bus_key, key, tenant = _setup(tmp_path)
    keys = load_bus_keys(bus_key)
    with nats_server(tmp_path / "nats") as url:
        node = Node(tmp_path, "a", url, key, "0-1", bus_key=bus_key)
        start_all(node)
        with NatsClient(url, timeout=60, bus_keys=keys) as gateway:
            first = gateway.request(_ingest(tenant, "as-a", "How do I reset my VPN?", 0))
        assert first["ok"], first
        assert node.stop() == 0
        node.name = "a2"  # the same data dir, another --node
        plain_env = node.env
        node.env = {**plain_env, "SEMTRACE_FAILPOINT": "serve.models"}
        node.launch()
        assert node.proc is not None and node.proc.wait(timeout=240) == -signal.SIGKILL
        node.env = plain_env
        with NatsClient(url, timeout=30, bus_keys=keys) as gateway:
            gateway.publish(_ingest(tenant, "queued", "It still fails.", 2))
        node.launch().wait_up()  # before: it exited, refused
        deadline = time.monotonic() + 120
        while not (found := node.lookup(tenant, "queued")).get("ok"):
            assert time.monotonic() < deadline, "the queued prompt never reached node a2"
            time.sleep(0.3)
        assert found["conversation_id"] == first["conversation_id"]  # its history kept
        r = run_cli("cluster", "status", "--nats", url, "--tenant", tenant)
        assert r.returncode == 0 and "partition 1, node a2 " in r.stdout, r.stdout
        assert node.stop() == 0


def test_a_node_renamed_as_the_node_that_took_its_partition_refuses_it(tmp_path: Path) -> None:
    """c consumed partition 1; b took it over and consumed it. c's data dir is then started
    under the name 'b' (a cluster.toml copied from b's host, say). Before: the consumer
    naming 'b' was taken for c's own, c consumed the partition into its old copy and the
    tenant's records were on two nodes."""
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    bus_key, key, tenant = _setup(tmp_path)
    keys = load_bus_keys(bus_key)
    with nats_server(tmp_path / "nats") as url:
        c = Node(tmp_path, "c", url, key, "1", bus_key=bus_key)
        b = Node(tmp_path, "b", url, key, "0-1", bus_key=bus_key)
        start_all(c)
        with NatsClient(url, timeout=60, bus_keys=keys) as gateway:
            assert gateway.request(_ingest(tenant, "on-c", "How do I reset my VPN?", 0))["ok"]
        assert c.stop() == 0
        start_all(b)
        with NatsClient(url, timeout=60, bus_keys=keys) as gateway:
            assert gateway.request(_ingest(tenant, "on-b", "It still fails.", 2))["ok"]
        assert b.stop() == 0
        with NatsClient(url, timeout=30, bus_keys=keys) as gateway:
            gateway.publish(_ingest(tenant, "queued", "Should I reinstall it?", 4))
        c.name = "b"
        c.launch()
        code = _exit_or_start(c)
        assert code is not None, "c's data dir, named 'b', took partition 1 back"
        assert code == 1
        said = [x for x in c.log.read_text().splitlines() if x.startswith("semtrace: ")]
        assert said == [
            "semtrace: Partition 1 was consumed by another node named 'b' since this node "
            "last did (as 'c'), so its tenants' newer records are there: start this node "
            "under its own name (--node, `node` in cluster.toml), or without 1 in --own and "
            "with its stale copy removed (`semtrace cluster forget --partitions 1 --yes "
            "--discard`). Nothing was consumed."]
        assert _lag(url, 1) == (1, None)  # the queued prompt waits for b


def test_a_renamed_node_killed_after_making_its_consumers_starts_again(
        tmp_path: Path) -> None:
    """Killed in the moment between making its partitions' consumers under the new name and
    noting that name in its store, a renamed node was refused at every later start: its own
    consumers looked like another node's (`Partition 0 was consumed by another node named
    'a2' since this node last did (as 'a')`). The consumers now carry the data dir's id, so
    the next start knows them for its own and consumes."""
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    bus_key, key, tenant = _setup(tmp_path)
    keys = load_bus_keys(bus_key)
    with nats_server(tmp_path / "nats") as url:
        node = Node(tmp_path, "a", url, key, "0-1", bus_key=bus_key)
        start_all(node)
        with NatsClient(url, timeout=60, bus_keys=keys) as gateway:
            first = gateway.request(_ingest(tenant, "as-a", "How do I reset my VPN?", 0))
        assert first["ok"], first
        assert node.stop() == 0
        node.name = "a2"  # the same data dir, another --node
        plain_env = node.env
        node.env = {**plain_env, "SEMTRACE_FAILPOINT": "cluster.consumers"}
        node.launch()
        assert node.proc is not None and node.proc.wait(timeout=240) == -signal.SIGKILL
        assert _lag(url, 1)[1] == "a2"  # its claim, alive until owner_ttl_s
        node.env = plain_env
        with NatsClient(url, timeout=30, bus_keys=keys) as gateway:
            gateway.publish(_ingest(tenant, "queued", "It still fails.", 2))
        node.launch()
        assert _exit_or_start(node) is None, node.log.read_text()[-600:]  # before: exit 1
        node.launch().wait_up()
        deadline = time.monotonic() + 120
        while not (found := node.lookup(tenant, "queued")).get("ok"):
            assert time.monotonic() < deadline, "the queued prompt never reached node a2"
            time.sleep(0.3)
        assert found["conversation_id"] == first["conversation_id"]  # its history kept
        assert "Traceback" not in node.log.read_text()
        assert node.stop() == 0
