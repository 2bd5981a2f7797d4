"""A node name belongs to one data dir: a second node started under the name of a live
node on another data dir is refused, and starts once that node is gone. A real
nats-server and real nodes."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from test_cluster import Node, nats_server, start_all
from test_cluster_handover import _exit_or_start
from test_spine import run_cli

pytestmark = pytest.mark.slow


def _nodes(url: str) -> dict[str, list[int]]:
    r = run_cli("cluster", "status", "--nats", url, "--json")
    assert r.returncode == 0, r.stderr
    nodes: dict[str, list[int]] = json.loads(r.stdout)["nodes"]
    return nodes


def _said(node: Node) -> list[str]:
    return [x for x in node.log.read_text().splitlines() if x.startswith("semtrace: ")]


def test_a_second_node_under_a_live_nodes_name_is_refused_until_that_node_is_gone(
        tmp_path: Path) -> None:
    """Before: two nodes named 'a' on two data dirs both ran (status showed one node 'a'
    owning the partitions of both, and every check by name, `cluster reclaim` or the
    renamed-node check, took one for the other)."""
    bus_key, key = tmp_path / "bus.key", tmp_path / "cluster.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp_path / "nats") as url:
        first = Node(tmp_path, "a", url, key, "0-1", bus_key=bus_key)
        (tmp_path / "elsewhere").mkdir()
        twin = Node(tmp_path / "elsewhere", "a", url, key, "2-3", bus_key=bus_key)
        start_all(first)
        twin.launch()
        assert _exit_or_start(twin) == 1, "a second node named 'a' started"
        said = _said(twin)
        assert len(said) == 1 and said[0].startswith(
            "semtrace: The node name 'a' is in use by a node on another data dir (alive "), said
        assert said[0].endswith("give this node its own name (--node, `node` in "
                                "cluster.toml), or stop that node, or wait for its claim to "
                                "expire, before starting this one. Nothing was consumed.")
        assert not twin.sock.exists() and _nodes(url) == {"a": [0, 1]}
        assert first.stop() == 0  # a clean stop releases the name at once
        start_all(twin)
        assert _nodes(url) == {"a": [2, 3]}
        first.launch()  # now the first data dir is the second one
        assert _exit_or_start(first) == 1 and "is in use by a node on another data dir" in \
            _said(first)[-1]
        assert twin.stop(signal.SIGKILL) == -signal.SIGKILL  # gone without a word
        deadline = time.monotonic() + 60
        while _nodes(url):  # its claims expire after owner_ttl_s
            assert time.monotonic() < deadline, "the killed node's claims never expired"
            time.sleep(0.5)
        start_all(first)
        assert _nodes(url) == {"a": [0, 1]}
        assert "Traceback" not in first.log.read_text() + twin.log.read_text()
        assert first.stop() == 0
