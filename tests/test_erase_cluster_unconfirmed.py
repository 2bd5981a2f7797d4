"""A cluster erasure whose request NATS stored but did not acknowledge: the acknowledgement
of the put is lost on the way back to the asking command (a TCP relay in front of a real
nats-server drops it). The owner reads the request and erases all the same, so the command
must never say the request did not reach it and nothing was erased: when it can still read
the bucket it sees the owner's answer and says what was erased; when NATS answers it no
more, it says the erasure is pending and NOT confirmed (exit 8), in text, `--json` and its
audit entry."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import sealed_cluster
from test_cluster import PARTITIONS, Node
from test_erasure_inflight import users_records
from test_spine import run_cli

pytestmark = pytest.mark.slow

TENANT = "acme"
_PUT = re.compile(rb"(?:^|\r\n)PUB \$KV\.semtrace_erasures\.\S+ (\S+) \d+\r\n")


class LossyRelay:
    """A TCP relay to nats-server that drops the server's answer to each put of an erasure
    request (the JetStream acknowledgement: the request is stored all the same) and, when
    `silent_after_put`, everything the server sends on that connection after it."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("nats://").split(":")
        self.upstream = (host, int(port))
        self.silent_after_put = False
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"nats://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            replies: set[bytes] = set()
            threading.Thread(target=self._up, args=(client, server, replies),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, replies),
                             daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, replies: set[bytes]) -> None:
        seen = b""
        while data := _recv(client):
            seen = seen[-512:] + data
            replies.update(m.group(1) for m in _PUT.finditer(seen))  # before it goes out
            server.sendall(data)
        _close(client, server)

    def _down(self, server: socket.socket, client: socket.socket, replies: set[bytes]) -> None:
        buf, silent = b"", False
        while data := _recv(server):
            buf += data
            while (end := buf.find(b"\r\n")) >= 0:
                line = buf[:end]
                size = 0
                if line.startswith((b"MSG ", b"HMSG ")):
                    size = int(line.split()[-1]) + 2
                    if len(buf) < end + 2 + size:
                        break  # the payload is not all here yet
                frame, buf = buf[:end + 2 + size], buf[end + 2 + size:]
                if line.startswith(b"MSG ") and line.split()[1] in replies:
                    self.dropped += 1
                    silent = self.silent_after_put
                    continue
                if not silent:
                    client.sendall(frame)
        _close(client, server)

    def close(self) -> None:
        self.listener.close()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _close(*socks: socket.socket) -> None:
    for s in socks:
        with suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)


@contextmanager
def _cluster(tmp: Path) -> Iterator[tuple[Node, Node, LossyRelay]]:
    """Node a owns every partition and runs; node b's data dir asks through the relay."""
    with sealed_cluster(tmp) as bus:
        relay = LossyRelay(bus.url)
        a = bus.node("a", f"0-{PARTITIONS - 1}")
        b = Node(tmp, "b", relay.url, bus.key, "0", bus_key=bus.bus_key)  # it only asks
        a.launch().wait_up()
        try:
            yield a, b, relay
        finally:
            relay.close()


def _store(url: str, bus: Path, user: str) -> None:
    from appliance.cluster.client import NatsClient
    from appliance.keys.bus import load_bus_keys

    row = {"v": 1, "op": "ingest", "tenant": TENANT, "user_id": user,
           "request_id": f"r-{user}", "text": "Move my dentist appointment to Friday.",
           "ts": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
    with NatsClient(url, timeout=60, bus_keys=load_bus_keys(bus)) as gateway:
        assert gateway.request(row)["ok"]


def _erase(node: Node, user: str, *extra: str) -> list[str]:
    return ["erase", *node.args(), "--tenant", TENANT, "--user", user, "--reason",
            "DSAR 2026-95", "--wait", "60", *extra]


def _forwarded(node: Node) -> list[dict[str, Any]]:
    r = run_cli("audit", "log", "--json", "--event", "erase_forwarded", *node.args(),
                env=node.env)
    assert r.returncode == 0, r.stderr
    return [e["details"] for e in json.loads(r.stdout)]


def test_an_erasure_whose_acknowledgement_is_lost_is_never_said_not_sent(
        tmp_path: Path) -> None:
    from appliance.keys import read_key_file

    with _cluster(tmp_path) as (a, b, relay):
        for user in ("ulla", "olga", "pia"):
            _store(a.url, tmp_path / "bus.key", user)
        # the acknowledgement lost, the bucket still readable: the owner's answer is seen
        seen = run_cli(*_erase(b, "ulla"), env=b.env)
        assert relay.dropped == 1
        # NATS silent after the put: what it did with the request is not known
        relay.silent_after_put = True
        unknown = run_cli(*_erase(b, "olga"), env=b.env)
        as_json = run_cli(*_erase(b, "pia", "--json"), env=b.env)
        assert relay.dropped == 3
        assert a.stop() == 0
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert seen.stdout.startswith("Erased 1 record in 1 bucket of u_")
    assert "on node 'a', which owns acme (audited there)" in seen.stdout
    assert unknown.returncode == 8, unknown.stdout + unknown.stderr
    assert "Traceback" not in unknown.stderr and "did not reach" not in unknown.stdout
    said = unknown.stdout.strip()
    assert said.startswith("The erasure of u_") and " in acme is pending, NOT confirmed: NATS " \
        "did not confirm that it took the request (" in said
    assert "so it may or may not be in NATS: if it is, node 'a', which owns acme, applies " \
        "it when it reads it" in said and "nothing says it was not erased" in said
    assert as_json.returncode == 8, as_json.stdout + as_json.stderr
    out = json.loads(as_json.stdout)
    assert (out["sent"], out["confirmed"], out["pending"], out["applied"]) == (
        True, False, True, False)
    assert out["error"].startswith("NATS did not confirm that it took the request (")
    entries = _forwarded(b)
    assert [(e["outcome"], e["confirmed"]) for e in entries] == [
        ("applied", True), ("pending", False), ("pending", False)]
    assert entries[1]["error"].startswith("NATS did not confirm that it took the request (")
    # the owner erased all three: what the command could not confirm did happen
    for user in ("ulla", "olga", "pia"):
        assert users_records(a.data, read_key_file(a.key), TENANT, user)[0] == 0, user
