"""An export from a node that never consumed its partition over NATS (its store filled by
`replay` or the socket) is checked like any other: node a, filled by replay, exports
partition 1; the file is imported on b; a is started again with partition 1 (the move cut
short) and stores a follow-up. b's start refuses the partition, and an import of the same
file elsewhere is refused. And the other way round: once b consumed the partition, a
refuses it. A real nats-server and real nodes (cluster_nodes.py)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from cluster_nodes import (
    Bus,
    ingest,
    refused,
    sealed_cluster,
    sourdough_on,
    tenant_in,
)
from test_cluster import TODAY, Node, start_all
from test_spine import run_cli

pytestmark = pytest.mark.slow


def _replayed(node: Node, tenant: str, tmp: Path) -> None:
    """The tenant's first prompt stored on the stopped node by `replay`, not over NATS."""
    src = tmp / f"{node.name}-in.jsonl"
    ts = (TODAY + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    src.write_text(f'{{"tenant": "{tenant}", "user_id": "ana", "ts": "{ts}", '
                   '"text": "How do I bake sourdough bread at home?"}\n')
    r = run_cli("replay", str(src), "--out", str(tmp / f"{node.name}-out.jsonl"), *node.args(),
                env=node.env)
    assert r.returncode == 0, r.stderr


def _exported(bus: Bus, a: Node, tenant: str) -> Path:
    _replayed(a, tenant, bus.tmp)
    export = bus.tmp / "p1.semtrace"
    r = run_cli("cluster", "export", *a.args(), "--partitions", "1", "--out", str(export),
                env=a.env)
    assert r.returncode == 0, r.stderr
    return export


def test_an_export_of_a_node_that_never_consumed_is_refused_once_it_consumed(
        tmp_path: Path) -> None:
    """Before: the file named nothing to check (the import said so on stderr), and b, its
    copy lacking a's follow-up, consumed partition 1: the tenant's records split over two
    copies that nothing merges."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        a, b, c = bus.node("a", "0-1"), bus.node("b", "1-3"), bus.node("c", "1-3")
        export = _exported(bus, a, moved)
        kept = tmp_path / "p1-kept.semtrace"
        shutil.copy(export, kept)
        r = run_cli("cluster", "import", *b.args(), str(export), env=b.env)
        assert r.returncode == 0, r.stderr
        assert "names no start" not in r.stderr  # nothing consumed it yet: checked, fine
        start_all(a)  # the move cut short: a serves partition 1 again, before b starts
        with bus.gateway() as gateway:
            on_a = gateway.request(ingest(moved, "after-export", "How long should it rise?", 2))
        assert on_a["ok"], on_a
        assert a.stop() == 0
        lines = refused(b, "b consumed partition 1 from its copy, which lacks a's follow-up")
        when = lines[-1].split(" (at ", 1)[-1][:16]
        assert lines[-1] == (
            "semtrace: Partition 1 was consumed by node 'a' and its tenants were exported to "
            f"this node (at {when} UTC) from a data dir that had not consumed it over NATS, "
            "so the copy imported here may lack their newer records: start this node without "
            "1 in --own (`own` in cluster.toml) and remove that copy (`semtrace cluster "
            "forget --partitions 1 --yes --discard`), or move the partition again (stop 'a', "
            "`semtrace cluster export --partitions 1` there, the forget above here, then "
            "`semtrace cluster import` here), or, if 'a' and its data are lost, run "
            "`semtrace cluster reclaim --partitions 1` here. Nothing was consumed."), lines
        # the same file, imported now on another node, is refused where the operator names it
        r = run_cli("cluster", "import", *c.args(), str(kept), env=c.env)
        assert (r.returncode, r.stderr.strip()) == (2, (
            f"semtrace: Partition 1 was consumed by node 'a' and {kept} was exported (at "
            f"{when} UTC) from a data dir that had not consumed it over NATS, so the file may "
            "lack its tenants' newer records: export the partition again (stop 'a', "
            "`semtrace cluster export --partitions 1` there) and import that file instead, "
            "or, if 'a' and its data are lost, import this one with --owner-lost and run "
            "`semtrace cluster reclaim --partitions 1` here. Nothing was imported.")), r.stderr
        assert kept.exists()
        listed = run_cli("threads", "list", *c.args(), "--json", env=c.env)
        assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stdout


def test_an_old_owner_that_never_consumed_refuses_the_partition_its_new_owner_consumed(
        tmp_path: Path) -> None:
    """Before: a, which had never consumed partition 1, was not refused (only a node that
    consumed a partition is, once another consumed it since): started with 1 still in its
    --own while b was down, it consumed the tenant's prompts into its exported copy."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "1-3")
        export = _exported(bus, a, moved)
        r = run_cli("cluster", "import", *b.args(), str(export), env=b.env)
        assert r.returncode == 0, r.stderr
        start_all(b)
        with bus.gateway() as gateway:
            on_b = gateway.request(ingest(moved, "on-b", "How long should it rise?", 2))
        assert on_b["ok"], on_b
        assert b.stop() == 0
        lines = refused(a, "a consumed partition 1 though b holds its newer records")
        assert lines[-1] == (
            "semtrace: Partition 1 was consumed by node 'b' and this node, which never "
            "consumed it over NATS, exported its tenants (`semtrace cluster export`) and "
            "still holds that copy, so their newer records are on 'b': start this node "
            "without 1 in --own (`own` in cluster.toml) and remove its copy (`semtrace "
            "cluster forget --partitions 1 --yes`), or, if 'b' and its data are lost, run "
            "`semtrace cluster reclaim --partitions 1` here. Nothing was consumed."), lines
        # b is lost with its data: the way out the sentence names lets a serve it again
        r = run_cli("cluster", "reclaim", *a.args(), "--partitions", "1", "--node", "a",
                    env=a.env)
        assert (r.returncode, r.stdout.strip()) == (0, (
            "This node may serve partition 1 from the copy it exported (without what "
            "its lost owner stored since): add it to its --own and start it as 'a'. "
            "Its consumer on NATS names it now, so a node that consumed it before "
            "refuses it, should it come back.")), r.stderr
        start_all(a)
        assert a.lookup(moved, "on-b")["error"]["code"] == "not_found"  # b's, lost with b
        assert a.stop() == 0


def test_a_node_that_passed_an_imported_copy_on_serves_it_if_nobody_consumed_since(
        tmp_path: Path) -> None:
    """c consumed partition 1 and moved it to a (export, import, forget); a, never started
    with it, passed its copy on to b (`export` carries c's start on, b's import checks it);
    the move cut short, a is started with 1 in its --own before b. Nobody consumed the
    partition since c, whose records are all in a's copy, so a serves it, and b, whose copy
    now lacks a's follow-up, is refused. Before: a refused it ("... its newer records are on
    'c'"), though c had forgotten the tenant and a held its only live copy."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        c, a, b = bus.node("c", "1"), bus.node("a", "0-1"), bus.node("b", "1-3")
        first = sourdough_on(c, bus, moved)
        to_a, to_b = tmp_path / "c-p1.semtrace", tmp_path / "a-p1.semtrace"
        for step in (("cluster", "export", *c.args(), "--partitions", "1", "--out", str(to_a)),
                     ("cluster", "import", *a.args(), str(to_a), "--nats", bus.url),
                     ("cluster", "forget", *c.args(), "--partitions", "1", "--yes"),
                     ("cluster", "export", *a.args(), "--partitions", "1", "--out", str(to_b)),
                     ("cluster", "import", *b.args(), str(to_b), "--nats", bus.url)):
            r = run_cli(*step, env=c.env)
            assert r.returncode == 0, (step[:2], r.stderr)
        start_all(a)  # before: exit 1, refused
        assert a.lookup(moved, "before-move")["conversation_id"] == first["conversation_id"]
        with bus.gateway() as gateway:
            on_a = gateway.request(ingest(moved, "on-a", "How long should it rise?", 2))
        assert on_a["ok"] and on_a["conversation_id"] == first["conversation_id"], on_a
        assert a.stop() == 0
        lines = refused(b, "b consumed partition 1 from its copy, which lacks a's follow-up")
        assert lines[-1].startswith("semtrace: Partition 1 was consumed by node 'a' after its "
                                    "tenants were exported from 'c' to this node"), lines
