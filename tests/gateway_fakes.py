"""Stand-ins for the tests of the gateway adapters: OpenAI's API on an httpx mock transport
(LiteLLM's own request and logging code runs, nothing leaves the process), a Unix socket
that answers what a test chooses, and a handler keeping the adapters' log records."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map

import httpx  # noqa: E402
import litellm  # noqa: E402
from openai import AsyncOpenAI, OpenAI  # noqa: E402

ANSWER = "Take the 9:04 from Lyon Part-Dieu."


def _provider(request: httpx.Request) -> httpx.Response:
    """OpenAI's /v1/chat/completions (and /v1/embeddings), streamed when asked."""
    body = json.loads(request.content)
    if request.url.path.endswith("/embeddings"):
        return httpx.Response(200, json={
            "object": "list", "model": "text-embedding-3-small",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
            "usage": {"prompt_tokens": 3, "total_tokens": 3}})
    base = {"id": "chatcmpl-t1", "created": 1767225600, "model": "gpt-4o-2024-08-06"}
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    if not body.get("stream"):
        return httpx.Response(200, json={**base, "object": "chat.completion", "usage": usage,
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant",
                                                                  "content": ANSWER}}]})
    chunk = {**base, "object": "chat.completion.chunk"}
    events = [{**chunk, "choices": [{"index": 0, "finish_reason": None,
                                     "delta": {"role": "assistant", "content": ANSWER[:9]}}]},
              {**chunk, "choices": [{"index": 0, "finish_reason": "stop",
                                     "delta": {"content": ANSWER[9:]}}]},
              {**chunk, "choices": [], "usage": usage}]
    sse = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content=sse.encode())


def openai_sync() -> OpenAI:
    return OpenAI(api_key="sk-test", http_client=httpx.Client(
        transport=httpx.MockTransport(_provider)))


def openai_async() -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test", http_client=httpx.AsyncClient(
        transport=httpx.MockTransport(_provider)))


def ask(text: str, **kw: Any) -> str:
    out = litellm.completion(model="gpt-4o", messages=[{"role": "user", "content": text}],
                             client=openai_sync(), **kw)
    return str(out.choices[0].message.content)


class Lines(logging.Handler):
    """The gateway's log records from Semtrace's adapters."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, level: int = logging.WARNING) -> list[str]:
        return [str(getattr(r, "event", r.getMessage())) for r in self.records
                if r.levelno >= level]


class StandIn:
    """A socket that accepts and answers every line with `reply` (bytes), counting lines;
    with a `gate`, each answer waits until the gate is open (10 s at most)."""

    def __init__(self, path: Path, reply: bytes, gate: threading.Event | None = None) -> None:
        self.reply, self.lines, self.received = reply, 0, []  # type: ignore[var-annotated]
        self.gate = gate
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as f, contextlib.suppress(ConnectionError):
            # a client that goes away mid-line (a node stopped by the test) resets the socket
            for line in f:
                self.lines += 1
                self.received.append(json.loads(line))
                if self.gate is not None:
                    self.gate.wait(10)
                f.write(self.reply)
                f.flush()
