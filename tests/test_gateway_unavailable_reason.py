"""The gateway's one warning when Semtrace does not answer says why, in words an operator
can act on (no service listening on the socket path, a reply that is not JSON, no reply in
time), without anything of the request: before, it said only the exception's type, the
same `SemtraceError` for a service that is not running, a socket the gateway may not open
and a reply that is not JSON, and the line most loggers print showed no cause at all."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_fakes import Lines, StandIn

from appliance.integrations.decorator import Semtrace

PROMPT = "Where is the Brindlewick-Oskarsund-2291 invoice?"


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger("semtrace.integrations")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _warned(lines: Lines, sock: Path, timeout: float = 5.0) -> logging.LogRecord:
    app = Semtrace(sock, tenant="acme", timeout=timeout, register_wait=0.0)
    with app.turn(user_id="u-17", text=PROMPT):
        pass
    app.close()
    warned = [r for r in lines.records if getattr(r, "event", None) == "semtrace_unavailable"]
    assert len(warned) == 1
    assert PROMPT not in warned[0].getMessage() and "u-17" not in warned[0].getMessage()
    return warned[0]


def test_no_service_on_the_socket_path_is_said_with_the_path(tmp_path: Path,
                                                              lines: Lines) -> None:
    sock = tmp_path / "semtrace.sock"
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock))  # what a killed service leaves: a socket file nobody listens on
    stale.close()
    said = (f"No semtrace service is listening on {sock}: start it (`semtrace serve`, or "
            "`systemctl start semtrace` where install.sh installed it), or give the socket "
            "path it serves.")
    record = _warned(lines, sock)
    assert record.getMessage() == ("semtrace did not answer; calls go on unrecorded until "
                                   f"it does. {said}")
    assert record.reason == said  # type: ignore[attr-defined]


def test_a_reply_that_is_not_json_is_said_so(tmp_path: Path, lines: Lines) -> None:
    StandIn(tmp_path / "odd.sock", b"<html>502 Bad Gateway</html>\n")
    record = _warned(lines, tmp_path / "odd.sock")
    assert record.reason == "The service sent a reply that is not JSON."  # type: ignore[attr-defined]
    assert "502" not in record.getMessage()  # nothing the peer sent is quoted


def test_a_service_that_does_not_answer_in_time_is_said_so(tmp_path: Path,
                                                           lines: Lines) -> None:
    hung = socket.socket(socket.AF_UNIX)  # accepts and reads, never answers
    hung.bind(str(tmp_path / "hung.sock"))
    hung.listen(4)

    def read() -> None:
        with contextlib.suppress(OSError):
            conn, _ = hung.accept()
            with conn:
                while conn.recv(65536):
                    pass

    threading.Thread(target=read, daemon=True).start()
    try:
        record = _warned(lines, tmp_path / "hung.sock", timeout=0.5)
    finally:
        hung.close()
    assert "within the timeout" in record.reason  # type: ignore[attr-defined]
    assert record.getMessage().endswith(record.reason)  # type: ignore[attr-defined]
