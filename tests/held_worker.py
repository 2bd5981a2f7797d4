"""Requests sent to a running service at once while its worker is held, so that they queue
and the batch loop takes them in batches (tests of the ingest overlap)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from appliance.client import Client


def send_while_held(svc: Any, sock: Path, reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`reqs` sent at once while the worker is held, so they queue; then released. The
    replies, in request order."""
    gate = threading.Event()
    svc._pool.submit(gate.wait)
    replies: list[dict[str, Any]] = []

    def send() -> None:
        with Client(sock, timeout=120) as c:
            replies.extend(c.stream(reqs, window=len(reqs)))

    sender = threading.Thread(target=send)
    sender.start()
    try:
        deadline = time.monotonic() + 60
        while len(svc._pending) < len(reqs) and time.monotonic() < deadline:
            time.sleep(0.01)  # every request queued (or held by the batch loop)
    finally:
        gate.set()
    sender.join(120)
    return replies
