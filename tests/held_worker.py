"""Requests sent to a running service at once while its worker is held, so that they queue
and the batch loop takes them in batches (tests of the ingest overlap)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.client import Client


def send_while_held(svc: Any, sock: Path, reqs: list[dict[str, Any]], *,
                    until: Callable[[Any], bool] | None = None) -> list[dict[str, Any]]:
    """`reqs` sent at once while the worker is held, so they queue; released once
    `until(svc)` holds (by default: once every request is queued). The replies, in request
    order."""
    ready = until or (lambda s: len(s._pending) >= len(reqs))
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
        while not ready(svc) and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        gate.set()
    sender.join(120)
    return replies
