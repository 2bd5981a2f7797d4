"""Gateway tests' agents: one thread per user, each making a decorator `tool_call` that
continues that user's first turn (`resp_<user>_1`)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any


def tool_call_agents(app: Any, users: Iterable[str], calls: dict[str, Any]
                     ) -> list[threading.Thread]:
    """The threads, not started; each puts its call in `calls` once it returns (its reply
    comes once the turn's update lands)."""

    def agent(user: str) -> None:
        with app.tool_call(user_id=user, previous_response_id=f"resp_{user}_1") as call:
            pass
        calls[user] = call

    return [threading.Thread(target=agent, args=(user,)) for user in users]
