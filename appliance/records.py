"""Frozen dataclasses passed between the pipeline stages.

ingest -> redact -> embed -> link -> store/index -> query. Raw prompt text and
raw user ids only ever live in `Prompt`, whose repr hides them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

POSITIONS = ("new", "continuation", "topic_shift", "orphaned")
INTENTS = (
    "information_seeking",
    "task_execution",
    "conversation_management",
    "error_recovery",
)
STATUSES = ("ok", "error", "blocked")


@dataclass(frozen=True)
class Response:
    """What the gateway reports about the model's answer (all optional)."""

    text: str | None = field(default=None, repr=False)
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    status: str | None = None


@dataclass(frozen=True)
class Prompt:
    """One validated prompt as it arrives (raw text: in memory only)."""

    request_id: str
    tenant: str
    user_id: str = field(repr=False)
    ts: datetime
    text: str = field(repr=False)
    session_id: str | None = field(default=None, repr=False)
    model: str | None = None
    response: Response | None = None
    synthetic: bool = False
    index: int | None = None
    trace_id: str | None = None
    span_id: str | None = None


@dataclass(frozen=True)
class PiiSpan:
    """A detected PII span in the raw text and the placeholder replacing it."""

    start: int
    end: int
    entity_type: str
    placeholder: str
    score: float


@dataclass(frozen=True)
class Redacted:
    """A prompt after redaction; `text` is the redacted text, safe to store."""

    prompt: Prompt
    text: str
    spans: tuple[PiiSpan, ...] = ()
    # (entity type, original value) per span; kept only inside the encrypted vault
    vault: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    # (start, end) of each placeholder in `text`
    marks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Embedded:
    """A redacted prompt and its L2-normalised embedding."""

    redacted: Redacted
    vector: np.ndarray = field(repr=False)
    model_id: str = ""
    truncated: bool = False


@dataclass(frozen=True)
class Candidate:
    """An earlier prompt of the same (tenant, user) that a new prompt may continue."""

    record_id: int
    request_id: str
    thread_id: str
    ts: datetime
    vector: np.ndarray = field(repr=False)
    text: str = field(repr=False)  # redacted text
    session_key: str | None = None  # keyed hash of the client session id
    parent_id: int | None = None
    position: str = "new"
    entity_keys: tuple[str, ...] = ()
    response_vector: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Link:
    """The linker's decision for one prompt."""

    parent_id: int | None
    thread_id: str | None  # None: the caller allocates a new thread id
    position: str
    intent: str
    similarity: float | None
    score: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Record:
    """A stored prompt as the read side sees it (redacted text only)."""

    record_id: int
    request_id: str
    tenant: str
    user: str  # pseudonym
    ts: datetime
    thread_id: str
    parent_id: int | None
    parent_request_id: str | None
    position: str
    intent: str | None
    similarity: float | None
    topic_id: str | None
    text: str | None  # None when its key has been destroyed
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    status: str | None = None
    synthetic: bool = False
    index: int | None = None
    evidence: dict[str, Any] | None = None
    trace_id: str | None = None
    span_id: str | None = None
    feedback: dict[str, Any] | None = None


@dataclass(frozen=True)
class Thread:
    """Summary of one conversation thread."""

    thread_id: str
    tenant: str
    user: str
    first_ts: datetime
    last_ts: datetime
    turns: int
    models: tuple[str, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    topic_id: str | None = None
    records: tuple[Record, ...] = ()


@dataclass(frozen=True)
class Hit:
    """A search result."""

    record_id: int
    thread_id: str
    similarity: float
    text: str | None
    tenant: str
    user: str
    ts: datetime


@dataclass(frozen=True)
class NewRecord:
    """Everything the store writes for one prompt (text already redacted)."""

    record_id: int
    prompt: Prompt
    user: str  # pseudonym
    session_key: str | None
    link: Link
    thread_id: str
    text: str = field(repr=False)
    vector: np.ndarray = field(repr=False)
    model_id: str = ""
    truncated: bool = False
    vault: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    trace_id: str | None = None
    span_id: str | None = None
    topic_id: str | None = None
    entity_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What ingesting one prompt produced (what the gateway gets back)."""

    request_id: str
    record_id: int
    thread_id: str
    parent_id: int | None
    parent_request_id: str | None
    position: str
    intent: str | None
    similarity: float | None
    topic_id: str | None = None
    index: int | None = None
    duplicate: bool = False
    truncated: bool = False
    trace_id: str | None = None
    span_id: str | None = None
