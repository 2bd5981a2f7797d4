"""`Semtrace.traced` reads the turn from the decorated function's arguments: a name it is
given that the function has not is said at once, a `**kwargs` function is traced, and a
call without a user id is an anonymous user of its own, never one shared by strangers (and a
tool loop's call without one, which has no turn to continue, runs unrecorded)."""

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
