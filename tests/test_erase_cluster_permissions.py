"""A cluster erasure works with the NATS permissions docs/scale-out.md gives a node and a
gateway (real nats-server with that authorization; a gateway, a node and the asking command
under it): a prompt stored, the request put, applied by the owner, its answer read and
swept; a user without the bucket's subjects gets one sentence, and `--all-tenants` under
it says what it erased here and which tenants' owners it did not reach."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_cluster import PARTITIONS, Node, nats_server, start_all
from test_erasure_inflight import users_records
from test_spine import run_cli

from appliance.cluster.partition import partition_of

pytestmark = pytest.mark.slow
DOCS = Path(__file__).resolve().parents[1] / "docs" / "scale-out.md"


def _permissions(user: str = "UNODEA") -> str:
    """The `permissions` block docs/scale-out.md gives a node's (or acme's gateway's) user."""
    text = DOCS.read_text()
    block = text[text.index(f"{{ nkey: {user}..., permissions: {{"):]
    block = block[len(f"{{ nkey: {user}..., "):block.index("] } } }") + len("] } }")]
    assert block.startswith("permissions: {") and "publish:" in block and "subscribe:" in block
    return block


def _node_permissions() -> str:
    return _permissions()


def _users_and_keys(tmp_path: Path) -> tuple[Path, str, Path, Path]:
    """The nodes' NATS password file; the server's authorization block with three users,
    `node` (the documented node permissions), `narrow` (those without the erasure bucket's
    subjects) and `gw` (acme's gateway); a new bus key and cluster key."""
    password = tmp_path / "node.password"
    password.write_text("n0de-s3cret\n")
    password.chmod(0o600)
    narrow = _node_permissions().replace('"$KV.semtrace_erasures.>",', "")
    assert narrow != _node_permissions()
    auth = ("authorization { users = [ { user: node, password: \"n0de-s3cret\", "
            f"{_node_permissions()} }},\n {{ user: narrow, password: \"n0de-s3cret\", "
            f"{narrow} }},\n {{ user: gw, password: \"gw-s3cret\", "
            f"{_permissions('UGATEWAYACME')} }} ] }}\n")
    bus = tmp_path / "bus.key"
    assert run_cli("cluster", "bus-key", "new", str(bus)).returncode == 0
    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    return password, auth, bus, key


def test_an_erasure_asked_under_the_documented_node_permissions_is_applied(
        tmp_path: Path) -> None:
    password, auth, bus, key = _users_and_keys(tmp_path)
    with nats_server(tmp_path / "nats", auth) as url:
        a = Node(tmp_path, "a", url, key, f"0-{PARTITIONS - 1}", bus_key=bus)
        b = Node(tmp_path, "b", url, key, "0", bus_key=bus)  # its data dir asks
        for n in (a, b):
            with (n.policies / "cluster.toml").open("a") as fh:  # under [security]
                fh.write(f'user = "node"\npassword_file = "{password}"\n')
        a.launch().wait_up()
        try:
            _ingest_as_acmes_gateway(url, bus, tmp_path)
            # a user without the bucket's subjects: one sentence, nothing asked, no traceback
            cluster_toml = b.policies / "cluster.toml"
            cluster_toml.write_text(cluster_toml.read_text().replace('user = "node"',
                                                                     'user = "narrow"'))
            denied = run_cli("erase", *b.args(), "--tenant", "acme", "--user", "ulla",
                             "--reason", "DSAR 2026-93", "--wait", "5", env=b.env)
            assert denied.returncode == 1, denied.stdout + denied.stderr
            assert denied.stderr.startswith("semtrace: NATS did not take the erasure request "
                                            "for acme (")
            assert "may publish to $KV.semtrace_erasures.> (docs/scale-out.md" in denied.stderr
            assert len(denied.stderr.strip().splitlines()) == 1 and not denied.stdout
            cluster_toml.write_text(cluster_toml.read_text().replace('user = "narrow"',
                                                                     'user = "node"'))
            out = run_cli("erase", *b.args(), "--tenant", "acme", "--user", "ulla", "--reason",
                          "DSAR 2026-93", "--wait", "120", env=b.env)
        finally:
            assert a.stop() == 0
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("Erased 1 record in 1 bucket of u_")
    assert "on node 'a', which owns acme (audited there)" in out.stdout
    assert "Traceback" not in out.stderr + a.log.read_text()
    assert '"erasure_sweep_failed"' not in a.log.read_text()
    assert '"tenants_note_failed"' not in a.log.read_text()  # the tenants bucket too


def _ingest_as_acmes_gateway(url: str, bus: Path, tmp: Path, tenant: str = "acme") -> None:
    """A prompt of ulla in acme (or acme-eu), sent under the gateway permissions the doc
    gives acme's gateway."""
    from datetime import UTC, datetime

    from appliance.cluster.client import NatsClient
    from appliance.config import ClusterSecurity
    from appliance.keys.bus import load_bus_keys

    password = tmp / "gw.password"
    password.write_text("gw-s3cret\n")
    password.chmod(0o600)
    row = {"v": 1, "op": "ingest", "tenant": tenant, "user_id": "ulla",
           "request_id": f"g-{tenant}",
           "text": "Move my dentist appointment at Larchfield Clinic to Friday.",
           "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    with NatsClient(url, timeout=60, bus_keys=load_bus_keys(bus), security=ClusterSecurity(
            user="gw", password_file=str(password))) as gateway:
        assert gateway.request(row)["ok"]


def _audit(node: Node, event: str) -> list[dict[str, Any]]:
    r = run_cli("audit", "log", "--json", "--event", event, *node.args(), env=node.env)
    assert r.returncode == 0, r.stderr
    return [e["details"] for e in json.loads(r.stdout)]


def test_erase_all_tenants_that_nats_does_not_forward_says_what_it_erased_here(
        tmp_path: Path) -> None:
    """acme lives on node b, acme-eu on node a; on b's data dir, under a NATS user that may
    not publish erasure requests, `erase --all-tenants` erases acme on b and says so, says
    in one sentence that acme-eu's owner was not reached and nothing was erased there, and
    exits 1; both are in b's audit log, and a keeps the user's record."""
    from appliance.keys import read_key_file

    assert partition_of("acme", PARTITIONS) >= 2 > partition_of("acme-eu", PARTITIONS)
    password, auth, bus, key = _users_and_keys(tmp_path)
    with nats_server(tmp_path / "nats", auth) as url:
        a = Node(tmp_path, "a", url, key, "0-1", bus_key=bus)
        b = Node(tmp_path, "b", url, key, f"2-{PARTITIONS - 1}", bus_key=bus)
        for n in (a, b):
            with (n.policies / "cluster.toml").open("a") as fh:  # under [security]
                fh.write(f'user = "node"\npassword_file = "{password}"\n')
        start_all(a, b)
        try:
            for tenant in ("acme", "acme-eu"):
                _ingest_as_acmes_gateway(url, bus, tmp_path, tenant)
            assert b.stop() == 0  # its data dir asks, under a user without the bucket
            cluster_toml = b.policies / "cluster.toml"
            cluster_toml.write_text(cluster_toml.read_text().replace('user = "node"',
                                                                     'user = "narrow"'))
            with (b.policies / "access.toml").open("a") as fh:
                fh.write('\n[roles.dpo]\npermissions = ["erase"]\n'
                         'tenants = ["acme", "acme-eu"]\n')
            erase = ["erase", *b.args(), "--all-tenants", "--user", "ulla", "--role", "dpo",
                     "--reason", "DSAR 2026-94", "--wait", "5"]
            out = run_cli(*erase, env=b.env)
            again = run_cli(*erase, "--json", env=b.env)
        finally:
            assert a.stop() == 0
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    said = out.stdout.splitlines()
    assert said[0].startswith("acme: erased 1 record in 1 bucket of u_")
    assert said[0].endswith(" on node 'b'.")
    assert said[1].startswith("acme-eu: NATS did not take the erasure request for acme-eu (")
    assert ("may publish to $KV.semtrace_erasures.> (docs/scale-out.md, Security on the bus); "
            "the request did not reach node 'a', which owns acme-eu, and nothing was erased "
            "there (this node's audit log records the attempt; run this command again when "
            "NATS takes it).") in said[1]
    assert said[2] == ("Searched 1 tenant the role sees: erased 1 record in 1 of them; 1 "
                       "more NOT (yet) erased by its owner: acme-eu (see above).")
    assert again.returncode == 1, again.stdout + again.stderr
    done = json.loads(again.stdout)
    assert [(t["tenant"], t["node"]) for t in done["tenants"]] == [("acme", "b")]
    assert done["complete"] is False and done["pending"] == []
    (missed,) = done["not_sent"]
    assert missed["tenant"] == "acme-eu" and missed["node"] == "a" and missed["sent"] is False
    assert missed["error"].startswith("NATS did not take the erasure request for acme-eu (")
    assert [(e["tenant"], e["records"]) for e in _audit(b, "erase")] == [
        ("acme", 1), ("acme", 0)]
    forwarded = _audit(b, "erase_forwarded")
    assert [(e["tenant"], e["outcome"], e["node"]) for e in forwarded] == [
        ("acme-eu", "not_sent", "a")] * 2
    assert forwarded[0]["error"] == missed["error"]
    assert users_records(a.data, read_key_file(a.key), "acme-eu", "ulla")[0] > 0
    assert users_records(b.data, read_key_file(b.key), "acme", "ulla")[0] == 0
