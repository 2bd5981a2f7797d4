"""Clients of the sockets that misbehave (a local process, or a buggy gateway) cost only
their own connection: the real service on the real pipeline, in process."""

from __future__ import annotations

import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import running_service

from appliance.client import Client

PING = b'{"v":1,"op":"ping"}\n'


def _policies(pipeline: Any, **service: Any) -> Any:
    return pipeline.policies.model_copy(update={
        "service": pipeline.policies.service.model_copy(update=service)})


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(str(path))
    return s


def _flood_without_reading(s: socket.socket) -> int:
    """Pipeline pings and read no reply until the service stops taking them (its replies
    pile up unread: ~7 bytes of reply per byte sent); the bytes sent."""
    s.setblocking(False)
    sent, stalled_since = 0, None
    while True:
        try:
            sent += s.send(PING * 512)
            stalled_since = None
        except BlockingIOError:
            now = time.monotonic()
            stalled_since = stalled_since or now
            if now - stalled_since > 1.0 and sent > 256 * 1024:
                return sent
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):  # closed by the service meanwhile
            return sent


def _wait_until(cond: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_readers_filling_the_query_socket_never_lock_the_gateway_out(
        pipeline: Any, tmp_path: Path) -> None:
    """The query socket is mode 0666: any local user may open connections to it. Before,
    its connections counted against the ingest socket's `max_connections`, so a reader
    holding that many idle ones made every gateway connection `busy`."""
    qsock = tmp_path / "q" / "query.sock"
    with running_service(pipeline, tmp_path / "s.sock", policies=_policies(
            pipeline, max_connections=2), query_socket=qsock):
        readers = [_connect(qsock) for _ in range(2)]
        for r in readers:  # each one served, so each one holds a slot
            r.sendall(b'{"op":"bogus"}\n')
            assert json.loads(r.makefile().readline())["error"]["code"] == "unknown_op"
        extra = _connect(qsock)  # the query socket's own bound still holds
        assert json.loads(extra.makefile().readline())["error"]["code"] == "busy"
        extra.close()
        with Client(tmp_path / "s.sock", timeout=30) as gateway:
            assert gateway.ping()["ok"] is True
        for r in readers:
            r.close()


def test_a_client_that_never_reads_its_replies_does_not_hold_up_the_stop(
        pipeline: Any, tmp_path: Path) -> None:
    """Before, its connection's reader waited for room among the unsent replies for ever,
    even once the service was told to stop: `serve` never exited on SIGTERM."""
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock):  # drained on leaving: raised after 60 s before
        hog = _connect(sock)
        _flood_without_reading(hog)
        with Client(sock, timeout=30) as gateway:  # others are answered meanwhile
            assert gateway.ping()["ok"] is True
    hog.close()


def test_a_client_that_reads_nothing_for_the_idle_timeout_is_closed_quietly(
        pipeline: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Before, it held its connection (one of `max_connections`) for ever; and a client
    that left with replies pending got one asyncio warning line ('socket.send() raised
    exception.', not a JSON log line) per reply written after it left."""
    sock = tmp_path / "s.sock"
    caplog.set_level(logging.WARNING)
    with running_service(pipeline, sock, policies=_policies(pipeline,
                                                            idle_timeout_s=1)) as svc:
        hog = _connect(sock)
        _flood_without_reading(hog)
        _wait_until(lambda: not svc._connections, "the non-reading client was never closed")
        hog.setblocking(True)
        hog.settimeout(30)
        with pytest.raises(ConnectionResetError):  # closed with its requests unread
            while hog.recv(1 << 20):
                pass
            raise ConnectionResetError  # or closed once it had read them
        hog.close()
        leaver = _connect(sock)
        _flood_without_reading(leaver)
        leaver.close()  # replies pending: the service finds it gone
        _wait_until(lambda: not svc._connections, "the closed client's connection stayed")
    assert not [r for r in caplog.records if r.name == "asyncio"]


def test_a_queued_request_holds_its_prompt_not_its_frame(pipeline: Any,
                                                         tmp_path: Path) -> None:
    """A sync ingest waits for its commit; before, it held its whole frame meanwhile (the
    bytes, a stripped copy and the decoded text: ~3 times the frame), so `queue_max` (2048)
    requests of 256 KiB frames could hold ~1.5 GB (measured here: 744 KB per request of a
    230 KB frame). Now it holds its prompt: the text cut to `max_text_chars`, the history
    as digests (37 KB per request with the text cut to 32,768 characters)."""
    import threading
    import tracemalloc

    sock = tmp_path / "s.sock"
    words = " ".join(f"w{i % 997}x" for i in range(40_000))  # ~230 KB: cut to 512 chars
    n = 12
    policies = pipeline.policies.model_copy(update={"correlation": pipeline.policies.correlation
                                                    .model_copy(update={"max_text_chars": 512})})
    with running_service(pipeline, sock, policies=policies) as svc:
        gate = threading.Event()
        svc._pool.submit(gate.wait)  # the worker is busy: the requests stay queued
        client = _connect(sock)
        frames = [json.dumps({"op": "ingest", "request_id": f"big-{i}", "tenant": "acme",
                              "user_id": "alice", "text": words}).encode() + b"\n"
                  for i in range(n)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for frame in frames:
                client.sendall(frame)
            _wait_until(lambda: len(svc._pending) == n, "the requests were not queued")
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
            gate.set()
        reader = client.makefile()
        replies = [json.loads(reader.readline()) for _ in range(n)]
        client.close()
    assert all(r["ok"] and r["truncated"] for r in replies)
    assert held < sum(len(f) for f in frames)


def test_a_request_the_service_fails_on_is_answered_under_its_request_id(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`internal` (a fault: 'retry later') came with a null request_id, so a gateway that
    pipelines could not tell which request to retry; and a cost sent as a JSON integer past
    a float's range (10**400) was such a fault (OverflowError), not a bad request."""
    import appliance.service.dispatch as dispatch

    real = dispatch.parse_request

    def parse(obj: dict[str, Any], **kw: Any) -> Any:
        if obj.get("request_id") == "parse-fails":
            raise RuntimeError("a fault while reading the request")
        return real(obj, **kw)

    async def fails(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("a fault while answering the request")

    monkeypatch.setattr(dispatch, "parse_request", parse)
    frames = [{"v": 1, "op": "ping", "request_id": "parse-fails"},
              {"v": 1, "op": "ingest", "request_id": "huge-cost", "tenant": "acme",
               "user_id": "u", "text": "hello there", "response": {"cost": 10**400}}]
    with (running_service(pipeline, tmp_path / "s.sock") as svc,
          _connect(tmp_path / "s.sock") as s, s.makefile("rb") as lines):
        s.sendall(b"".join(json.dumps(f).encode() + b"\n" for f in frames))
        replies = [json.loads(lines.readline()) for _ in frames]
        svc._dispatch = fails  # answering now fails, past the parse
        s.sendall(b'{"v":1,"op":"ping","request_id":"answer-fails"}\n')
        replies.append(json.loads(lines.readline()))
    assert [(r["request_id"], r["error"]["code"]) for r in replies] == [
        ("parse-fails", "internal"), ("huge-cost", "bad_request"),
        ("answer-fails", "internal")]
    assert replies[1]["error"]["message"] == "'response.cost' must be at most 1000000000000."
