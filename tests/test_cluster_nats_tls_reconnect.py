"""A connection asked for TLS (tls:// or security.tls_ca_file) never speaks without it, also
once it is up: nats-py upgrades to TLS only when the server's INFO says tls_required, on a
reconnection as on the first connection, and to a server the INFO's connect_urls named.
150f5b2 checked the first connection only. Real nats-servers, TLS from a CA made here, and
a relay in front of the plain one that keeps every byte the client sent it."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_cluster import _free_port, _nats_binary
from test_cluster_nats_connect import _ca_and_server

PASSWORD = "s3cret-h192-canary"
AUTH = f'authorization {{ user: node, password: "{PASSWORD}" }}\n'
WITHIN = 60.0  # a bound on each wait for an event, never reached when things work


class Relay:
    """A TCP relay to `port` that keeps, per connection, what the client sent and whether
    the client closed it; a connection the server does not take is closed at once."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: list[bytearray] = []
        self.client_closed: list[bool] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.port))
            except OSError:
                client.close()
                continue
            with self._lock:
                n = len(self.sent)
                self.sent.append(bytearray())
                self.client_closed.append(False)
            threading.Thread(target=self._pipe, args=(client, server, n), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, None),
                             daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, n: int | None) -> None:
        try:
            while data := src.recv(65536):
                if n is not None:
                    self.sent[n] += data
                dst.sendall(data)
            if n is not None:
                self.client_closed[n] = True
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def all_sent(self) -> bytes:
        with self._lock:
            return b"".join(self.sent)

    def refused(self) -> int:
        """Connections the client closed without sending a byte."""
        with self._lock:
            return sum(1 for sent, closed in zip(self.sent, self.client_closed, strict=True)
                       if closed and not sent)

    def close(self) -> None:
        self._listener.close()


@contextmanager
def _server(tmp: Path, port: int, conf: str) -> Iterator[None]:
    binary = _nats_binary()
    if binary is None:
        pytest.skip("nats-server is not installed (make nats-server)")
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "nats.conf").write_text(f"listen: 127.0.0.1:{port}\n{conf}")
    proc = subprocess.Popen([binary, "-c", str(tmp / "nats.conf")], stdout=subprocess.DEVNULL,
                            stderr=(tmp / "nats.log").open("ab"))
    try:
        _wait_sync(lambda: _listening(port), "nats-server to listen")
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait_sync(done: Callable[[], bool], what: str) -> None:
    """(Blocks the loop a client may run on: a nats-server starts within a second.)"""
    deadline = time.monotonic() + WITHIN
    while not done():
        assert time.monotonic() < deadline, f"waited {WITHIN:.0f} s for {what}"
        time.sleep(0.05)


async def _wait(done: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WITHIN
    while not await done():
        assert loop.time() < deadline, f"waited {WITHIN:.0f} s for {what}"
        await asyncio.sleep(0.05)


def _security(tmp: Path, ca: Path) -> object:
    from appliance.config import ClusterSecurity

    password = tmp / "node.password"
    password.write_text(PASSWORD + "\n")
    password.chmod(0o600)
    return ClusterSecurity(user="node", password_file=str(password), tls_ca_file=str(ca),
                           plain_bus=True)


def _refused_twice_or_leaked(relay: Relay) -> Callable[[], Awaitable[bool]]:
    """Whether the client, from now on, was refused twice, or sent the password."""
    before = relay.refused()  # (the check before a first connection reads an INFO too)

    async def done() -> bool:
        return relay.refused() >= before + 2 or PASSWORD.encode() in relay.all_sent()
    return done


def test_a_tls_connection_does_not_reconnect_in_plain_text_to_a_server_without_tls(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The server is restarted on its port without TLS: the node's client went on, sent
    CONNECT with the password in clear, and was connected over plain TCP. Now it reads the
    server's INFO, closes, and says so; once the server has TLS again it is back."""
    from appliance.cluster.bus import close_within, connect

    ca, cert, key = _ca_and_server(tmp_path)
    tls = f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
    port = _free_port()
    relay = Relay(port)
    sec = _security(tmp_path, ca)

    async def run() -> None:
        with _server(tmp_path / "tls", port, AUTH + tls):
            nc = await connect(f"tls://{relay.address}", sec, name="h192")  # type: ignore[arg-type]
            assert nc.is_connected
            await nc.flush()
        assert PASSWORD.encode() not in relay.all_sent()  # over TLS: encrypted
        with _server(tmp_path / "plain", port, AUTH):
            await _wait(_refused_twice_or_leaked(relay), "two reconnection attempts")
            assert PASSWORD.encode() not in relay.all_sent(), "the password went in clear"
            assert not nc.is_connected
        with _server(tmp_path / "tls-again", port, AUTH + tls):
            async def connected() -> bool:
                return bool(nc.is_connected)
            await _wait(connected, "the reconnection over TLS")
            await nc.flush()
        await close_within(nc, 1.0)

    asyncio.run(run())
    assert PASSWORD.encode() not in relay.all_sent()
    said = [r.getMessage() for r in caplog.records if "does not require TLS" in r.getMessage()]
    assert said == [f"The NATS server at tls://{relay.address} does not require TLS, which "
                    "this connection asks for (a tls:// URL or security.tls_ca_file): nothing "
                    "was sent to it; enable TLS on the server (a tls block in "
                    "nats-server.conf, without allow_non_tls), or use a nats:// URL without "
                    "tls_ca_file. This connection goes on trying its servers, over TLS "
                    "only."], said


def test_a_tls_connection_does_not_follow_the_server_list_to_a_peer_without_tls(
        tmp_path: Path) -> None:
    """A cluster of two nats-servers, one with TLS for clients, its route peer without: the
    first's INFO names the second (connect_urls), and once the first stops, the client
    reconnected there in plain text, the password included."""
    from appliance.cluster.bus import close_within, connect

    ca, cert, key = _ca_and_server(tmp_path)
    tls = f'tls {{ cert_file: "{cert}", key_file: "{key}" }}\n'
    a, b, route_a, route_b = (_free_port() for _ in range(4))
    relay = Relay(b)  # the clients the second server advertises come through here

    def cluster(me: int, peer: int, advertise: str) -> str:
        return (f"{advertise}cluster {{ name: h192, listen: 127.0.0.1:{me}, "
                f"routes: [nats-route://127.0.0.1:{peer}] }}\n")

    async def run() -> None:
        with _server(tmp_path / "plain-peer", b,
                     AUTH + cluster(route_b, route_a, f'client_advertise: "{relay.address}"\n')):
            with _server(tmp_path / "tls", a, AUTH + tls + cluster(route_a, route_b, "")):
                nc = await connect(f"tls://127.0.0.1:{a}", sec,  # type: ignore[arg-type]
                                   name="h192")

                async def discovered() -> bool:
                    return any(u.netloc == relay.address for u in nc.discovered_servers)
                await _wait(discovered, "the TLS server to name its peer")
            await _wait(_refused_twice_or_leaked(relay), "two attempts at the peer")
            assert PASSWORD.encode() not in relay.all_sent(), "the password went in clear"
            assert not nc.is_connected
            await close_within(nc, 1.0)

    sec = _security(tmp_path, ca)
    asyncio.run(run())
