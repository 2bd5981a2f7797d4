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


class GatewayRedactor:
    """`redactor(text) -> text with placeholders`; loads Presidio on first use."""

    def __init__(self, settings: Any = None) -> None:
        self._settings = settings
        self._redactor: Any = None
        self._lock = threading.Lock()
        self._use = threading.Lock()  # one analysis at a time: spaCy is not shared here

    def _load(self) -> Any:
        with self._lock:
            if self._redactor is None:
                from appliance.config import RedactionSettings, load_policy
                from appliance.redact import Redactor

                settings = self._settings or load_policy("redaction", RedactionSettings)
                self._redactor = Redactor(settings)
            return self._redactor

    def __call__(self, text: str) -> str:
        from appliance.records import Prompt

        prompt = Prompt(request_id="gateway", tenant="gateway", user_id="gateway",
                        ts=datetime.now(UTC), text=text)
        redactor = self._load()
        with self._use:
            return str(redactor.redact(prompt).text)


def text_redactor(redact: bool | TextRedactor) -> TextRedactor | None:
    """An adapter's `redact` option as a function (None: send the text as it is)."""
    if redact is True:
        return GatewayRedactor()
    if callable(redact):
        return redact
    return None
