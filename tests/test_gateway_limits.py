"""A gateway's prompts at the service's limits: an over-long prompt is recorded cut, marked
truncated and still threaded (no gap in the conversation); an invalid request id is never
sent back. Through a real `semtrace serve`."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

from conftest import scan_for  # noqa: E402
from gateway_fakes import ANSWER, openai_sync  # noqa: E402
from test_litellm import _lookup, _thread  # noqa: E402
from test_service import Server, at  # noqa: E402

from appliance.client import Client  # noqa: E402
from appliance.ingest import content_digest  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
LIMIT = 32_768  # the shipped policies/correlation.toml max_text_chars
CANARY = "Quillfeather-Marrowdene-5517"
PASTED = "The harbour budget report, section after section. " * 800  # 40,800 characters


@pytest.fixture(autouse=True)
def _clean_callbacks() -> Iterator[None]:
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


def _ingest(rid: str, text: str, **kw: Any) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "request_id": rid, "user_id": "vera",
            "ts": at(600), "text": text, **kw}


def test_an_over_long_prompt_is_stored_cut_and_its_next_turn_finds_it(server: Server) -> None:
    long = f"Summarise this: {PASTED} Signed, {CANARY}."  # the canary lies past the limit
    with Client(server.sock) as c:
        first = c.request(_ingest("long-1", long))
        # the next turn's history digests the whole message, as a chat client holds it
        second = c.request(_ingest("long-2", "Now list the budget lines.", history=[
            {"role": "user", "sha256": content_digest(long)}]))
    # the old code refused the first (bad_request), so the second started a new conversation
    assert first["ok"] and first["truncated"] is True
    assert second["ok"] and second["truncated"] is False
    assert second["parent_request_id"] == "long-1" and second["link_source"] == "history"
    assert second["conversation_id"] == first["conversation_id"]
    assert _lookup(server, "long-1")["truncated"] is True
    records = _thread(server, first["conversation_id"])["records"]
    assert records[0]["evidence"]["text_truncated"] is True
    assert "text_truncated" not in records[1]["evidence"]
    assert len(records[0]["text"]) <= LIMIT and records[0]["text"].endswith("after section.")
    assert scan_for(server.tmp, [CANARY]) == []  # what lay past the cut was never stored


def test_the_adapters_cut_a_pasted_document_and_the_conversation_has_no_gap(
        server: Server) -> None:
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]
    messages: list[Any] = [{"role": "user", "content": f"Summarise: {PASTED}"}]
    first = litellm.completion(model="gpt-4o", messages=messages, client=openai_sync(),
                               user="lou")
    assert logger.wait(1)
    messages += [first.choices[0].message, {"role": "user", "content": "Shorter, please."}]
    second = litellm.completion(model="gpt-4o", messages=messages, client=openai_sync(),
                                user="lou")
    assert logger.wait(2)
    # the old code: both refused (over max_text_chars), counted as failures, not recorded
    assert logger.failures == 0 and logger.sent == 2
    one = _lookup(server, first._hidden_params["litellm_call_id"])
    two = _lookup(server, second._hidden_params["litellm_call_id"])
    assert one["truncated"] is True and two["truncated"] is False
    assert two["parent_request_id"] == first._hidden_params["litellm_call_id"]

    # an emoji takes 12 bytes escaped: 30,000 of them (under max_text_chars) made a
    # frame over 256 KiB, refused whole, the connection closed
    app = Semtrace(server.sock, tenant="acme")
    emoji = "\U0001f680 " * 30_000
    with app.turn(user_id="lou", text=emoji) as turn:
        turn.answer(ANSWER)
    assert app.flush()  # its reply may come after register_wait (a long prompt)
    assert turn.reply is not None and turn.reply["ok"] and turn.reply["truncated"] is True
    with app.turn(user_id="lou", text="And the other launch?",
                  history=[{"role": "user", "content": emoji},
                           {"role": "assistant", "content": ANSWER}]) as follow:
        pass
    assert app.flush()
    assert follow.reply is not None
    assert follow.reply["parent_request_id"] == turn.request["request_id"]
    # an agent's long loop: 1,200 messages, more than a history may hold (the old code
    # sent them all and the prompt was refused); the newest 1,000 are sent
    loop = [{"role": ("user", "assistant")[n % 2], "content": f"Step {n} done."}
            for n in range(1200)]
    with app.turn(user_id="lou", text="Summarise the steps.", history=loop) as many:
        pass
    assert app.flush()
    assert many.reply is not None and many.reply["ok"]
    assert len(many.request["history"]) == 1000


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
