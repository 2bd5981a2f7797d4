"""Ingest-socket connections: peer check, the shared connection bound, pipelined
reads and in-order replies."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from typing import Any

from appliance.protocol import encode, error_reply
from appliance.service.dispatch import Dispatch
from appliance.service.peers import peer_allowed, peer_credentials

log = logging.getLogger("semtrace.service")
# Seconds a stopping service still gives a connection to take the replies it has (a
# client that reads none of them would otherwise hold the stop up for ever).
STOP_GRACE_S = 5.0


def frame_too_large(max_frame_bytes: int) -> dict[str, Any]:
    """The reply to a line longer than `max_frame_bytes`, on either socket: the line is not
    read on (the connection is then closed, its framing lost), so it is never buffered."""
    return error_reply("frame_too_large",
                       f"A request line is larger than {max_frame_bytes} bytes; closing.")


class Connections(Dispatch):
    """Serve connections of the ingest socket (and bound those of the query socket)."""

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        await self._hold(writer, self._serve_connection(reader, writer), self._connections)

    async def _hold(self, writer: asyncio.StreamWriter, serve: Coroutine[Any, Any, None],
                    held: set[asyncio.Task[Any]]) -> None:
        """Run one connection under its socket's `max_connections` bound (`held`: each
        socket has its own, so readers filling the query socket never lock the gateway
        out of the ingest socket); over it, answer `busy` and close. The connection is
        closed however it ends."""
        task = asyncio.current_task()
        assert task is not None
        if len(held) >= self.policies.service.max_connections:
            serve.close()
            self.counters["busy"] += 1
            with contextlib.suppress(Exception):
                writer.write(encode(error_reply(
                    "busy", "Too many connections are open; retry shortly.",
                    retry_after_ms=self.policies.service.busy_retry_after_ms)))
                await writer.drain()
            writer.close()
            return
        held.add(task)
        try:
            await serve
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            held.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_connection(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        peer = peer_credentials(sock)
        if not peer_allowed(peer.uid, peer.gids, self.policies.access, own_uid=os.getuid(),
                            own_gid=os.getgid()):
            self.counters["rejected_peers"] += 1
            log.warning("peer refused", extra={"event": "peer_refused", "uid": peer.uid,
                                               "gid": sorted(peer.gids)})
            writer.write(encode(error_reply("forbidden", "This user may not use the socket.")))
            await writer.drain()
            return
        replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None] = asyncio.Queue(
            maxsize=self.policies.service.inflight_per_connection)
        sender = asyncio.create_task(self._send_replies(replies, writer))
        try:
            await self._read_requests(reader, replies)
            await replies.put(None)  # the sender never stops taking replies: no wait for ever
            await sender
        finally:
            if not sender.done():  # the service is stopping (this task was cancelled)
                await _wind_down(sender, replies, writer)

    async def _read_requests(self, reader: asyncio.StreamReader,
                             replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None]) -> None:
        svc = self.policies.service
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), svc.idle_timeout_s)
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # EOF (maybe mid-line: nothing was a request) or idle
            except asyncio.LimitOverrunError:
                fut = loop.create_future()
                fut.set_result(frame_too_large(svc.max_frame_bytes))
                await replies.put(fut)
                return
            if not line.strip():
                continue
            # read now: the request in flight holds what it needs, not its frame
            parsed = self.parse_frame(line.rstrip(b"\r\n"), socket=True)
            del line
            await replies.put(asyncio.ensure_future(self.answer_parsed(parsed)))

    async def _send_replies(self, replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None],
                            writer: asyncio.StreamWriter) -> None:
        """Write each reply in request order. Once the client is gone (or has read none
        for `idle_timeout_s`: closed), the rest are still taken (their requests run to
        the end) but not written, so that the reader is never stuck on a full queue."""
        open_ = True
        while (fut := await replies.get()) is not None:
            reply = await fut
            open_ = open_ and await self._write(writer, encode(reply))

    async def _write(self, writer: asyncio.StreamWriter, data: bytes) -> bool:
        """Write `data`; False when the client is gone, or read nothing for
        `idle_timeout_s` while its replies piled up (the connection is then closed: else a
        client that never reads would hold its connection, and a stop, for ever)."""
        if writer.is_closing():  # no write to a closed transport (asyncio logs each one)
            return False
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), self.policies.service.idle_timeout_s)
        except (ConnectionError, TimeoutError):
            writer.transport.abort()
            return False
        return True


async def _wind_down(sender: asyncio.Task[None],
                     replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None],
                     writer: asyncio.StreamWriter) -> None:
    """On stop: the replies in hand are sent, for `STOP_GRACE_S` at most; a client that
    does not take them is cut off."""
    with contextlib.suppress(asyncio.QueueFull):
        replies.put_nowait(None)
    done, _ = await asyncio.wait({sender}, timeout=STOP_GRACE_S)
    if not done:
        writer.transport.abort()
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
