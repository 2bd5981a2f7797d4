"""`erase --all-tenants` on one node reaches a tenant another node stored for the first time
just before: the owner notes a tenant in NATS before its first prompt is stored, not at its
next minute's note (real nats-server, real nodes); and it does not write its note again
for each prompt of a tenant it noted."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from cluster_nodes import ingest, lag, sealed_cluster, tenant_in
from test_cluster import Node, nats_server, start_all
from test_spine import run_cli

pytestmark = pytest.mark.slow


def _note(url: str, node: str) -> tuple[list[str], int]:
    """The node's note in `semtrace_tenants`: its tenants and the note's revision."""
    from appliance.cluster.bus import connect
    from appliance.cluster.tenants_known import tenants_bucket
    from appliance.config import ClusterSecurity

    async def read() -> tuple[list[str], int]:
        nc = await connect(url, ClusterSecurity(plain_bus=True), name="test")
        try:
            kv = await tenants_bucket(nc.jetstream(), replicas=1, create=False)
            entry = await kv.get(node)
            return json.loads(entry.value), int(entry.revision)
        finally:
            await nc.close()

    return asyncio.run(read())


def test_erase_all_tenants_reaches_a_tenant_first_stored_on_another_node_just_before(
        tmp_path: Path) -> None:
    from test_erasure_inflight import users_records

    from appliance.keys import read_key_file

    tenant, later = tenant_in(0), tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        a = bus.node("a", "0-1")
        b = bus.node("b", "2-3")  # only its data dir: it asks
        start_all(a)
        assert tenant not in _note(bus.url, "a")[0]  # a knew no tenant at start
        with bus.gateway() as gateway:
            first = gateway.request(ingest(tenant, "first", "Cancel my Ravelston gym "
                                           "membership from March.", 0))
            assert first["ok"], first
            out = run_cli("erase", *b.args(), "--all-tenants", "--user", "ana", "--reason",
                          "DSAR 2026-98", "--wait", "120", "--json", env=b.env)
            noted, revision = _note(bus.url, "a")
            # more prompts of a tenant a noted: its note is not written again
            for n in range(3):
                more = gateway.request({**ingest(tenant, f"more-{n}", "Which gym classes "
                                                 "run on Fridays?", 1 + n), "user_id": "bo"})
                assert more["ok"], more
            unchanged = _note(bus.url, "a")
            grown = gateway.request(ingest(later, "later", "Book a table for two.", 5))
            assert grown["ok"], grown
            after = _note(bus.url, "a")
        assert a.stop() == 0
    assert out.returncode == 0, out.stdout + out.stderr
    done = json.loads(out.stdout)
    assert [(t["tenant"], t["records"], t["node"]) for t in done["tenants"]] == [
        (tenant, 1, "a")], done
    assert done["complete"] is True and done["pending"] == []
    count, texts = users_records(a.data, read_key_file(a.key), tenant, "ana")
    assert count == 0 and not [t for t in texts if "membership" in t]
    assert tenant in noted
    assert unchanged == (noted, revision)
    assert after[0] == sorted([*noted, later]) and after[1] > revision
    assert '"tenants_note_failed"' not in a.log.read_text()


def test_erase_all_tenants_reaches_a_tenant_whose_first_prompt_waits_in_nats(
        tmp_path: Path) -> None:
    """A tenant no node has stored yet, its first prompt waiting in NATS (its owner down):
    `erase --all-tenants` asks the owner too, which refuses the prompt when it consumes it."""
    from test_erasure_inflight import users_records

    from appliance.keys import read_key_file

    tenant = tenant_in(0)
    with sealed_cluster(tmp_path) as bus:
        a = bus.node("a", "0-1")
        b = bus.node("b", "2-3")  # only its data dir: it asks
        start_all(a)
        assert a.stop() == 0  # a owns the tenant's partition, and is down
        with bus.gateway() as gateway:
            assert gateway.publish(ingest(tenant, "waiting", "Cancel my Ravelston gym "
                                          "membership from March.", 0))["ok"]
        assert lag(bus.url, 0)[0] == 1
        out = run_cli("erase", *b.args(), "--all-tenants", "--user", "ana", "--reason",
                      "DSAR 2026-98", "--wait", "1", "--json", env=b.env)
        start_all(a)  # applies the erasure before it consumes
        deadline = time.monotonic() + 120
        while lag(bus.url, 0)[0]:
            assert time.monotonic() < deadline, "node a did not consume the prompt"
            time.sleep(0.5)
        found = a.lookup(tenant, "waiting")
        assert a.stop() == 0
    assert out.returncode == 8, out.stdout + out.stderr
    done = json.loads(out.stdout)
    assert [(p["tenant"], p["node"]) for p in done["pending"]] == [(tenant, "a")], done
    assert not found.get("ok"), found
    count, texts = users_records(a.data, read_key_file(a.key), tenant, "ana")
    assert count == 0 and not [t for t in texts if "membership" in t]


def test_a_node_nats_refuses_the_note_of_does_not_store_the_new_tenants_prompt(
        tmp_path: Path) -> None:
    """Node a's NATS user may not write `semtrace_tenants`: the first prompt of a tenant
    new to it is delivered, not stored (it waits in NATS), said once in its log; `erase
    --all-tenants` on b says a's tenants may be missed (exit 7) and still reaches the
    tenant (its prompt waits in the stream), whose owner leaves a tombstone."""
    from datetime import UTC, datetime

    from test_erase_cluster_permissions import _node_permissions, _permissions
    from test_erasure_inflight import users_records

    from appliance.cluster.bus import connect
    from appliance.cluster.client import NatsClient
    from appliance.cluster.partition import partition_of
    from appliance.cluster.stream import consumer_lag
    from appliance.config import ClusterSecurity, load_policies
    from appliance.keys import read_key_file
    from appliance.keys.bus import load_bus_keys

    for name, secret in (("node", "n0de-s3cret"), ("gw", "gw-s3cret")):
        (tmp_path / f"{name}.password").write_text(secret + "\n")
        (tmp_path / f"{name}.password").chmod(0o600)
    nonote = _node_permissions().replace('"$KV.semtrace_tenants.>",', "")
    assert nonote != _node_permissions()
    auth = ("authorization { users = [ { user: node, password: \"n0de-s3cret\", "
            f"{_node_permissions()} }},\n {{ user: nonote, password: \"n0de-s3cret\", "
            f"{nonote} }},\n {{ user: gw, password: \"gw-s3cret\", "
            f"{_permissions('UGATEWAYACME')} }} ] }}\n")
    bus_key, key = tmp_path / "bus.key", tmp_path / "cluster.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    p = partition_of("acme", 4)
    with nats_server(tmp_path / "nats", auth) as url:
        a = Node(tmp_path, "a", url, key, "0-3", bus_key=bus_key)
        b = Node(tmp_path, "b", url, key, "0", bus_key=bus_key)  # its data dir asks
        for n, user in ((a, "nonote"), (b, "node")):
            with (n.policies / "cluster.toml").open("a") as fh:  # under [security]
                fh.write(f'user = "{user}"\npassword_file = "{tmp_path / "node.password"}"\n')
        settings = load_policies(b.policies).cluster

        async def redelivered() -> int:
            nc = await connect(url, settings.security, name="test")
            try:
                return (await consumer_lag(nc.jetstream(), settings, [p]))[p].redelivered
            finally:
                await nc.close()

        a.launch().wait_up()
        try:
            row = {"v": 1, "op": "ingest", "tenant": "acme", "user_id": "ulla",
                   "request_id": "first", "text": "Move my dentist appointment at "
                   "Larchfield Clinic to Friday.",
                   "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
            with NatsClient(url, timeout=60, bus_keys=load_bus_keys(bus_key),
                            security=ClusterSecurity(user="gw", password_file=str(
                                tmp_path / "gw.password"))) as gateway:
                assert gateway.publish(row)["ok"]
            deadline = time.monotonic() + 120
            while not asyncio.run(redelivered()):  # a took it, and gave it back
                assert time.monotonic() < deadline, "node a never gave the prompt back"
                time.sleep(0.5)
            found = a.lookup("acme", "first")
            out = run_cli("erase", *b.args(), "--all-tenants", "--user", "ulla", "--reason",
                          "DSAR 2026-98", "--wait", "120", "--json", env=b.env)
        finally:
            assert a.stop() == 0
    assert not found.get("ok"), found
    # a never noted its tenants: not complete, and said; acme reached all the same
    assert out.returncode == 7, out.stdout + out.stderr
    done = json.loads(out.stdout)
    assert done["unlisted_nodes"] == [{"node": "a", "partitions": [0, 1, 2, 3]}], done
    assert "or NATS refused its note: see its log's tenants_note_failed" in out.stderr
    assert [(t["tenant"], t["node"], t["tombstone"]) for t in done["tenants"]] == [
        ("acme", "a", True)], done
    assert a.log.read_text().count('"tenants_note_failed"') == 1
    count, texts = users_records(a.data, read_key_file(a.key), "acme", "ulla")
    assert count == 0 and not [t for t in texts if "dentist" in t]
