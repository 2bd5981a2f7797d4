"""`lookup` of a request the service has accepted but not stored yet (docs/protocol.md:
"Reply (async) ... fetch the enrichment later with lookup"): it waits for that ingest, as
`update` and `feedback` do, instead of answering `not_found` for a prompt that was
accepted. The real service and pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import running_service
from held_worker import send_while_held

from appliance.client import Client


def _ingest(n: int, text: str) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "user_id": "uma", "mode": "async",
            "request_id": f"q-{n}", "text": text,
            "ts": (datetime.now(UTC) - timedelta(minutes=30, seconds=-10 * n)).isoformat()}


def test_a_lookup_right_after_an_async_ingest_finds_it_once_stored(
        pipeline: Any, tmp_path: Path) -> None:
    """Seen on a fresh host: an ingest, then a lookup of it on the same connection, got
    `ok: true` and then `not_found` ("No recorded request with this id"), the lookup run
    on the worker before the prompt's batch was stored. The worker is held here while three
    async ingests queue and the lookup of the last comes in; once released, the lookup
    answers with the stored prompt's conversation."""
    sock = tmp_path / "s.sock"
    service = pipeline.policies.service.model_copy(update={"batch_max": 2})
    policies = pipeline.policies.model_copy(update={"service": service})
    with running_service(pipeline, sock, policies=policies) as svc:
        reqs = [_ingest(n, t) for n, t in enumerate([
            "How do I descale my espresso machine?",
            "How often should I replace its gasket?",
            "Which water filter suits it?"])]
        reqs.append({"v": 1, "op": "lookup", "tenant": "acme", "request_id": "q-2"})
        # released once the three are queued and the lookup is under way (its read, if
        # any, on the worker behind the gate, before the last ingest's batch can be)
        replies = send_while_held(
            svc, sock, reqs, until=lambda s: len(s._pending) >= 3 and s._side >= 1)
        assert [r["ok"] for r in replies[:3]] == [True] * 3, replies
        looked = replies[3]
        assert looked["ok"], looked
        assert looked["request_id"] == "q-2" and looked["mode"] == "lookup"
        with Client(sock, timeout=120) as c:
            again = c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": "q-2"})
        assert looked["conversation_id"] == again["conversation_id"]
        assert looked["conversation_id"].startswith("th_")
        # a request never sent is still not_found, at once
        with Client(sock, timeout=120) as c:
            missing = c.request({"v": 1, "op": "lookup", "tenant": "acme",
                                 "request_id": "never-sent"})
        assert missing["error"]["code"] == "not_found"
