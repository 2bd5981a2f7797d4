"""Two copies of one data dir must not run side by side: a data dir restored from a backup
(or copied) and started while its original runs is refused, and a restart after a crash
is not. A real nats-server and real nodes."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import pytest
from cluster_nodes import Bus, exit_or_start, ingest, nodes_of, said, sealed_cluster
from test_cluster import Node, start_all

pytestmark = pytest.mark.slow

COPY_RUNS = ("semtrace: A copy of this data dir runs as node 'a' (its original, or one "
             "restored from a backup; its claim on partition ")


def _a_and_its_copy(bus: Bus) -> tuple[Node, Node]:
    """Node a (partitions 0-3), started once (its first start with NATS gives the data dir
    its id) and stopped; and `copy`, node a on a copy of its data dir (the backup,
    restored), not started."""
    a = bus.node("a", "0-3")
    start_all(a)
    assert a.stop() == 0
    (bus.tmp / "restored").mkdir()
    shutil.copytree(a.data, bus.tmp / "restored" / "a")
    return a, bus.node("a", "0-3", under=bus.tmp / "restored")


def test_a_copy_of_a_running_nodes_data_dir_is_refused(tmp_path: Path) -> None:
    """Before: the copy (same node name, same data dir id) took the original's claims over
    as a restart of it would and consumed its partitions into its own store, the original
    gave them up: from then on the tenants' prompts went to a store apart from the
    original's newer records."""
    with sealed_cluster(tmp_path) as bus:
        a, copy = _a_and_its_copy(bus)
        start_all(a)
        copy.launch()
        code = exit_or_start(copy)
        assert code is not None, "the copy of a's data dir started beside it"
        assert code == 1
        told = said(copy)
        assert len(told) == 1 and told[0].startswith(COPY_RUNS), told
        assert told[0].endswith(
            "two copies of one data dir would each store prompts of its tenants that the "
            "other lacks, so stop that one before starting this one. Nothing was consumed.")
        assert "Traceback" not in copy.log.read_text() and not copy.sock.exists()
        assert nodes_of(bus.url) == {"a": [0, 1, 2, 3]}
        with bus.gateway() as gateway:  # a still consumes
            reply = gateway.request(ingest("acme", "after-copy", "Is my VPN down?", 0))
        assert reply["ok"], reply
        assert a.lookup("acme", "after-copy")["ok"]
        # a crash of the original, restarted while its claims are still alive: it starts
        assert a.stop(signal.SIGKILL) == -signal.SIGKILL
        start_all(a)
        assert nodes_of(bus.url) == {"a": [0, 1, 2, 3]}
        assert "Traceback" not in a.log.read_text()
        assert a.stop() == 0


def test_a_copy_started_while_its_original_was_down_is_refused_when_it_claims(
        tmp_path: Path) -> None:
    """The original started while the copy loaded its models (the copy's start checks had
    found no claim of their data dir). Before: the copy, once loaded, took the original's
    claims over as a restart of it would, and the original gave its partitions up."""
    import os
    import time

    with sealed_cluster(tmp_path) as bus:
        a, copy = _a_and_its_copy(bus)
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
        code = exit_or_start(copy)
        assert code is not None, "the copy took the original's partitions over"
        assert code == 1
        told = said(copy)
        assert len(told) == 1 and told[0].startswith(COPY_RUNS), told
        assert "Traceback" not in copy.log.read_text()
        assert nodes_of(bus.url) == {"a": [0, 1, 2, 3]}
        with bus.gateway() as gateway:
            assert gateway.request(ingest("acme", "after-copy", "Is my VPN down?", 0))["ok"]
        assert a.lookup("acme", "after-copy")["ok"]
        assert a.stop() == 0
