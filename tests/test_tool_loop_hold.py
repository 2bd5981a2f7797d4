"""A tool loop's call whose turn is not found yet: held only while that turn may still come.

The real service on the real pipeline (SQLCipher, the bundled model, Presidio), in this
process so the hold can be made an hour long: a call held when nothing can bring its turn
would then never be answered (the client gives up), where the gateway needs its reply at
once (a held request delays the replies after it on a proxy worker's one connection).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from appliance.client import Client
from appliance.service import dispatch


@contextmanager
def _service(pipeline: Any, sock: Path) -> Iterator[Any]:
    from appliance.service import Service

    svc = Service(pipeline, pipeline.policies, socket_path=sock)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(svc.start(), loop).result(60)
    try:
        yield svc
    finally:
        asyncio.run_coroutine_threadsafe(svc.drain(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


def _loop_call(rid: str, user: str, previous: str) -> dict[str, Any]:
    return {"v": 1, "op": "update", "tenant": "acme", "request_id": rid, "user_id": user,
            "previous_response_id": previous}


def test_a_loop_call_is_held_only_while_its_turn_may_still_come(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "ATTACH_HOLD", 3600.0)
    sock = tmp_path / "s.sock"
    with _service(pipeline, sock), Client(sock, timeout=30) as c:
        # no turn of hanna waits for its update: an unknown id is refused at once (the
        # code before held every such call: no reply within the client's timeout)
        alone = c.request(_loop_call("hd-a", "hanna", "resp_never_given"))
        assert alone["error"]["code"] == "not_found"
        # ilse's turn is registered, its update not sent yet: her loop call is held ...
        turn = c.ingest(tenant="acme", user_id="ilse", request_id="hd-1",
                        text="Which platform does the night train leave from?")
        assert turn["ok"]
        with futures.ThreadPoolExecutor(1) as pool, Client(sock, timeout=30) as other:
            held = pool.submit(other.request, _loop_call("hd-2", "ilse", "resp_ilse_1"))
            # ... until the update reports the response id it names (another worker's)
            updated = c.request({"v": 1, "op": "update", "tenant": "acme",
                                 "request_id": "hd-1",
                                 "response": {"id": "resp_ilse_1", "status": "ok"}})
            attached = held.result(timeout=30)
        assert updated["ok"] and attached["ok"], attached
        assert attached["conversation_id"] == turn["conversation_id"]
        assert attached["parent_request_id"] == "hd-1"
        # the loop call answered too (its update): nothing of hers waits for an update,
        # so an id none of her turns gave is refused at once
        answered = c.request({"v": 1, "op": "update", "tenant": "acme", "request_id": "hd-2",
                              "response": {"id": "resp_ilse_2", "status": "ok",
                                           "input_tokens": 40, "latency_ms": 900.0}})
        assert answered["ok"], answered
        late = c.request(_loop_call("hd-3", "ilse", "resp_never_given"))
        assert late["error"]["code"] == "not_found"
