"""A gateway's requests at the service's limits: an invalid request id is never sent back.
Through a real `semtrace serve`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_service import Server, at

from appliance.client import Client

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
CANARY = "Quillfeather-Marrowdene-5517"


def _ingest(rid: str, text: str, **kw: Any) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "request_id": rid, "user_id": "vera",
            "ts": at(600), "text": text, **kw}


def test_an_invalid_request_id_is_never_sent_back(server: Server) -> None:
    pasted = f"My card is 4111 1111 1111 1111, call {CANARY} " * 20  # a prompt in the id
    frames = [
        _ingest(pasted, "Where is my parcel?"),
        _ingest("r-7\n", "Where is my parcel?"),  # the old pattern's $ let a newline in
        {"v": 1, "op": "update", "tenant": "acme", "request_id": pasted,
         "response": {"status": "ok"}},
        {"v": 1, "op": "lookup", "tenant": "acme", "request_id": "x" * 100_000},
        {"v": 1, "op": "ping", "request_id": pasted},
        {"v": 2, "op": "ingest", "request_id": pasted},
    ]
    with server.raw() as s:
        s.sendall(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
        buf = b""
        while buf.count(b"\n") < len(frames):
            buf += s.recv(1 << 20)
    lines = buf.splitlines()
    replies = [json.loads(line) for line in lines]
    # the old code echoed each id as sent (a prompt, a newline, 100 kB) in its reply
    assert [r["request_id"] for r in replies] == [None] * len(frames)
    assert [r.get("error", {}).get("code") for r in replies] == [
        "bad_request", "bad_request", "bad_request", "bad_request", None, "bad_version"]
    assert all(len(line) < 300 for line in lines)
    assert not [line for line in lines if CANARY.encode() in line or b"4111" in line]
    with Client(server.sock) as c:  # nothing was stored under the newline id
        assert c.request({"v": 1, "op": "lookup", "tenant": "acme",
                          "request_id": "r-7"})["error"]["code"] == "not_found"
