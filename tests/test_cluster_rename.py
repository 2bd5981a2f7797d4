"""A node restarted under another name (`--node`, `node` in cluster.toml) over its data dir.

The name a data dir consumed each partition under is noted in its store once the
partition's JetStream consumer names it; a node refuses at start a partition whose
consumer names another node, unless that name is the one its own store noted. So a
renamed node keeps its partitions, and a node given the name of the node that took
its partitions does not slip past the check. A real nats-server and real nodes.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import (
    Bus,
    arrived,
    exit_or_start,
    ingest,
    lag,
    refused,
    sealed_cluster,
    taken_over,
    tenant_in,
)
from test_cluster import Node, start_all
from test_spine import run_cli

pytestmark = pytest.mark.slow


def _renamed_after_its_first_start(bus: Bus, tenant: str, failpoint: str
                                   ) -> tuple[Node, dict[str, Any]]:
    """Node a consumed a prompt of `tenant` (partition 1) and stopped; then its data dir was
    started as 'a2' and killed at `failpoint`. Returns the node (named 'a2', its failpoint
    gone) and the reply to that first prompt."""
    node = bus.node("a", "0-1")
    start_all(node)
    with bus.gateway() as gateway:
        first = gateway.request(ingest(tenant, "as-a", "How do I reset my VPN?", 0))
    assert first["ok"], first
    assert node.stop() == 0
    node.name = "a2"  # the same data dir, another --node
    plain_env = node.env
    node.env = {**plain_env, "SEMTRACE_FAILPOINT": failpoint}
    node.launch()
    assert node.proc is not None and node.proc.wait(timeout=240) == -signal.SIGKILL
    node.env = plain_env
    return node, first


def test_a_renamed_node_keeps_its_partitions_even_if_its_first_start_died(
        tmp_path: Path) -> None:
    """Before: the new name was noted as the partitions' consumer as the node began to
    load its models; killed then (OOM, a reboot, a unit stopped), it was refused at every
    later start: `Partition 0 was consumed by node 'a' since this node last did` (its own
    old name), and only `cluster reclaim` let it serve again."""
    tenant = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        node, first = _renamed_after_its_first_start(bus, tenant, "serve.models")
        with bus.gateway(timeout=30) as gateway:
            gateway.publish(ingest(tenant, "queued", "It still fails.", 2))
        node.launch().wait_up()  # before: it exited, refused
        found = arrived(node, tenant, "queued", "the queued prompt")
        assert found["conversation_id"] == first["conversation_id"]  # its history kept
        r = run_cli("cluster", "status", "--nats", bus.url, "--tenant", tenant)
        assert r.returncode == 0 and "partition 1, node a2 " in r.stdout, r.stdout
        assert node.stop() == 0


def test_a_node_renamed_as_the_node_that_took_its_partition_refuses_it(tmp_path: Path) -> None:
    """c consumed partition 1; b took it over and consumed it. c's data dir is then started
    under the name 'b' (a cluster.toml copied from b's host, say). Before: the consumer
    naming 'b' was taken for c's own, c consumed the partition into its old copy and the
    tenant's records were on two nodes."""
    tenant = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        c, b = taken_over(bus, tenant, "1", "0-1")
        assert b.stop() == 0
        with bus.gateway(timeout=30) as gateway:
            gateway.publish(ingest(tenant, "queued", "Should I reinstall it?", 4))
        c.name = "b"
        assert refused(c, "c's data dir, named 'b', took partition 1 back") == [
            "semtrace: Partition 1 was consumed by another node named 'b' since this node "
            "last did (as 'c'), so its tenants' newer records are there: start this node "
            "under its own name (--node, `node` in cluster.toml), or without 1 in --own and "
            "with its stale copy removed (`semtrace cluster forget --partitions 1 --yes "
            "--discard`). Nothing was consumed."]
        assert lag(bus.url, 1) == (1, None)  # the queued prompt waits for b


def test_a_renamed_node_killed_after_making_its_consumers_starts_again(
        tmp_path: Path) -> None:
    """Killed in the moment between making its partitions' consumers under the new name and
    noting that name in its store, a renamed node was refused at every later start: its own
    consumers looked like another node's (`Partition 0 was consumed by another node named
    'a2' since this node last did (as 'a')`). The consumers now carry the data dir's id, so
    the next start knows them for its own and consumes."""
    tenant = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        node, first = _renamed_after_its_first_start(bus, tenant, "cluster.consumers")
        assert lag(bus.url, 1)[1] == "a2"  # its claim, alive until owner_ttl_s
        with bus.gateway(timeout=30) as gateway:
            gateway.publish(ingest(tenant, "queued", "It still fails.", 2))
        node.launch()
        assert exit_or_start(node) is None, node.log.read_text()[-600:]  # before: exit 1
        node.launch().wait_up()
        found = arrived(node, tenant, "queued", "the queued prompt")
        assert found["conversation_id"] == first["conversation_id"]  # its history kept
        assert "Traceback" not in node.log.read_text()
        assert node.stop() == 0
