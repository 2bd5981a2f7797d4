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
        assert "Imported 1 tenant(s)" in r.stdout


def test_an_export_that_names_no_start_says_it_cannot_be_checked(tmp_path: Path) -> None:
    """An export from a node that never consumed its partitions over NATS (or from an
    earlier build) carries no origin: the import says, in one sentence, that no one can
    tell whether its old owner consumed after the export, and imports it."""
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
    # the cluster's URL (--nats, or url in cluster.toml) marks a node of a cluster; the
    # server is not asked, as the file names nothing to ask it about
    r = run_cli("cluster", "import", "--data-dir", str(new), *creds, str(export),
                "--nats", "nats://127.0.0.1:4222")
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stderr.splitlines() if "start" in line] == [
        f"semtrace: {export} names no start of its old owner (exported by an earlier build, "
        "or by a node that never consumed its partitions over NATS), so neither this import "
        "nor this node's start can tell whether that node consumed them after the export; "
        "`semtrace cluster forget` there still refuses if it stored any since."]
