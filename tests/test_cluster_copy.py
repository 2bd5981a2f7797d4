"""Two copies of one data dir must not run side by side: a data dir restored from a backup
(or copied) and started while its original runs is refused, and a restart after a crash
is not. A real nats-server and real nodes."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import pytest
from test_cluster import Node, nats_server, start_all
from test_cluster_handover import _exit_or_start, _ingest
from test_spine import run_cli

pytestmark = pytest.mark.slow


def _nodes(url: str) -> dict[str, list[int]]:
    r = run_cli("cluster", "status", "--nats", url, "--json")
    assert r.returncode == 0, r.stderr
    nodes: dict[str, list[int]] = json.loads(r.stdout)["nodes"]
    return nodes


def test_a_copy_of_a_running_nodes_data_dir_is_refused(tmp_path: Path) -> None:
    """Before: the copy (same node name, same data dir id) took the original's claims over
    as a restart of it would and consumed its partitions into its own store, the original
    gave them up: from then on the tenants' prompts went to a store apart from the
    original's newer records."""
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    bus_key, key = tmp_path / "bus.key", tmp_path / "cluster.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    keys = load_bus_keys(bus_key)
    with nats_server(tmp_path / "nats") as url:
        a = Node(tmp_path, "a", url, key, "0-3", bus_key=bus_key)
        start_all(a)  # its first start with NATS gives the data dir its id
        assert a.stop() == 0
        (tmp_path / "restored").mkdir()
        shutil.copytree(a.data, tmp_path / "restored" / "a")  # the backup, restored
        copy = Node(tmp_path / "restored", "a", url, key, "0-3", bus_key=bus_key)
        start_all(a)
        copy.launch()
        code = _exit_or_start(copy)
        assert code is not None, "the copy of a's data dir started beside it"
        assert code == 1
        said = [x for x in copy.log.read_text().splitlines() if x.startswith("semtrace: ")]
        assert len(said) == 1 and said[0].startswith(
            "semtrace: A copy of this data dir runs as node 'a' (its original, or one "
            "restored from a backup; its claim on partition "), said
        assert said[0].endswith(
            "two copies of one data dir would each store prompts of its tenants that the "
            "other lacks, so stop that one before starting this one. Nothing was consumed.")
        assert "Traceback" not in copy.log.read_text() and not copy.sock.exists()
        assert _nodes(url) == {"a": [0, 1, 2, 3]}
        with NatsClient(url, timeout=60, bus_keys=keys) as gateway:  # a still consumes
            reply = gateway.request(_ingest("acme", "after-copy", "Is my VPN down?", 0))
        assert reply["ok"], reply
        assert a.lookup("acme", "after-copy")["ok"]
        # a crash of the original, restarted while its claims are still alive: it starts
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        start_all(a)
        assert _nodes(url) == {"a": [0, 1, 2, 3]}
        assert "Traceback" not in a.log.read_text()
        assert a.stop() == 0


def test_a_copy_started_while_its_original_was_down_is_refused_when_it_claims(
        tmp_path: Path) -> None:
    """The original started while the copy loaded its models (the copy's start checks had
    found no claim of their data dir). Before: the copy, once loaded, took the original's
    claims over as a restart of it would, and the original gave its partitions up."""
    import os
    import time

    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    bus_key, key = tmp_path / "bus.key", tmp_path / "cluster.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp_path / "nats") as url:
        a = Node(tmp_path, "a", url, key, "0-3", bus_key=bus_key)
        start_all(a)
        assert a.stop() == 0
        (tmp_path / "restored").mkdir()
        shutil.copytree(a.data, tmp_path / "restored" / "a")
        copy = Node(tmp_path / "restored", "a", url, key, "0-3", bus_key=bus_key)
        copy.launch()
        assert copy.proc is not None
        maps = Path(f"/proc/{copy.proc.pid}/maps")
        deadline = time.monotonic() + 240
        while ".gguf" not in maps.read_text():  # loading its models: past its start checks
            assert copy.proc.poll() is None and time.monotonic() < deadline, \
                copy.log.read_text()[-2000:]
            time.sleep(0.05)
        os.kill(copy.proc.pid, signal.SIGSTOP)  # it loads slowly, say
        try:
            start_all(a)
        finally:
            os.kill(copy.proc.pid, signal.SIGCONT)
        code = _exit_or_start(copy)
        assert code is not None, "the copy took the original's partitions over"
        assert code == 1
        said = [x for x in copy.log.read_text().splitlines() if x.startswith("semtrace: ")]
        assert len(said) == 1 and said[0].startswith(
            "semtrace: A copy of this data dir runs as node 'a' (its original, or one "
            "restored from a backup; its claim on partition "), said
        assert "Traceback" not in copy.log.read_text()
        assert _nodes(url) == {"a": [0, 1, 2, 3]}
        with NatsClient(url, timeout=60, bus_keys=load_bus_keys(bus_key)) as gateway:
            assert gateway.request(_ingest("acme", "after-copy", "Is my VPN down?", 0))["ok"]
        assert a.lookup("acme", "after-copy")["ok"]
        assert a.stop() == 0
