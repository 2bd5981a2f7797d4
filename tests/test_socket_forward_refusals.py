"""The forwarding of a node's socket requests (appliance/cluster/forward.py), pure logic:
which requests go to another node, and those refused before anything reaches NATS. The
forwarding itself, through a real nats-server and real nodes: test_cluster_socket_forward.py.
A stand-in for the connection records what would be sent."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from appliance.cluster.forward import Forwarder
from appliance.cluster.partition import partition_of
from appliance.protocol import parse_request

PARTITIONS = 4
OWNED = {0, 1}


def tenant_in(partition: int) -> str:
    return next(f"t{i}" for i in range(100) if partition_of(f"t{i}", PARTITIONS) == partition)


class Connection:
    """What the forwarder uses of a nats-py client; a request (a publish with a reply inbox)
    is answered `reply`."""

    def __init__(self, reply: dict[str, Any] | None = None, *, connected: bool = True) -> None:
        self.is_connected, self.is_closed = connected, False
        self.stats = {"reconnects": 0}
        self.sent: list[tuple[str, bytes]] = []
        self.reply = reply
        self._answers: dict[str, asyncio.Future[Any]] = {}

    def new_inbox(self) -> str:
        return f"_INBOX.{len(self._answers)}"

    async def subscribe(self, subject: str, *, future: asyncio.Future[Any],
                        max_msgs: int) -> Any:
        self._answers[subject] = future

        async def unsubscribe(limit: int = 0) -> None:
            return None
        return SimpleNamespace(unsubscribe=unsubscribe)

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> None:
        self.sent.append((subject, payload))
        if reply:
            self._answers[reply].set_result(
                SimpleNamespace(data=json.dumps(self.reply).encode(), headers=None))

    async def flush(self, timeout: float) -> None:
        return None


def forward(obj: dict[str, Any], nc: Connection | None, *,
            max_bytes: int = 256 * 1024) -> dict[str, Any] | None:
    fwd = Forwarder(partitions=PARTITIONS, owns=OWNED.__contains__, keys=None,
                    max_bytes=max_bytes)
    fwd.nc = nc
    return asyncio.run(fwd(obj, parse_request(obj, max_text_chars=8000)))


def ingest(tenant: str, **more: Any) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": tenant, "request_id": "r-1", "user_id": "ana",
            "text": "Is the night train on time?", **more}


def test_own_tenants_and_lookups_are_answered_here() -> None:
    nc = Connection()
    assert forward(ingest(tenant_in(0)), nc) is None
    assert forward({"v": 1, "op": "lookup", "tenant": tenant_in(2), "request_id": "r-1"},
                   nc) is None
    assert nc.sent == []


def test_another_nodes_ingest_goes_to_its_subject_with_its_arrival_time() -> None:
    other = tenant_in(2)
    answer = {"request_id": "r-1", "ok": True, "conversation_id": "th_1", "position": "new"}
    nc = Connection(answer)
    assert forward(ingest(other), nc) == answer
    ((subject, payload),) = nc.sent
    sent = json.loads(payload)
    assert subject == f"semtrace.ingest.{other}"
    assert sent["request_id"] == "r-1" and sent["text"] == "Is the night train on time?"
    assert sent["ts"]  # its time here, not when the owner takes it from the stream
    nc = Connection(answer)
    assert forward(ingest(other, ts="2026-12-06T09:00:00Z"), nc) == answer
    assert json.loads(nc.sent[0][1])["ts"] == "2026-12-06T09:00:00Z"  # the gateway's kept


def test_what_cannot_be_forwarded_is_refused_in_one_sentence_and_not_sent() -> None:
    other = tenant_in(2)
    p = partition_of(other, PARTITIONS)
    cases = [(ingest(other), None, "this node is not connected to NATS: it is starting or "
              "stopping"),
             (ingest(other), Connection(connected=False),
              "the NATS server is unreachable; this node is reconnecting to it"),
             (ingest(other, history=[{"role": "user", "sha256": "0" * 64}] * 50),
              Connection(), "sealed for the bus it is larger than the stream takes, "
              "max_frame_bytes; send a shorter history")]
    for obj, nc, why in cases:
        reply = forward(obj, nc, max_bytes=2000)
        assert reply == {"request_id": "r-1", "ok": False, "error": {
            "code": "not_forwarded", "message":
            f"This tenant's partition ({p}) is owned by another node, and this node could "
            f"not forward the request there over NATS ({why}); nothing was stored: retry "
            "shortly, or send it over NATS to semtrace.ingest.<tenant>."}}, why
        assert nc is None or nc.sent == []


def test_a_forwarded_history_carries_digests_only_never_its_content() -> None:
    """Content in `history` is digested where it arrives (protocol v1: never stored); a
    forwarded request must not carry it onto the bus, where JetStream keeps it on disk."""
    from appliance.ingest import content_digest

    canary = "CANARY-7f3a my card is 4111 1111 1111 1111"
    nc = Connection({"request_id": "r-1", "ok": True})
    forward(ingest(tenant_in(2), history=[
        {"role": "user", "content": f"  {canary}  "},
        {"role": "assistant", "sha256": "a" * 64}]), nc)
    ((_, payload),) = nc.sent
    assert b"CANARY" not in payload and b"4111" not in payload
    assert json.loads(payload)["history"] == [
        {"role": "user", "sha256": content_digest(canary)},
        {"role": "assistant", "sha256": "a" * 64}]


def test_a_forwarded_answer_carries_its_digest_only_never_its_text() -> None:
    """An answer's `response.text` is digested where it arrives and dropped (protocol v1),
    as a history's content is: forwarded, in an ingest sent whole after the answer or in an
    update, it must not reach the bus (JetStream keeps the message on disk), only its digest
    with the rest of the response."""
    from appliance.ingest import content_digest

    canary = "CANARY-5e1b your card 4111 1111 1111 1111 was charged"
    response = {"text": canary, "input_tokens": 12, "output_tokens": 30, "status": "ok"}
    update = {"v": 1, "op": "update", "tenant": tenant_in(2), "request_id": "r-1",
              "response": response}
    for obj in (ingest(tenant_in(2), response=response), update):
        nc = Connection({"request_id": "r-1", "ok": True})
        forward(obj, nc)
        ((_, payload),) = nc.sent
        assert b"CANARY" not in payload and b"4111" not in payload, obj["op"]
        assert json.loads(payload)["response"] == {
            "sha256": content_digest(canary), "input_tokens": 12, "output_tokens": 30,
            "status": "ok"}


def test_fields_protocol_v1_ignores_are_not_forwarded() -> None:
    """A gateway that sends more than protocol v1 reads (the OpenAI `messages` list beside
    `history`, `metadata`, a response's `choices` with the answer) has those ignored where
    they arrive; forwarded, they went onto the bus as sent (JetStream keeps the message on
    disk). Every field protocol v1 reads still reaches the owner."""
    canary = "CANARY-77c1 my IBAN is DE89 3704 0044 0532 0130 00"
    obj = ingest(tenant_in(2), session_id="win-1", synthetic=True,
                 truncated=True, text_sha256="b" * 64, previous_response_id="resp-0",
                 traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01", mode="sync",
                 model="m-1", history=[{"role": "user", "sha256": "c" * 64}],
                 response={"sha256": "d" * 64, "id": "resp-1", "status": "ok",
                           "input_tokens": 1, "output_tokens": 2, "latency_ms": 3.0,
                           "cost": 0.5, "choices": [{"message": {"content": canary}}]},
                 messages=[{"role": "user", "content": canary}], metadata={"note": canary})
    nc = Connection({"request_id": "r-1", "ok": True})
    forward(obj, nc)
    ((_, payload),) = nc.sent
    assert b"CANARY" not in payload and b"DE89" not in payload
    sent = json.loads(payload)
    assert set(sent) == set(obj) - {"messages", "metadata"} | {"ts"}  # its arrival time
    assert set(sent["response"]) == set(obj["response"]) - {"choices"}
    assert sent["session_id"] == "win-1" and sent["previous_response_id"] == "resp-0"
    assert set(sent) == set(obj) - {"messages", "metadata"} | {"ts"}  # its arrival time
    assert set(sent["response"]) == set(obj["response"]) - {"choices"}
    assert sent["session_id"] == "win-1" and sent["previous_response_id"] == "resp-0"


def test_an_over_long_prompt_is_forwarded_cut_under_the_whole_texts_digest() -> None:
    """Cut here as a single host cuts it (protocol v1, over-long prompts), the start sent
    as a client that cut it itself sends it: the whole text never reaches the bus."""
    from appliance.ingest import content_digest, cut_text

    whole = "Please proofread my essay on sourdough starters. " * 400  # 20,000 characters
    for given in ({}, {"text_sha256": "e" * 64}):
        nc = Connection({"request_id": "r-1", "ok": True, "truncated": True})
        forward(ingest(tenant_in(2), text=whole, **given), nc)
        ((_, payload),) = nc.sent
        sent = json.loads(payload)
        assert sent["text"] == cut_text(whole, 8000) and len(payload) < 9000
        assert sent["truncated"] is True
        assert sent["text_sha256"] == given.get("text_sha256", content_digest(whole))
    nc = Connection({"request_id": "r-1", "ok": True})  # within the limit: as sent
    forward(ingest(tenant_in(2)), nc)
    assert {"truncated", "text_sha256"}.isdisjoint(json.loads(nc.sent[0][1]))


def test_a_forwarded_feedback_carries_its_rating_only_never_a_prompt_it_repeats() -> None:
    """A feedback reads only its rating and `abandoned`; a gateway that builds it from the
    ingest it rates (its `text`, `history`, `response` with the answer) had all of them put
    on the bus as sent, the text and the answer in full, though neither is read there nor
    digested first (JetStream keeps the message on disk). Only what a feedback reads goes."""
    canary = "CANARY-3d9e my card is 4111 1111 1111 1111"
    obj = {"v": 1, "op": "feedback", "tenant": tenant_in(2), "request_id": "r-1",
           "rating": -1, "abandoned": True, "user_id": "ana", "text": canary,
           "history": [{"role": "user", "content": canary}],
           "response": {"text": canary, "status": "ok"}, "session_id": "win-1"}
    nc = Connection({"request_id": "r-1", "ok": True})
    assert forward(obj, nc) == {"request_id": "r-1", "ok": True}
    ((_, payload),) = nc.sent
    assert b"CANARY" not in payload and b"4111" not in payload
    assert json.loads(payload) == {"v": 1, "op": "feedback", "tenant": tenant_in(2),
                                   "request_id": "r-1", "rating": -1, "abandoned": True}
