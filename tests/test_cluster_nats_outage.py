"""A node whose nats-server goes away and comes back says so in its log, once each way,
and consumes again: a real node and a real nats-server restarted on its port and store
(test_erase_cluster_retry's). Before, the log said only `owner heartbeat failed`, one line
a partition every `owner_ttl_s / 3` seconds, and nothing when NATS was back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import arrived, ingest, tenant_in
from test_cluster import Node
from test_erase_cluster_retry import Nats, _keys

pytestmark = pytest.mark.slow


def _events(node: Node, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in node.log.read_text().splitlines() if x.startswith("{")]
    return [x for x in lines if x.get("event") == event]


def _until(node: Node, event: str, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while not (seen := _events(node, event)):
        assert node.proc is not None and node.proc.poll() is None, "the node exited"
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
    return seen[0]


def test_a_node_says_once_that_nats_dropped_and_once_that_it_is_back(tmp_path: Path) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    bus, key = _keys(tmp_path)
    nats = Nats(tmp_path / "nats")
    a = Node(tmp_path, "a", nats.url, key, "0-3", bus_key=bus)
    tenant = tenant_in(1)
    try:
        a.launch().wait_up()
        nats.stop()
        down = _until(a, "nats_disconnected", "the node never said that NATS dropped")
        assert down["level"] == "warning" and down["msg"] == (
            f"The connection to NATS at {nats.url} dropped: this node reconnects without "
            "limit; meanwhile its socket still stores its own tenants' prompts and answers "
            "other nodes' `not_forwarded`, and prompts sent over NATS wait in JetStream.")
        nats.proc = nats._start()  # the same port and store
        back = _until(a, "nats_reconnected", "the node never said that NATS was back")
        assert back["msg"].startswith(f"Reconnected to NATS at {nats.url} after ")
        with NatsClient(nats.url, timeout=60, bus_keys=load_bus_keys(bus)) as gateway:
            reply = gateway.request(ingest(tenant, "after-outage", "Is the VPN back up?", 0))
        assert reply["ok"], reply
        assert arrived(a, tenant, "after-outage", "a prompt after the outage")["ok"]
        assert len(_events(a, "nats_disconnected")) == 1
        assert len(_events(a, "nats_reconnected")) == 1
        for beat in _events(a, "owner_heartbeat"):  # if a beat fell in the outage: a sentence
            assert beat["msg"].startswith("This node could not refresh its claim on partition")
    finally:
        if a.proc is not None and a.proc.poll() is None:
            assert a.stop() == 0
        nats.stop()
    assert len(_events(a, "nats_disconnected")) == 1  # its own stop is no outage
