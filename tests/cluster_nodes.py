"""The start-up of a sealed cluster for the tests of nodes starting, moving and refusing
partitions (test_cluster_handover, _move_split, _rename, _copy, _names, _ops), forwarding
(test_cluster_socket_forward, _forward_wire) and erasing (test_erase_cluster): a new
cluster key and bus key in the test's tmp dir, a real nats-server, nodes on it (real
`semtrace serve --nats` subprocesses, test_cluster.Node), stopped on leaving should a
test fail half-way; and what those tests read of the cluster."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from test_cluster import PARTITIONS, TODAY, Node, Starting, nats_server, start_all
from test_spine import run_cli

from appliance.cluster.partition import partition_of

if TYPE_CHECKING:
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import BusKeys


@dataclass
class Bus:
    """A nats-server at `url`, the cluster's key file (every node's data dir opens with
    it), its bus key file, and the nodes made on it."""

    tmp: Path
    url: str
    key: Path
    bus_key: Path
    nodes: list[Node] = field(default_factory=list)

    def node(self, name: str, own: str, *, under: Path | None = None) -> Node:
        """Node `name` owning `own`, not started; its data dir in `under` (default the
        test's tmp dir)."""
        made = Node(under or self.tmp, name, self.url, self.key, own, bus_key=self.bus_key)
        self.nodes.append(made)
        return made

    def gateway(self, timeout: float = 60) -> NatsClient:
        """A gateway's client, sealing with the cluster's bus key."""
        from appliance.cluster.client import NatsClient
        from appliance.keys.bus import load_bus_keys

        return NatsClient(self.url, timeout=timeout, bus_keys=load_bus_keys(self.bus_key))


@contextmanager
def sealed_cluster(tmp: Path) -> Iterator[Bus]:
    """A new cluster key and bus key in `tmp` and a nats-server; on leaving, the nodes
    still running are stopped, then the server."""
    bus_key, key = tmp / "bus.key", tmp / "cluster.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp / "nats") as url:
        bus = Bus(tmp, url, key, bus_key)
        try:
            yield bus
        finally:
            for node in bus.nodes:
                if node.proc is not None and node.proc.poll() is None:
                    try:
                        node.stop()
                    except subprocess.TimeoutExpired:
                        node.proc.kill()
                        node.proc.wait(timeout=30)


@contextmanager
def running_pair(tmp: Path) -> Iterator[tuple[Node, Node, BusKeys]]:
    """Nodes a (partitions 0-1) and b (2-3) of a sealed cluster in `tmp`, running; with the
    bus keys a gateway seals with."""
    from appliance.keys.bus import load_bus_keys

    with sealed_cluster(tmp) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        start_all(a, b)
        yield a, b, load_bus_keys(bus.bus_key)


def tenant_in(partition: int) -> str:
    """A tenant name (t0, t1, ...) of this partition."""
    return next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == partition)


def ingest(tenant: str, rid: str, text: str, minute: int) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": tenant, "request_id": rid, "user_id": "ana",
            "text": text, "ts": (TODAY + timedelta(hours=9, minutes=minute)
                                 ).strftime("%Y-%m-%dT%H:%M:%SZ")}


def cluster_steps(env: dict[str, str], *steps: tuple[str, ...]
                  ) -> subprocess.CompletedProcess[str]:
    """`semtrace cluster <step>` for each step in turn, each exiting 0; the last one's
    result."""
    for args in steps:
        r = run_cli("cluster", *args, env=env)
        assert r.returncode == 0, (args, r.stderr)
    return r


def move_partition(a: Node, b: Node, export: Path, partition: str = "1"
                   ) -> subprocess.CompletedProcess[str]:
    """`partition` moved from node a to node b, both stopped, as docs/scale-out.md says:
    export on a (into `export`), import on b, forget on a; forget's result."""
    return cluster_steps(a.env, ("export", *a.args(), "--partitions", partition, "--out",
                                 str(export)),
                         ("import", *b.args(), str(export)),
                         ("forget", *a.args(), "--partitions", partition, "--yes"))


def status(url: str) -> dict[str, Any]:
    """`semtrace cluster status --json`."""
    r = run_cli("cluster", "status", "--nats", url, "--json")
    assert r.returncode == 0, r.stderr
    said: dict[str, Any] = json.loads(r.stdout)
    return said


def lag(url: str, partition: int) -> tuple[int, str | None]:
    """The partition's prompts waiting, and the node that owns it (None: nobody)."""
    state = status(url)["states"][partition]
    return int(state["lag"]), state["owner"]


def nodes_of(url: str) -> dict[str, list[int]]:
    """Each live node's partitions, as status says."""
    nodes: dict[str, list[int]] = status(url)["nodes"]
    return nodes


def exit_or_start(node: Node) -> int | None:
    """The node's exit code, or None if it started consuming (it is stopped then)."""
    assert node.proc is not None
    starting = Starting(node.proc.pid)
    while node.proc.poll() is None:
        if node._starts() > node._before:
            node.stop()
            return None
        assert not starting.given_up(), f"the node neither started nor exited ({starting})"
        time.sleep(0.3)
    return node.proc.returncode


def said(node: Node) -> list[str]:
    """The sentences the node said (its `semtrace: ` lines)."""
    return [x for x in node.log.read_text().splitlines() if x.startswith("semtrace: ")]


def arrived(node: Node, tenant: str, rid: str, what: str) -> dict[str, Any]:
    """The node's lookup of request `rid` once it has consumed it; `what` names the prompt
    in the failure."""
    deadline = time.monotonic() + 120
    while not (found := node.lookup(tenant, rid)).get("ok"):
        assert time.monotonic() < deadline, f"{what} never reached node {node.name}"
        time.sleep(0.3)
    return found


def refused(node: Node, why: str) -> list[str]:
    """Launch the node, which must exit 1 without consuming (`why`: what it did if it
    consumed); the sentences it said."""
    node.launch()
    code = exit_or_start(node)
    assert code is not None, why
    assert code == 1
    return said(node)


def sourdough_on(node: Node, bus: Bus, tenant: str) -> dict[str, Any]:
    """Start the node, have it consume a tenant's first prompt (request `before-move`) and
    stop it; the reply."""
    start_all(node)
    with bus.gateway() as gateway:
        first = gateway.request(ingest(tenant, "before-move",
                                       "How do I bake sourdough bread at home?", 0))
    assert first["ok"], first
    assert node.stop() == 0
    return first


def taken_over(bus: Bus, tenant: str, c_own: str, b_own: str) -> tuple[Node, Node]:
    """Node c (owning `c_own`) consumed a prompt of `tenant` and stopped; node b (owning
    `b_own`, the tenant's partition among them) took that partition over (it never had it:
    nothing stops it) and consumed one too. b runs."""
    c, b = bus.node("c", c_own), bus.node("b", b_own)
    start_all(c)
    with bus.gateway() as gateway:
        assert gateway.request(ingest(tenant, "on-c", "How do I reset my VPN?", 0))["ok"]
    assert c.stop() == 0  # c is gone
    start_all(b)
    with bus.gateway() as gateway:
        assert gateway.request(ingest(tenant, "on-b", "It still fails.", 2))["ok"]
    return c, b
