"""Frozen dataclasses passed between the pipeline stages.

ingest -> redact -> embed -> link -> store/index -> query. Raw prompt text and
raw user ids only ever live in `Prompt`, whose repr hides them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, is_dataclass
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
COST_SOURCES = ("reported", "priced")
HISTORY_ROLES = ("system", "user", "assistant", "tool")
# Which signal decided a link, strongest first (docs/linking.md).
LINK_SOURCES = ("history", "previous_response_id", "session_id", "content")
# What the service is doing (ping, stats, semtrace_service_state): `retention_catchup` is
# the start-up retention run, which prompts are committed between the chunks of.
SERVICE_STATES = ("starting", "retention_catchup", "serving", "stopping")


@dataclass(frozen=True)
class Response:
    """What the gateway reports about the model's answer (all optional).

    The answer's text never gets here: only the SHA-256 of its normalised content.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float | None = None
    status: str | None = None
    digest: str | None = field(default=None, repr=False)  # SHA-256 of the answer
    response_id: str | None = field(default=None, repr=False)  # the provider's response id
    cost: float | None = None  # what the gateway says the call cost (pricing.toml's currency)


@dataclass(frozen=True)
class Message:
    """One message of a request's history: its role and the SHA-256 of its normalised content."""

    role: str
    digest: str = field(repr=False)


@dataclass(frozen=True)
class HeldTurn:
    """A stored record that a history message or a previous response id matched."""

    record_id: int
    request_id: str
    thread_id: str
    ts: datetime
    parent_id: int | None
    kind: str  # prompt, answer or response_id
    digest: str = field(repr=False)  # keyed


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
    # The messages before this prompt (None: the gateway sent no history)
    history: tuple[Message, ...] | None = None
    previous_response_id: str | None = field(default=None, repr=False)
    # The content digest of the prompt as the user wrote it, when `text` is not all of it
    # (cut to max_text_chars, or redacted in the gateway); None: the digest of `text`
    digest: str | None = field(default=None, repr=False)
    truncated: bool = False  # `text` was cut to the service's (or the gateway's) limit


@dataclass(frozen=True)
class GatewayContext:
    """What the gateway said about the conversation, matched against the store.

    Digests here are keyed (per tenant and user); `held` holds the stored records
    that the history's messages (or the previous response id) matched.
    """

    history: tuple[Message, ...] | None = None  # None: the gateway sent no history
    held: tuple[HeldTurn, ...] = ()
    previous_response_id: bool = False  # the request named a previous response
    previous: HeldTurn | None = None  # the record that answered with it, when held


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
    link_source: str | None = None
    feedback: dict[str, Any] | None = None
    cost: float | None = None  # reported by the gateway, else priced from pricing.toml
    cost_source: str | None = None  # "reported" or "priced"; None: unknown


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
    title: str | None = None  # the redacted first prompt, shortened (None: shredded)
    topic_label: str | None = None  # the topic's readable label, when it has one
    cost: float | None = None  # sum over the turns whose cost is known; None: none is


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
    # (kind, keyed digest): the prompt's content, its answer, its response id
    turn_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    cost: float | None = None
    cost_source: str | None = None


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
    truncated: bool = False  # the embedding read only the start of the text
    trace_id: str | None = None
    span_id: str | None = None
    link_source: str | None = None
    text_truncated: bool = False  # the prompt was cut to max_text_chars before it was stored
    # the gateway's signals the request carried that named no turn held (the content decided)
    unmatched: tuple[str, ...] = ()


@dataclass(frozen=True)
class Erased:
    """A prompt not stored (nor redacted, embedded or indexed): its user was erased after
    it was sent (store/erasures.py). The reply says so (`erased`)."""

    request_id: str
    index: int | None = None
    trace_id: str | None = None
    span_id: str | None = None


@dataclass(frozen=True)
class Unredactable:
    """A prompt whose redaction did not finish (it ran past the policy's
    `pattern_timeout_s`, its time budget, or a recogniser failed): refused, nothing of it
    stored, embedded or indexed. `reason` names the cause (a recogniser or pattern, an
    exception type), never the text. The reply says so (`unredactable`)."""

    prompt: Prompt = field(repr=False)
    reason: str


def from_iso(value: str) -> datetime:
    """`datetime.fromisoformat`, with the UTC designator in either case: `Z`, or `z` as RFC
    3339 allows (Python 3.11 takes neither alone: `Z` became `+00:00` here, `z` was refused).
    ValueError when it is not an ISO date or time."""
    if value[-1:] in ("Z", "z"):
        value = value[:-1] + "+00:00"
    return datetime.fromisoformat(value)


def jsonable(obj: Any) -> Any:
    """Dataclasses, datetimes and tuples as plain JSON values."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, datetime):
        return obj.isoformat().replace("+00:00", "Z")
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    return obj


@dataclass(frozen=True)
class ServiceHealth:
    """What the service is doing, and the progress of a retention run in progress."""

    state: str  # one of SERVICE_STATES
    retention_buckets_shredded: int | None = None  # None: no retention run in progress
    retention_buckets_due: int | None = None

    def as_json(self) -> dict[str, Any]:
        """`status`, and `retention` {buckets_shredded, buckets_due} during a run."""
        out: dict[str, Any] = {"status": self.state}
        if self.retention_buckets_due is not None:
            out["retention"] = {"buckets_shredded": self.retention_buckets_shredded,
                                "buckets_due": self.retention_buckets_due}
        return out
