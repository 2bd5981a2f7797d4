"""For applications that call models directly: a context manager and a decorator.

    tracer = opentelemetry.trace.get_tracer("my-app")
    semtrace = Semtrace("/run/semtrace/semtrace.sock", tenant="acme")
    # or, to a cluster: Semtrace("nats://10.0.0.5:4222", tenant="acme",
    #                            bus_key_file="/etc/semtrace/bus.key")
    # (a NATS URL without a bus key is refused, unless plain_bus=True)

    with tracer.start_as_current_span("chat gpt-4o"):
        with semtrace.turn(user_id=user, text=prompt, history=messages[:-1],
                           session_id=chat_id, model="openai/gpt-4o") as turn:
            turn.conversation_id             # known before the model is called (if it
                                             # answers within register_wait)
            answer = call_model(messages)
            turn.usage(input_tokens=12, output_tokens=80)
            turn.answer(answer)               # only its digest is sent

    @semtrace.traced(text="prompt", user_id="user", session_id="chat_id", history="messages")
    def ask(prompt: str, user: str, chat_id: str, messages: list[dict]) -> str: ...

On entering the block the prompt is registered, with the digests of the
messages before it (`history`: the content never leaves this process), and the
reply's attributes are set on the current span while it is open. On leaving it,
an `update` sends the latency, status, token counts and the answer's digest.
Entering and leaving each wait `register_wait` at most (default 1 s): a slow appliance
never holds the application longer, and its later reply is still taken (`outbox.py`).
The appliance being unreachable, hung or busy never breaks the application: `reply` is
then None, one warning is logged, and requests are not even tried for a pause
(`channel.py`). A `redact` function that fails keeps the
prompt in the process (nothing is sent) and the block still runs.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry import trace

from appliance.client import gateway_target
from appliance.integrations import (
    MAX_TEXT_CHARS,
    annotate,
    check_tenants,
    history_digests,
    prompt_fields,
    traceparent,
    waits,
)
from appliance.integrations.channel import LOOP_LINES, SyncChannel, lane, shard_of
from appliance.integrations.outbox import Outbox
from appliance.integrations.redaction import TextRedactor, text_redactor
from appliance.integrations.tool_loops import loop_request
from appliance.integrations.traced_args import (
    anonymous_user,
    arguments,
    check_names,
    prompt_text,
)
from appliance.integrations.turn import Turn

log = logging.getLogger("semtrace.integrations")


class Semtrace:
    """A thread-safe connection to the appliance for one tenant."""

    def __init__(self, socket_path: str | Path, *, tenant: str, timeout: float = 5.0,
                 register_wait: float = 1.0, redact: bool | TextRedactor = False,
                 bus_key_file: str | Path | None = None, plain_bus: bool = False,
                 max_text_chars: int = MAX_TEXT_CHARS) -> None:
        """Args:
            socket_path: the appliance's Unix socket, or a `nats://host:port` URL.
            timeout: what one request to the appliance may take in all.
            register_wait: how long entering a block waits for the prompt's registration,
                and leaving it for the update; a slower reply is still taken (the turn's
                `reply` is set, the span annotated if still open, the update follows), but
                the block does not wait for it. At most `timeout`.
            redact: True (Presidio, policies/redaction.toml) or a function: the prompt
                leaves this process with placeholders instead of PII.
            bus_key_file: with a NATS URL, the cluster's bus key file (mode 0600): every
                request is sealed (AES-256-GCM) before it reaches the bus. A NATS URL
                without it is refused here, unless `plain_bus=True`.
            plain_bus: with a NATS URL and no bus key, the explicit opt-out: prompts then
                cross the bus and JetStream's disk in plain text.
            max_text_chars: a longer prompt is cut to this many characters before it is
                sent (and marked truncated); the service's `max_text_chars`.
        """
        timeout, register_wait = waits(timeout, register_wait)  # before anything starts
        self.max_text_chars = max_text_chars
        check_tenants(socket_path, [tenant])
        self.socket_path, self._bus_keys = gateway_target(socket_path, bus_key_file, plain_bus)
        self.tenant = tenant
        self.timeout, self.register_wait = timeout, register_wait
        self.redact = text_redactor(redact, wait=timeout)
        self._channel = SyncChannel(self.socket_path, timeout=timeout, log=log,
                                    bus_keys=self._bus_keys, plain_bus=plain_bus)
        self._outbox = Outbox(self._channel.breaker, loop_senders=LOOP_LINES)

    def send(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """Send one request; None when the appliance did not answer (the channel logs it
        once and pauses, see `channel.py`); never raises."""
        return self._send(request, self._shard(request))

    def _send(self, request: dict[str, Any], shard: int) -> dict[str, Any] | None:
        """`send` on the connections of worker `shard`."""
        if request.get("op") == "ingest" and request.get("text") is None:
            return None  # its redaction failed: the prompt stays here
        return self._channel.send(request, shard)

    def _shard(self, request: dict[str, Any]) -> int:
        """The worker (and connections) of the request's user: one keeps a user's order.
        A tool loop's call, which the service may hold while its turn's update is on its
        way, goes to that worker's twin for loop calls (`Outbox.loop_worker`), so the other
        users of the worker are not kept behind it (the outbox keeps the user's order)."""
        shard = shard_of(str(request.get("user_id") or ""), self._outbox.workers)
        return self._outbox.loop_worker(shard) if lane(request) == "loop" else shard

    def _submit(self, job: Callable[[int], None], current: Turn) -> futures.Future[None]:
        """Hand `job` (given its worker) to the turn's worker, after its user's earlier
        requests."""
        shard = self._shard(current.request)
        return self._outbox.submit(functools.partial(job, shard), shard,
                                   key=str(current.request.get("user_id") or ""))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every registration and update of the blocks left so far has been
        answered or given up (`timeout` each at most); whether that happened within
        `timeout` (default: the adapter's). For a clean shutdown, and tests."""
        return self._outbox.flush(self.timeout if timeout is None else timeout)

    def close(self) -> None:
        """Send what is still waiting (bounded by `timeout`), then close the connection."""
        self.flush()
        self._outbox.close()
        self._channel.close()

    def _request(self, *, user_id: str | None, text: Any, session_id: str | None,
                 model: str | None,
                 request_id: str | None, history: Sequence[Any] | None,
                 previous_response_id: str | None) -> dict[str, Any]:
        prompt = prompt_text(text)  # None (nothing to send: see `send`) without text
        req: dict[str, Any] = {"v": 1, "op": "ingest", "tenant": self.tenant,
                               "request_id": request_id or "app-" + secrets.token_hex(8),
                               "user_id": user_id or anonymous_user(session_id),
                               **(prompt_fields(prompt, self.max_text_chars)
                                  if prompt is not None else {"text": None}),
                               "ts": datetime.now(UTC).isoformat()}
        if self.redact and req["text"] is not None:
            try:
                req["text"] = self.redact(req["text"])
            except Exception as exc:  # noqa: BLE001 - never send it unredacted, never fail
                self._channel.breaker.quiet_warning(
                    "the redaction failed; the prompt was not sent",
                    "semtrace_redaction_failed", req, error=type(exc).__name__)
                req["text"] = None  # not sent (see `send`)
        req.update({k: v for k, v in (("session_id", session_id), ("model", model),
                                      ("previous_response_id", previous_response_id),
                                      ("traceparent", traceparent())) if v})
        if isinstance(history, Sequence) and not isinstance(history, str | bytes):
            req["history"] = history_digests(history)  # a string or one message is none:
        return req  # sent as [], it would tell the service a new conversation starts

    def _begin(self, **fields: Any) -> tuple[Turn, Any, float]:
        return Turn(self._request(**fields)), trace.get_current_span(), time.perf_counter()

    def _register(self, current: Turn, span: Any, shard: int) -> None:
        """On the worker: send the registration; its reply, however late, is the turn's."""
        current._reply = self._send(current.request, shard)
        if current._reply is not None:
            annotate(span, current._reply)

    @staticmethod
    def _response(current: Turn, start: float, status: str) -> dict[str, Any]:
        """What the update reports, as the block ended (its latency is the block's)."""
        return {**current._response, "status": status,
                "latency_ms": round((time.perf_counter() - start) * 1000, 1)}

    def _update(self, current: Turn, span: Any, response: dict[str, Any],
                shard: int) -> None:
        """On the worker, after the registration: the update after the answer, or (when
        registering failed) the whole ingest, whose reply becomes the turn's."""
        if current._reply is not None and current._reply.get("ok"):
            self._send({"v": 1, "op": "update", "tenant": current.request["tenant"],
                        "request_id": current.request["request_id"], "response": response},
                       shard)
            return
        reply = self._send({**current.request, "response": response}, shard)
        current._reply = reply
        if reply is not None:
            annotate(span, reply)

    @contextlib.contextmanager
    def _recorded(self, begun: tuple[Turn, Any, float]) -> Iterator[Turn]:
        """Register the call, run the block, then send its update (or the whole ingest);
        the block waits `register_wait` at most for each (`outbox.py`)."""
        current, span, start = begun
        self._outbox.wait(self._submit(functools.partial(self._register, current, span),
                                       current), self.register_wait)
        status = "error"
        try:
            yield current
            status = "ok"
        finally:
            self._outbox.wait(self._last(current, span, start, status), self.register_wait)

    @contextlib.asynccontextmanager
    async def _arecorded(self, begun: tuple[Turn, Any, float]) -> AsyncIterator[Turn]:
        """`_recorded` for asyncio code: the event loop is never blocked."""
        current, span, start = begun
        await self._outbox.await_(self._submit(functools.partial(
            self._register, current, span), current), self.register_wait)
        status = "error"
        try:
            yield current
            status = "ok"
        finally:
            await self._outbox.await_(self._last(current, span, start, status),
                                      self.register_wait)

    def _last(self, current: Turn, span: Any, start: float, status: str) -> futures.Future[None]:
        """As the block ends: hand over its update (or whole ingest), which a read of the
        turn's `reply` from now on waits for."""
        current._last = self._submit(functools.partial(
            self._update, current, span, self._response(current, start, status)), current)
        current._wait = self.timeout
        return current._last

    @contextlib.contextmanager
    def turn(self, *, user_id: str | None, text: Any, history: Sequence[Any] | None = None,
             session_id: str | None = None, model: str | None = None,
             request_id: str | None = None,
             previous_response_id: str | None = None) -> Iterator[Turn]:
        """Record the prompt answered inside the block; annotate the current span.

        `history`: the chat messages before this prompt ({"role", "content"}, oldest
        first); only their digests are sent. `user_id` None: an anonymous user, told apart
        by `session_id`, else alone (anonymous callers never share one user).
        """
        with self._recorded(self._begin(
                user_id=user_id, text=text, session_id=session_id, model=model,
                request_id=request_id, history=history,
                previous_response_id=previous_response_id)) as current:
            yield current

    @contextlib.contextmanager
    def tool_call(self, *, user_id: str | None, previous_response_id: str | None,
                  request_id: str | None = None) -> Iterator[Turn]:
        """Record a Responses API call of a tool loop made inside the block: its input
        holds only the tools' outputs (nothing the user wrote) and it continues
        `previous_response_id`. It is no turn of its own but part of the user's turn that
        answered with that id: its usage and latency are added to the turn's, and the
        response id given to `answer` is added to the turn's (its earlier ones stay), so
        the loop's next call and the user's next message continue it. The current span
        gets the turn's attributes. Without a user id or a `previous_response_id` there
        is no turn to find: nothing is sent, and the block runs."""
        begun = self._loop_call(user_id, previous_response_id, request_id)
        if begun is None:
            yield Turn({})
            return
        with self._recorded(begun) as current:
            yield current

    @contextlib.asynccontextmanager
    async def atool_call(self, *, user_id: str | None, previous_response_id: str | None,
                         request_id: str | None = None) -> AsyncIterator[Turn]:
        """`tool_call` for asyncio code: requests are sent from a thread, not the loop."""
        begun = self._loop_call(user_id, previous_response_id, request_id)
        if begun is None:
            yield Turn({})
            return
        async with self._arecorded(begun) as current:
            yield current

    def _loop_call(self, user_id: str | None, previous_response_id: str | None,
                   request_id: str | None) -> tuple[Turn, Any, float] | None:
        """The loop call's update, or None when it has no turn to continue: no user (an
        anonymous caller is another user each call) or no response id to find it by."""
        if not user_id or not previous_response_id:
            return None
        request = loop_request(request_id=request_id or "app-" + secrets.token_hex(8),
                               tenant=self.tenant, user_id=str(user_id),
                               previous_response_id=str(previous_response_id), response=None)
        if request is None:
            return None
        return Turn(request), trace.get_current_span(), time.perf_counter()

    @contextlib.asynccontextmanager
    async def aturn(self, *, user_id: str | None, text: Any, history: Sequence[Any] | None = None,
                    session_id: str | None = None, model: str | None = None,
                    request_id: str | None = None,
                    previous_response_id: str | None = None) -> AsyncIterator[Turn]:
        """`turn` for asyncio code: requests are sent from a thread, not the loop."""
        async with self._arecorded(self._begin(
                user_id=user_id, text=text, session_id=session_id, model=model,
                request_id=request_id, history=history,
                previous_response_id=previous_response_id)) as current:
            yield current

    def traced(self, *, text: str, user_id: str, session_id: str | None = None,
               history: str | None = None,
               model: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function that calls a model; the names are its argument names. A
        generator (sync or async: a streamed answer) is one turn until it is exhausted.

        `history` names an argument holding the chat messages before the prompt.
        """

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            sig = inspect.signature(fn)
            check_names(fn, sig, text=text, user_id=user_id, session_id=session_id,
                         history=history)

            def fields(args: Any, kwargs: Any) -> dict[str, Any] | None:
                """The turn's fields from a call's arguments (their defaults included, and
                those a `**kwargs` took); None (the call goes on untraced) when they do
                not bind or hold no text. A user id that is None is an anonymous user."""
                try:
                    call = sig.bind(*args, **kwargs)
                except TypeError:
                    return None  # the function raises its own TypeError
                call.apply_defaults()
                given = arguments(sig, call.arguments)
                prompt = prompt_text(given.get(text))  # a list of parts: its text parts
                if prompt is None:
                    return None
                user = given.get(user_id)
                session = given.get(session_id) if session_id else None
                return {"text": prompt, "user_id": None if user is None else str(user),
                        "session_id": None if session is None else str(session),
                        "history": given.get(history) if history else None,
                        "model": model}

            return _wrap(self, fn, fields)

        return decorate


def _wrap(semtrace: Semtrace, fn: Callable[..., Any],
          fields: Callable[[Any, Any], dict[str, Any] | None]) -> Callable[..., Any]:
    """`fn` inside a turn: a coroutine until it returns; a generator (a streamed answer)
    until it is exhausted, so the latency and status are the whole stream's."""
    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def run_stream_async(*args: Any, **kwargs: Any) -> Any:
            given = fields(args, kwargs)
            async with (semtrace.aturn(**given) if given is not None
                        else contextlib.nullcontext()):
                async for item in fn(*args, **kwargs):
                    yield item
        return run_stream_async

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def run_stream(*args: Any, **kwargs: Any) -> Any:
            given = fields(args, kwargs)
            with semtrace.turn(**given) if given is not None else contextlib.nullcontext():
                yield from fn(*args, **kwargs)
        return run_stream

    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            given = fields(args, kwargs)
            if given is None:
                return await fn(*args, **kwargs)
            async with semtrace.aturn(**given):
                return await fn(*args, **kwargs)
        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        given = fields(args, kwargs)
        if given is None:
            return fn(*args, **kwargs)
        with semtrace.turn(**given):
            return fn(*args, **kwargs)
    return run
