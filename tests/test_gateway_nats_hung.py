"""A gateway whose NATS server hangs: a real nats-server stopped (SIGSTOP), so the kernel
still accepts the connection and nothing answers on it, as through a frozen VM or host."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cluster_restart import RestartableNats

from appliance.client import open_client
from appliance.cluster.bus import NO_SERVER_REMEDY
from appliance.errors import SemtraceError
from appliance.integrations.channel import SyncChannel

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


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
    assert warned == ["semtrace did not answer; calls go on unrecorded until it does. No "
                      f"NATS server answers at {server.url} ({NO_SERVER_REMEDY})."]
    assert (channel.breaker.missed, channel.breaker.held) == (2, 0)


GATEWAY = """
import gc, logging, sys
from appliance.client import open_client
from appliance.errors import SemtraceError
from appliance.integrations.channel import SyncChannel

url = sys.argv[1]
client = open_client(url, timeout=2.0, plain_bus=True)
print("connected", flush=True)
sys.stdin.readline()  # the server is stopped now
for attempt in range(3):  # each connection attempt given up at its timeout
    try:
        open_client(url, timeout=1.0, plain_bus=True)
    except SemtraceError as exc:
        print(exc, flush=True)
    gc.collect()  # as a long-running gateway's collector would, between calls
channel = SyncChannel(url, timeout=1.0, plain_bus=True, log=logging.getLogger("gateway"))
print(channel.deliver({"v": 1, "op": "update", "tenant": "acme", "request_id": "r-1",
                       "user_id": "ines", "previous_response_id": "resp_0"}).reply)
client.close()  # the connection made before the server stopped
print("closed", flush=True)
"""


def test_a_gateway_that_gave_up_on_a_hung_nats_server_exits_without_noise(
        tmp_path: Path) -> None:
    """A gateway process whose NATS server stopped answering: its connection attempts
    given up at their timeout were left pending on the client's loop, and closing the
    connection it had made waited for a drain nats-py never ends (30 s) until the client
    gave up with a bare TimeoutError; the loop was then closed under the pending tasks,
    and the process printed "Task was destroyed but it is pending!" and "Exception ignored
    in: <coroutine ...> RuntimeError: Event loop is closed", as if it had crashed. Each
    attempt and the close now end their tasks and sockets: one sentence per attempt and
    nothing else on stderr but the gateway's own warning."""
    server = RestartableNats(tmp_path).start()
    try:
        gateway = subprocess.Popen(
            [sys.executable, "-c", GATEWAY, server.url], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gateway.stdout is not None and gateway.stdin is not None
        assert gateway.stdout.readline().strip() == "connected"
        server.pause()
        gateway.stdin.write("\n")
        gateway.stdin.flush()
        out, err = gateway.communicate(timeout=300)
    finally:
        server.stop(signal.SIGKILL)
    assert out.splitlines() == [f"No NATS server answers at {server.url} ({NO_SERVER_REMEDY})."
                                ] * 3 + [
        "None", "closed"], err
    assert gateway.returncode == 0, err
    assert err.splitlines() == ["semtrace did not answer; calls go on unrecorded until "
                                f"it does. No NATS server answers at {server.url} "
                                f"({NO_SERVER_REMEDY})."], err


BUDGET = """
import asyncio, logging, sys, time
from appliance.integrations.async_channel import AsyncChannel
from appliance.integrations.breaker import Breaker
from appliance.integrations.channel import SyncChannel

url, timeout = sys.argv[1], float(sys.argv[2])
log = logging.getLogger("gateway")
sync = SyncChannel(url, timeout=timeout, plain_bus=True, log=log)
later = AsyncChannel(url, timeout=timeout, plain_bus=True, breaker=Breaker(log))


def prompt(rid, mode="sync"):
    return {"v": 1, "op": "ingest", "tenant": "acme", "request_id": rid, "user_id": "ines",
            "text": "hello", "mode": mode}


async def main():
    # connected while the server answers (a prompt handed to the bus keeps the connection)
    assert sync.deliver(prompt("up-1", "async")).reply["queued"]
    assert (await later.deliver(prompt("up-2", "async"))).reply["queued"]
    print("connected", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # stopped
    start = time.monotonic()
    print(sync.deliver(prompt("r-1")).reply, flush=True)
    print(f"sync {time.monotonic() - start:.3f}", flush=True)
    start = time.monotonic()
    print((await later.deliver(prompt("r-2"))).reply, flush=True)
    print(f"async {time.monotonic() - start:.3f}", flush=True)

asyncio.run(main())
sync.close()
print("closed", flush=True)
"""


def test_a_call_on_a_connection_whose_nats_server_hangs_returns_within_its_timeout(
        tmp_path: Path) -> None:
    """`timeout` is a gateway call's whole budget, but a call whose NATS server stopped
    answering under an open connection spent it waiting for the answer, and then closed
    that connection after asking the server for a PING it never answered: a second more
    (timeout 1 s: 2.0 s a call, sync and asyncio alike). The connection given up on is now
    closed in what is left of the budget (nothing, here: no PING), and still quietly: the
    gateway's own warnings and nothing else on stderr, exit 0. (The bound below is the
    budget plus 0.75 s of slack for a loaded host; `bench/nats_hung_budget.py` measures
    the slack: about 0.01 s.)"""
    timeout = 1.0
    server = RestartableNats(tmp_path).start()
    try:
        gateway = subprocess.Popen(
            [sys.executable, "-c", BUDGET, server.url, str(timeout)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gateway.stdout is not None and gateway.stdin is not None
        assert gateway.stdout.readline().strip() == "connected"
        server.pause()
        assert server.proc is not None
        while Path(f"/proc/{server.proc.pid}/stat").read_text().split(")")[1].split()[0] \
                != "T":  # stopped, before the gateway's calls
            time.sleep(0.01)
        gateway.stdin.write("\n")
        gateway.stdin.flush()
        out, err = gateway.communicate(timeout=300)
    finally:
        server.stop(signal.SIGKILL)
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["None", "sync", "None", "async",
                                                   "closed"], (out, err)
    took = {line.split()[0]: float(line.split()[1]) for line in lines[1:4:2]}
    assert all(timeout <= took[way] < timeout + 0.75 for way in took), took
    assert gateway.returncode == 0, err
    assert err.splitlines() == ["no semtrace node answered; calls go on, queued on the bus "
                                "unanswered until one does"] * 2, err
