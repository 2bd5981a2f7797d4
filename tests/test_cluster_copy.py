"""Two copies of one data dir must not run side by side: a data dir restored from a backup
(or copied) and started while its original runs is refused, and a restart after a crash
is not. A real nats-server and real nodes."""

from __future__ import annotations

import shutil
import signal
import time
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


COPY_CONSUMED = ("semtrace: Partitions {p} were consumed by another copy of this data dir (as "
                 "node 'a': one restored from a backup, or copied, and started while this "
                 "one was stopped) since this one last did, so their tenants' newer records "
                 "are there: keep that copy and start this one without {p} in --own (`own` in "
                 "cluster.toml) with its stale copy removed (`semtrace cluster forget "
                 "--partitions {p} --yes --discard`), or, if that copy and its data are lost, "
                 "run `semtrace cluster reclaim --partitions {p}` here. Nothing was consumed.")


def test_the_original_started_after_its_copy_consumed_while_it_was_down_is_refused(
        tmp_path: Path) -> None:
    """A copy of a's data dir (a backup restored on another host, say) started while a was
    stopped: nothing running beside it, so nothing refused it, and it stored a prompt a
    lacks. Before: a, started again, took its partitions back as its own (the consumers
    carry its data dir's id) and went on storing its tenants' prompts apart from the copy's;
    nothing merges the two. Now a refuses in one sentence before it loads its models, and
    the copy goes on (its own start)."""
    with sealed_cluster(tmp_path) as bus:
        a, copy = _a_and_its_copy(bus)
        start_all(copy)  # a is stopped: the copy runs as node 'a'
        with bus.gateway() as gateway:
            assert gateway.request(ingest("acme", "on-copy", "Is my VPN down?", 0))["ok"]
        assert copy.stop() == 0
        a.launch()
        code = exit_or_start(a)
        assert code is not None, "the original took its partitions back from its copy"
        assert code == 1
        told = said(a)
        assert len(told) == 1, told
        assert told[0] == COPY_CONSUMED.format(p="0-3"), told  # the copy consumed all four
        assert "Traceback" not in a.log.read_text() and not a.sock.exists()
        assert a._starts() == a._before  # it consumed nothing
        start_all(copy)  # the copy's own consumers: it starts, and has its prompt
        assert copy.lookup("acme", "on-copy")["ok"]
        with bus.gateway() as gateway:
            assert gateway.request(ingest("acme", "after", "And is the wifi down?", 1))["ok"]
        assert copy.lookup("acme", "after")["ok"]
        assert copy.stop() == 0


def test_a_lost_nodes_backup_restored_after_the_node_restarted_starts(tmp_path: Path) -> None:
    """The documented restore of a lost node: its last `semtrace backup`, restored with
    `semtrace restore` on a new host, while the node had started again after the backup
    (its consumers made by a start the backup does not know). The restored data dir is
    behind its original by design and is not refused: it consumes what waited."""
    from test_spine import run_cli

    with sealed_cluster(tmp_path) as bus:
        a = bus.node("a", "0-3")
        start_all(a)
        assert a.stop() == 0
        backup = tmp_path / "backup"
        assert run_cli("backup", str(backup), *a.args()).returncode == 0
        start_all(a)  # a start the backup does not know, then the host is lost
        assert a.stop() == 0
        (tmp_path / "new-host").mkdir()
        restored = bus.node("a", "0-3", under=tmp_path / "new-host")
        shutil.rmtree(restored.data)
        r = run_cli("restore", str(backup), *restored.args())
        assert r.returncode == 0, r.stderr
        from appliance.cluster.client import NoAnswerYet

        with bus.gateway(timeout=5) as gateway, pytest.raises(NoAnswerYet):
            gateway.request(ingest("acme", "queued", "Is my VPN down?", 0))  # kept queued
        start_all(restored)
        deadline = time.monotonic() + 120
        while not restored.lookup("acme", "queued").get("ok"):
            assert time.monotonic() < deadline, "the restored node never consumed"
            time.sleep(0.3)
        assert "Traceback" not in restored.log.read_text()
        assert restored.stop() == 0
