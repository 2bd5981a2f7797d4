"""Clients for gateways and `semtrace send`: sync and asyncio, NDJSON over a Unix socket.

`AsyncClient` imports asyncio when it runs: `semtrace send` (the blocking `Client`) loads
the standard library's sockets and JSON, and no more (tests/test_cli_start.py)."""

from __future__ import annotations

import collections
import contextlib
import grp
import json
import os
import pwd
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import AccessDenied, ConfigError, SemtraceError

if TYPE_CHECKING:
    import asyncio


class ConnectionClosed(SemtraceError):
    """The service closed the connection (it stopped or restarted): a new one may answer."""


class ReplyLate(SemtraceError, TimeoutError):
    """The request was sent whole and its reply did not come in time: the service has it
    and usually records it (a slow commit, a long queue); only its reply was given up on.
    (A request that could not be sent in time is a plain TimeoutError.)"""

    sent = True


LATE = ("The request was sent and its reply did not come within the timeout; the service "
        "may still record it.")


def decode_reply(line: bytes) -> dict[str, Any]:
    """One reply line as a JSON object; one sentence (never the line itself) otherwise."""
    if not line:
        raise ConnectionClosed("The service closed the connection.")
    try:
        reply = json.loads(line)
    except ValueError:
        raise SemtraceError("The service sent a reply that is not JSON.") from None
    if not isinstance(reply, dict):
        raise SemtraceError("The service sent a reply that is not a JSON object.")
    return reply


def connection_refusal(reply: dict[str, Any]) -> SemtraceError | None:
    """The service's refusal of the connection itself, a frame that answers no request
    (its `request_id` null): `forbidden` (the peer is not admitted) or `busy` (its
    `max_connections` are open; nothing sent on this connection was read), as one
    sentence; None for any other reply."""
    error = reply.get("error")
    if reply.get("request_id") is not None or not isinstance(error, dict):
        return None
    if error.get("code") == "forbidden":
        return AccessDenied(f"The service refused this connection: {error.get('message')}")
    if error.get("code") == "busy":  # closed: a new connection may get in
        return ConnectionClosed(f"The service refused this connection: {error.get('message')}")
    return None


def unreachable(path: str | Path) -> None:
    """Refuse, in one sentence, a socket path no socket can have (too long)."""
    from appliance.socket_folder import too_long

    if (said := too_long(path)) is not None:
        raise SemtraceError(f"The socket {path} cannot be reached: {said}.")


def _name(kind: str, number: int) -> str:
    """A user's or group's name, else its number ('uid 1000')."""
    try:
        return pwd.getpwuid(number).pw_name if kind == "uid" else grp.getgrgid(number).gr_name
    except KeyError:
        return f"{kind} {number}"


def permission_denied(path: str | Path) -> SemtraceError:
    """A socket this user may not connect to: whose it is and what to do, in one sentence
    (a gateway's user not yet in the service's group, README's install section)."""
    who = _name("uid", os.getuid())
    said = f"Permission denied on the socket {path}: this user, {who},"
    try:
        st = os.stat(path)
    except OSError:  # a folder on its path is closed to this user
        return SemtraceError(f"{said} may not enter a folder on its path: give the socket "
                             "of a folder it may enter (the service's --socket), or run as "
                             "the service's user.")
    owner, group = _name("uid", st.st_uid), _name("gid", st.st_gid)
    member = st.st_gid == os.getgid() or st.st_gid in os.getgroups()
    if st.st_mode & 0o020 and not member:  # its group may write it: the way in
        if who in _members(st.st_gid):
            return SemtraceError(f"{said} was added to its group, {group}, after this "
                                 "session began: log in again (or run `newgrp "
                                 f"{group}`).")
        return SemtraceError(f"{said} is not in its group, {group}: add it (`usermod -aG "
                             f"{group} {who}`, which takes effect at its next login) or run "
                             "as a member.")
    return SemtraceError(f"{said} may not write it (mode {st.st_mode & 0o777:o}, owner "
                         f"{owner}, group {group}): run as {owner}.")


def _members(gid: int) -> list[str]:
    try:
        return list(grp.getgrgid(gid).gr_mem)
    except KeyError:
        return []


def not_listening(path: str | Path) -> SemtraceError:
    """No service at a socket path (none there, or one a stopped service left): the path and
    what to do, in one sentence."""
    return SemtraceError(f"No semtrace service is listening on {path}: start it (`semtrace "
                         "serve`, or `systemctl start semtrace` where install.sh installed "
                         "it), or give the socket path it serves.")


class Client:
    """A blocking client; one request at a time, or pipelined with `stream`."""

    def __init__(self, socket_path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = str(socket_path)
        unreachable(self.path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.path)
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
            self._sock.close()
            raise not_listening(self.path) from None
        except PermissionError:
            self._sock.close()
            raise permission_denied(self.path) from None
        self._file = self._sock.makefile("rwb")
        self._kept: dict[str, Any] | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, within: float | None = None) -> None:
        """Close at once (`within`, the time a NATS client may take to drain, is not
        needed: a socket has nothing to drain)."""
        with contextlib.suppress(OSError):  # requests still buffered for a closed connection
            self._file.close()
        self._sock.close()

    def settimeout(self, timeout: float) -> None:
        """The time each later send or receive may block."""
        self._sock.settimeout(timeout)

    def _read(self) -> dict[str, Any]:
        if self._kept is not None:  # read by `_closed`, not yet handed over
            reply, self._kept = self._kept, None
            return reply
        try:
            return decode_reply(self._file.readline())
        except ConnectionResetError:
            raise ConnectionClosed("The service closed the connection.") from None

    def _closed(self) -> SemtraceError:
        """What to raise when the service closed the connection under a write: a peer it
        does not admit is sent one refusal frame, then the connection is closed. Any other
        reply read is kept for the next `_read` (the answer to a request sent before)."""
        reply = self._read()
        refusal = connection_refusal(reply)
        if refusal is None:
            self._kept = reply
        return refusal or ConnectionClosed("The service closed the connection.")

    def _write(self, obj: dict[str, Any], *, flush: bool) -> None:
        """Write one request; when the service has closed the connection (a peer it does not
        admit is sent one refusal frame and closed), raise what it said, in one sentence."""
        try:
            self._file.write((json.dumps(obj) + "\n").encode())
            if flush:
                self._file.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise self._closed() from None

    def request(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply (ReplyLate when it was sent and its reply
        did not come within the socket's timeout)."""
        self._write(obj, flush=True)
        try:
            return self._read()
        except TimeoutError:
            raise ReplyLate(LATE) from None

    def ingest(self, *, tenant: str, user_id: str, text: str, request_id: str,
               **fields: Any) -> dict[str, Any]:
        return self.request({"v": 1, "op": "ingest", "tenant": tenant, "user_id": user_id,
                             "text": text, "request_id": request_id, **fields})

    def ping(self) -> dict[str, Any]:
        return self.request({"v": 1, "op": "ping"})

    def stream(self, requests: Iterable[dict[str, Any]], *, window: int = 64
               ) -> Iterator[dict[str, Any]]:
        """Pipeline requests (up to `window` in flight); yields replies in order. When the
        service closes the connection under a write (a line over its frame limit: it answers
        `frame_too_large` and reads no further), the replies it wrote before closing are
        yielded first, that one included, then ConnectionClosed is raised."""
        inflight = 0
        try:
            for obj in requests:
                self._write(obj, flush=False)
                inflight += 1
                if inflight >= window:
                    self._flush()
                    yield self._read()
                    inflight -= 1
            self._flush()
        except ConnectionClosed:
            for _ in range(inflight + 1):  # and the one being written
                try:
                    reply = self._read()
                except (SemtraceError, OSError):
                    break
                yield reply
            raise
        for _ in range(inflight):
            yield self._read()

    def _flush(self) -> None:
        try:
            self._file.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise self._closed() from None


class AsyncClient:
    """An asyncio client; requests on one connection are pipelined: each is written at once,
    and the replies, which come in request order, are handed to them in that order (the
    service then takes a process's concurrent prompts together, in one commit). No task of
    its own: a waiting request reads the replies for all while the others wait for theirs,
    so an event loop closed under it leaves nothing pending."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._waiting: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self._reading: asyncio.Future[None] | None = None  # done when its reader stops
        self._ended = False  # the connection ended: no later reply will come

    @classmethod
    async def connect(cls, socket_path: str | Path) -> AsyncClient:
        import asyncio

        unreachable(socket_path)
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=1 << 22)
        except (FileNotFoundError, NotADirectoryError, ConnectionRefusedError):
            raise not_listening(socket_path) from None
        except PermissionError:
            raise permission_denied(socket_path) from None
        return cls(reader, writer)

    async def request(self, obj: dict[str, Any], timeout: float | None = None
                      ) -> dict[str, Any]:
        """Send one request and wait for its reply (after `timeout` seconds, if given,
        ReplyLate: it was written, and the connection sends it unless it drops). A request
        given up on (cancelled, timed out) still has its reply read, so the next ones get
        theirs."""
        import asyncio

        if self._ended:
            raise ConnectionClosed("The service closed the connection.")
        reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting.append(reply)  # in the order written: nothing awaited in between
        self._writer.write((json.dumps(obj) + "\n").encode())
        if timeout is None:
            return await self._reply(reply)
        try:
            return await asyncio.wait_for(self._reply(reply), timeout)
        except TimeoutError:
            raise ReplyLate(LATE) from None

    async def _reply(self, reply: asyncio.Future[bytes]) -> dict[str, Any]:
        """The reply of the request just written, once it comes."""
        import asyncio

        try:
            await self._writer.drain()
            while not reply.done():
                if self._reading is None:
                    await self._read_until(reply)
                else:  # another request reads: until it has read this reply, or stops
                    either: set[asyncio.Future[Any]] = {reply, self._reading}
                    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            reply.cancel()  # its reply, when it comes, is read and dropped
            raise
        return decode_reply(reply.result())

    async def _read_until(self, mine: asyncio.Future[bytes]) -> None:
        """Read reply lines, each for the request waiting longest, until `mine` has its
        own; at the end of the connection every waiting request gets an empty line."""
        import asyncio

        self._reading = asyncio.get_running_loop().create_future()
        try:
            while not mine.done():
                try:
                    line = await self._reader.readline()
                except (ConnectionError, ValueError):  # reset, or a line past the limit
                    line = b""
                if not line:
                    self._ended = True
                    while self._waiting:
                        self._hand(self._waiting.popleft(), b"")  # decode: ConnectionClosed
                elif self._waiting:
                    self._hand(self._waiting.popleft(), line)
        finally:
            self._reading.set_result(None)
            self._reading = None

    @staticmethod
    def _hand(waiting: asyncio.Future[bytes], line: bytes) -> None:
        if not waiting.done():  # one given up on: its reply is dropped
            waiting.set_result(line)

    async def close(self, within: float | None = None) -> None:
        """Close at once (`within`: as `Client.close`)."""
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


def is_nats_url(target: str | Path) -> bool:
    """Whether a gateway's target is a NATS URL rather than a socket path."""
    return isinstance(target, str) and target.startswith(("nats://", "tls://"))


def bus_keys_for(target: str | Path, bus_key_file: str | Path | None,
                 plain_bus: bool = False) -> Any:
    """The bus keys a gateway seals with (None: plain, or a socket); one sentence if misplaced
    or bad, or if a NATS URL has neither a key file nor the explicit `plain_bus` opt-out."""
    if not is_nats_url(target):
        if bus_key_file is not None:
            raise ConfigError("bus_key_file seals messages to a nats:// URL; a Unix socket "
                              "stays on the host and takes none.")
        return None
    from appliance.keys.bus import (
        GATEWAY_NEEDS_KEY,
        load_bus_keys,
        require_sealing,
    )

    if bus_key_file is not None and plain_bus:
        raise ConfigError("bus_key_file and plain_bus=True contradict each other: keep one.")
    require_sealing(bus_key_file is not None, plain_bus, GATEWAY_NEEDS_KEY)
    return None if bus_key_file is None else load_bus_keys(bus_key_file)


def gateway_target(socket_path: str | Path, bus_key_file: str | Path | None,
                   plain_bus: bool) -> tuple[str | Path, Any]:
    """Where a gateway adapter sends (a NATS URL as given, else the socket's `Path`) and the
    bus keys it seals with (`bus_keys_for`: one sentence if they do not fit)."""
    bus_keys = bus_keys_for(socket_path, bus_key_file, plain_bus)
    return (socket_path if is_nats_url(socket_path) else Path(socket_path)), bus_keys


def open_client(target: str | Path, *, timeout: float = 30.0, bus_keys: Any = None,
                plain_bus: bool = False) -> Any:
    """A blocking client for a socket path or a `nats://` URL (`request`, `close`).

    `bus_keys` (from `bus_keys_for`) seals every request to a NATS URL; without them a
    NATS URL needs `plain_bus=True` (a socket takes neither).
    """
    if is_nats_url(target):
        from appliance.cluster.client import NatsClient

        return NatsClient(str(target), timeout=timeout, bus_keys=bus_keys, plain_bus=plain_bus)
    return Client(target, timeout=timeout)


async def open_async_client(target: str | Path, *, timeout: float = 30.0,
                            bus_keys: Any = None, plain_bus: bool = False) -> Any:
    """An asyncio client for a socket path or a `nats://` URL (`request`, `close`)."""
    if is_nats_url(target):
        from appliance.cluster.client import AsyncNatsClient

        return await AsyncNatsClient.connect(str(target), timeout=timeout, bus_keys=bus_keys,
                                             plain_bus=plain_bus)
    return await AsyncClient.connect(target)

