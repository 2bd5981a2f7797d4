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


class Connections(Dispatch):
    """Serve connections of the ingest socket (and bound those of the query socket)."""

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        await self._hold(writer, self._serve_connection(reader, writer))

    async def _hold(self, writer: asyncio.StreamWriter,
                    serve: Coroutine[Any, Any, None]) -> None:
        """Run one connection of either socket under the shared `max_connections` bound;
        over it, answer `busy` and close. The connection is closed however it ends."""
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.policies.service.max_connections:
            serve.close()
            self.counters["busy"] += 1
            with contextlib.suppress(Exception):
                writer.write(encode(error_reply(
                    "busy", "Too many connections are open; retry shortly.",
                    retry_after_ms=self.policies.service.busy_retry_after_ms)))
                await writer.drain()
            writer.close()
            return
        self._connections.add(task)
        try:
            await serve
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
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
        finally:
            await replies.put(None)
            await sender

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
                fut.set_result(error_reply(
                    "frame_too_large",
                    f"A request line is larger than {svc.max_frame_bytes} bytes; closing."))
                await replies.put(fut)
                return
            if not line.strip():
                continue
            await replies.put(asyncio.ensure_future(self._respond(line)))

    async def _send_replies(self, replies: asyncio.Queue[asyncio.Future[dict[str, Any]] | None],
                            writer: asyncio.StreamWriter) -> None:
        while (fut := await replies.get()) is not None:
            reply = await fut
            with contextlib.suppress(ConnectionError):
                writer.write(encode(reply))
                await writer.drain()

    async def _respond(self, line: bytes) -> dict[str, Any]:
        return await self.answer(line.rstrip(b"\r\n"), socket=True)
