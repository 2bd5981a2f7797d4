"""Gateway-side redaction: Presidio in the gateway's process, before a prompt leaves it.

On the NATS bus a prompt travels as raw text (TLS protects the wire, not the
server's stream files). With `redact=True` an adapter replaces detected PII
with the appliance's own `<TYPE>` placeholders before sending, using the same
policy (`policies/redaction.toml`); the appliance then never receives the
originals, so its compliance vault holds none for these prompts.
"""

from __future__ import annotations

import os
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
        self._started = 0  # the process that started loading it
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._use = threading.Lock()  # one analysis at a time: spaCy is not shared here

    def warm(self) -> None:
        """Start loading Presidio in a background thread (once a process: a gateway
        forked after building its adapter, e.g. `gunicorn --preload`, loads it again in
        the child, where the parent's loading thread does not exist)."""
        if self._started and self._started != os.getpid():  # forked: the parent's
            self._lock, self._use = threading.Lock(), threading.Lock()  # threads are gone
            if self._ready.is_set():
                self._started = os.getpid()  # loaded before the fork: copied with it
            else:
                self._ready = threading.Event()  # and its load never ends here
                self._started = 0
        with self._lock:
            if self._started:
                return
            self._started = os.getpid()
        threading.Thread(target=self._load, args=(self._ready,), name="semtrace-redactor",
                         daemon=True).start()

    def _build(self) -> Any:
        from appliance.config import RedactionSettings, load_policy
        from appliance.redact import Redactor

        return Redactor(self._settings or load_policy("redaction", RedactionSettings))

    def _load(self, ready: threading.Event) -> None:
        try:
            self._redactor = self._build()
        finally:
            ready.set()

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
