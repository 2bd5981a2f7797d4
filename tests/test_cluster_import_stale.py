"""An export older than its partitions is refused when it is imported, not only when the
new owner starts: node a exports partition 1, is started again with partition 1 (the move
cut short) and consumes a follow-up, then the operator imports the file on node b. A real
nats-server and real nodes (cluster_nodes.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cluster_nodes import ingest, sealed_cluster, sourdough_on, tenant_in
from test_cluster import start_all
from test_spine import run_cli

from appliance.cluster.partition import partition_of

pytestmark = pytest.mark.slow


def test_an_export_its_old_owner_consumed_past_is_refused_at_import(tmp_path: Path) -> None:
    """Before: the import took the stale file (exit 0, 'Next: forget ... then start this
    node'), and only b's start refused the partition, after the operator had moved on."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "1-3")
        first = sourdough_on(a, bus, moved)
        export = tmp_path / "p1.semtrace"
        r = run_cli("cluster", "export", *a.args(), "--partitions", "1", "--out", str(export),
                    env=a.env)
        assert r.returncode == 0, r.stderr
        start_all(a)  # the move cut short: a serves partition 1 again, before the import
        with bus.gateway() as gateway:
            on_a = gateway.request(ingest(moved, "after-export", "How long should it rise?", 2))
        assert on_a["ok"] and on_a["conversation_id"] == first["conversation_id"], on_a
        assert a.stop() == 0
        kept = tmp_path / "p1-kept.semtrace"
        shutil.copy(export, kept)
        r = run_cli("cluster", "import", *b.args(), str(export), env=b.env)
        when = r.stderr.split(" (at ", 1)[-1][:16]
        assert (r.returncode, r.stderr.strip()) == (2, (
            f"semtrace: Partition 1 was consumed by node 'a' after {export} was exported "
            f"from 'a' (at {when} UTC), so the file may lack its tenants' newer records: "
            "export the partition again (stop 'a', `semtrace cluster export --partitions 1` "
            "there) and import that file instead, or, if 'a' and its data are lost, import "
            "this one with --owner-lost and run `semtrace cluster reclaim --partitions 1` "
            "here. Nothing was imported.")), r.stderr
        assert export.exists()  # kept for the operator
        listed = run_cli("threads", "list", *b.args(), "--json", env=b.env)
        assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stdout
        # a is lost with its data: the operator imports the file anyway, said so
        r = run_cli("cluster", "import", *b.args(), str(kept), "--owner-lost", env=b.env)
        assert r.returncode == 0, r.stderr
        assert "Imported 1 tenant," in r.stdout


def _earlier_build(export: Path, data: Path, key: Path) -> None:
    """Make `export` as an earlier build wrote it: without the origin it carries now."""
    from appliance.cli import credential
    from appliance.cluster.imported import ORIGIN
    from appliance.runtime import open_runtime
    from appliance.store.core import connect

    rt = open_runtime(data, credential(None, key))
    try:
        conn = connect(export, rt.keyring)
        conn.execute("DELETE FROM meta WHERE key = ?", (ORIGIN,))
        conn.close()
    finally:
        rt.close()


def test_an_export_of_an_earlier_build_is_refused_on_a_cluster_node_unless_accepted(
        tmp_path: Path) -> None:
    """An export of an earlier build carries no origin, so nothing can tell whether its old
    owner consumed after it. Before: imported with a line on stderr, and the new owner then
    consumed the partition whether or not its copy was stale. Now refused (exit 2, nothing
    imported, the file kept) on a node of a cluster, in one sentence naming the flag with
    which the operator vouches for it; imported with it."""
    key = tmp_path / "k"
    old, new = tmp_path / "old", tmp_path / "new"
    for data in (old, new):
        assert run_cli("init", "--data-dir", str(data), *(
            ("--new-key-file", str(key)) if data == old else ("--key-file", str(key)))
                       ).returncode == 0
    src = tmp_path / "in.jsonl"
    src.write_text('{"tenant": "t1", "user_id": "u", "ts": "2026-03-02T09:00:00Z", '
                   '"text": "How do I bake sourdough bread at home?"}\n')
    creds = ["--key-file", str(key)]
    r = run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), "--data-dir", str(old),
                *creds)
    assert r.returncode == 0, r.stderr
    export = tmp_path / "t.semtrace"
    part = str(partition_of("t1", 16))
    r = run_cli("cluster", "export", "--data-dir", str(old), *creds, "--partitions", part,
                "--of", "16", "--out", str(export))
    assert r.returncode == 0, r.stderr
    _earlier_build(export, old, key)
    # the cluster's URL (--nats, or url in cluster.toml) marks a node of a cluster; the
    # server is not asked, as the file names nothing to ask it about
    into_new = ["cluster", "import", "--data-dir", str(new), *creds, str(export),
                "--nats", "nats://127.0.0.1:4222"]
    r = run_cli(*into_new)
    assert (r.returncode, r.stderr.strip()) == (2, (
        f"semtrace: {export} names no start of its old owner (it was exported by an earlier "
        "build), so neither this import nor this node's start can tell whether that node "
        "consumed its partitions after the export: export them again there with this build "
        "and import that file, or, if that node has not been started with them since the "
        "export (and stays stopped until its `semtrace cluster forget` has passed), import "
        "this one with --accept-unchecked. Nothing was imported.")), r.stderr
    assert export.exists()
    listed = run_cli("threads", "list", "--data-dir", str(new), *creds, "--json")
    assert listed.returncode == 0 and listed.stdout.strip() == "[]", listed.stdout
    r = run_cli(*into_new, "--accept-unchecked")
    assert r.returncode == 0, r.stderr
    assert "Imported 1 tenant," in r.stdout
    # a node of no cluster (no URL anywhere) has nothing to check such a file against
    again = tmp_path / "t2.semtrace"
    r = run_cli("cluster", "export", "--data-dir", str(old), *creds, "--partitions", part,
                "--of", "16", "--out", str(again))
    assert r.returncode == 0, r.stderr
    _earlier_build(again, old, key)
    alone = tmp_path / "alone"
    assert run_cli("init", "--data-dir", str(alone), *creds).returncode == 0
    r = run_cli("cluster", "import", "--data-dir", str(alone), *creds, str(again))
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
