"""What every LiteLLM hook of `SemtraceLogger` (`logger.py`) keeps to: it never raises
(`_fail_open`), and it never blocks a thread that runs an event loop
(`appliance.integrations.on_event_loop`)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from appliance.integrations.litellm.logger import SemtraceLogger

F = TypeVar("F", bound=Callable[..., Any])


def _fail_open(fn: F) -> F:
    """A LiteLLM hook that never raises: on the proxy an exception in a pre-call hook
    would fail the user's request. What went wrong is logged by type only."""
    if asyncio.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(self: SemtraceLogger, *args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                self._broke(fn.__name__, exc)
                return None
        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run(self: SemtraceLogger, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self._broke(fn.__name__, exc)
            return None
    return run  # type: ignore[return-value]
