"""A node's local socket and the tenants of partitions it does not own.

Real nats-server, real `semtrace serve --nats` nodes: a gateway pointed at the socket of a
node that does not own its tenant (by mistake, or the old owner after a move) has its
writes forwarded over NATS to the owner, which stores them in the tenant's conversations;
nothing of them is stored on the node it sent them to. Before, that node stored them
itself: a second copy of the tenant that no read, erasure, export or `forget` of the owner
saw, the user's conversation split over two nodes.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import (
    arrived,
    ingest,
    move_partition,
    sealed_cluster,
    sourdough_on,
    tenant_in,
)
from test_cluster import Node, start_all
from test_cluster_restart import RestartableNats
from test_spine import run_cli

from appliance.client import Client

pytestmark = pytest.mark.slow


def _ask(node: Node, obj: dict[str, Any]) -> dict[str, Any]:
    """The reply of `node`'s own socket."""
    with Client(node.sock, timeout=30) as c:
        return c.request(obj)


def _answered(node: Node, obj: dict[str, Any]) -> dict[str, Any]:
    """The owner's answer to a write sent to `node`'s socket and forwarded: sent again with
    the same request_id while the socket answers `unanswered`, as docs/protocol.md tells a
    client to (a stored one is answered as a duplicate). The socket waits 4 s for the
    owner's answer; an owner just started, or starved of CPU on a loaded host, may take
    longer, and its answer to a later send is the event waited for here, never a time."""
    deadline = time.monotonic() + 120
    while (reply := _ask(node, obj)).get("error", {}).get("code") == "unanswered":
        assert time.monotonic() < deadline, reply
    return reply


def test_a_prompt_on_a_non_owners_socket_is_stored_on_the_owner_in_its_thread(
        tmp_path: Path) -> None:
    tenant, mine = tenant_in(2), tenant_in(0)
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        start_all(a, b)
        with bus.gateway() as gateway:
            first = gateway.request(ingest(tenant, "over-nats",
                                           "How do I bake sourdough bread at home?", 0))
        assert first["ok"], first
        follow = _answered(a, ingest(tenant, "on-a", "How long should the dough rise?", 1))
        # the owner's answer, given by a's socket: b's conversation, continued
        assert follow["ok"], follow
        assert follow["conversation_id"] == first["conversation_id"]
        later = _ask(a, {**ingest(tenant, "async-on-a", "Can I use whole wheat flour?", 2),
                         "mode": "async"})
        assert later["ok"] and later["queued"], later
        assert _answered(a, {"v": 1, "op": "update", "tenant": tenant, "request_id": "on-a",
                             "model": "openai/gpt-4o"})["ok"]
        assert _answered(a, {"v": 1, "op": "feedback", "tenant": tenant, "request_id": "on-a",
                             "rating": 5})["ok"]
        arrived(b, tenant, "async-on-a", "the async prompt sent to a's socket")
        on_b = b.lookup(tenant, "on-a")
        assert on_b["conversation_id"] == first["conversation_id"]
        assert on_b["feedback"] == {"rating": 5}
        # nothing of the tenant on a (a lookup there reads a's own store)
        assert a.records() == 0
        for rid in ("on-a", "async-on-a", "over-nats"):
            assert a.lookup(tenant, rid)["error"]["code"] == "not_found"
        # a's own tenant is stored by a, as before
        assert _ask(a, ingest(mine, "mine", "What is the capital of Australia?", 3))["ok"]
        assert a.records() == 1
        assert b.lookup(mine, "mine")["error"]["code"] == "not_found"
        assert "Traceback" not in a.log.read_text() + b.log.read_text()
        assert "tenants_elsewhere" not in a.log.read_text()  # a holds no other's tenant
        # counted as stored by b only: a's requests metric says forwarded
        counted = urllib.request.urlopen(f"http://127.0.0.1:{a.metrics_port}/metrics",
                                         timeout=10).read().decode()
        assert 'semtrace_requests_total{op="ingest",position="none",status="forwarded"} ' \
            '2.0' in counted
        assert 'semtrace_requests_total{op="ingest",position="none",status="ok"}' \
            not in counted


def _elsewhere(node: Node) -> list[dict[str, Any]]:
    """The node's `tenants_elsewhere` warnings."""
    return [json.loads(x) for x in node.log.read_text().splitlines()
            if '"tenants_elsewhere"' in x]


def test_after_a_move_and_forget_the_old_owners_socket_starts_no_second_copy(
        tmp_path: Path) -> None:
    """The case docs/scale-out.md warned of: the moved tenant's gateway still on the old
    owner's socket after `cluster forget`. Before, a stored the follow-up in a new
    conversation of its own, a copy of the tenant that b's reads and erasures never saw."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        first = sourdough_on(a, bus, moved)
        move_partition(a, b, tmp_path / "p1.semtrace")
        a.own, b.own = "0", "1-3"
        start_all(a, b)
        follow = _answered(a, ingest(moved, "after-forget", "How long should the dough rise?",
                                      2))
        assert follow["ok"], follow
        assert follow["conversation_id"] == first["conversation_id"]  # one conversation
        assert b.lookup(moved, "after-forget")["conversation_id"] == first["conversation_id"]
        assert a.records() == 0  # no second copy
        assert a.lookup(moved, "after-forget")["error"]["code"] == "not_found"
        assert _elsewhere(a) == []


def test_a_node_holding_another_nodes_tenant_says_so_at_start(tmp_path: Path) -> None:
    """A copy no query or erasure of the owner sees (here: a started without the tenant's
    partition, neither exported nor forgotten; or one its socket made before this version
    forwarded): one warning at each start, naming the partition and the way out."""
    moved = tenant_in(1)
    with sealed_cluster(tmp_path) as bus:
        a = bus.node("a", "0-1")
        sourdough_on(a, bus, moved)
        assert _elsewhere(a) == []  # it owned the tenant then
        a.own = "0"
        start_all(a)
        assert a.stop() == 0
    (warned,) = _elsewhere(a)
    assert warned["level"] == "warning" and warned["partitions"] == "1"
    assert warned["msg"] == (
        "This node's store holds conversations of 1 tenant of partition 1, which it "
        "does not own, so other nodes' queries and erasures do not see them: if they were "
        "exported and imported on their owner, remove them here with `semtrace cluster "
        "forget --partitions 1 --yes`; otherwise see \"Two copies of a tenant\" in "
        "docs/scale-out.md.")


def test_with_nats_down_the_socket_refuses_another_nodes_tenant_in_one_sentence(
        tmp_path: Path) -> None:
    tenant, mine = tenant_in(2), tenant_in(0)
    bus_key, key = tmp_path / "bus.key", tmp_path / "cluster.key"
    assert run_cli("cluster", "bus-key", "new", str(bus_key)).returncode == 0
    assert run_cli("init", "--data-dir", str(tmp_path / "seed"), "--new-key-file",
                   str(key)).returncode == 0
    (tmp_path / "nats").mkdir()
    server = RestartableNats(tmp_path / "nats").start()
    a = Node(tmp_path, "a", server.url, key, "0-1", bus_key=bus_key)
    try:
        start_all(a)
        server.stop()
        deadline = time.monotonic() + 30
        while (reply := _ask(a, ingest(tenant, "while-down", "Is the VPN down?", 0))
               )["error"]["code"] != "not_forwarded":  # until a sees the server gone
            assert reply["error"]["code"] == "unanswered", reply
            assert time.monotonic() < deadline, reply
            time.sleep(0.5)
        assert reply == {"request_id": "while-down", "ok": False, "error": {
            "code": "not_forwarded", "message":
            "This tenant's partition (2) is owned by another node, and this node could not "
            "forward the request there over NATS (the NATS server is unreachable; this node "
            "is reconnecting to it); nothing was stored: retry shortly, or send it over NATS "
            "to semtrace.ingest.<tenant>."}}
        assert a.records() == 0
        # its own tenants' prompts it still stores
        assert _ask(a, ingest(mine, "mine", "What is the capital of Australia?", 1))["ok"]
        assert a.records() == 1
        server.start()  # back: forwarded again (no node owns 2, so it stays queued)
        deadline = time.monotonic() + 30
        while (reply := _ask(a, ingest(tenant, "back", "Is the VPN down?", 2))
               )["error"]["code"] == "not_forwarded":
            assert time.monotonic() < deadline, reply
            time.sleep(0.5)
        assert reply["error"]["code"] == "unanswered" and "stays queued" in \
            reply["error"]["message"], reply
        assert server.stored() >= 1
        assert a.records() == 1
        assert a.stop() == 0
        assert "Traceback" not in a.log.read_text()
    finally:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()
        server.stop()


def test_with_the_owner_stopped_the_socket_answers_at_once_and_a_retry_stores_once(
        tmp_path: Path) -> None:
    """b, which owns partition 2, is not running (stopped, restarting): no answer can come.
    Before, a's socket waited 4 s for one, and since it answers a connection's requests in
    order, its own tenant's prompt sent next on the same connection (a proxy's pipelined
    connection, tenants by team) waited as long: a gateway with a 3 s timeout lost it. Now
    the socket sees that no node holds partition 2 and answers `unanswered` (queued) at
    once. The prompt stays on the bus: sent again with the same request_id it is stored
    once, by b when it starts, and answered as a duplicate."""
    other, mine = tenant_in(2), tenant_in(0)
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        start_all(a)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3.0)  # a gateway's timeout
            s.connect(str(a.sock))
            s.sendall(b"".join(json.dumps(x).encode() + b"\n" for x in (
                ingest(other, "theirs", "Is the VPN down again today?", 0),
                ingest(mine, "mine", "What is the capital of Australia?", 1))))
            replies = s.makefile("rb")
            queued, own = json.loads(replies.readline()), json.loads(replies.readline())
        assert own["ok"] and own["request_id"] == "mine", own
        assert queued["error"]["code"] == "unanswered", queued
        assert queued["error"]["message"] == (
            "This tenant's partition (2) is owned by another node, which is not running now "
            "(stopped or restarting: no node holds the partition); this node forwarded the "
            "request there over NATS, where it stays queued and is stored once the owner "
            "takes the partition (send it again with the same request_id for its answer).")
        again = _ask(a, ingest(other, "theirs", "Is the VPN down again today?", 0))
        assert again["error"]["code"] == "unanswered", again  # queued twice now
        start_all(b)
        arrived(b, other, "theirs", "the prompt queued while b was stopped")
        last = _answered(a, ingest(other, "theirs", "Is the VPN down again today?", 0))
        assert last["ok"] and last["duplicate"], last
        assert b.records() == 1  # the three sends stored once
        assert a.records() == 1  # a's own prompt only
        assert "Traceback" not in a.log.read_text() + b.log.read_text()


def test_a_history_and_session_sent_to_a_non_owners_socket_reach_the_owner_intact(
        tmp_path: Path) -> None:
    """The owner links a forwarded prompt by the gateway's history (the strongest signal)
    and keeps its session: a follow-up whose text shares nothing with the first turn joins
    it because its history names that turn, a message given as `content` included (digested
    on the owner as on a socket)."""
    from appliance.ingest import content_digest

    tenant = tenant_in(2)
    first_text = "How do I bake sourdough bread at home?"
    with sealed_cluster(tmp_path) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        start_all(a, b)
        with bus.gateway() as gateway:
            first = gateway.request({**ingest(tenant, "first", first_text, 0),
                                     "session_id": "chat-7"})
        assert first["ok"], first
        follow = _answered(a, {**ingest(tenant, "second", "What is the capital of Australia?",
                                        1), "session_id": "chat-7", "history": [
                              {"role": "user", "sha256": content_digest(first_text)},
                              {"role": "assistant", "content": "Feed the starter, then..."}]})
        assert follow["ok"], follow
        assert follow["link_source"] == "history", follow
        assert follow["conversation_id"] == first["conversation_id"]
        assert follow["parent_request_id"] == "first"
        assert b.lookup(tenant, "second")["conversation_id"] == first["conversation_id"]
        assert a.records() == 0
