"""A gateway whose NATS server hangs: a real nats-server stopped (SIGSTOP), so the kernel
still accepts the connection and nothing answers on it, as through a frozen VM or host."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import pytest
from test_cluster_restart import RestartableNats

from appliance.client import open_client
from appliance.errors import SemtraceError
from appliance.integrations.channel import SyncChannel

pytestmark = pytest.mark.slow


def test_a_hung_nats_server_is_named_in_a_sentence_and_pauses_a_tool_loops_calls(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Connecting waited for nats-py's own retries (up to three times the timeout), and the
    blocking client's thread gave up first (timeout + 5 s): a bare TimeoutError with no
    sentence, after twice the gateway's timeout. The adapter took that for a tool loop's
    call the service holds while its turn may still come: counted held (attached later,
    the operator is told) though nothing was sent, no warning, no pause, so every call of
    the loop waited that long again. The connection is now given up within the timeout,
    with a sentence, and it is an outage: one warning, then a pause."""
    caplog.set_level(logging.INFO, logger="semtrace")
    server = RestartableNats(tmp_path).start()
    try:
        server.pause()
        with pytest.raises(SemtraceError, match=r"^No NATS server answers at nats://"):
            open_client(server.url, timeout=5.0, plain_bus=True)
        channel = SyncChannel(server.url, timeout=5.0, plain_bus=True,
                              log=logging.getLogger("semtrace.test"))
        calls = [channel.deliver({"v": 1, "op": "update", "tenant": "acme",
                                  "request_id": f"hung-{n}", "user_id": "ines",
                                  "previous_response_id": "resp_hung_0"})
                 for n in (1, 2)]  # the second one in the pause: not sent
    finally:
        server.stop(signal.SIGKILL)
    assert [(c.reply, c.queued, c.held) for c in calls] == [(None, False, False)] * 2
    warned = [r.getMessage() for r in caplog.records
              if getattr(r, "event", None) == "semtrace_unavailable"]
    assert warned == ["semtrace did not answer; calls go on unrecorded until it does"]
    assert (channel.breaker.missed, channel.breaker.held) == (2, 0)
