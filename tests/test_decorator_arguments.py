"""`Semtrace.traced` reads the turn from the decorated function's arguments: a name it is
given that the function has not is said at once, a `**kwargs` function is traced, and a
call without a user id is an anonymous user of its own, never one shared by strangers (and a
tool loop's call without one, which has no turn to continue, runs unrecorded); a field
that cannot be written as JSON is said, and taken for no outage."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from gateway_fakes import StandIn

from appliance.integrations.decorator import Semtrace

OK = b'{"ok": true, "conversation_id": "th_0123456789abcdef", "position": "new"}\n'


def test_a_name_the_function_has_not_is_refused_when_it_is_decorated(tmp_path: Path) -> None:
    app = Semtrace(tmp_path / "none.sock", tenant="acme")
    with pytest.raises(TypeError) as refused:
        @app.traced(text="prompt", user_id="user")
        def ask(question: str, user: str) -> str:
            return "Gate B12."
    # one sentence naming the argument (the old code decorated it, and every call of
    # `ask` then failed with KeyError: 'prompt', the application's own call broken)
    assert str(refused.value) == ("semtrace.traced(text='prompt'): test_a_name_the_function_"
                                  "has_not_is_refused_when_it_is_decorated.<locals>.ask "
                                  "has no argument 'prompt'.")


def test_a_function_taking_kwargs_is_traced(tmp_path: Path) -> None:
    seen = StandIn(tmp_path / "s.sock", OK)
    app = Semtrace(tmp_path / "s.sock", tenant="acme")

    @app.traced(text="prompt", user_id="user", session_id="chat")
    def ask(**kw: Any) -> str:
        return "Gate B12."

    @app.traced(text="prompt", user_id="user")
    def ask_nothing(**kw: Any) -> str:  # no prompt given: the call goes on untraced
        return "Gate C3."

    # the old code failed both calls with KeyError: 'prompt'
    assert ask(prompt="Which gate for Geneva?", user="max", chat="c-1") == "Gate B12."
    assert ask_nothing(question="Which gate?") == "Gate C3."
    assert app.flush()
    assert [(r["op"], r.get("text"), r.get("user_id"), r.get("session_id"))
            for r in seen.received] == [("ingest", "Which gate for Geneva?", "max", "c-1"),
                                        ("update", None, None, None)]


def test_calls_without_a_user_id_are_never_one_shared_user(tmp_path: Path) -> None:
    seen = StandIn(tmp_path / "s.sock", OK)
    app = Semtrace(tmp_path / "s.sock", tenant="acme")

    @app.traced(text="prompt", user_id="user", session_id="chat")
    def ask(prompt: str, user: str | None = None, chat: str | None = None) -> str:
        return "Gate B12."

    ask("Which gate for Geneva?")  # a stranger
    ask("Which gate for Oslo?")  # another one
    ask("Which gate for Rome?", chat="c-7")  # a third, in a chat window...
    ask("And the boarding time?", chat="c-7")  # ... who asks on
    with app.turn(user_id=None, text="Where is lounge 2?"):
        pass
    assert app.flush()
    users = [r["user_id"] for r in seen.received if r["op"] == "ingest"]
    # the old code sent the user id "None" for every one of them: strangers' prompts were
    # one user's, linked into each other's conversations (and turn() was refused)
    assert "None" not in users and None not in users
    assert users[2] == users[3] == "anonymous:session:c-7"
    assert len({users[0], users[1], users[2], users[4]}) == 4


def test_a_tool_call_without_a_user_or_response_id_runs_its_block_and_sends_nothing(
        tmp_path: Path) -> None:
    seen = StandIn(tmp_path / "s.sock", OK)
    app = Semtrace(tmp_path / "s.sock", tenant="acme")
    ran = []
    for user, previous in ((None, "resp_68af"), ("", "resp_68af"), ("max", None)):
        # the old code raised AttributeError ('NoneType' has no 'startswith') before the
        # block, so the agent's model call never ran
        with app.tool_call(user_id=user, previous_response_id=previous) as call:
            call.usage(input_tokens=40, output_tokens=25)
            ran.append(call.reply)

    async def agent() -> None:
        async with app.atool_call(user_id=None, previous_response_id="resp_68af") as call:
            ran.append(await call.areply())

    asyncio.run(agent())
    with app.tool_call(user_id="max", previous_response_id="resp_68af"):
        pass
    assert app.flush()
    # an anonymous caller has no turn to continue (each call is another user): not sent
    assert ran == [None, None, None, None]
    assert [(r["op"], r.get("user_id"), r["previous_response_id"] if "user_id" in r else None)
            for r in seen.received] == [("update", "max", "resp_68af"),  # attached, then
                                        ("update", None, None)]  # its figures


def test_a_field_that_is_no_json_is_not_taken_for_a_service_down(tmp_path: Path) -> None:
    """A model given as an Enum could not be written as JSON: the old code took that for a
    service that did not answer (`semtrace_unavailable`) and paused sending, so the next
    call, another user's and correct, went unrecorded too."""
    import enum
    import logging

    from gateway_fakes import Lines

    class Model(enum.Enum):
        GPT4O = "openai/gpt-4o"

    seen = StandIn(tmp_path / "s.sock", OK)
    app = Semtrace(tmp_path / "s.sock", tenant="acme")
    lines, log = Lines(), logging.getLogger("semtrace.integrations")
    log.addHandler(lines)
    try:
        with app.turn(user_id="max", text="Which gate?", model=Model.GPT4O) as odd:
            pass
        with app.turn(user_id="ada", text="Which terminal?", model="openai/gpt-4o") as fine:
            pass
        assert app.flush()
    finally:
        log.removeHandler(lines)
    assert odd.reply is None and fine.reply is not None and fine.reply["ok"]
    assert [r["user_id"] for r in seen.received if r["op"] == "ingest"] == ["ada"]
    warned = [r for r in lines.records if r.levelno >= logging.WARNING]
    assert [(r.getMessage(), getattr(r, "fields", None)) for r in warned] == [
        ("a request to semtrace was not sent: its 'model' cannot be written as JSON (give "
         "strings and numbers)", ["model"])]


def test_the_asyncio_channel_does_not_take_a_request_that_is_no_json_for_an_outage(
        tmp_path: Path) -> None:
    """The proxy's line (`AsyncChannel`), as the decorator's above."""
    import logging

    from appliance.integrations.async_channel import AsyncChannel
    from appliance.integrations.breaker import Breaker

    seen = StandIn(tmp_path / "s.sock", OK)
    channel = AsyncChannel(tmp_path / "s.sock", timeout=5.0,
                           breaker=Breaker(logging.getLogger("semtrace.test")))
    ping = {"v": 1, "op": "ping", "request_id": "p-1"}

    async def gateway() -> list[Any]:
        odd = await channel.deliver({**ping, "session_id": object()})
        return [odd.reply, (await channel.deliver(ping)).reply]

    assert asyncio.run(gateway()) == [None, {"ok": True, "conversation_id": "th_0123456789abcdef",
                                             "position": "new"}]
    assert seen.received == [ping]


def test_a_prompt_given_as_parts_or_without_text_never_breaks_the_block(
        tmp_path: Path) -> None:
    """gateways.md's sample takes `messages[-1]["content"]` as the prompt: a multimodal
    message's content is a list of parts, which the old code sent as is (refused
    `bad_request`: unrecorded), and a content of None (or a number) raised TypeError
    before the block ran, so the application's model call never happened."""
    seen = StandIn(tmp_path / "s.sock", OK)
    app = Semtrace(tmp_path / "s.sock", tenant="acme")
    parts = [{"type": "text", "text": "What is on this boarding pass?"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    ran = []
    for text in (parts, None, "   ", [{"type": "image_url", "image_url": {"url": "x"}}], 5):
        with app.turn(user_id="max", text=text):
            ran.append(text)
    assert app.flush()
    assert len(ran) == 5  # every block ran
    # the text parts are the prompt, a number is written out; nothing without text is sent
    assert [r["text"] for r in seen.received if r["op"] == "ingest"] == [
        "What is on this boarding pass?", "5"]


def test_a_history_that_is_no_list_of_messages_is_not_sent_as_an_empty_one(
        tmp_path: Path) -> None:
    """An empty `history` tells the service the prompt starts a new conversation. The old
    code read a string, or one message given instead of the list (`messages[-2]` for
    `messages[:-2]`), as an empty history: every such turn started a new thread."""
    seen = StandIn(tmp_path / "s.sock", OK)
    app = Semtrace(tmp_path / "s.sock", tenant="acme")
    one = {"role": "user", "content": "Which gate?"}
    for history in ("Which gate?", one, [one], []):
        with app.turn(user_id="max", text="And the boarding time?", history=history):
            pass
    assert app.flush()
    sent = [r.get("history") for r in seen.received if r["op"] == "ingest"]
    assert sent[:2] == [None, None]  # not sent: the content decides
    assert len(sent[2]) == 1 and sent[3] == []  # a list, even empty, is sent as given
