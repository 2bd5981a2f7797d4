"""`semtrace erase` run on a node that does not own the tenant reaches the owner: with a real
nats-server and two nodes, the owner applies the erasure (shreds, tombstone, its own signed
audit entry), a prompt of the user queued in JetStream before the erasure is refused when
the owner consumes it, and the command says on which node it was applied, or that it is
pending while the owner is down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import running_pair
from test_cluster import PARTITIONS, Enriched, Node, nats_server
from test_erasure_inflight import users_records
from test_spine import run_cli

from appliance.cluster.bus import NO_SERVER_REMEDY
from appliance.cluster.partition import partition_of
from appliance.keys.bus import BusKeys

pytestmark = pytest.mark.slow

# a tenant of node a's partitions (0-1)
TENANT = next(t for t in (f"firm{i}" for i in range(100)) if partition_of(t, PARTITIONS) < 2)
STORED = ["Send the tenancy deposit receipt to my landlord on Elmsworth Road.",
          "When does the deposit protection scheme have to refund me?"]
QUEUED = "Remind me to call the deposit scheme about the Elmsworth flat."


def _row(user: str, rid: str, text: str) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": TENANT, "user_id": user, "request_id": rid,
            "text": text, "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, BusKeys]]:
    with running_pair(tmp_path_factory.mktemp("erase-two")) as pair:
        yield pair


def _lag(node: Node) -> int:
    r = run_cli("cluster", "status", "--nats", node.url, "--tenant", TENANT, "--json",
                env=node.env)
    assert r.returncode == 0, r.stderr
    return int(json.loads(r.stdout)[0]["lag"])


def _erase(node: Node, user: str, *extra: str) -> list[str]:
    return ["erase", *node.args(), "--tenant", TENANT, "--user", user, "--reason",
            "DSAR 2026-77", *extra]


def _audit(node: Node, event: str) -> list[dict[str, Any]]:
    r = run_cli("audit", "log", "--json", "--event", event, *node.args(), env=node.env)
    assert r.returncode == 0, r.stderr
    return [e["details"] for e in json.loads(r.stdout)]


def test_erase_on_a_node_that_does_not_own_the_tenant_is_applied_by_the_owner(
        two: tuple[Node, Node, BusKeys], tmp_path: Path) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys import read_key_file

    a, b, keys = two
    with NatsClient(a.url, timeout=60, bus_keys=keys) as gateway:
        for i, text in enumerate(STORED):
            assert gateway.request(_row("ulla", f"s-{i}", text))["ok"]
        assert gateway.request(_row("vic", "v-0", "Plan a sprint review agenda."))["ok"]
    assert a.stop() == 0
    with NatsClient(a.url, timeout=30, bus_keys=keys) as gateway:  # a is down: they queue
        gateway.publish(_row("ulla", "q-0", QUEUED))
        gateway.publish(_row("vic", "v-1", "Add a retrospective to the agenda."))
    deadline = time.monotonic() + 30
    while _lag(a) < 2:
        assert time.monotonic() < deadline, "the prompts did not queue"
        time.sleep(0.2)

    # the owner is down: the command says the erasure is pending there, and how it completes
    pending = run_cli(*_erase(b, "ulla", "--wait", "1"), env=b.env)
    assert pending.returncode == 8, pending.stdout + pending.stderr
    assert "is pending: node 'a', which owns the tenant, is not running" in pending.stdout
    assert "Traceback" not in pending.stderr

    # asked again while the owner starts: the owner applies it before consuming, and answers
    err = tmp_path / "erase.err"
    with err.open("wb") as fh:
        erase = subprocess.Popen([sys.executable, "-m", "appliance", *_erase(b, "ulla",
                                                                              "--wait", "300")],
                                 env=b.env, stdout=subprocess.PIPE, stderr=fh)
    deadline = time.monotonic() + 60
    while "Waiting up to 300 s for node 'a'" not in err.read_text():
        assert erase.poll() is None, err.read_text()
        assert time.monotonic() < deadline, "erase did not send its request"
        time.sleep(0.1)
    with Enriched(a.url, keys) as enriched:
        a.launch().wait_up()
        out, _ = erase.communicate(timeout=300)
        deadline = time.monotonic() + 120
        while not {"q-0", "v-1"} <= {r.get("request_id") for r in list(enriched.replies)}:
            assert time.monotonic() < deadline, "the queued prompts were not answered"
            time.sleep(0.2)
        answers = {r["request_id"]: r for r in enriched.replies}
    said = out.decode()
    assert erase.returncode == 0, said + err.read_text()
    assert said.startswith("Erased 2 records in 1 bucket of u_")
    assert f"on node 'a', which owns {TENANT} (audited there)" in said
    assert answers["q-0"]["ok"] is False and answers["q-0"]["error"]["code"] == "erased"
    assert answers["v-1"]["ok"] is True

    assert a.stop() == 0
    n, texts = users_records(a.data, read_key_file(a.key), TENANT, "ulla")
    assert n == 0
    assert not [t for t in texts if "deposit" in t or "Elmsworth" in t]
    assert sum("agenda" in t for t in texts) == 2  # vic's, the queued one too
    (entry,) = [e for e in _audit(a, "erase") if e["records"]]
    assert entry["tenant"] == TENANT and entry["requested_on"] == "b"
    assert [e["outcome"] for e in _audit(b, "erase_forwarded")] == ["pending", "applied"]
    assert not _audit(b, "erase")  # nothing was erased on b, and b does not say so
    assert '"erasure_applied"' in a.log.read_text() and "Traceback" not in a.log.read_text()
    assert entry["reason"] == "DSAR 2026-77"  # the owner's audit has it, NATS never in clear
    js = a.data.parent / "nats" / "js"
    assert [p for p in js.rglob("*") if p.is_file() and b"DSAR 2026-77" in p.read_bytes()] == []
    # the answer read, the request left NATS's disk: its pseudonym, the superseded pending one
    assert [p for p in js.rglob("*") if p.is_file() and entry["user"].encode() in p.read_bytes()
            ] == []


def test_erase_that_cannot_reach_the_owner_is_refused_in_one_sentence(tmp_path: Path) -> None:
    from test_cluster import _free_port

    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    bus = tmp_path / "bus.key"
    assert run_cli("cluster", "bus-key", "new", str(bus)).returncode == 0
    b = Node(tmp_path, "b", f"nats://127.0.0.1:{_free_port()}", key, "2-3", bus_key=bus)
    before = _audit(b, "erase")
    out = run_cli(*_erase(b, "ulla"), env=b.env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.startswith(f"semtrace: No NATS server answers at {b.url} "
                                 f"({NO_SERVER_REMEDY}), so this "
                                 f"erasure cannot reach the node that owns {TENANT}")
    assert "nothing was erased" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr and not out.stdout
    assert _audit(b, "erase") == before == [] and not _audit(b, "erase_forwarded")


def test_erase_all_tenants_on_one_node_reaches_the_owner_of_each_tenant(
        two: tuple[Node, Node, BusKeys]) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys import read_key_file

    a, b, keys = two
    here = next(t for t in (f"shop{i}" for i in range(100)) if partition_of(t, PARTITIONS) >= 2)
    with (b.policies / "access.toml").open("a") as fh:  # the tenants the policies name
        fh.write(f'\n[roles.dpo]\npermissions = ["erase"]\ntenants = ["{TENANT}", "{here}"]\n')
    if a.proc is None or a.proc.poll() is not None:
        a.launch().wait_up()
    with NatsClient(a.url, timeout=60, bus_keys=keys) as gateway:
        assert gateway.request(_row("wanda", "w-0", "Cancel my gym membership at Ravelston."))[
            "ok"]
        assert gateway.request({**_row("wanda", "w-1", "Cancel my Ravelston parking permit."),
                                "tenant": here})["ok"]
    out = run_cli("erase", *b.args(), "--all-tenants", "--user", "wanda", "--role", "dpo",
                  "--reason", "DSAR 2026-78", "--json", env=b.env)
    assert out.returncode == 0, out.stdout + out.stderr
    done = json.loads(out.stdout)
    assert {(t["tenant"], t["records"], t["node"]) for t in done["tenants"]} == {
        (TENANT, 1, "a"), (here, 1, "b")}
    assert done["complete"] is True and done["pending"] == []
    for n in (a, b):
        assert n.stop() == 0
    for n, tenant in ((a, TENANT), (b, here)):
        count, texts = users_records(n.data, read_key_file(n.key), tenant, "wanda")
        assert count == 0 and not [t for t in texts if "membership" in t or "parking" in t]


def test_an_erasure_request_without_the_clusters_tag_or_applied_before_changes_nothing(
        tmp_path: Path) -> None:
    """Anyone who may write to NATS could put a request into the bucket: the owner applies
    only one tagged under the cluster's pseudonym key, and each request once."""
    import dataclasses
    import time as clock
    from types import SimpleNamespace

    from conftest import init_store

    from appliance.audit import AuditLog
    from appliance.cluster.erasures import ErasureRequest
    from appliance.erasure import erase_requested
    from appliance.keys import read_passphrase_file
    from appliance.keys.keyring import Keyring
    from appliance.retention import Shredder
    from appliance.runtime import open_runtime

    _, pw, _ = init_store(tmp_path)
    rt = open_runtime(tmp_path / "data", read_passphrase_file(pw))
    try:
        shredder = Shredder(rt.store, AuditLog(rt.store.db, rt.keyring.audit_signer(),
                                               anchor=rt.store.keys_db))
        service = SimpleNamespace(policies=rt.policies)
        user = rt.keyring.pseudonym(TENANT, "ulla")
        reason = rt.keyring.seal_for_cluster(b"DSAR 9", f"{TENANT}.{user}".encode())
        plain = ErasureRequest(TENANT, user, reason, "r1", "b", clock.time(),
                               rt.keyring.pseudonym_id())
        stranger = Keyring.random().erasure_tag(plain.signed())
        for forged in (plain, dataclasses.replace(plain, tag=stranger),
                       dataclasses.replace(plain, tag=rt.keyring.erasure_tag(plain.signed()),
                                           reason=rt.keyring.seal_for_cluster(
                                               b"DSAR 10", f"{TENANT}.{user}".encode()))):
            said = erase_requested(shredder, service, rt.keyring, forged)
            assert said == ("The erasure request does not carry the tag of a node of this "
                            "cluster; nothing was erased.")
        assert rt.store.tombstone(TENANT, user) is None
        assert not [e for e in shredder.audit.entries() if e.event == "erase"]
        signed = dataclasses.replace(plain, tag=rt.keyring.erasure_tag(plain.signed()))
        report = erase_requested(shredder, service, rt.keyring, signed)
        assert not isinstance(report, str) and report.completed_at is not None
        assert rt.store.tombstone(TENANT, user) is not None
        again = erase_requested(shredder, service, rt.keyring, signed)  # put back in NATS
        assert not isinstance(again, str) and again.completed_at is None
        (entry,) = [e for e in shredder.audit.entries() if e.event == "erase"]
        assert entry.details["requested_on"] == "b" and entry.details["user"] == user
        assert entry.details["reason"] == "DSAR 9" and "DSAR" not in plain.reason
        # a reason sealed for another key (or not sealed) is refused, nothing erased
        other = dataclasses.replace(plain, request_id="r2", reason=Keyring.random(
            ).seal_for_cluster(b"DSAR 11", f"{TENANT}.{user}".encode()))
        other = dataclasses.replace(other, tag=rt.keyring.erasure_tag(other.signed()))
        assert erase_requested(shredder, service, rt.keyring, other) == (
            "The erasure request's reason cannot be read with this node's key; nothing was "
            "erased.")
        assert len([e for e in shredder.audit.entries() if e.event == "erase"]) == 1
    finally:
        rt.close()


def test_erase_on_a_node_that_lost_the_tenant_erases_the_new_owner_and_its_own_copy(
        two: tuple[Node, Node, BusKeys]) -> None:
    """a owned the tenant, stopped, and b took its partitions over: the user's old records
    are still on a (its copy, not yet forgotten), the newer ones on b. `erase` on a's data
    dir erases both and says so."""
    from appliance.cluster.client import NatsClient
    from appliance.keys import read_key_file

    a, b, keys = two
    for n in (a, b):
        if n.proc is not None and n.proc.poll() is None:
            assert n.stop() == 0
    a.launch().wait_up()
    with NatsClient(a.url, timeout=60, bus_keys=keys) as gateway:
        assert gateway.request(_row("olga", "o-0", "Renew my allotment lease plot 14."))["ok"]
    assert a.stop() == 0
    b.own = f"0-{PARTITIONS - 1}"  # b takes a's partitions over
    b.launch().wait_up()
    with NatsClient(b.url, timeout=60, bus_keys=keys) as gateway:
        assert gateway.request(_row("olga", "o-1", "Is the allotment lease renewal due?"))["ok"]
    out = run_cli(*_erase(a, "olga", "--wait", "120"), env=a.env)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Erased 1 record in 1 bucket of u_")
    assert f"on node 'b', which owns {TENANT} (audited there)" in lines[0]
    assert lines[1].startswith(f"{TENANT}: also erased 1 record in 1 bucket of u_")
    assert "on this node ('a'), a copy of the tenant from before its partition moved" in lines[1]
    assert b.stop() == 0
    for n in (a, b):
        count, texts = users_records(n.data, read_key_file(n.key), TENANT, "olga")
        assert count == 0 and not [t for t in texts if "allotment" in t]


def test_erase_on_a_nats_server_without_jetstream_is_refused_in_one_sentence(
        tmp_path: Path) -> None:
    """A nats-server without JetStream answers no JetStream request: `erase` cannot learn
    where the tenant lives, refuses in one sentence and erases nothing."""
    key = tmp_path / "cluster.key"
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    with nats_server(tmp_path / "nats", jetstream=False) as url:
        b = Node(tmp_path, "b", url, key, "2-3", bus_key=None)
        out = run_cli(*_erase(b, "ulla"), env=b.env)
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr.startswith(f"semtrace: NATS at {b.url} did not answer its JetStream API (")
    assert (f"is JetStream enabled there, and may this node's NATS user publish to $JS.API.>?), "
            f"so this erasure cannot reach the node that owns {TENANT}") in out.stderr
    assert "nothing was erased" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr and not out.stdout
    assert _audit(b, "erase") == [] and not _audit(b, "erase_forwarded")
