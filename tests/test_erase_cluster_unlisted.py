"""`erase --all-tenants` on a node of a cluster searches the tenants every node noted in
NATS; a node that owns partitions but never noted its tenants (it last ran an earlier
version), or NATS not answering, leaves tenants unsearched, and the command says so (real
nats-server, real nodes): one sentence per node on stderr, exit 7, `--json`
`unlisted_nodes` / `nats_error` and `complete: false`. So does a node whose note this version
cannot read (`unreadable_notes`): it used to count as noted, and the command said the
erasure complete."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
from cluster_nodes import sealed_cluster
from test_cluster import PARTITIONS, Node, _free_port, nats_server
from test_spine import run_cli

from appliance.cluster.bus import NO_SERVER_REMEDY

pytestmark = pytest.mark.slow


def _erase_all(node: Node, *extra: str) -> list[str]:
    return ["erase", *node.args(), "--all-tenants", "--user", "ulla", "--reason",
            "DSAR 2026-95", *extra]


def _forget_note(url: str, node: str, *, instead: bytes | None = None) -> None:
    """Remove `node`'s note, as if it had last run a version that did not note tenants
    (`instead`: write this value in its place)."""
    from appliance.cluster.bus import connect
    from appliance.cluster.tenants_known import tenants_bucket
    from appliance.config import ClusterSecurity

    async def forget() -> None:
        nc = await connect(url, ClusterSecurity(plain_bus=True), name="test")
        try:
            kv = await tenants_bucket(nc.jetstream(), replicas=1, create=False)
            await (kv.purge(node) if instead is None else kv.put(node, instead))
        finally:
            await nc.close()

    asyncio.run(forget())


def _erase_all_around(tmp_path: Path, instead: bytes | None = None) -> tuple[
        subprocess.CompletedProcess[str], ...]:
    """Node a runs once and stops; its note is removed (or `instead` written in its place);
    `erase --all-tenants` on node b's data dir, in text and in JSON; then a starts again
    (it notes its tenants at start) and the command runs once more (JSON)."""
    with sealed_cluster(tmp_path) as bus:
        a = bus.node("a", "0-1")
        b = bus.node("b", "2-3")  # only its data dir: it asks
        a.launch().wait_up()
        assert a.stop() == 0
        _forget_note(bus.url, "a", instead=instead)
        out = run_cli(*_erase_all(b), env=b.env)
        as_json = run_cli(*_erase_all(b, "--json"), env=b.env)
        a.launch().wait_up()
        after = run_cli(*_erase_all(b, "--json"), env=b.env)
        assert a.stop() == 0
    return out, as_json, after


def test_erase_all_tenants_names_a_node_that_never_noted_its_tenants(tmp_path: Path) -> None:
    out, as_json, after = _erase_all_around(tmp_path)
    assert out.returncode == 7, out.stdout + out.stderr
    assert out.stderr.strip() == (
        "Erasure NOT complete: node 'a' (partitions 0, 1) has not noted its tenants in NATS "
        "(it has not run since an upgrade to a version that does, or NATS refused its note: "
        "see its log's tenants_note_failed), so tenants only it knows "
        "were not searched: start it once and run this command again, or run it on that "
        "node's data dir too.")
    assert "Traceback" not in out.stderr
    assert as_json.returncode == 7, as_json.stdout + as_json.stderr
    said = json.loads(as_json.stdout)
    assert said["unlisted_nodes"] == [{"node": "a", "partitions": [0, 1]}]
    assert said["complete"] is False and said["nats_error"] is None
    assert after.returncode == 0, after.stdout + after.stderr
    done = json.loads(after.stdout)
    assert done["unlisted_nodes"] == [] and done["complete"] is True and not after.stderr


def test_erase_all_tenants_names_a_node_whose_note_cannot_be_read(tmp_path: Path) -> None:
    out, as_json, after = _erase_all_around(tmp_path, b'\xff["acme"')  # torn, not UTF-8
    assert out.returncode == 7, out.stdout + out.stderr
    assert out.stderr.strip() == (
        "Erasure NOT complete: node 'a' noted its tenants in NATS, but this version cannot "
        "read its note (it is corrupt, or a later version wrote it in a form this one does "
        "not know), so tenants only it knows were not searched: restart that node (it notes "
        "its tenants again at start) and run this command again, or run it on that node's "
        "data dir too.")
    assert as_json.returncode == 7, as_json.stdout + as_json.stderr
    said = json.loads(as_json.stdout)
    assert said["unreadable_notes"] == ["a"] and said["unlisted_nodes"] == []
    assert said["complete"] is False
    assert after.returncode == 0, after.stdout + after.stderr
    done = json.loads(after.stdout)
    assert done["unreadable_notes"] == [] and done["complete"] is True


def test_erase_all_tenants_without_nats_says_the_other_nodes_tenants_were_not_searched(
        tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    url = f"nats://127.0.0.1:{_free_port()}"  # no server there
    b = Node(tmp_path, "b", url, key, f"0-{PARTITIONS - 1}", bus_key=None)
    out = run_cli(*_erase_all(b), env=b.env)
    assert out.returncode == 7, out.stdout + out.stderr
    assert out.stderr.strip() == (
        f"Erasure NOT complete: No NATS server answers at {url} ({NO_SERVER_REMEDY}), so the "
        "tenants only other "
        "nodes of the cluster know were not searched: run this command again when NATS "
        "answers, or on each node's data dir.")
    assert out.stdout.startswith("No tenant is known to this data dir")


def test_erase_all_tenants_names_partitions_an_earlier_builds_node_consumed_last(
        tmp_path: Path) -> None:
    """A partition's consumer made by a build before consumers named their node (its
    description names none) belongs to a node that never noted its tenants either."""
    from appliance.cluster.bus import connect
    from appliance.cluster.stream import consumer_config, ensure_stream
    from appliance.config import load_policies

    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp_path / "nats") as url:
        b = Node(tmp_path, "b", url, key, "0-1", bus_key=None)  # only its data dir: it asks
        settings = load_policies(b.policies).cluster

        async def earlier_builds_consumer() -> None:
            nc = await connect(url, settings.security, name="test")
            try:
                js = nc.jetstream()
                await ensure_stream(js, settings, max_msg_size=1 << 20)
                await js.add_consumer(settings.stream, consumer_config(settings, 2))
            finally:
                await nc.close()

        asyncio.run(earlier_builds_consumer())
        out = run_cli(*_erase_all(b, "--json"), env=b.env)
    assert out.returncode == 7, out.stdout + out.stderr
    assert out.stderr.strip() == (
        "Erasure NOT complete: partition 2 was consumed last by a node of an earlier "
        "version, which has not noted its tenants in NATS, so tenants only it knows were not "
        "searched: start that node once and run this command again, or run it on that "
        "node's data dir too.")
    said = json.loads(out.stdout)
    assert said["unnamed_partitions"] == [2] and said["unlisted_nodes"] == []
    assert said["complete"] is False
