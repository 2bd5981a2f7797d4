"""A node name belongs to one data dir: a second node started under the name of a live
node on another data dir is refused, and starts once that node is gone. A real
nats-server and real nodes."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from cluster_nodes import exit_or_start, nodes_of, said, sealed_cluster
from test_cluster import start_all

pytestmark = pytest.mark.slow


def test_a_second_node_under_a_live_nodes_name_is_refused_until_that_node_is_gone(
        tmp_path: Path) -> None:
    """Before: two nodes named 'a' on two data dirs both ran (status showed one node 'a'
    owning the partitions of both, and every check by name, `cluster reclaim` or the
    renamed-node check, took one for the other)."""
    with sealed_cluster(tmp_path) as bus:
        url = bus.url
        first = bus.node("a", "0-1")
        (tmp_path / "elsewhere").mkdir()
        twin = bus.node("a", "2-3", under=tmp_path / "elsewhere")
        start_all(first)
        twin.launch()
        assert exit_or_start(twin) == 1, "a second node named 'a' started"
        told = said(twin)
        assert len(told) == 1 and told[0].startswith(
            "semtrace: The node name 'a' is in use by a node on another data dir (alive "), told
        assert told[0].endswith("give this node its own name (--node, `node` in "
                                "cluster.toml), or stop that node, or wait for its claim to "
                                "expire, before starting this one. Nothing was consumed.")
        assert not twin.sock.exists() and nodes_of(url) == {"a": [0, 1]}
        assert first.stop() == 0  # a clean stop releases the name at once
        start_all(twin)
        assert nodes_of(url) == {"a": [2, 3]}
        first.launch()  # now the first data dir is the second one
        assert exit_or_start(first) == 1 and "is in use by a node on another data dir" in \
            said(first)[-1]
        assert twin.stop(signal.SIGKILL) == -signal.SIGKILL  # gone without a word
        deadline = time.monotonic() + 60
        while nodes_of(url):  # its claims expire after owner_ttl_s
            assert time.monotonic() < deadline, "the killed node's claims never expired"
            time.sleep(0.5)
        start_all(first)
        assert nodes_of(url) == {"a": [0, 1]}
        assert "Traceback" not in first.log.read_text() + twin.log.read_text()
        assert first.stop() == 0
