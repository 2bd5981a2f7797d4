"""The readers' query socket: each request answered under the peer's role, on the
reader thread."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from appliance.protocol import ProtocolError, decode_frame, echo_id, encode, error_reply
from appliance.service.connections import Connections, frame_too_large
from appliance.service.peers import Peer, peer_credentials
from appliance.socket_folder import listen_at

log = logging.getLogger("semtrace.service")


class QuerySocket(Connections):
    """Serve the query socket (queryserver.py does the reading)."""

    async def _start_query_socket(self, path: Path, limit: int) -> None:
        # anyone may ask; each request runs under the peer's role
        self._query_server = await asyncio.start_unix_server(
            self._on_query_connect, sock=listen_at(path, 0o666), limit=limit)

    async def _on_query_connect(self, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        await self._hold(writer, self._serve_queries(reader, writer), self._query_connections)

    async def _serve_queries(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        peer = peer_credentials(writer.get_extra_info("socket"))
        while not self._stopping.is_set():
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"),
                                              self.policies.service.idle_timeout_s)
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # EOF (maybe mid-line: nothing was a request) or idle
            except asyncio.LimitOverrunError:  # as on the ingest socket: said, then closed
                await self._write(writer, encode(frame_too_large(
                    self.policies.service.max_frame_bytes)))
                return
            if line.strip() and not await self._write(
                    writer, encode(await self.query(line.rstrip(b"\r\n"), peer))):
                return

    async def query(self, frame: bytes, peer: Peer) -> dict[str, Any]:
        """The reply to one read request from `peer` (queryserver.py)."""
        from appliance import queryserver
        from appliance.roles import Caller

        rid = None
        try:
            obj = decode_frame(frame)
            rid = echo_id(obj.get("request_id"))
            queryserver.check_op(obj)
            policies = self.policies  # one snapshot for the check and the answer (SIGHUP)
            role = queryserver.authorize(policies.access, obj, Caller(peer.uid, peer.gids),
                                         owner_uid=os.getuid())
            if self._queue.qsize() + self._side >= self.policies.service.queue_max:
                return error_reply("busy", "The service is busy; retry shortly.", rid,
                                   retry_after_ms=self.policies.service.busy_retry_after_ms)
            self._side += 1
            try:
                loop = asyncio.get_running_loop()
                embedder: Any = self.pipeline.embedder
                text = queryserver.search_text(obj)
                if text is not None:  # embedded on the reader thread, not queued behind
                    # the worker's batches; the model's lock (embed.py) keeps it to one
                    # thread at a time with the embedding thread's packs
                    vectors, _ = await loop.run_in_executor(
                        self._readers, embedder.embed,
                        [queryserver.model_text(text, policies.correlation.max_text_chars)])
                    embedder = queryserver.QueryVector(embedder.model_id, embedder.dims, text,
                                                       vectors[0])
                if self._read_side is None:
                    self._read_side = queryserver.ReadSide(self.pipeline.store,
                                                           self.pipeline.keys)
                reply: dict[str, Any] = await loop.run_in_executor(
                    self._readers, self._read_side.answer, obj, role, policies, embedder)
            finally:
                self._side -= 1
        except ProtocolError as exc:
            if exc.code == "forbidden":
                log.warning("query refused", extra={"event": "query_refused", "uid": peer.uid})
            return error_reply(exc.code, exc.message, rid or exc.request_id, **exc.extra)
        except Exception as exc:
            log.error("query failed", extra={"event": "query_failed",
                                             "exc_type": type(exc).__name__})
            return error_reply("internal", "The query could not be answered; retry later.",
                               rid)
        return reply
