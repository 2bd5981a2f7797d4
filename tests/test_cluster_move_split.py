"""A move cut short must not leave a tenant on two nodes: the new owner, which never
consumed the partition, refuses it when the old owner consumed it after the export.

A real nats-server and real nodes: node a exports partition 1 to node b, is started
again with partition 1 before `forget` (the move cut short) and stores a follow-up;
then b is started with partition 1 and its imported copy, which lacks that follow-up.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cluster_nodes import (
    arrived,
    cluster_steps,
    ingest,
    lag,
    refused,
    sealed_cluster,
    sourdough_on,
    tenant_in,
)
from test_cluster import start_all
from test_spine import run_cli

pytestmark = pytest.mark.slow


def test_the_new_owner_refuses_a_partition_the_old_owner_consumed_after_the_export(
        tmp_path: Path) -> None:
    """Before: b started with its imported copy and consumed partition 1 too, so the
    tenant's conversation went on from b's copy while a held the follow-up it stored
    after the export: two copies, neither complete, which nothing merges."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "1-3")
        first = sourdough_on(a, bus, moved)
        export = tmp_path / "p1.semtrace"
        cluster_steps(a.env, ("export", *a.args(), "--partitions", "1", "--out", str(export)),
                      ("import", *b.args(), str(export)))
        start_all(a)  # the move cut short: a serves partition 1 again, before forget
        with bus.gateway() as gateway:
            on_a = gateway.request(ingest(moved, "after-export", "How long should it rise?", 2))
        assert on_a["ok"] and on_a["conversation_id"] == first["conversation_id"], on_a
        assert a.stop() == 0
        with bus.gateway(timeout=30) as gateway:  # nobody runs: it queues
            gateway.publish(ingest(moved, "queued", "Can I leave it overnight?", 4))
        told = refused(b, "node b consumed partition 1 from a copy older than a's")
        assert len(told) == 1, told
        when = told[0].split(" to this node (at ", 1)[1][:16]
        assert told[0] == (
            "semtrace: Partition 1 was consumed by node 'a' after its tenants were exported "
            f"from 'a' to this node (at {when} UTC), so the copy imported here may lack their "
            "newer records: start this node without 1 in --own (`own` in cluster.toml) and "
            "remove that copy (`semtrace cluster forget --partitions 1 --yes --discard`), or "
            "move the partition again (stop 'a', `semtrace cluster export --partitions 1` "
            "there, the forget above here, then `semtrace cluster import` here), or, if 'a' "
            "and its data are lost, run `semtrace cluster reclaim --partitions 1` here. "
            "Nothing was consumed.")
        assert "Traceback" not in b.log.read_text() and not b.sock.exists()
        assert lag(bus.url, 1) == (1, None)  # the queued prompt still waits
        # the third way out, taken first (a seemed lost): the imported copy may be reclaimed
        r = run_cli("cluster", "reclaim", *b.args(), "--partitions", "1", "--node", "b",
                    env=b.env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == (
            "This node may serve partition 1 from the copy imported here (without what "
            "its lost owner stored after the export): add it to its --own and start it "
            "as 'b'. Its consumer on NATS names it now, so a node that consumed it "
            "before refuses it, should it come back.")
        # then a is found: the move done again (the second way out), from a's current copy
        again = tmp_path / "p1-again.semtrace"
        cluster_steps(a.env, ("export", *a.args(), "--partitions", "1", "--out", str(again)),
                      ("forget", *b.args(), "--partitions", "1", "--yes", "--discard"),
                      ("import", *b.args(), str(again)),
                      ("forget", *a.args(), "--partitions", "1", "--yes"))
        start_all(b)
        queued = arrived(b, moved, "queued", "the queued prompt")
        assert queued["conversation_id"] == first["conversation_id"]  # one conversation
        assert b.lookup(moved, "after-export")["conversation_id"] == first["conversation_id"]
        assert b.stop() == 0
