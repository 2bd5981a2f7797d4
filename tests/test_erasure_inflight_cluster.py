"""An erasure on a cluster covers the prompts waiting in JetStream: with a real nats-server,
a node stopped while `semtrace erase` ran on its data dir catches up on its backlog and
stores nothing of the erased user (each answered `erased`, acknowledged, not delivered
again); a prompt the user sends after the erasure is stored."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from cluster_nodes import sealed_cluster
from test_cluster import PARTITIONS, Enriched, Node
from test_erasure_inflight import users_records
from test_spine import run_cli

from appliance.keys.bus import BusKeys, load_bus_keys

pytestmark = pytest.mark.slow

BACKLOG = ["Forward the divorce papers to my solicitor before Friday.",
           "What does the custody hearing on Monday involve?",
           "Draft a note to my solicitor about the custody dates."]


def _row(user: str, rid: str, text: str) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "user_id": user, "request_id": rid,
            "text": text, "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


@pytest.fixture(scope="module")
def one_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, BusKeys]]:
    with sealed_cluster(tmp_path_factory.mktemp("erase-cluster")) as bus:
        node = bus.node("n", f"0-{PARTITIONS - 1}")
        node.launch().wait_up()
        yield node, load_bus_keys(bus.bus_key)


def _lag(node: Node) -> int:
    r = run_cli("cluster", "status", "--nats", node.url, "--tenant", "acme", "--json",
                env=node.env)
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)[0]["lag"])


def test_a_node_down_while_erase_ran_stores_nothing_of_the_user_from_its_backlog(
        one_node: tuple[Node, BusKeys]) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys import read_key_file

    node, keys = one_node
    with NatsClient(node.url, timeout=60, bus_keys=keys) as gateway:
        stored = gateway.request(_row("alice", "c-0", "Book a table for two at eight."))
        assert stored["ok"] and not stored["duplicate"]
        assert gateway.request(_row("bob", "c-b0", "List the quarterly sales figures."))["ok"]
    assert node.stop() == 0
    with NatsClient(node.url, timeout=30, bus_keys=keys) as gateway:  # the node is down
        for i, text in enumerate(BACKLOG, 1):
            gateway.publish(_row("alice", f"c-{i}", text))
        gateway.publish(_row("bob", "c-b1", "Compare them with last year's figures."))
    deadline = time.monotonic() + 30
    while _lag(node) < 4:
        assert time.monotonic() < deadline, "the backlog did not queue"
        time.sleep(0.2)

    erased = run_cli("erase", *node.args(), "--tenant", "acme", "--user", "alice",
                     "--reason", "DSAR 2026-31", "--json", env=node.env)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout)["records"] == 1
    assert json.loads(erased.stdout)["node"] == "n"  # erased here: this node owns acme

    with Enriched(node.url, keys) as enriched:
        node.launch().wait_up()
        wanted = {f"c-{i}" for i in range(1, 4)} | {"c-b1"}
        deadline = time.monotonic() + 180
        while not wanted <= {r.get("request_id") for r in list(enriched.replies)}:
            assert time.monotonic() < deadline, "the backlog was not answered"
            time.sleep(0.2)
        answers = {r["request_id"]: r for r in enriched.replies if r["request_id"] in wanted}
    for i in range(1, 4):
        assert answers[f"c-{i}"]["ok"] is False
        assert answers[f"c-{i}"]["error"]["code"] == "erased"
    assert answers["c-b1"]["ok"] is True
    assert _lag(node) == 0  # acknowledged: not delivered again

    with NatsClient(node.url, timeout=60, bus_keys=keys) as gateway:
        after = gateway.request(_row("alice", "c-after", "How do I repot a fern?"))
    assert after["ok"] and not after["duplicate"]
    assert node.lookup("acme", "c-after")["ok"]
    assert node.stop() == 0
    n, texts = users_records(node.data, read_key_file(node.key), "acme", "alice")
    assert n == 2 and "How do I repot a fern?" in texts  # the new record and its digest
    assert not [t for t in texts if "solicitor" in t or "custody" in t or "table" in t]
    assert sum("figures" in t for t in texts) == 2  # bob's backlog was stored
    log = node.log.read_text()
    assert log.count('"ingest_erased"') == 3 and "Traceback" not in log
