"""Gateway-side redaction: Presidio in the gateway's process, before a prompt leaves it.

On the NATS bus a prompt travels as raw text (TLS protects the wire, not the
server's stream files). With `redact=True` an adapter replaces detected PII
with the appliance's own `<TYPE>` placeholders before sending, using the same
policy (`policies/redaction.toml`); the appliance then never receives the
originals, so its compliance vault holds none for these prompts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

TextRedactor = Callable[[str], str]


class RedactorLoading(Exception):  # noqa: N818 - a state, not a failure of the caller's
    """The redactor is not loaded (yet): the prompt stays in the gateway, unsent."""


class GatewayRedactor:
    """`redactor(text) -> text with placeholders`. Presidio and spaCy take seconds to load
    (about 9 s on the test machine): `warm()` loads them in a background thread when the
    adapter is built, and a prompt that comes before they are ready waits `wait` seconds
    at most, then raises `RedactorLoading` (the adapter then does not send it) instead of
    holding the model call for the whole load."""

    def __init__(self, settings: Any = None, *, wait: float = 5.0) -> None:
        self._settings = settings
        self.wait = wait
        self._redactor: Any = None
        self._started = False
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._use = threading.Lock()  # one analysis at a time: spaCy is not shared here

    def warm(self) -> None:
        """Start loading Presidio in a background thread (once)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="semtrace-redactor", daemon=True).start()

    def _load(self) -> None:
        try:
            from appliance.config import RedactionSettings, load_policy
            from appliance.redact import Redactor

            settings = self._settings or load_policy("redaction", RedactionSettings)
            self._redactor = Redactor(settings)
        finally:
            self._ready.set()

    def __call__(self, text: str) -> str:
        from appliance.records import Prompt

        self.warm()
        if not self._ready.wait(self.wait):
            raise RedactorLoading("The gateway's redactor is still loading.")
        if self._redactor is None:
            raise RedactorLoading("The gateway's redactor could not be loaded.")
        prompt = Prompt(request_id="gateway", tenant="gateway", user_id="gateway",
                        ts=datetime.now(UTC), text=text)
        with self._use:
            return str(self._redactor.redact(prompt).text)


def text_redactor(redact: bool | TextRedactor, *, wait: float = 5.0) -> TextRedactor | None:
    """An adapter's `redact` option as a function (None: send the text as it is); with True,
    Presidio starts loading now, in the background (a prompt waits `wait` s for it at most)."""
    if redact is True:
        redactor = GatewayRedactor(wait=wait)
        redactor.warm()
        return redactor
    if callable(redact):
        return redact
    return None
