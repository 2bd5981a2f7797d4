"""Payloads sealed on the bus: a real nats-server whose JetStream store is read byte by byte.

One node (`semtrace serve --nats`) with a bus key file of two keys owns every
partition. Before it starts, a gateway with the bus key publishes a prompt
holding an e-mail address, and a client without the key publishes another in
plain text: both wait in JetStream's file store, which is then read.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import NatsTap
from exposition_check import check_text
from test_cluster import PARTITIONS, TODAY, Node, _free_port, _nats_binary
from test_spine import run_cli

pytestmark = pytest.mark.slow
CANARY = "jane.canary@example.com"
PLAIN = "bob.plain@example.org"
USER = "user-canary-7731"
SESSION = "sess-sealed-1"


def store_bytes(store: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file())


class Listener(NatsTap):
    """Raw payloads published on a subject while it runs (its own loop thread)."""

    def __init__(self, url: str, subject: str) -> None:
        super().__init__(url, subject)
        self.payloads: list[tuple[str, bytes]] = []
        self.open()

    def on_message(self, msg: Any) -> None:
        self.payloads.append((msg.subject, msg.data))

    def wait(self, count: int, timeout: float = 240) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.payloads) < count:
            assert time.monotonic() < deadline, f"{len(self.payloads)} of {count} answers"
            time.sleep(0.2)
        return list(self.payloads)


async def raw_request(url: str, subject: str, payload: bytes) -> bytes:
    """A request from a client that is not a Semtrace gateway."""
    import nats

    nc = await nats.connect(url)
    try:
        msg = await nc.request(subject, payload, timeout=120)
        return bytes(msg.data)
    finally:
        await nc.close()


@dataclass
class Sealed:
    url: str
    node: Node
    key: Path  # the nodes' file: key 1 seals, key 2 opens
    gateway_key: Path  # a gateway already rolled to key 2 alone
    other_key: Path  # a key the cluster never had
    stored: bytes = field(repr=False)  # JetStream's store while the two prompts waited in it
    enriched: list[tuple[str, bytes]] = field(repr=False)  # what the node published once it started


def ingest(tenant: str, rid: str, text: str, minute: int, *,
           user: str = "ana", session: str = SESSION) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": tenant, "request_id": rid, "user_id": user,
            "session_id": session, "text": text,
            "ts": (TODAY.replace(hour=9, minute=minute)).strftime("%Y-%m-%dT%H:%M:%SZ")}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sealed]:
    binary = _nats_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    import subprocess

    from appliance.cluster.client import NatsClient
    from appliance.cluster.partition import server_mappings
    from appliance.cluster.stream import ensure_stream
    from appliance.config import ClusterSettings, load_policies
    from appliance.keys.bus import load_bus_keys

    tmp = tmp_path_factory.mktemp("sealed")
    store = tmp / "js"
    port = _free_port()
    conf = tmp / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: {store} }}\n"
                    + server_mappings(PARTITIONS))
    server = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=(tmp / "nats.log").open("wb"))
    url = f"nats://127.0.0.1:{port}"
    key, gateway_key, other_key = tmp / "bus.key", tmp / "gateway.key", tmp / "other.key"
    for args in (("new", key), ("add", key), ("new", other_key)):
        assert run_cli("cluster", "bus-key", args[0], str(args[1])).returncode == 0
    gateway_key.write_bytes(key.read_bytes())
    gateway_key.chmod(0o600)
    second = load_bus_keys(key).ids()[1]
    for args in (("use", second), ("drop", load_bus_keys(key).ids()[0])):
        r = run_cli("cluster", "bus-key", args[0], str(gateway_key), args[1])
        assert r.returncode == 0, r.stderr
    assert load_bus_keys(gateway_key).ids() == [second]

    async def make_stream() -> None:
        import nats

        for _ in range(100):
            try:
                nc = await nats.connect(url)
                break
            except Exception:
                await asyncio.sleep(0.2)
        settings = ClusterSettings(url=url, partitions=PARTITIONS)
        await ensure_stream(nc.jetstream(), settings,
                            max_msg_size=load_policies().service.max_frame_bytes)
        await nc.publish("semtrace.ingest.t1", json.dumps(ingest(
            "t1", "plain-1", f"Forward the invoice to {PLAIN} today.", 1,
            session="sess-plain")).encode())
        await nc.flush()
        await nc.close()

    asyncio.run(make_stream())  # no node yet: the prompts wait in the store
    with NatsClient(url, timeout=60, bus_keys=load_bus_keys(key)) as gateway:
        canary = ingest("t3", "canary-1", f"Please email the quarterly report to {CANARY} "
                        "before Friday.", 2, user=USER)
        # minutes before the decorator's follow-up below, which is stamped when it runs: a
        # canary from yesterday morning put a gap of 15-39 h, by the time of day, between them
        canary["ts"] = (datetime.now(UTC) - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert gateway.publish(canary)["queued"] is True
    deadline = time.monotonic() + 30
    while PLAIN.encode() not in store_bytes(store):  # written through to the file store
        assert time.monotonic() < deadline, "JetStream never wrote the plain prompt"
        time.sleep(0.2)
    stored = store_bytes(store)
    listener = Listener(url, "semtrace.enriched.>")
    assert run_cli("init", "--data-dir", str(tmp / "seed"), "--new-key-file",
                   str(tmp / "cluster.key")).returncode == 0
    node = Node(tmp, "n", url, tmp / "cluster.key", f"0-{PARTITIONS - 1}", bus_key=key)
    node.launch().wait_up()
    enriched = listener.wait(2)
    listener.close()
    yield Sealed(url, node, key, gateway_key, other_key, stored, enriched)
    if node.proc is not None and node.proc.poll() is None:
        node.stop()
    server.terminate()
    server.wait(timeout=30)


def test_a_sealed_prompt_never_reaches_jetstreams_disk_and_is_still_threaded(
        sealed: Sealed) -> None:
    from appliance.cluster.client import open_reply
    from appliance.errors import SemtraceError
    from appliance.integrations.decorator import Semtrace
    from appliance.keys.bus import load_bus_keys

    assert PLAIN.encode() in sealed.stored  # the store was read while the prompts were in it
    assert CANARY.encode() not in sealed.stored and b"quarterly" not in sealed.stored
    assert USER.encode() not in sealed.stored and SESSION.encode() not in sealed.stored
    answers = {subject: data for subject, data in sealed.enriched}
    canary = open_reply(answers["semtrace.enriched.t3"], "t3", load_bus_keys(sealed.key))
    assert canary["ok"] and canary["request_id"] == "canary-1" and canary["conversation_id"]
    with pytest.raises(SemtraceError, match="sealed with a bus key"):  # and sealed on the way back
        open_reply(answers["semtrace.enriched.t3"], "t3", None)
    # the prompt sent in plain text by a client without the key: refused, nothing stored
    plain = json.loads(answers["semtrace.enriched.t1"])
    assert plain["ok"] is False and plain["error"]["code"] == "bad_request"
    assert "bus key" in plain["error"]["message"]
    assert sealed.node.lookup("t1", "plain-1")["error"]["code"] == "not_found"
    # a gateway through the decorator: its follow-up joins the canary's conversation
    gateway = Semtrace(sealed.url, tenant="t3", timeout=120, bus_key_file=sealed.key)
    with gateway.turn(user_id=USER, text="Also add the sales figures to that report.",
                      session_id=SESSION) as turn:
        pass
    gateway.close()
    assert turn.reply is not None and turn.reply["ok"], turn.reply
    assert turn.conversation_id == canary["conversation_id"]
    assert sealed.node.lookup("t3", "canary-1")["conversation_id"] == canary["conversation_id"]
    log = sealed.node.log.read_text()
    assert CANARY not in log and PLAIN not in log and "Traceback" not in log
    assert '"bus_refused"' in log and '"plain_bus"' not in log  # sealed: no plain warning


def test_a_message_sealed_for_one_tenant_is_refused_on_another_tenants_subject(
        sealed: Sealed) -> None:
    from appliance.cluster.client import NatsClient, sealed_request
    from appliance.keys.bus import load_bus_keys

    keys = load_bus_keys(sealed.key)
    before = sealed.node.records()
    row = ingest("t2", "replay-1", "Move the meeting with the auditors to Monday.", 5)
    _, for_t2 = sealed_request(row, keys)
    replayed = json.loads(asyncio.run(raw_request(sealed.url, "semtrace.ingest.t4", for_t2)))
    assert replayed["ok"] is False and replayed["error"]["code"] == "bad_request"
    assert "another tenant" in replayed["error"]["message"]
    altered = for_t2[:-1] + bytes([for_t2[-1] ^ 1])
    tampered = json.loads(asyncio.run(raw_request(sealed.url, "semtrace.ingest.t2", altered)))
    assert tampered["ok"] is False and "does not open" in tampered["error"]["message"]
    _, foreign = sealed_request(row, load_bus_keys(sealed.other_key))
    stranger = json.loads(asyncio.run(raw_request(sealed.url, "semtrace.ingest.t2", foreign)))
    assert stranger["ok"] is False and "not in this node's bus key file" in \
        stranger["error"]["message"]
    # a gateway without the key (it had to opt out explicitly to publish in plain text)
    with NatsClient(sealed.url, timeout=120, plain_bus=True) as keyless:
        refused = keyless.request({**row, "request_id": "keyless-1"})
    assert refused["ok"] is False and "sealed with the cluster's bus key" in \
        refused["error"]["message"]
    assert sealed.node.records() == before  # nothing of the four was stored
    for tenant in ("t2", "t4"):
        for rid in ("replay-1", "keyless-1"):
            assert sealed.node.lookup(tenant, rid)["error"]["code"] == "not_found"
    assert "auditors" not in sealed.node.log.read_text()


def test_a_prompt_published_straight_to_another_partition_than_its_tenants_is_refused(
        sealed: Sealed) -> None:
    """A client allowed `semtrace.part.*.<tenant>` (the documented gateway permission, which
    nats-server 2.9 needs for its mapping) could publish a tenant's prompt on another
    partition's subject: the node owning that partition stored it, and the tenant's owner,
    where its threads, reads and erasures go, never saw it."""
    from appliance.cluster.client import open_reply, sealed_request
    from appliance.cluster.partition import partition_of
    from appliance.keys.bus import load_bus_keys

    keys = load_bus_keys(sealed.key)
    before = sealed.node.records()
    wrong = (partition_of("t2", PARTITIONS) + 1) % PARTITIONS
    row = ingest("t2", "astray-1", "Move the meeting with the auditors to Tuesday.", 6)
    _, frame = sealed_request(row, keys)
    reply = open_reply(asyncio.run(raw_request(sealed.url, f"semtrace.part.{wrong}.t2", frame)),
                       "t2", keys)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert reply["error"]["message"] == (
        f"The message was published to partition {wrong}, not to its tenant's; publish to "
        "semtrace.ingest.<tenant>.")
    assert sealed.node.records() == before
    assert sealed.node.lookup("t2", "astray-1")["error"]["code"] == "not_found"
    right = open_reply(asyncio.run(raw_request(
        sealed.url, f"semtrace.part.{partition_of('t2', PARTITIONS)}.t2",
        sealed_request({**row, "request_id": "astray-2"}, keys)[1])), "t2", keys)
    assert right["ok"] is True, right
    assert sealed.node.records() == before + 1


def test_a_gateway_rolled_to_the_next_bus_key_is_served_while_nodes_hold_both(
        sealed: Sealed) -> None:
    from appliance.integrations.decorator import Semtrace

    rolled = Semtrace(sealed.url, tenant="t5", timeout=120, bus_key_file=sealed.gateway_key)
    with rolled.turn(user_id="ana", text="Which trains run to Lyon tonight?",
                     session_id="sess-rolled") as turn:
        pass
    rolled.close()
    assert turn.reply is not None and turn.reply["ok"], turn.reply  # its answer opened too
    assert turn.conversation_id
    assert sealed.node.lookup("t5", turn.request["request_id"])["ok"]


def test_a_node_whose_bus_key_file_others_can_read_does_not_start(sealed: Sealed,
                                                                   tmp_path: Path) -> None:
    loose = tmp_path / "bus.key"
    loose.write_bytes(sealed.key.read_bytes())
    loose.chmod(0o644)
    node = Node(tmp_path, "loose", sealed.url, sealed.node.key, "0", bus_key=loose)
    node.launch()
    assert node.proc is not None and node.proc.wait(timeout=240) != 0
    log = node.log.read_text()
    assert f"The NATS bus key file {loose} must be readable by its owner only (chmod 600)." in log
    assert "Traceback" not in log and loose.read_text().split()[-1] not in log


def test_a_node_moving_to_sealing_takes_plain_and_sealed_and_counts_the_plain(
        sealed: Sealed) -> None:
    # Last in the module: the node restarts with accept_plain = true next to its bus key,
    # as every node does while the gateways are given the key one by one.
    import urllib.request

    from appliance.cluster.client import NatsClient, sealed_request
    from appliance.integrations.decorator import Semtrace
    from appliance.keys.bus import load_bus_keys

    node = sealed.node
    assert node.stop() == 0
    toml = node.policies / "cluster.toml"
    toml.write_text(toml.read_text() + "accept_plain = true\n")
    node.launch().wait_up()
    with NatsClient(sealed.url, timeout=120, plain_bus=True) as old_gateway:
        plain = old_gateway.request(ingest("t6", "moving-1", "Book a room in Porto for two "
                                           "nights.", 20, user="rui", session="sess-old"))
    assert plain["ok"] and plain["conversation_id"], plain
    new_gateway = Semtrace(sealed.url, tenant="t6", timeout=120, bus_key_file=sealed.key)
    with new_gateway.turn(user_id="rui", text="Make it three nights instead.",
                          session_id="sess-old") as turn:
        pass
    new_gateway.close()
    assert turn.reply is not None and turn.reply["ok"], turn.reply
    assert turn.conversation_id == plain["conversation_id"]  # one conversation across the move
    _, payload = sealed_request(ingest("t6", "moving-2", "Add breakfast.", 22),
                                load_bus_keys(sealed.key))
    altered = payload[:-1] + bytes([payload[-1] ^ 1])
    tampered = json.loads(asyncio.run(raw_request(sealed.url, "semtrace.ingest.t6", altered)))
    assert tampered["ok"] is False and "does not open" in tampered["error"]["message"]
    assert node.lookup("t6", "moving-2")["error"]["code"] == "not_found"
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics",
                                     timeout=30).read().decode()
    assert 'semtrace_cluster_messages_total{node="n",outcome="plain"} 1.0' in metrics
    check_text(metrics)  # as Prometheus reads it
    log = node.log.read_text()
    assert '"event": "accept_plain"' in log and "Porto" not in log and "Traceback" not in log
