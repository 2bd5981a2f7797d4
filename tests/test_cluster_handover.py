"""A node that gave a partition away must not take it back from a stale --own.

A real nats-server and real nodes: node a moves partition 1 to node b (export,
import, forget), and is then restarted with its old `--own 0-1` while b is down,
with a follow-up of a moved tenant queued in JetStream.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cluster_nodes import (
    arrived,
    ingest,
    lag,
    move_partition,
    refused,
    sealed_cluster,
    sourdough_on,
    taken_over,
    tenant_in,
)
from test_cluster import nats_server, start_all
from test_spine import run_cli

pytestmark = pytest.mark.slow


def test_a_node_restarted_with_a_partition_it_gave_away_refuses_it(tmp_path: Path) -> None:
    """Before: a claimed partition 1 again (b down, so nobody held it) and consumed the
    queued follow-up into a store without the tenant's history: a new conversation on a,
    the rest of it on b."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        url = bus.url
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        first = sourdough_on(a, bus, moved)
        r = move_partition(a, b, tmp_path / "p1.semtrace")
        assert "take 1 out of its --own" in r.stdout  # forget says what to change
        with bus.gateway(timeout=30) as gateway:  # b is down: it queues
            gateway.publish(ingest(moved, "after-move", "How long should the dough rise?", 2))
        assert lag(url, 1) == (1, None)
        # its --own still 0-1, as its unit file or cluster.toml says
        told = refused(a, "node a consumed partition 1, which it gave away")
        assert told == [
            "semtrace: This node gave partition 1 away (`cluster forget` at "
            f"{told[0].split(' at ', 1)[1][:16]} UTC) and holds none of its tenants: start it "
            "without 1 in --own (`own` in cluster.toml); to take it back, import its tenants "
            "from the node that owns it now (`cluster export` there, `cluster import` here), "
            "or, if that node and its data are lost, run `semtrace cluster reclaim "
            "--partitions 1` here. Nothing was consumed."]
        assert "Traceback" not in a.log.read_text()
        assert lag(url, 1) == (1, None)  # the follow-up still waits for its owner
        b.own = "1-3"
        start_all(b)
        found = arrived(b, moved, "after-move", "the follow-up")
        assert found["conversation_id"] == first["conversation_id"]  # one conversation, on b
        assert b.lookup(moved, "before-move")["conversation_id"] == first["conversation_id"]
        assert b.stop() == 0
        a.own = "0"
        start_all(a)  # without it, a starts as before
        assert a.lookup(moved, "after-move")["error"]["code"] == "not_found"
        assert a.stop() == 0


def test_import_and_reclaim_give_a_forgotten_partition_back(tmp_path: Path) -> None:
    """The note of a forget goes when the partition's tenants are imported back, or by
    `cluster reclaim` (its owner and data lost); reclaiming one never given is refused."""
    import os
    import shutil

    from appliance.config import policy_dir

    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "n"), "--new-key-file",
                   str(key)).returncode == 0
    node = ["--data-dir", str(tmp_path / "n"), "--key-file", str(key)]
    with nats_server(tmp_path / "nats") as url:  # no node started: no stream yet
        shutil.copytree(policy_dir(), tmp_path / "policies")
        (tmp_path / "policies" / "cluster.toml").write_text(
            f'url = "{url}"\npartitions = 4\nnode = "n"\n[security]\nplain_bus = true\n')
        env = {**os.environ, "SEMTRACE_POLICY_DIR": str(tmp_path / "policies")}
        r = run_cli("cluster", "forget", *node, "--partitions", "2-3", "--yes", env=env)
        assert r.returncode == 0, r.stderr
        r = run_cli("cluster", "reclaim", *node, "--partitions", "3", "--json", env=env)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"partitions": [3], "node": "n"}
        never = run_cli("cluster", "reclaim", *node, "--partitions", "1", env=env)
        assert never.returncode == 2 and never.stderr.strip() == (
            "semtrace: This node did not give partition 1 away; nothing was changed.")
        human = run_cli("cluster", "reclaim", *node, "--partitions", "2", env=env)
        assert human.returncode == 0 and human.stdout.strip() == (
            "This node may serve partition 2 again (without its earlier data): add it "
            "to its --own and start it as 'n'. Its consumer on NATS names it now, so a node "
            "that consumed it before refuses it, should it come back.")


def test_exporting_a_partition_without_tenants_says_what_to_do_instead(tmp_path: Path) -> None:
    """Before: `Error: This node holds no tenant of partition(s) 2.` (click's prefix, not
    semtrace's), and nothing said how such a partition changes owner."""
    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "n"), "--new-key-file",
                   str(key)).returncode == 0
    out = tmp_path / "p2.semtrace"
    r = run_cli("cluster", "export", "--data-dir", str(tmp_path / "n"), "--key-file", str(key),
                "--partitions", "2", "--of", "4", "--out", str(out))
    assert r.returncode == 1 and not out.exists()
    assert r.stderr.strip() == (
        "semtrace: This node holds no tenant of partition 2, so there is nothing to export "
        "and no file was written: run `semtrace cluster forget --partitions 2 --yes` here, "
        "then start the new owner with 2 in its --own.")


def test_serve_check_refuses_a_partition_given_away(tmp_path: Path) -> None:
    """`serve --check` (what an operator runs after editing cluster.toml) passed a stale
    --own that `serve` then refuses: it says the same sentence now, without NATS."""
    import os
    import shutil

    from appliance.config import policy_dir

    key, bus_key = tmp_path / "cluster.key", tmp_path / "bus.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "n"), "--new-key-file",
                   str(key)).returncode == 0
    shutil.copytree(policy_dir(), tmp_path / "policies")
    (tmp_path / "policies" / "cluster.toml").write_text(  # nothing listens there: unused
        f'url = "nats://127.0.0.1:9"\npartitions = 4\n[security]\nbus_key_file = "{bus_key}"\n')
    env = {**os.environ, "SEMTRACE_POLICY_DIR": str(tmp_path / "policies")}
    node = ["--data-dir", str(tmp_path / "n"), "--key-file", str(key)]
    r = run_cli("cluster", "forget", *node, "--partitions", "1", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    stale = run_cli("serve", "--check", *node, "--own", "0-1", env=env)
    assert stale.returncode == 1
    assert stale.stderr.strip().startswith("semtrace: This node gave partition 1 away")
    assert stale.stderr.strip().endswith("Nothing was consumed.")
    fixed = run_cli("serve", "--check", "--json", *node, "--own", "0", env=env)
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["message"] == "Configuration OK."


def test_a_node_back_after_another_consumed_its_partition_refuses_it(tmp_path: Path) -> None:
    """Node c owned partition 3 and went away; node b took partition 3 over (its data lost
    with c, or so it seemed) and consumed prompts of its tenants. c comes back with its old
    --own while b is stopped: before, c took partition 3 again and its tenants'
    conversations went on from c's old copy, b's newer records apart. Both partitions c
    had are named at once: one at a time, c was refused for 2, then again for 3."""
    tenant = tenant_in(3)
    with sealed_cluster(tmp_path) as bus:
        c, b = taken_over(bus, tenant, "2-3", "2-3")
        assert b.stop() == 0  # b restarts, say; meanwhile c comes back
        with bus.gateway(timeout=30) as gateway:
            gateway.publish(ingest(tenant, "queued", "Should I reinstall it?", 4))
        assert refused(c, "node c took partitions 2-3 back from b's newer records") == [
            "semtrace: Partitions 2-3 were consumed by node 'b' since this node last did, so "
            "their tenants' newer records are there: start this node without 2-3 in --own "
            "(`own` in cluster.toml) and remove its stale copy (`semtrace cluster forget "
            "--partitions 2-3 --yes --discard`), or, if 'b' and its data are lost, run "
            "`semtrace cluster reclaim --partitions 2-3` here. Nothing was consumed."]
        assert lag(bus.url, 3) == (1, None)  # the queued prompt waits for b
        start_all(b)
        arrived(b, tenant, "queued", "the queued prompt")
        assert b.stop() == 0


def test_a_lost_node_that_comes_back_after_a_reclaim_refuses_the_partition(
        tmp_path: Path) -> None:
    """c consumed partition 3, then b took it over and consumed it; b is lost, so
    `cluster reclaim --partitions 3` is run on c, which is not started yet. Before: the
    reclaim changed only c's store and the partition's consumer still named b, so b,
    restored and started with its old --own, took partition 3 again, and c, started
    later, took it too: the tenant's newer records on both nodes. Now the reclaim names
    c on the consumer (refused while b is alive), b refuses the partition, and c serves it."""
    tenant = tenant_in(3)
    with sealed_cluster(tmp_path) as bus:
        c, b = taken_over(bus, tenant, "3", "2-3")
        reclaim = ["cluster", "reclaim", *c.args(), "--partitions", "3", "--node", "c"]
        alive = run_cli(*reclaim, env=c.env)  # b is not lost: it runs
        assert alive.returncode == 1
        assert alive.stderr.strip().startswith("semtrace: Partition 3 is owned by node 'b'")
        assert b.stop() == 0  # now b is lost, or so it seems
        r = run_cli(*reclaim, env=c.env)
        assert r.returncode == 0, r.stderr
        assert "Its consumer on NATS names it now" in r.stdout
        with bus.gateway(timeout=30) as gateway:
            gateway.publish(ingest(tenant, "queued", "Should I reinstall it?", 4))
        # b's data dir restored, started with its old --own; c not started yet
        assert refused(b, "node b took partition 3 back after c reclaimed it") == [
            "semtrace: Partition 3 was reclaimed by node 'c' (`semtrace cluster reclaim` "
            "there) since this node last consumed it, so it is that node's now: start this "
            "node without 3 in --own (`own` in cluster.toml) and remove its stale copy "
            "(`semtrace cluster forget --partitions 3 --yes --discard`), or, if 'c' should "
            "not have it, run `semtrace cluster reclaim --partitions 3` here. Nothing was "
            "consumed."]
        assert lag(bus.url, 3) == (1, None)  # the queued prompt waits for c
        start_all(c)
        arrived(c, tenant, "queued", "the queued prompt")
        assert c.stop() == 0
