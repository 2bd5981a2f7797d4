"""The LiteLLM proxy itself with the Semtrace callback, through a real `semtrace serve`.

`litellm.proxy.proxy_server.app` runs in process (Starlette's TestClient), configured
as an operator configures it: a `config.yaml` with the model list and
`litellm_settings.callbacks` naming `semtrace_logger` in a Python file beside it, and
LiteLLM's own `otel` callback, which opens the request span the proxy hands its hooks
(kept in memory: `OTEL_EXPORTER=in_memory`). Its routes, authentication, pre-call hooks
and logging run as in production. The provider is a server on the loopback address that
answers as OpenAI's and Anthropic's APIs do: nothing leaves the machine, and LiteLLM's
cost map is its local copy (`LITELLM_LOCAL_MODEL_COST_MAP`).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.sync.server import serve

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

from fastapi.testclient import TestClient  # noqa: E402
from litellm.integrations.custom_logger import CustomLogger  # noqa: E402
from litellm.proxy import proxy_server  # noqa: E402
from test_litellm import _lookup, _thread  # noqa: E402
from test_service import Server  # noqa: E402

from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning",
                                        "ignore::DeprecationWarning")
CALLBACK_MODULE = "semtrace_proxy_callback"
MASTER_KEY = "sk-proxy-test-master"


class Provider(BaseHTTPRequestHandler):
    """OpenAI's `/v1/chat/completions` and `/v1/responses`, Anthropic's `/v1/messages`, on
    127.0.0.1. Each answer is new ("Answer N."); a Responses request that offers tools and
    holds no `function_call_output` yet is answered with a call of the first tool."""

    bodies: list[tuple[str, dict[str, Any]]] = []
    counter = itertools.count(1)

    def log_message(self, *args: Any) -> None:  # no access log on stderr
        pass

    def do_POST(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        Provider.bodies.append((self.path, body))
        n = next(Provider.counter)
        if self.path.endswith("/chat/completions"):
            out: dict[str, Any] = {
                "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1767225600,
                "model": "gpt-4o-2024-08-06",
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": f"Answer {n}."}}]}
        elif self.path.endswith("/responses"):
            out = self._response(body, n)
            if body.get("stream"):
                return self._events(out)
        elif self.path.endswith("/messages"):
            out = {"id": f"msg_{n}", "type": "message", "role": "assistant",
                   "model": "claude-3-5-sonnet-20241022", "stop_reason": "end_turn",
                   "content": [{"type": "text", "text": f"Answer {n}."}],
                   "usage": {"input_tokens": 12, "output_tokens": 9}}
        else:
            self.send_error(404)
            return
        self._send(json.dumps(out).encode(), "application/json")

    @staticmethod
    def _response(body: dict[str, Any], n: int) -> dict[str, Any]:
        given = body.get("input")
        answered = isinstance(given, list) and any(
            isinstance(i, dict) and i.get("type") == "function_call_output" for i in given)
        if body.get("tools") and not answered:
            output: list[dict[str, Any]] = [{
                "type": "function_call", "id": f"fc_{n}", "call_id": f"call_{n}",
                "name": body["tools"][0]["name"], "arguments": "{}", "status": "completed"}]
        else:
            output = [{"type": "message", "id": f"msg_{n}", "status": "completed",
                       "role": "assistant", "content": [
                           {"type": "output_text", "text": f"Answer {n}.", "annotations": []}]}]
        return {"id": f"resp_{n}", "object": "response", "created_at": 1767225600 + n,
                "status": "completed", "model": "gpt-4o-2024-08-06", "tools": [],
                "parallel_tool_calls": True, "tool_choice": "auto", "output": output,
                "usage": {"input_tokens": 30 + n, "output_tokens": 12,
                          "total_tokens": 42 + n}}

    def _events(self, done: dict[str, Any]) -> None:
        events = [{"type": "response.created", "response": {
                      **done, "status": "in_progress", "output": [], "usage": None}},
                  {"type": "response.completed", "response": done}]
        self._send("".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
                           for e in events).encode(), "text/event-stream")

    def _send(self, data: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (LiteLLM 1.110.2 opens a
    provider's Responses websocket with TLS options, which a plain ws:// URL refuses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "provider.pem", folder / "provider.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class SocketProvider:
    """OpenAI's Responses API over a websocket (`/v1/responses`), on 127.0.0.1 with TLS:
    each `response.create` frame is answered with `response.created` and
    `response.completed`."""

    def __init__(self, folder: Path) -> None:
        self.frames: list[dict[str, Any]] = []
        self.cert, key = _certificate(folder)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.cert, key)
        self.server = serve(self._session, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _session(self, connection: Any) -> None:
        for message in connection:
            frame = json.loads(message)
            self.frames.append(frame)
            n = next(Provider.counter)
            done = Provider._response({}, n)
            connection.send(json.dumps({"type": "response.created", "response": {
                **done, "status": "in_progress", "output": [], "usage": None}}))
            connection.send(json.dumps({"type": "response.completed", "response": done}))

    def close(self) -> None:
        self.server.shutdown()


class SpanSpy(CustomLogger):
    """A hook after Semtrace's: the proxy's request span as the call is about to be routed."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any, bool, dict[str, Any]]] = []
        self.logged: list[tuple[str, str, Any]] = []  # (call id, call type, result type)

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any,
                                  data: dict[str, Any], call_type: Any) -> None:
        own = data.get("litellm_metadata") or data.get("metadata") or {}
        span = own.get("litellm_parent_otel_span")
        self.seen.append((str(data.get("litellm_call_id")), span,
                          span is not None and span.is_recording(),
                          dict(getattr(span, "attributes", None) or {})))

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any,
                                      end_time: Any) -> None:
        self.logged.append((str(kwargs.get("litellm_call_id")), str(kwargs.get("call_type")),
                            type(response_obj).__name__))


@dataclass
class Proxy:
    client: TestClient
    logger: SemtraceLogger
    spy: SpanSpy
    sockets: SocketProvider
    done: int = 0  # calls the logger recorded or failed so far
    calls: list[str] = field(default_factory=list)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """One request through the proxy (its answer: JSON, or a stream's text), returned
        once Semtrace has recorded it."""
        answer = self.client.post(path, json=body,
                                  headers={"Authorization": f"Bearer {MASTER_KEY}"})
        assert answer.status_code == 200, answer.text
        self.done += 1
        assert self.logger.wait(self.done), "the callback did not run"
        self.calls.append(self.spy.seen[-1][0])
        if answer.headers["content-type"].startswith("text/event-stream"):
            return answer.text
        return answer.json()

    def ended_spans(self) -> dict[int, dict[str, Any]]:
        """The attributes of the spans LiteLLM's `otel` callback ended, by span id."""
        otel = proxy_server.open_telemetry_logger
        assert otel is not None
        return {s.context.span_id: dict(s.attributes or {})
                for s in otel.config.exporter.get_finished_spans()}


@pytest.fixture(scope="module")
def proxy(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    provider = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    port = provider.server_address[1]
    config = tmp_path_factory.mktemp("proxy")
    sockets = SocketProvider(config)
    (config / f"{CALLBACK_MODULE}.py").write_text(
        "from appliance.integrations.litellm import SemtraceLogger\n\n"
        f"semtrace_logger = SemtraceLogger({str(server.sock)!r}, tenant='acme')\n")
    (config / "config.yaml").write_text(f"""
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:{port}/v1
      api_key: sk-test
  - model_name: gpt-4o-ws
    litellm_params:
      model: openai/gpt-4o
      api_base: https://127.0.0.1:{sockets.port}/v1
      api_key: sk-test
  - model_name: claude-3-5-sonnet
    litellm_params:
      model: anthropic/claude-3-5-sonnet-20241022
      api_base: http://127.0.0.1:{port}
      api_key: sk-ant-test
general_settings:
  master_key: os.environ/LITELLM_MASTER_KEY
litellm_settings:
  callbacks: ["{CALLBACK_MODULE}.semtrace_logger", "otel"]
""")
    with pytest.MonkeyPatch.context() as env:
        # as `litellm --config config.yaml` starts it: the app's startup reads the config
        env.setenv("CONFIG_FILE_PATH", str(config / "config.yaml"))
        env.setenv("LITELLM_MASTER_KEY", MASTER_KEY)
        env.setenv("OTEL_EXPORTER", "in_memory")  # LiteLLM's otel logger keeps its spans
        env.setenv("SSL_CERT_FILE", str(sockets.cert))  # the provider's websocket is trusted
        try:
            proxy_server.cleanup_router_config_variables()
            with TestClient(proxy_server.app) as client:  # its startup and shutdown run
                logger = next(c for c in litellm.callbacks if isinstance(c, SemtraceLogger))
                spy = SpanSpy()
                litellm.callbacks.append(spy)  # after Semtrace's hook
                yield Proxy(client, logger, spy, sockets)
        finally:
            litellm.logging_callback_manager._reset_all_callbacks()
            proxy_server.cleanup_router_config_variables()
            sys.modules.pop(CALLBACK_MODULE, None)
            provider.shutdown()
            sockets.close()


@dataclass(frozen=True)
class Route:
    """How a client holds a conversation on one of the proxy's routes."""

    path: str
    body: Callable[[str, list[Any], dict[str, Any] | None], dict[str, Any]]
    reply: Callable[[dict[str, Any]], Any]  # what the client keeps of an answer


def _chat(user: str, kept: list[Any], last: dict[str, Any] | None) -> dict[str, Any]:
    return {"model": "gpt-4o", "user": user,
            "messages": [{"role": "system", "content": "Be brief."}, *kept]}


def _responses(user: str, kept: list[Any], last: dict[str, Any] | None) -> dict[str, Any]:
    # the client sends its new message only and names the answer it continues; the last
    # turn is streamed
    body: dict[str, Any] = {"model": "gpt-4o", "user": user, "input": kept[-1]["content"],
                            "instructions": "Be brief."}
    if last is not None:
        body["previous_response_id"] = last["id"]
        body["stream"] = len(kept) == 5
    return body


def _messages(user: str, kept: list[Any], last: dict[str, Any] | None) -> dict[str, Any]:
    return {"model": "claude-3-5-sonnet", "max_tokens": 100, "system": "Be brief.",
            "messages": list(kept), "metadata": {"user_id": user}}


ROUTES = {
    "chat": Route("/v1/chat/completions", _chat, lambda a: a["choices"][0]["message"]),
    "responses": Route("/v1/responses", _responses,  # the answer is continued by its id
                       lambda a: {"role": "assistant", "id": a["id"]}),
    "messages": Route("/v1/messages", _messages,
                      lambda a: {"role": "assistant", "content": a["content"]}),
}
ASKS = ["Which trains run from Lyon to Geneva on Sundays?",
        "Recommend a good novel for the journey.",  # unlike, but the same conversation
        "Is there a dining car on the morning train?"]


def _streamed(answer: Any) -> dict[str, Any]:
    """A streamed Responses answer as its completed response; others as they are."""
    if isinstance(answer, dict):
        return answer
    done = [json.loads(line[6:]) for line in answer.splitlines() if line.startswith("data: ")]
    return next(e["response"] for e in done if e.get("type") == "response.completed")


@pytest.mark.parametrize("name", list(ROUTES))
def test_a_conversation_through_the_proxy_is_one_thread_on_its_open_request_span(
        proxy: Proxy, server: Server, name: str) -> None:
    route, user = ROUTES[name], f"user-{name}"
    kept: list[Any] = []
    last: dict[str, Any] | None = None
    first = len(proxy.calls)
    for text in ASKS:
        kept.append({"role": "user", "content": text})
        last = _streamed(proxy.post(route.path, route.body(user, kept, last)))
        kept.append(route.reply(last))
    calls = proxy.calls[first:]
    replies = [_lookup(server, call) for call in calls]
    assert all(r["ok"] for r in replies), replies
    thread = replies[0]["conversation_id"]
    assert replies[0]["position"] == "new"
    assert [r["conversation_id"] for r in replies] == [thread] * 3, json.dumps(replies)
    assert [r["parent_request_id"] for r in replies[1:]] == calls[:2]
    # the strongest signal decided: the history (chat, messages) or the response id
    expected = "previous_response_id" if name == "responses" else "history"
    assert [r["link_source"] for r in replies[1:]] == [expected] * 2
    # on the proxy's request span while the request was open, before it was routed
    seen = proxy.spy.seen[first:]
    for (call, span, recording, attrs), reply in zip(seen, replies, strict=True):
        assert recording and attrs["gen_ai.conversation.id"] == thread, (call, attrs)
        assert reply["trace_id"] == format(span.get_span_context().trace_id, "032x")
    ended = proxy.ended_spans()
    assert all(ended[span.get_span_context().span_id]["gen_ai.conversation.id"] == thread
               for _, span, _, _ in seen)
    # the update after each answer: tokens and status
    records = _thread(server, thread)["records"]
    assert [r["status"] for r in records] == ["ok"] * 3
    assert all(r["output_tokens"] for r in records), records


def test_the_turns_of_a_responses_websocket_are_recorded_after_their_answers(
        proxy: Proxy, server: Server) -> None:
    """`/v1/responses` over a websocket (LiteLLM 1.110.2): the proxy runs its hooks once,
    when the socket opens, without any input; each turn is its own `_aresponses_websocket`
    call, whose pre-API-call log and success log hold the client's `response.create`
    frame (and the provider's events). Semtrace registers each turn from its frame and
    updates it from its `response.completed` event: one thread, continued by
    `previous_response_id` (the old code read neither: nothing was recorded)."""
    seen, frames = len(proxy.spy.seen), len(proxy.sockets.frames)
    answers: list[dict[str, Any]] = []
    with proxy.client.websocket_connect(
            "/v1/responses?model=gpt-4o-ws",
            headers={"Authorization": f"Bearer {MASTER_KEY}"}) as ws:
        for text in ASKS:
            frame: dict[str, Any] = {"type": "response.create", "model": "gpt-4o-ws",
                                     "input": text, "user": "user-socket"}
            if answers:
                frame["previous_response_id"] = answers[-1]["id"]
            ws.send_json(frame)
            while (event := ws.receive_json())["type"] != "response.completed":
                pass
            answers.append(event["response"])
            proxy.done += 1
            assert proxy.logger.wait(proxy.done), "the turn was not recorded"
    # the turns reached the provider's websocket through the proxy
    assert [f.get("input") for f in proxy.sockets.frames[frames:]] == ASKS
    # the hooks ran once, at the opening, with nothing to register
    assert len(proxy.spy.seen) == seen + 1
    turns = [c for c, call_type, _ in proxy.spy.logged if call_type == "_aresponses_websocket"]
    replies = [_lookup(server, call) for call in turns[-3:]]
    assert all(r["ok"] for r in replies), replies
    thread = replies[0]["conversation_id"]
    assert [r["conversation_id"] for r in replies] == [thread] * 3
    assert [r["parent_request_id"] for r in replies[1:]] == turns[-3:-1]
    assert [r["link_source"] for r in replies[1:]] == ["previous_response_id"] * 2
    # the update after each answer: the tokens of the turn's `response.completed` event
    records = _thread(server, thread)["records"]
    assert [r["input_tokens"] for r in records] == [a["usage"]["input_tokens"]
                                                    for a in answers]


def test_a_tool_loop_on_v1_responses_adds_its_calls_to_the_turn(
        proxy: Proxy, server: Server) -> None:
    tools = [{"type": "function", "name": "get_weather", "description": "A city's weather.",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    body: dict[str, Any] = {"model": "gpt-4o", "user": "user-loop", "tools": tools}
    asked = proxy.post("/v1/responses", {**body, "input": "What is the weather in Lyon?"})
    assert asked["output"][0]["type"] == "function_call"
    # the agent answers the tool call by the (encrypted) id it got back: no user text
    answer = proxy.post("/v1/responses", {**body, "previous_response_id": asked["id"],
                                          "input": [{"type": "function_call_output",
                                                     "call_id": asked["output"][0]["call_id"],
                                                     "output": '{"celsius": 24}'}]})
    assert answer["output"][0]["type"] == "message"
    proxy.post("/v1/responses", {**body, "previous_response_id": answer["id"],
                                 "input": "And tomorrow?"})
    turn, loop, follow = (_lookup(server, call) for call in proxy.calls[-3:])
    assert turn["ok"] and loop["error"]["code"] == "not_found"  # no turn of its own
    # the loop call's request span holds its turn's conversation before it is routed
    _, _, recording, attrs = next(s for s in proxy.spy.seen if s[0] == proxy.calls[-2])
    assert recording and attrs["gen_ai.conversation.id"] == turn["conversation_id"]
    assert follow["parent_request_id"] == turn["request_id"]
    assert follow["link_source"] == "previous_response_id"
    record = _thread(server, turn["conversation_id"])["records"][0]
    assert record["input_tokens"] == sum(a["usage"]["input_tokens"] for a in (asked, answer))
    assert record["output_tokens"] == sum(a["usage"]["output_tokens"] for a in (asked, answer))
