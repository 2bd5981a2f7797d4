"""`SemtraceLogger`, the LiteLLM callback: its hooks register a call before it and update it
after, from worker threads or tasks; it counts what became of each call (`__init__.py`
says how it behaves)."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import threading
from collections import OrderedDict
from concurrent import futures
from pathlib import Path
from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from appliance.client import gateway_target
from appliance.errors import ConfigError
from appliance.integrations import (
    MAX_TEXT_CHARS,
    annotate,
    check_tenants,
    forwarded_unanswered,
    on_event_loop,
    reply_attributes,
    waits,
)
from appliance.integrations.async_channel import AsyncChannel
from appliance.integrations.channel import LOOP_LINES, Delivery, SyncChannel
from appliance.integrations.litellm.hooks import _fail_open
from appliance.integrations.litellm.requests import (
    _metadata,
    build_request,
    build_update,
    failure_status,
    loop_call,
    parent_span,
    response_cost,
    websocket_turn,
)
from appliance.integrations.redaction import TextRedactor, text_redactor

log = logging.getLogger("semtrace.integrations.litellm")
REGISTERED_MAX = 10_000  # call ids registered before the call and awaiting their update
# LiteLLM's call types (and `litellm_params` flags) of its asyncio calls that this
# callback registers
ASYNC_CALLS = ("acompletion", "aresponses", "aanthropic_messages")


def _async_call(kwargs: dict[str, Any]) -> bool:
    """Whether the call is LiteLLM's asyncio API (`acompletion`, `aresponses`, ...), whose
    caller awaits it on an event loop, whatever thread runs this hook."""
    params = kwargs.get("litellm_params")
    flags = params if isinstance(params, dict) else {}
    return (str(kwargs.get("call_type")) in ASYNC_CALLS
            or any(flags.get(name) is True for name in ASYNC_CALLS))


class SemtraceLogger(CustomLogger):
    """LiteLLM callback that records every chat completion and Responses API call."""

    def __init__(self, socket_path: str | Path, *, tenant: str = "default",
                 tenant_by_team: dict[str, str] | None = None, mode: str = "sync",
                 timeout: float = 5.0, register_before_call: bool = True,
                 register_wait: float = 1.0, redact: bool | TextRedactor = False,
                 bus_key_file: str | Path | None = None, plain_bus: bool = False,
                 max_text_chars: int = MAX_TEXT_CHARS) -> None:
        """Args:
            socket_path: the appliance's Unix socket, or a `nats://host:port` URL (mode
                async is then fire-and-forget to the bus).
            tenant: the tenant of every call (this gateway's configuration).
            tenant_by_team: on the proxy, the tenant of each key's team id (calls whose
                key has another team, or none, go to `tenant`).
            timeout: what one request to the appliance may take in all.
            register_wait: how long a call waits for its registration before the model
                is called; a slower reply is still taken (the call is recorded, its span
                annotated if still open), but the call does not wait for it.
            redact: True (Presidio, policies/redaction.toml) or a function: prompts
                leave the gateway with placeholders instead of PII.
            bus_key_file: with a NATS URL, the cluster's bus key file (mode 0600): every
                request is sealed (AES-256-GCM) before it reaches the bus. A NATS URL
                without it is refused here, unless `plain_bus=True`.
            plain_bus: with a NATS URL and no bus key, the explicit opt-out: prompts then
                cross the bus and JetStream's disk in plain text.
            max_text_chars: a longer prompt is cut to this many characters before it is
                sent (and marked truncated); the service's `max_text_chars`.
        """
        super().__init__()
        timeout, register_wait = waits(timeout, register_wait)
        if mode not in ("sync", "async"):
            raise ConfigError(f"mode={mode!r}: it must be 'sync' (a reply after the commit) "
                              "or 'async' (a reply on enqueue).")
        self.max_text_chars = max_text_chars
        check_tenants(socket_path, [tenant, *(tenant_by_team or {}).values()])
        self.socket_path, self._bus_keys = gateway_target(socket_path, bus_key_file, plain_bus)
        self.redact = text_redactor(redact, wait=timeout)
        self.tenant, self.mode, self.timeout = tenant, mode, timeout
        self.tenant_by_team = dict(tenant_by_team or {})
        self.register_before_call = register_before_call
        self.register_wait = register_wait
        self._tasks: set[asyncio.Task[None]] = set()  # registrations the proxy went on from
        self.sent = 0  # calls recorded (registered and updated, or sent whole)
        self.failures = 0  # calls nothing recorded: no answer and nothing queued, or refused
        self.queued = 0  # calls on the NATS bus that no node answered yet: recorded once back
        self.held = 0  # tool loop calls held past the timeout: attached when their turn lands
        self.unknown = 0  # calls sent whole over a socket, no reply in time: a slow service
        #                   still records them, one that failed meanwhile does not
        self.unanswered = 0  # calls a cluster node forwarded to their tenant's owner, no
        #                      answer in time: stored once the owner takes them (not lost,
        #                      unless the node's connection to NATS dropped meanwhile)
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        # the SDK's registrations: two for turns (one sent while the next waits for the
        # connection) and one per loop connection, so held loop calls keep no one queued
        self._workers = futures.ThreadPoolExecutor(2 + LOOP_LINES, thread_name_prefix="semtrace")
        self._inflight: dict[str, futures.Future[None]] = {}  # registrations being sent
        self._sync = SyncChannel(self.socket_path, timeout=timeout, log=log,
                                 bus_keys=self._bus_keys, plain_bus=plain_bus)
        self._async = AsyncChannel(self.socket_path, timeout=timeout,
                                   breaker=self._sync.breaker, bus_keys=self._bus_keys,
                                   plain_bus=plain_bus)
        self._registered: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # registrations sent whole whose reply did not come in time: the prompt is likely
        # recorded, so its call is `unknown`, not a failure, if nothing after it gets through
        self._late: OrderedDict[str, None] = OrderedDict()
        self._reported: OrderedDict[tuple[str, str], None] = OrderedDict()  # (call id, status)

    # ------------------------------------------------------------ LiteLLM hooks

    @_fail_open
    def log_pre_api_call(self, model: Any, messages: Any, kwargs: Any) -> None:
        """SDK: register the prompt before the provider is called. The request is sent
        from a worker thread: `completion` waits for it `register_wait` at most;
        `acompletion` / `aresponses` never wait, whether LiteLLM calls this from the event
        loop or (mistral, groq, cohere, `mock_response`) from the loop's default executor,
        whose few threads every async call of the process shares: held there, a burst of
        calls to a hung service queued behind each other. A reply that comes later
        annotates the span if it is still open (the update after the call waits for it)."""
        req = self._before(kwargs)
        if req is None:
            return
        rid = req["request_id"]
        work = self._workers.submit(contextvars.copy_context().run, self._register, kwargs, req)
        with self._lock:
            self._inflight[rid] = work  # before the callback below can remove it
        work.add_done_callback(functools.partial(self._sent, rid))
        if not on_event_loop() and not _async_call(kwargs):  # the caller's own thread
            futures.wait([work], timeout=self.register_wait)

    def _sent(self, rid: str, _: Any) -> None:
        with self._lock:
            self._inflight.pop(rid, None)

    def _register(self, kwargs: dict[str, Any], req: dict[str, Any]) -> None:
        try:
            reply = self._late_if(req, self._send_sync(req)).reply
            if reply is not None:
                self._registered_now(kwargs, req, reply)
        except Exception as exc:  # noqa: BLE001 - on a worker thread: nobody to raise to
            self._broke("log_pre_api_call", exc)

    @_fail_open
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any],
                                  call_type: Any) -> None:
        """Proxy: register the prompt before the request is routed (the data is unchanged).
        The request waits `register_wait` at most: a slower reply is taken when it comes
        (and annotates the span if it is still open), the request goes on meanwhile."""
        req = self._before({**data, "call_type": call_type})
        if req is None:
            return None
        done: futures.Future[None] = futures.Future()  # the update after the call waits
        with self._lock:
            self._inflight[req["request_id"]] = done
        task = asyncio.ensure_future(self._register_async(data, req, done))
        self._tasks.add(task)  # a task the loop only holds weakly must not be collected
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({task}, timeout=self.register_wait)
        return None

    async def _register_async(self, data: dict[str, Any], req: dict[str, Any],
                              done: futures.Future[None]) -> None:
        try:
            reply = self._late_if(req, await self._send_async(req)).reply
            if reply is not None:
                self._registered_now(data, req, reply)
        except Exception as exc:  # noqa: BLE001 - a task: nobody to raise to
            self._broke("async_pre_call_hook", exc)
        finally:
            self._sent(req["request_id"], None)
            done.set_result(None)

    @_fail_open
    def log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._after_sync(kwargs, response_obj, start_time, end_time, "ok")

    @_fail_open
    def log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._after_sync(kwargs, response_obj, start_time, end_time, failure_status(kwargs))

    @_fail_open
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        await self._after_async(kwargs, response_obj, start_time, end_time, "ok")

    @_fail_open
    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        await self._after_async(kwargs, response_obj, start_time, end_time,
                                failure_status(kwargs))

    # ------------------------------------------------------------ what to send

    def _before(self, kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The registration of a call not registered yet (the proxy and the SDK both ask)."""
        if not self.register_before_call:
            return None
        call_id = str(kwargs.get("litellm_call_id"))
        with self._lock:
            if call_id in self._registered or call_id in self._inflight:
                return None
        req = build_request(kwargs, None, None, None, status=None, tenant=self.tenant,
                            tenant_by_team=self.tenant_by_team, mode="sync",
                            max_text_chars=self.max_text_chars)
        if req is None:  # a tool loop's call: attached to the turn it continues
            req = loop_call(kwargs, None, None, None, None, tenant=self.tenant,
                            tenant_by_team=self.tenant_by_team)
        return req

    def _late_if(self, req: dict[str, Any], done: Delivery) -> Delivery:
        """Note a registration sent whole whose reply did not come in time."""
        if done.unknown:
            with self._lock:
                self._late[req["request_id"]] = None
                while len(self._late) > REGISTERED_MAX:
                    self._late.popitem(last=False)
        return done

    def _registered_now(self, kwargs: dict[str, Any], req: dict[str, Any],
                        reply: dict[str, Any]) -> None:
        if reply.get("ok"):
            with self._lock:
                # what the update needs, not the prompt: a call never finished (a stream
                # the client dropped) must not keep its text in the gateway's memory
                self._registered[req["request_id"]] = {"tenant": req["tenant"],
                                                       "request_id": req["request_id"]}
                while len(self._registered) > REGISTERED_MAX:
                    self._registered.popitem(last=False)
        self._apply(kwargs, req, reply)

    def _after(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
               status: str) -> tuple[dict[str, Any] | None, bool]:
        """(request, whether it is an update) for a finished call; (None, False) for a call
        already reported with this status (LiteLLM runs both its sync and its async success
        handlers for a streamed `litellm.responses`)."""
        call_id = str(kwargs.get("litellm_call_id"))
        with self._lock:
            if (call_id, status) in self._reported:
                return None, False
            if kwargs.get("litellm_call_id"):
                self._reported[(call_id, status)] = None
                while len(self._reported) > REGISTERED_MAX:
                    self._reported.popitem(last=False)
            registered = self._registered.pop(call_id, None)
        if registered is not None:
            _, answer = websocket_turn(kwargs, response_obj)  # a websocket turn: its events
            return build_update(registered, answer, start, end, status,
                                response_cost(kwargs)), True
        req = build_request(kwargs, response_obj, start, end, status=status,
                            tenant=self.tenant, tenant_by_team=self.tenant_by_team,
                            mode=self.mode, max_text_chars=self.max_text_chars)
        if req is None:  # a tool loop's call: added to the turn it continues
            req = loop_call(kwargs, response_obj, start, end, status, tenant=self.tenant,
                            tenant_by_team=self.tenant_by_team)
        return req, False

    # ------------------------------------------------------------ sending

    def _after_sync(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
                    status: str) -> None:
        registering = self._inflight.get(str(kwargs.get("litellm_call_id")))
        if registering is not None and not on_event_loop():  # the update follows its registration
            futures.wait([registering], timeout=self.timeout)
        req, update = self._after(kwargs, response_obj, start, end, status)
        if req is not None:
            self._finished(kwargs, req, self._send_sync(req), update)

    async def _after_async(self, kwargs: Any, response_obj: Any, start: Any, end: Any,
                           status: str) -> None:
        registering = self._inflight.get(str(kwargs.get("litellm_call_id")))
        if registering is not None:  # the update must follow its registration
            await asyncio.wait([asyncio.wrap_future(registering)], timeout=self.timeout)
        req, update = self._after(kwargs, response_obj, start, end, status)
        if req is not None:
            self._finished(kwargs, req, await self._send_async(req), update)

    def _outgoing(self, req: dict[str, Any]) -> dict[str, Any] | None:
        """The request as it leaves the gateway (its prompt redacted if asked); None when
        the redaction failed: the prompt then stays in the gateway."""
        if self.redact is None or not isinstance(req.get("text"), str):
            return req
        try:
            return {**req, "text": self.redact(req["text"])}
        except Exception as exc:  # noqa: BLE001 - never send it unredacted, never fail the call
            self._sync.breaker.quiet_warning(
                "the gateway's redaction failed; the prompt was not sent",
                "semtrace_redaction_failed", req, error=type(exc).__name__)
            return None

    def _send_sync(self, req: dict[str, Any]) -> Delivery:
        out = self._outgoing(req)
        return Delivery(None) if out is None else self._sync.deliver(out)

    async def _send_async(self, req: dict[str, Any]) -> Delivery:
        # Presidio takes tens of milliseconds a prompt: not on the proxy's event loop
        out = req if self.redact is None else await asyncio.to_thread(self._outgoing, req)
        return Delivery(None) if out is None else await self._async.deliver(out)

    def _broke(self, hook: str, exc: Exception) -> None:
        """A hook failed on something unforeseen: the call goes on; logged by type only."""
        self._sync.breaker.quiet_warning("the semtrace callback failed; the call goes on",
                                         "semtrace_callback_failed", None, hook=hook,
                                         error=type(exc).__name__)
        if hook.endswith("_event"):
            with self._lock:
                self.failures += 1
                self._done.notify_all()

    def _finished(self, kwargs: Any, req: dict[str, Any], done: Delivery,
                  update: bool) -> None:
        """Count a finished call; a whole ingest's reply also goes on the span."""
        reply = done.reply
        if reply is not None and not update:
            self._apply(kwargs, req, reply)
        with self._lock:
            rid = str(req.get("request_id"))
            registered_late = rid in self._late  # its prompt went before, unanswered
            self._late.pop(rid, None)
            if reply is None and done.queued:  # on the bus: its node records it once back
                self.queued += 1
            elif reply is None and done.held:  # a loop call its turn releases: answered later
                self.held += 1
            elif reply is None and (done.unknown or registered_late):  # sent, no reply
                self.unknown += 1  # in time: the service records it unless it failed
            elif forwarded_unanswered(reply):  # queued for its owner: not refused
                self.unanswered += 1
            elif reply is None or not reply.get("ok"):  # no answer, or refused (busy, ...)
                self.failures += 1
            else:
                self.sent += 1
            self._done.notify_all()

    def _apply(self, kwargs: Any, req: dict[str, Any], reply: dict[str, Any]) -> None:
        """Put the reply on the call's metadata and its span."""
        attrs = reply_attributes(reply)
        _metadata(kwargs).update(attrs)
        standard = kwargs.get("standard_logging_object")
        if isinstance(standard, dict) and isinstance(standard.get("metadata"), dict):
            standard["metadata"].update(attrs)
        annotate(parent_span(kwargs), reply)

    def wait(self, count: int, timeout: float = 30.0) -> bool:
        """Block until `count` calls were recorded, queued, held, unknown, unanswered or
        failed (for tests and shutdown)."""
        with self._done:
            return self._done.wait_for(
                lambda: self.sent + self.queued + self.held + self.unknown + self.unanswered
                + self.failures >= count, timeout)
