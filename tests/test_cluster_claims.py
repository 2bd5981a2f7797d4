"""A partition claim this node cannot read (not JSON, a known field missing or of another
type, a later wire version's) is refused like any other message between nodes: the start
stops in one sentence naming the partition, and the claims it took first are released.
Before, `Ownership.claim` read the claim's fields unchecked: a traceback, or a partition
'owned by node None', and the partitions claimed before it stayed claimed. Real
nats-server; the last test a real `semtrace serve --nats` node."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cluster_nodes import refused, sealed_cluster, tenant_in
from test_cluster import nats_server

from appliance.cluster.owners import Ownership, owners_bucket
from appliance.errors import SemtraceError

TTL_S = 600.0  # the malformed claim outlives the test


def _put_claim(url: str, key: str, value: bytes) -> None:
    async def put() -> None:
        import nats

        nc = await nats.connect(url)
        try:
            kv = await owners_bucket(nc.jetstream(), ttl_s=TTL_S, replicas=1)
            await kv.put(key, value)
        finally:
            await nc.close()

    asyncio.run(put())


@pytest.mark.parametrize("value,why", [
    (b"{torn", "it is not JSON"),
    (b'["a"]', "the claim on partition 1 is not a JSON object"),
    (json.dumps({"since": 1.0, "refreshed": 2.0}).encode(),
     "the claim on partition 1 lacks its field 'node'"),
    (json.dumps({"node": "b", "since": 1.0, "refreshed": "now"}).encode(),
     "the claim on partition 1's field 'refreshed' is a str, not a number"),
    (json.dumps({"v": 2, "node": "b", "since": 1.0, "refreshed": 2.0}).encode(),
     "the claim on partition 1 is of wire version 2, which this node (wire version 1) "
     "cannot read: upgrade this node"),
])
def test_a_claim_this_node_cannot_read_refuses_the_start_and_releases_the_rest(
        tmp_path: Path, value: bytes, why: str) -> None:
    with nats_server(tmp_path / "nats") as url:
        _put_claim(url, "p1", value)

        async def claim() -> tuple[str, list[str]]:
            import nats

            from appliance.cluster.kv_read import bucket_entries

            nc = await nats.connect(url)
            try:
                kv = await owners_bucket(nc.jetstream(), ttl_s=TTL_S, replicas=1)
                with pytest.raises(SemtraceError) as stopped:
                    await Ownership(kv, "a", [0, 1], TTL_S, data_dir="d-a").claim()
                return str(stopped.value), sorted(e.key for e in await bucket_entries(kv))
            finally:
                await nc.close()

        sentence, keys = asyncio.run(claim())
    assert sentence == (f"Partition 1 has a claim in NATS this node cannot read ({why}): "
                        "stop the node that wrote it, or wait for it to expire (600 s after "
                        "its last write), before taking the partition. Nothing was consumed.")
    assert keys == ["p1"]  # partition 0, claimed first, released


def test_a_node_whose_partition_has_an_unreadable_claim_does_not_start(
        tmp_path: Path) -> None:
    with sealed_cluster(tmp_path) as bus:
        _put_claim(bus.url, "p1", json.dumps({"node": "b", "since": 1.0,
                                              "refreshed": "now"}).encode())
        lines = refused(bus.node("a", "0-1"), "it consumed beside an unreadable claim")
    assert lines == [
        "semtrace: Partition 1 has a claim in NATS this node cannot read (the claim on "
        "partition 1's field 'refreshed' is a str, not a number): stop the node that wrote "
        "it, or wait for it to expire (6 s after its last write), before taking the "
        "partition. Nothing was consumed."], lines  # the node's owner_ttl_s
    assert "Traceback" not in (tmp_path / "a.log").read_text()


@pytest.mark.parametrize("value", [b"{torn", json.dumps({"v": 2, "owner": "b"}).encode()])
def test_a_running_node_gives_up_a_partition_whose_claim_it_cannot_read_any_more(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, value: bytes) -> None:
    """Its claim was overwritten (it was cut off from NATS past owner_ttl_s) by one it
    cannot read: another node's all the same, so it stops consuming that partition. Before:
    each heartbeat failed on a value that is not JSON, and the node went on consuming beside
    its writer; one without `node` was said to be node 'None''s."""
    import logging

    with nats_server(tmp_path / "nats") as url:

        async def run() -> tuple[list[tuple[int, str]], dict[int, str]]:
            import nats

            nc = await nats.connect(url)
            try:
                kv = await owners_bucket(nc.jetstream(), ttl_s=TTL_S, replicas=1)
                lost: list[tuple[int, str]] = []
                own = Ownership(kv, "a", [0, 1], TTL_S,
                                on_lost=lambda p, holder: lost.append((p, holder)))
                await own.claim()
                await kv.put("p1", value)
                for p in (0, 1):  # the heartbeat's refresh of each partition
                    await own._refresh(p)
                await own.release()
                return lost, own.lost
            finally:
                await nc.close()

        with caplog.at_level(logging.ERROR, logger="semtrace.cluster"):
            lost, held = asyncio.run(run())
    assert lost == [(1, "?")] and held == {1: "?"}
    assert [r.getMessage() for r in caplog.records] == [
        "Partition 1 was claimed by a node whose claim this node cannot read while this node "
        "could not refresh its claim; this node stops consuming it (restart it without that "
        "partition in --own, or stop the other node and restart this one)."]


def test_the_preflight_refuses_an_unreadable_claim_before_the_models_load(
        tmp_path: Path) -> None:
    """The check a node makes on NATS within seconds of its start (`preflight.py`), before
    its models load and its store opens. Before, it counted the claim as none, and the node
    refused it only once it had loaded its models and opened its store."""
    from appliance.cluster.preflight import preflight
    from appliance.config import ClusterSecurity, ClusterSettings

    with nats_server(tmp_path / "nats") as url:
        _put_claim(url, "p1", b"{torn")
        settings = ClusterSettings(url=url, partitions=4, own="0-1", node="a",
                                   owner_ttl_s=TTL_S,
                                   security=ClusterSecurity(plain_bus=True))
        with pytest.raises(SemtraceError) as stopped:
            asyncio.run(preflight(settings))
        assert asyncio.run(preflight(settings.model_copy(update={"own": "2-3"}))).claims == {}
    assert str(stopped.value) == (
        "Partition 1 has a claim in NATS this node cannot read (it is not JSON): stop the "
        "node that wrote it, or wait for it to expire (600 s after its last write), before "
        "taking the partition. Nothing was consumed.")


def test_status_and_erase_name_a_partition_whose_claim_they_cannot_read(
        tmp_path: Path) -> None:
    """`cluster status` used to show such a partition as unowned ('(none: queueing)', owner
    null), while a node holds it, and `erase` said no node had consumed it yet: now both
    name it, 'unreadable claim', with why."""
    from test_cluster import Node
    from test_spine import run_cli

    from appliance.cluster.stream import ensure_stream
    from appliance.config import ClusterSettings

    with nats_server(tmp_path / "nats") as url:
        async def stream() -> None:
            import nats

            nc = await nats.connect(url)
            await ensure_stream(nc.jetstream(), ClusterSettings(url=url, partitions=4),
                                max_msg_size=1 << 20)
            await nc.close()

        asyncio.run(stream())
        _put_claim(url, "p1", json.dumps({"v": 2, "holder": "c", "since": 1.0}).encode())
        _put_claim(url, "p2", b"{torn")
        text = run_cli("cluster", "status", "--nats", url)
        as_json = run_cli("cluster", "status", "--nats", url, "--json")
        tenant = run_cli("cluster", "status", "--nats", url, "--tenant", tenant_in(1))
        key = tmp_path / "cluster.key"
        assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                       str(key)).returncode == 0
        b = Node(tmp_path, "b", url, key, "0", bus_key=None)  # it only asks
        erase = [*b.args(), "--tenant", tenant_in(1), "--user", "olga", "--reason", "DSAR",
                 "--wait", "1"]
        erased = run_cli("erase", *erase, env=b.env)
        erased_json = run_cli("erase", *erase, "--json", env=b.env)
    assert text.returncode == 0, text.stderr
    rows = {line.split()[0]: line for line in text.stdout.splitlines()
            if line.split() and line.split()[0].isdigit()}
    assert "(unreadable claim)" in rows["1"] and "(unreadable claim)" in rows["2"]
    assert "(none: queueing)" in rows["0"] and "(none: queueing)" in rows["3"]
    assert ("Partition 1: unreadable claim (the claim on partition 1 is of wire version 2, "
            "which this node (wire version 1) cannot read: upgrade this node): a node holds "
            "it that this version cannot name") in text.stdout
    assert "Partition 2: unreadable claim (it is not JSON)" in text.stdout
    states = json.loads(as_json.stdout)["states"]
    assert [(s["owner"], s["unreadable_claim"] is not None) for s in states] == [
        (None, False), (None, True), (None, True), (None, False)]
    assert tenant.returncode == 0, tenant.stderr
    assert tenant.stdout.startswith(f"tenant {tenant_in(1)}: partition 1, unreadable claim (the "
                                    "claim on partition 1 is of wire version 2")
    assert erased.returncode == 8, erased.stdout + erased.stderr
    assert erased.stdout.strip().endswith(
        f"in {tenant_in(1)} is pending: its partition 1 has a claim in NATS this node cannot "
        "read (a later version's, or corrupt), so which node holds it is not known here and "
        "none applied it within 1 s; the request waits in NATS for a node that reads it (run "
        "this command again to see it applied, or upgrade this node: `cluster status`).")
    assert "the node whose claim this node cannot read" in erased.stderr
    said = json.loads(erased_json.stdout)
    assert (said["unreadable_claim"], said["node"], said["pending"]) == (True, None, True)
