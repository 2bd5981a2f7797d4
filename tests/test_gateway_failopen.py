"""The gateway keeps serving when Semtrace does not: real LiteLLM (its OpenAI client on an httpx
mock transport, no network), a real `semtrace serve` stopped, hung (SIGSTOP), busy or restarted,
and stand-ins for what the real service never sends (a reply that is not a JSON object)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
litellm = pytest.importorskip("litellm")

from gateway_fakes import (  # noqa: E402
    ANSWER,
    Lines,
    StandIn,
    ask,
    openai_async,
    openai_sync,
)
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from test_litellm import PreCallSpy, _lookup  # noqa: E402
from test_service import Server  # noqa: E402

from appliance.integrations import breaker  # noqa: E402
from appliance.integrations.decorator import Semtrace  # noqa: E402
from appliance.integrations.litellm import SemtraceLogger  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("failopen")
    pw = tmp / "pw"
    pw.touch(mode=0o600)
    pw.write_text("fail open test passphrase\n")
    srv = Server(tmp, pw).start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.proc.send_signal(signal.SIGCONT)
        assert srv.stop() == 0


@pytest.fixture(autouse=True)
def _clean_callbacks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(breaker, "RETRY_FIRST", 0.3)  # the pause after a failure, shortened
    yield
    litellm.logging_callback_manager._reset_all_callbacks()


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler, logger = Lines(), logging.getLogger("semtrace.integrations")
    logger.addHandler(handler)
    old, logger.level = logger.level, logging.INFO
    yield handler
    logger.removeHandler(handler)
    logger.level = old


def _wait(logger: SemtraceLogger, n: int) -> None:
    assert logger.wait(n, timeout=30), (logger.sent, logger.failures)


def test_a_hung_appliance_costs_one_timeout_and_one_warning_then_recovers_by_itself(
        server: Server, lines: Lines) -> None:
    logger = SemtraceLogger(server.sock, tenant="acme", timeout=1.0)
    litellm.callbacks = [logger]
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)  # accepts (the kernel's backlog), never answers
    try:
        answers = [ask(f"Which platform does train {n} leave from?", user="ann")
                   for n in range(5)]
        _wait(logger, 5)
    finally:
        server.proc.send_signal(signal.SIGCONT)
    # the first call's request went whole into the stopped service's socket: it is
    # `unknown` (the service records it when it wakes), not a failure; the calls in the pause
    # after it are failures (a call past the pause is sent, and is unknown too)
    assert answers == [ANSWER] * 5 and logger.unknown >= 1
    assert logger.unknown + logger.failures == 5 and logger.sent == 0
    assert lines.events() == ["semtrace_unavailable"]  # once, not once a request
    # past the pause (0.3 s, doubled per failed retry: how many retries the five calls made,
    # and whether the woken service answers the first one in time, depends on the host's
    # speed) a call tries again and is recorded
    calls, deadline = 5, time.monotonic() + 120
    while logger.sent == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        ok = litellm.completion(model="gpt-4o", client=openai_sync(), user="ann", messages=[
            {"role": "user", "content": "Is there a later train to Geneva?"}])
        calls += 1
        _wait(logger, calls)
    assert logger.sent == 1 and _lookup(server, ok._hidden_params["litellm_call_id"])["ok"]
    assert lines.events(logging.INFO)[-1] == "semtrace_available"


def test_an_absent_appliance_warns_once_and_the_app_is_answered(tmp_path: Path,
                                                                lines: Lines) -> None:
    logger = SemtraceLogger(tmp_path / "nobody.sock", tenant="acme")
    litellm.callbacks = [logger]
    assert [ask("Hello there", user="carl") for _ in range(4)] == [ANSWER] * 4
    _wait(logger, 4)
    app = Semtrace(tmp_path / "nobody.sock", tenant="acme")
    for _ in range(3):
        with app.turn(user_id="carl", text="Hello again") as turn:
            pass
        assert turn.reply is None
    # one line for the gateway's callback, one for the application's decorator
    assert lines.events() == ["semtrace_unavailable"] * 2


@pytest.mark.parametrize("reply", [b'["ok"]\n', b"not json at all\n", b'"ok"\n'])
def test_a_reply_that_is_not_a_json_object_never_fails_the_proxy_request(
        tmp_path: Path, lines: Lines, reply: bytes) -> None:
    sock = tmp_path / "odd.sock"
    StandIn(sock, reply)
    logger = SemtraceLogger(sock, tenant="acme")
    data = {"model": "gpt-4o", "user": "dora", "litellm_call_id": "odd-1", "metadata": {},
            "messages": [{"role": "user", "content": "Summarise the memo."}]}

    async def proxy() -> Any:
        return await logger.async_pre_call_hook(None, None, data, "acompletion")

    assert asyncio.run(proxy()) is None  # the old code raised AttributeError here
    litellm.callbacks = [logger]
    assert ask("Summarise the memo again.", user="dora") == ANSWER
    _wait(logger, 1)
    assert logger.failures == 1 and lines.events() == ["semtrace_unavailable"]
    assert "gen_ai.conversation.id" not in data["metadata"]


def test_a_busy_appliance_is_not_retried_on_every_call_nor_logged_on_every_call(
        tmp_path: Path, lines: Lines) -> None:
    sock = tmp_path / "busy.sock"
    busy = StandIn(sock, b'{"ok": false, "error": {"code": "busy", "message": "The service '
                         b'is busy; retry shortly.", "retry_after_ms": 60000}}\n')
    logger = SemtraceLogger(sock, tenant="acme")
    litellm.callbacks = [logger]
    assert [ask(f"Question {n} about the budget", user="eve") for n in range(4)] == \
        [ANSWER] * 4
    _wait(logger, 4)
    assert busy.lines == 1  # retry_after_ms is honoured: later calls do not knock
    assert lines.events() == ["semtrace_refused"]


def test_the_first_call_after_a_restart_is_registered_before_the_model_is_called(
        tmp_path: Path, lines: Lines) -> None:
    pw = tmp_path / "pw"
    pw.touch(mode=0o600)
    pw.write_text("restart test passphrase\n")
    srv = Server(tmp_path, pw).start()
    logger, spy = SemtraceLogger(srv.sock, tenant="acme"), PreCallSpy()
    litellm.callbacks = [logger, spy]
    tracer = TracerProvider().get_tracer("gateway")
    try:
        ask("Which gate does the Oslo flight board at?", user="finn")
        _wait(logger, 1)
        assert srv.stop() == 0
        srv.start()  # the callback's connection is to the old process
        with tracer.start_as_current_span("POST /chat/completions"):
            out = litellm.completion(model="gpt-4o", client=openai_sync(), user="finn",
                                     messages=[{"role": "user", "content": "And Bergen?"}])
        _wait(logger, 2)
        reply = _lookup(srv, out._hidden_params["litellm_call_id"])

        async def proxy() -> list[dict[str, Any]]:  # the proxy's loop lives on
            seen = []
            for n in range(2):
                data = {"model": "gpt-4o", "user": "finn", "litellm_call_id": f"rs-{n}",
                        "metadata": {}, "messages": [
                            {"role": "user", "content": f"Is gate {n + 4} open?"}]}
                await logger.async_pre_call_hook(None, None, data, "acompletion")
                seen.append(data["metadata"])
                if n == 0:
                    await asyncio.to_thread(srv.stop)
                    await asyncio.to_thread(srv.start)
            return seen

        hooked = asyncio.run(proxy())
    finally:
        assert srv.stop() == 0
    assert [m.get("gen_ai.conversation.id", "")[:3] for m in hooked] == ["th_", "th_"]
    assert logger.failures == 0 and logger.sent == 2 and reply["ok"]
    # it reconnected at once: the restart cost neither the annotation before the call
    # nor a warning
    assert spy.seen[-1][1].get("gen_ai.conversation.id") == reply["conversation_id"]
    assert lines.events() == []


CANARY = "Vexmoor-Quillhaven-4417"


def test_a_failing_gateway_redactor_sends_nothing_and_logs_no_prompt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sock = tmp_path / "rec.sock"
    seen = StandIn(sock, b'{"ok": true, "conversation_id": "th_1"}\n')

    def redactor(text: str) -> str:
        raise RuntimeError(f"cannot redact {text}")

    logger = SemtraceLogger(sock, tenant="acme", redact=redactor)
    data = {"model": "gpt-4o", "user": f"user-{CANARY}", "litellm_call_id": "red-1",
            "metadata": {}, "messages": [{"role": "user", "content": f"Mail {CANARY} today"}]}
    caplog.set_level(logging.DEBUG)
    assert asyncio.run(logger.async_pre_call_hook(None, None, data, "acompletion")) is None
    litellm.callbacks = [logger]
    assert ask(f"Call {CANARY} back", user=f"user-{CANARY}") == ANSWER
    _wait(logger, 1)
    assert seen.lines == 0 and logger.failures == 1
    # ours at any level; anyone's (LiteLLM logs a callback's exceptions) at warning and up
    shown = [caplog.handler.format(r) + repr(r.__dict__) for r in caplog.records
             if r.name.startswith("semtrace") or r.levelno >= logging.WARNING]
    assert shown and not [line for line in shown if CANARY in line]
    assert "semtrace_redaction_failed" in {getattr(r, "event", "") for r in caplog.records}


def test_streamed_async_calls_are_recorded_and_embeddings_are_ignored(server: Server) -> None:
    logger = SemtraceLogger(server.sock, tenant="acme")
    litellm.callbacks = [logger]

    async def gateway() -> tuple[str, str]:
        stream = await litellm.acompletion(
            model="gpt-4o", client=openai_async(), user="gus", stream=True,
            stream_options={"include_usage": True}, litellm_call_id="st-async",
            messages=[{"role": "user", "content": "Stream the ferry times to Bergen."}])
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await litellm.aembedding(model="text-embedding-3-small", client=openai_async(),
                                 input=["an embedding is not a prompt"])
        deadline = time.monotonic() + 30
        while logger.sent + logger.failures < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return text, "st-async"

    text, call_id = asyncio.run(gateway())
    stream = litellm.completion(model="gpt-4o", client=openai_sync(), user="gus", stream=True,
                                stream_options={"include_usage": True},
                                litellm_call_id="st-sync", messages=[
                                    {"role": "user", "content": "Stream them for Oslo too."}])
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ANSWER
    litellm.embedding(model="text-embedding-3-small", client=openai_sync(), input=["not one"])
    _wait(logger, 2)
    time.sleep(0.5)  # an embedding, had it been sent, would have been counted by now
    assert text == ANSWER and logger.sent == 2 and logger.failures == 0
    for rid in (call_id, "st-sync"):
        assert _lookup(server, rid)["ok"]


GATEWAY = """
import json, logging, sys
sys.path.insert(0, sys.argv[2])
import litellm
from gateway_fakes import ANSWER, ask
from appliance.integrations.decorator import Semtrace
from appliance.integrations.litellm import SemtraceLogger

warnings = []
handler = logging.Handler()
handler.emit = lambda r: warnings.append(getattr(r, "event", r.getMessage()))
logging.getLogger("semtrace").addHandler(handler)
logger = SemtraceLogger(sys.argv[1], tenant="acme")
litellm.callbacks = [logger]
answers = [ask("Where is the meeting?", user="ida") for _ in range(3)]
logger.wait(3, timeout=30)
with Semtrace(sys.argv[1], tenant="acme").turn(user_id="ida", text="And the agenda?") as turn:
    pass
print(json.dumps({"answers": answers == [ANSWER] * 3, "failures": logger.failures,
                  "reply": turn.reply, "warnings": warnings}))
"""


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_a_socket_the_gateway_may_not_open_never_fails_its_calls(tmp_path: Path) -> None:
    sock = tmp_path / "closed.sock"
    StandIn(sock, b'{"ok": true}\n')
    sock.chmod(0)
    # as root the mode is not checked: the gateway runs without the capabilities that skip it
    drop = "-dac_override,-dac_read_search"
    run = subprocess.run(["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}",
                          sys.executable, "-c", GATEWAY, str(sock), str(Path(__file__).parent)],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {"answers": True, "failures": 3, "reply": None,
                   "warnings": ["semtrace_unavailable", "semtrace_unavailable"]}


def test_acompletion_never_blocks_the_event_loop_while_it_registers(tmp_path: Path,
                                                                    lines: Lines) -> None:
    """LiteLLM calls the SDK's pre-call hook from the event loop for `acompletion`."""
    gate = threading.Event()
    sock = tmp_path / "slow.sock"
    slow = StandIn(sock, b'{"ok": true, "conversation_id": "th_0123456789abcdef"}\n', gate)
    logger = SemtraceLogger(sock, tenant="acme", timeout=3.0)
    litellm.callbacks = [logger]

    async def app() -> str:
        call = asyncio.create_task(litellm.acompletion(
            model="gpt-4o", client=openai_async(), user="jon", litellm_call_id="loop-1",
            messages=[{"role": "user", "content": "Which room is the standup in?"}]))
        while slow.lines == 0 and not call.done():  # the registration reached the service:
            await asyncio.sleep(0.01)
        gate.set()  # ... and this coroutine still runs, so the loop is not blocked
        out = await call
        while logger.sent + logger.failures < 1:
            await asyncio.sleep(0.01)
        return str(out.choices[0].message.content)

    assert asyncio.run(app()) == ANSWER
    # registered before the call, updated after (the old code blocked the loop until its
    # timeout: the registration failed and the call was sent whole afterwards)
    assert [r["op"] for r in slow.received] == ["ingest", "update"]
    assert logger.failures == 0 and lines.events() == []


class Held(threading.Event):
    """A stand-in's gate that holds each answer up to 20 s (a third of the callers'
    `register_wait`) and notes when one went out."""

    answered = False

    def wait(self, timeout: float | None = None) -> bool:
        opened = super().wait(20)
        self.answered = True
        return opened


def test_acompletion_run_on_the_default_executor_does_not_wait_for_its_registration(
        tmp_path: Path, lines: Lines) -> None:
    """For mistral, groq, cohere and `mock_response`, LiteLLM's `acompletion` runs the
    pre-call hook on the event loop's default executor (a few threads that every async
    call of the process shares), not on the loop. Waiting `register_wait` there held each
    call (1 s apiece with a hung service; a burst of 40 took 5.1 s, median 4.0 s, on the
    2-core host), so an async call must not wait there either."""
    gate = Held()
    sock = tmp_path / "slow.sock"
    slow = StandIn(sock, b'{"ok": true, "conversation_id": "th_0123456789abcdef"}\n', gate)
    logger = SemtraceLogger(sock, tenant="acme", timeout=120.0, register_wait=60.0)
    litellm.callbacks = [logger]

    async def app() -> tuple[str, bool]:
        out = await litellm.acompletion(
            model="mistral/mistral-large-latest", mock_response=ANSWER, user="jon",
            messages=[{"role": "user", "content": "Which room is the standup in?"}])
        answered_first = gate.answered  # the old code waited for the stand-in's answer
        gate.set()
        while logger.sent + logger.failures < 1:
            await asyncio.sleep(0.01)
        return str(out.choices[0].message.content), answered_first

    assert asyncio.run(app()) == (ANSWER, False)
    assert [r["op"] for r in slow.received] == ["ingest", "update"]  # registered before
    assert logger.sent == 1 and logger.failures == 0 and lines.events() == []


def test_after_the_pause_one_proxy_request_tries_a_hung_appliance_not_all(
        tmp_path: Path, lines: Lines) -> None:
    never = threading.Event()  # the stand-in reads every line and never answers
    hung = StandIn(tmp_path / "hung.sock", b'{"ok": true}\n', never)
    logger = SemtraceLogger(tmp_path / "hung.sock", tenant="acme", timeout=0.5)

    async def proxy(n: int) -> None:
        data = {"model": "gpt-4o", "user": "pia", "litellm_call_id": f"h-{n}", "metadata": {},
                "messages": [{"role": "user", "content": f"Status of ticket {n}?"}]}
        await logger.async_pre_call_hook(None, None, data, "acompletion")

    async def traffic() -> int:
        await proxy(0)  # times out (0.5 s): the pause begins
        await asyncio.sleep(breaker.RETRY_FIRST + 0.1)
        burst = [asyncio.create_task(proxy(n)) for n in range(1, 9)]  # after the pause
        await asyncio.sleep(0.1)  # a fifth of the timeout
        passed = sum(t.done() for t in burst)
        await asyncio.gather(*burst)
        return passed

    try:
        passed = asyncio.run(traffic())
    finally:
        never.set()
    # one request tries the appliance again; the other seven go on at once (the old code
    # held all eight for the whole timeout)
    assert passed == 7 and hung.lines == 2
    assert lines.events() == ["semtrace_unavailable"]


def test_a_slow_appliance_holds_a_proxy_request_only_briefly_and_the_call_is_still_recorded(
        tmp_path: Path, lines: Lines) -> None:
    """The appliance answers, but late (a queue, a slow disk): the request goes on after
    `register_wait`, and the late reply still registers the call and annotates it."""
    gate = threading.Event()  # the stand-in answers once the request has gone on
    slow = StandIn(tmp_path / "slow.sock",
                   b'{"ok": true, "conversation_id": "th_0123456789abcdef"}\n', gate)
    logger = SemtraceLogger(tmp_path / "slow.sock", tenant="acme", register_wait=0.2)
    litellm.callbacks = [logger]
    data: dict[str, Any] = {
        "model": "gpt-4o", "user": "rosa", "litellm_call_id": "slow-1", "metadata": {},
        "messages": [{"role": "user", "content": "When does the ferry to Bergen leave?"}]}

    async def proxy() -> None:
        # returns with no answer yet (the gate is closed), and without a timeout
        await logger.async_pre_call_hook(None, None, data, "acompletion")
        gate.set()
        await litellm.acompletion(**data, client=openai_async())
        deadline = time.monotonic() + 30
        while logger.sent + logger.failures < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    try:
        asyncio.run(proxy())
    finally:
        gate.set()
    # registered once (LiteLLM's own pre-call log does not send it again), then updated
    assert [r["op"] for r in slow.received] == ["ingest", "update"]
    assert logger.sent == 1 and logger.failures == 0
    assert data["metadata"]["gen_ai.conversation.id"] == "th_0123456789abcdef"
    assert lines.events() == []  # a slow appliance is not a down one: no warning


def test_a_slow_appliance_holds_the_decorator_only_briefly_and_its_late_replies_are_taken(
        tmp_path: Path, lines: Lines) -> None:
    """The application's own adapter, as the callback above: entering a turn waits
    `register_wait` for the registration, leaving it as long for the update; the late
    registration reply still becomes the turn's (and its span's), and the late update
    still reaches the appliance after its registration."""
    gate = threading.Event()  # the stand-in answers only while it is open
    slow = StandIn(tmp_path / "slow.sock",
                   b'{"ok": true, "conversation_id": "th_0123456789abcdef"}\n', gate)
    app = Semtrace(tmp_path / "slow.sock", tenant="acme", timeout=3.0, register_wait=0.2)
    provider = TracerProvider()
    tracer = provider.get_tracer("app")

    def until(cond: Any) -> None:
        deadline = time.monotonic() + 30
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.01)

    with tracer.start_as_current_span("chat") as span:
        with app.turn(user_id="rosa", text="When does the ferry to Bergen leave?") as turn:
            entered_without_reply = turn.reply is None  # the model is called meanwhile
            gate.set()  # the appliance answers now, late
            until(lambda: turn.reply is not None)
            gate.clear()  # ... and is slow again for the update
        left_before_the_update_was_answered = not gate.is_set()
        attrs = dict(span.attributes or {})  # type: ignore[attr-defined]
    gate.set()
    assert app.flush()

    async def ask_async() -> str | None:  # the asyncio form
        gate.clear()
        async with app.aturn(user_id="rosa", text="And the one to Oslo?") as later:
            waited = later.reply is None
            gate.set()
        return "still called" if waited else None

    assert asyncio.run(ask_async()) == "still called"
    assert app.flush()
    app.close()
    provider.shutdown()
    # the old code held the block for the whole timeout: the registration failed, then
    # the appliance was paused and nothing was recorded, with a warning
    assert entered_without_reply and left_before_the_update_was_answered
    assert turn.conversation_id == "th_0123456789abcdef"
    assert attrs["gen_ai.conversation.id"] == "th_0123456789abcdef"
    ops = [(r["op"], r["request_id"]) for r in slow.received]
    first, second = turn.request["request_id"], ops[2][1]
    assert ops == [("ingest", first), ("update", first), ("ingest", second),
                   ("update", second)]
    assert lines.events() == []  # a slow appliance is not a down one: no warning


def test_the_decorator_records_in_a_forked_worker_and_never_raises_once_closed(
        tmp_path: Path) -> None:
    """A pre-forking server (gunicorn --preload) makes the adapter before it forks: each
    worker sends from a thread and on a connection of its own (the parent's thread is not
    in the child, and a lock a parent's thread held as it forked stays held there: the
    old code queued the child's requests forever, or skipped them). Closed, it sends
    nothing and the application's blocks still run."""
    seen = StandIn(tmp_path / "app.sock",
                   b'{"ok": true, "conversation_id": "th_0123456789abcdef"}\n')
    app = Semtrace(tmp_path / "app.sock", tenant="acme", timeout=2.0)
    with app.turn(user_id="ines", text="Which desk is free today?"):
        pass
    assert app.flush()  # the parent's worker thread ran, its connection is open
    main = app._channel._lane({"op": "ingest"}, 0)
    held = main.take(5.0)  # as a thread of the parent sending when it forks
    assert held is not None
    pid = os.fork()
    if pid == 0:  # the child: exits 0 when its turn was answered
        code = 1
        try:
            with app.turn(user_id="ines", text="And tomorrow?") as turn:
                pass
            code = 0 if app.flush() and turn.conversation_id == "th_0123456789abcdef" else 3
        finally:
            os._exit(code)
    main.give(held)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    app.close()
    assert [r["text"] for r in seen.received if r["op"] == "ingest"] == [
        "Which desk is free today?", "And tomorrow?"]
    with app.turn(user_id="ines", text="Is the parent still fine?") as after:
        ran = True
    assert ran and after.reply is None and app.flush()
    assert len(seen.received) == 4  # the closed adapter sent nothing more
