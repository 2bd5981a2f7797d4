"""A turn of the decorator (`decorator.py`): one prompt being answered, its reply, and what
the body adds (usage, the answer's digest)."""

from __future__ import annotations

from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from appliance.ingest import content_digest
from appliance.integrations import on_event_loop
from appliance.integrations.outbox import Outbox


@dataclass
class Turn:
    """One prompt being answered; the body may add usage and answer. `reply` is the
    registration's reply, there on entry when it comes within `register_wait`, else when it
    comes (or, if registering failed, the reply to the whole ingest sent after the block).
    Read after the block, it waits for the turn's requests still being sent (`timeout` at
    most; `await areply()` in asyncio code), so a slow appliance's reply is not missed."""

    request: dict[str, Any]
    _reply: dict[str, Any] | None = None
    _response: dict[str, Any] = field(default_factory=dict)
    _last: futures.Future[None] | None = None  # the turn's last request, once the block ended
    _wait: float = 0.0  # how long a read after the block waits for it

    @property
    def reply(self) -> dict[str, Any] | None:
        """The reply; after the block, once the turn's requests are done (`timeout` at most).
        Never blocks inside the block, nor on a thread that runs an asyncio event loop."""
        last = self._last
        if last is not None and not last.done() and not on_event_loop():
            futures.wait([last], timeout=self._wait)
        return self._reply

    async def areply(self) -> dict[str, Any] | None:
        """`reply` for asyncio code: after the block, the event loop serves other tasks
        while the turn's requests are still being sent (`timeout` at most)."""
        if self._last is not None:
            await Outbox.await_(self._last, self._wait)
        return self._reply

    def usage(self, *, input_tokens: int | None = None,
              output_tokens: int | None = None) -> None:
        """Token counts of the model's answer."""
        self._response.update({"input_tokens": input_tokens, "output_tokens": output_tokens})

    def answer(self, text: str, *, response_id: str | None = None) -> None:
        """The model's answer (only its digest is sent) and its response id, if any. An
        answer without text (tool calls alone) has no digest: a later history's messages
        without text must not match it."""
        if text.strip():
            self._response["sha256"] = content_digest(text)
        if response_id:
            self._response["id"] = response_id

    @property
    def conversation_id(self) -> str | None:
        """The reply's conversation id (read as `reply` is), or None."""
        reply = self.reply
        return reply.get("conversation_id") if reply and reply.get("ok") else None
