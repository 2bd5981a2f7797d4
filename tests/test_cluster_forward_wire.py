"""What a node's socket puts on the bus when it forwards another node's tenant's request.

Real nats-server, real `semtrace serve --nats` nodes a (partitions 0-1) and b (2-3), the
bus sealed; a tap on `semtrace.part.>` opens what crosses the bus with the bus key, as a
node does. Each test compares the forwarding socket (a's) with what a single host answers:
the owner's own socket (b's) given the same requests for another tenant of its own.

- An over-long prompt is cut on the node it arrives at, as a single host cuts it: before,
  it crossed the bus whole (JetStream keeps it on disk) and was cut by the owner, and one
  near `max_frame_bytes` was refused `not_forwarded` (too large once sealed) where a single
  host stores its start.
- A connection's requests of one partition go onto the bus in the order they came: before,
  an async ingest pipelined after a sync one went first (the sync one read its partition's
  claim from NATS first), so the owner stored the later prompt first and its history named
  a turn not stored yet.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from cluster_nodes import Bus, arrived, ingest, sealed_cluster
from conftest import NatsTap
from test_cluster import PARTITIONS, Node, start_all

from appliance.cluster.partition import partition_of
from appliance.ingest import content_digest
from appliance.keys.bus import ingest_aad, load_bus_keys

pytestmark = pytest.mark.slow
MAX_FRAME = 262144  # policies/service.toml's max_frame_bytes
MAX_TEXT = 32768  # policies/correlation.toml's max_text_chars
COMPARED = ("ok", "mode", "truncated", "position", "link_source", "duplicate")


def tenants_in(partition: int, count: int) -> list[str]:
    """`count` tenant names (w0, w1, ...) of this partition."""
    names = (f"w{i}" for i in range(1000))
    return [t for t in names if partition_of(t, PARTITIONS) == partition][:count]


class Tap(NatsTap):
    """Every request crossing the bus to a partition (`semtrace.part.<k>.<tenant>`), in
    the order the server passed them on, opened with the bus key: (payload bytes,
    request)."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus.url, "semtrace.part.>")
        self.keys = load_bus_keys(bus.bus_key)
        self.seen: list[tuple[int, dict[str, Any]]] = []

    def on_message(self, msg: Any) -> None:
        tenant = msg.subject.rsplit(".", 1)[1]
        plain, _ = self.keys.open(msg.data, ingest_aad(tenant))
        self.seen.append((len(msg.data), json.loads(plain)))

    def of(self, tenant: str) -> list[tuple[int, dict[str, Any]]]:
        """What crossed for `tenant` so far (flushed: the server passed on what it had)."""
        self.flush()
        return [(size, req) for size, req in list(self.seen) if req.get("tenant") == tenant]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, Tap]]:
    with sealed_cluster(tmp_path_factory.mktemp("wire")) as bus:
        a, b = bus.node("a", "0-1"), bus.node("b", "2-3")
        start_all(a, b)
        with Tap(bus) as tap:
            yield a, b, tap
        assert a.stop() == 0 and b.stop() == 0
        assert "Traceback" not in a.log.read_text() + b.log.read_text()


def _pipelined(node: Node, frames: list[bytes]) -> list[dict[str, Any]]:
    """The replies of `frames` sent at once on one connection to `node`'s socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(60)
        s.connect(str(node.sock))
        s.sendall(b"".join(f + b"\n" for f in frames))
        replies = s.makefile("rb")
        return [json.loads(replies.readline()) for _ in frames]


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _long_frame(tenant: str, rid: str, size: int) -> tuple[bytes, str]:
    """A compact ingest frame of `size` bytes whose text is words to the end; the text."""
    empty = len(_frame(ingest(tenant, rid, "", 0)))
    text = ("flour water salt starter " * (size // 20))[:size - empty - 1] + "x"
    frame = _frame(ingest(tenant, rid, text, 0))
    assert len(frame) == size
    return frame, text


def test_an_over_long_prompt_is_cut_on_the_node_it_reaches_never_sent_whole(
        pair: tuple[Node, Node, Tap]) -> None:
    """Near `max_frame_bytes` (the sealed message then larger than the stream takes) a's
    socket refused it `not_forwarded` where a single host stores its start; a shorter one
    crossed the bus whole. Now a cuts it as b's own socket does and sends the start with
    the whole text's digest: the same reply, and the next turn naming the whole message
    in its history continues it."""
    a, b, tap = pair
    theirs, single = tenants_in(3, 2)
    size = MAX_FRAME - 24  # under the socket's bound; sealed (37 bytes more) over the stream's
    replies = {}
    for node, tenant in ((a, theirs), (b, single)):
        frame, text = _long_frame(tenant, "long", size)
        follow = ingest(tenant, "next", "How long should it rise?", 1)
        follow["history"] = [{"role": "user", "sha256": content_digest(text)}]
        nowords = ingest(tenant, "blank", " " * (MAX_TEXT + 10) + "bread", 2)
        replies[node.name] = _pipelined(node, [frame, _frame(follow), _frame(nowords)])
    forwarded, here = replies["a"], replies["b"]
    assert forwarded[0]["ok"], forwarded[0]
    for got, want in zip(forwarded, here, strict=True):
        assert {k: got.get(k) for k in COMPARED} == {k: want.get(k) for k in COMPARED}
        assert got.get("error") == want.get("error")
    assert forwarded[0]["truncated"] is True
    assert forwarded[1]["link_source"] == "history"
    assert forwarded[1]["parent_request_id"] == "long"
    assert forwarded[1]["conversation_id"] == forwarded[0]["conversation_id"]
    assert forwarded[2]["error"]["code"] == "bad_request"  # refused here, as b refuses it
    assert b.lookup(theirs, "long")["truncated"] is True
    # what crossed the bus: the start only, under the whole text's digest
    crossed = tap.of(theirs)
    assert [req["request_id"] for _, req in crossed] == ["long", "next"]
    size_sent, sent = crossed[0]
    assert size_sent < MAX_TEXT + 1024 and len(sent["text"]) <= MAX_TEXT
    _, text = _long_frame(theirs, "long", size)
    assert sent["truncated"] is True and sent["text_sha256"] == content_digest(text)
    assert a.records() == 0


def test_a_sync_then_an_async_ingest_on_one_connection_reach_the_owner_in_that_order(
        pair: tuple[Node, Node, Tap]) -> None:
    """The second prompt's history names the first, as a gateway sends a follow-up. On a
    single host (b's own socket) it continues the first; forwarded by a, before, it went
    onto the bus ahead of the first (whose claim lookup came first; partition 2 is forwarded
    to first here, so a has not read its claim yet) and started a conversation of its own."""
    a, b, tap = pair
    theirs, single = tenants_in(2, 2)
    first = "How do I bake sourdough bread at home?"
    stored = {}
    for node, tenant in ((a, theirs), (b, single)):
        second = {**ingest(tenant, "second", "What is the capital of Australia?", 1),
                  "mode": "async", "history": [{"role": "user", "sha256": content_digest(first)}]}
        sync, queued = _pipelined(node, [_frame(ingest(tenant, "first", first, 0)),
                                         _frame(second)])
        assert sync["ok"] and queued["ok"] and queued["queued"], (sync, queued)
        stored[node.name] = (sync, arrived(b, tenant, "second", "the async prompt"))
    assert [req["request_id"] for _, req in tap.of(theirs)] == ["first", "second"]
    for sync, later in stored.values():
        assert later["link_source"] == "history", later
        assert later["parent_request_id"] == "first"
        assert later["conversation_id"] == sync["conversation_id"]
    assert a.records() == 0
