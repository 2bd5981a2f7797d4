"""A message whose answer or acknowledgement fails to go out (NATS going away while the
node answers): the partition is consumed on, and the message is answered when JetStream
delivers it again. The real service and pipeline with the real NATS front door
(`ClusterNode`) against a real nats-server, in this process so that one answer can fail."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from test_cluster import nats_server
from test_tool_loop_nats import _ingest, node

from appliance.cluster.client import NatsClient
from appliance.cluster.node import ClusterNode

pytestmark = pytest.mark.slow


def test_an_answer_that_fails_to_go_out_stops_no_partition(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """An answer or ack that raised (the connection closing under it) ended the partition's
    consumer task, with nothing logged: that prompt and every later one of the partition's
    tenants went unanswered until the node restarted. Now the failure is logged, the
    message is answered when it is delivered again, and the partition is consumed on."""
    real = ClusterNode._settle
    failed: list[str] = []

    async def first_fails(self: ClusterNode, msg: Any, tenant: str, kid: Any,
                          reply: dict[str, Any]) -> None:
        if not failed:
            failed.append(str(reply.get("request_id")))
            raise ConnectionError("the connection closed while answering")
        await real(self, msg, tenant, kid, reply)

    monkeypatch.setattr(ClusterNode, "_settle", first_fails)
    caplog.set_level(logging.INFO, logger="semtrace")
    with nats_server(tmp_path / "nats") as url, \
            node(pipeline, tmp_path, url, ack_wait_s=2.0) as _:
        client = NatsClient(url, timeout=20, plain_bus=True)
        try:
            first = client.request(_ingest("st-1", "ilse", "Is the night train on time?"))
            second = client.request(_ingest("st-2", "ilse", "Does it have a dining car?"))
        finally:
            client.close()
        stored = [r.request_id for r in pipeline.store.records(
            "r.tenant = ? AND r.request_id IN ('st-1', 'st-2')", ("acme",))]
    assert failed == ["st-1"]
    assert first["ok"] and second["ok"], (first, second)
    assert second["conversation_id"] == first["conversation_id"]
    assert sorted(stored) == ["st-1", "st-2"]  # each stored once, the first not twice
    warned = [r for r in caplog.records if getattr(r, "event", None) == "settle_failed"]
    assert warned and getattr(warned[0], "error", None) == "ConnectionError"
