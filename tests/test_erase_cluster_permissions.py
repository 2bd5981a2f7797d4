"""A cluster erasure works with the NATS permissions docs/scale-out.md gives a node and a
gateway (real nats-server with that authorization; a gateway, a node and the asking command
under it): a prompt stored, the request put, applied by the owner, its answer read and
swept; a user without the bucket's subjects gets one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_cluster import PARTITIONS, Node, nats_server
from test_spine import run_cli

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


def test_an_erasure_asked_under_the_documented_node_permissions_is_applied(
        tmp_path: Path) -> None:
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
    assert out.stdout.startswith("Erased 1 record(s) in 1 bucket(s) of u_")
    assert "on node 'a', which owns acme (audited there)" in out.stdout
    assert "Traceback" not in out.stderr + a.log.read_text()
    assert '"erasure_sweep_failed"' not in a.log.read_text()
    assert '"tenants_note_failed"' not in a.log.read_text()  # the tenants bucket too


def _ingest_as_acmes_gateway(url: str, bus: Path, tmp: Path) -> None:
    """A prompt of ulla in acme, sent under the gateway permissions the doc gives acme."""
    from datetime import UTC, datetime

    from appliance.cluster.client import NatsClient
    from appliance.config import ClusterSecurity
    from appliance.keys.bus import load_bus_keys

    password = tmp / "gw.password"
    password.write_text("gw-s3cret\n")
    password.chmod(0o600)
    row = {"v": 1, "op": "ingest", "tenant": "acme", "user_id": "ulla", "request_id": "g-0",
           "text": "Move my dentist appointment at Larchfield Clinic to Friday.",
           "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    with NatsClient(url, timeout=60, bus_keys=load_bus_keys(bus), security=ClusterSecurity(
            user="gw", password_file=str(password))) as gateway:
        assert gateway.request(row)["ok"]
