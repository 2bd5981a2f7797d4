"""Settings from `policies/*.toml`, validated once; errors name the file and key."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from appliance.errors import ConfigError

POLICY_DIR_ENV = "SEMTRACE_POLICY_DIR"
MODEL_DIR_ENV = "SEMTRACE_MODEL_DIR"
_REPO_ROOT = Path(__file__).resolve().parent.parent


def _share_dir(name: str) -> Path:
    repo = _REPO_ROOT / name
    if repo.is_dir():
        return repo
    return Path(sys.prefix) / "share" / "semtrace" / name


def policy_dir() -> Path:
    """Where policies live: $SEMTRACE_POLICY_DIR, the source tree, or the install prefix."""
    env = os.environ.get(POLICY_DIR_ENV)
    return Path(env) if env else _share_dir("policies")


def model_dir() -> Path:
    """Where the bundled model lives: $SEMTRACE_MODEL_DIR, the source tree, or the prefix."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else _share_dir("models")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbeddingSettings(_Strict):
    threads: int = Field(default=1, ge=1, le=64)
    max_tokens: int = Field(default=256, ge=16, le=512)
    n_batch: int = Field(default=512, ge=32, le=4096)
    # Prompts packed into one llama.cpp decode, in tokens (64 measured fastest here).
    pack_tokens: int = Field(default=64, ge=1, le=4096)


class CorrelationSettings(_Strict):
    horizon_hours: float = Field(default=72.0, gt=0, le=24 * 90)
    max_candidates: int = Field(default=200, ge=1, le=10_000)
    max_text_chars: int = Field(default=32_768, ge=64)
    weights_file: str = "linker-weights.json"
    link_threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    topic_shift_similarity: float = Field(default=0.25, ge=-1.0, le=1.0)
    topic_shift_opener: float = Field(default=0.6, ge=0.0, le=1.0)
    orphan_threshold: float = Field(default=0.2, ge=0.0, le=1.0)
    # Linker shortlist: cosine is computed over the newest `scan_candidates` turns; the
    # newest `recent_candidates` turns (and latest turn of as many recent threads) plus
    # the `similar_candidates` most similar turns are scored in full.
    scan_candidates: int = Field(default=2_000, ge=1, le=1_000_000)
    recent_candidates: int = Field(default=12, ge=1, le=1000)
    similar_candidates: int = Field(default=8, ge=1, le=1000)
    embedding: EmbeddingSettings = EmbeddingSettings()


class RecognizerPattern(_Strict):
    name: str
    regex: str
    score: float = Field(default=0.8, ge=0.0, le=1.0)


class CustomRecognizer(_Strict):
    entity: str
    patterns: list[RecognizerPattern]
    context: list[str] = []


# Every type the redactor can find when all its recognisers are on: Presidio's English
# recognisers (spaCy's included) and Semtrace's own (handles are USERNAME). A policy's
# `custom` recognisers add their own types. tests/test_redact.py checks this against the
# built analyser, so a Presidio upgrade that changes the set fails there.
REDACTABLE_TYPES = frozenset({
    "CREDIT_CARD", "CRYPTO", "DATE_TIME", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS",
    "LOCATION", "MAC_ADDRESS", "MEDICAL_LICENSE", "NRP", "ORGANIZATION", "PERSON",
    "PHONE_NUMBER", "UK_NHS", "URL", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "US_ITIN",
    "US_PASSPORT", "US_SSN", "USERNAME", "UUID",
})


class RedactionSettings(_Strict):
    entities: list[str]
    score_threshold: float = Field(default=0.4, ge=0.0, le=1.0)
    operator: Literal["placeholder", "mask"] = "placeholder"
    spacy_model: str = "en_core_web_md"
    custom: list[CustomRecognizer] = []
    allow_list: list[str] = []
    # Names ranking within this many in some country (names-dataset) feed the
    # name recogniser; 0 turns the name and place lists off.
    name_list_rank: int = Field(default=1000, ge=0, le=20000)

    @model_validator(mode="after")
    def _entities_are_known(self) -> RedactionSettings:
        """A type no recogniser finds (a misspelt "LOCATON") would silently redact nothing."""
        known = REDACTABLE_TYPES | {c.entity for c in self.custom}
        unknown = [name for name in self.entities if name not in known]
        if unknown:
            raise ValueError(
                f"`entities` lists {', '.join(unknown)}, which no recogniser finds, so "
                f"nothing would be redacted as {'it' if len(unknown) == 1 else 'them'} "
                f"(misspelt? the types are {', '.join(sorted(known))})")
        return self

    def nationality_as_location(self) -> bool:
        """Whether nationality words are redacted as LOCATION rather than NRP.

        They were LOCATION until they got their own type (NRP): a policy that
        lists LOCATION but not NRP, as every policy did before, keeps them
        redacted, under the type it names.
        """
        return "LOCATION" in self.entities and "NRP" not in self.entities

    def warnings(self) -> list[str]:
        """Sentences on what this policy does that its `entities` alone do not say."""
        if self.name_list_rank == 0:
            # Nationality words are found only with the word lists (DemonymRecognizer).
            if "NRP" not in self.entities:
                return []
            return ['The redaction policy lists NRP in `entities` but sets '
                    '`name_list_rank = 0`, which switches off the word lists that '
                    'nationality words are found with: nothing is redacted as NRP '
                    '("Israeli", "Irish" stay in the clear).']
        if self.nationality_as_location():
            return ['The redaction policy lists LOCATION but not NRP in `entities`: '
                    'nationality words ("Israeli", "Irish") are redacted as <LOCATION>, '
                    'as before they had a type of their own; add "NRP" to `entities` '
                    'to redact them as <NRP>.']
        return []


class RoleSettings(_Strict):
    description: str = ""
    permissions: list[str]
    uids: list[int] = []  # only these OS users (or members of `gids`) may take the role
    gids: list[int] = []
    tenants: list[str] = []  # the tenants the role sees; [] = all


class AccessSettings(_Strict):
    default_role: str = "analyst"
    allow_same_uid: bool = True
    socket_uids: list[int] = []
    socket_gids: list[int] = []
    roles: dict[str, RoleSettings]


class RetentionClass(_Strict):
    prompts_days: float = Field(default=30, gt=0)
    vault_days: float = Field(default=7, gt=0)
    # What outlives shredding (topic words and counts, the rows of shredded buckets) is
    # removed this many days after its last contributor; vectors and thread summaries
    # go with their prompts (same key, same rows).
    aggregates_days: float = Field(default=400, gt=0)


class LegalHold(_Strict):
    tenant: str
    user_id: str | None = None
    reason: str = ""


class RetentionSettings(_Strict):
    default: RetentionClass = RetentionClass()
    tenants: dict[str, RetentionClass] = {}
    legal_holds: list[LegalHold] = []
    schedule_cron: str = "17 * * * *"


# The kinds of cross-user release (`analytics`): what `release_epsilon` may name.
RELEASE_KINDS = ("topics", "models", "cost", "positions", "blocks", "incident")


class PrivacySettings(_Strict):
    k_min_users: int = Field(default=5, ge=1)
    epsilon_per_day: float = Field(default=4.0, gt=0)
    # What one cached release (a kind of figures over one window, once per UTC day) spends.
    epsilon_per_release: float = Field(default=1.0, gt=0)
    # What a release of one kind spends where it is not `epsilon_per_release`.
    release_epsilon: dict[str, float] = {}
    cross_user_topics: dict[str, bool] = {}
    # Mean cosine similarity between a thread's prompts and a topic's prompts needed
    # to join it online (else the thread starts a topic).
    topic_threshold: float = Field(default=0.15, ge=-1, le=1)
    # Background refinement merges groups of threads while the mean similarity
    # between their prompts (average linkage) is at least this.
    topic_merge_threshold: float = Field(default=0.15, ge=-1, le=1)
    topic_refine_every: int = Field(default=500, ge=1)
    # Share of the refinement's similarity that comes from the threads' shared words
    # (hashed TF-IDF over the tenant's threads) rather than their embeddings.
    topic_lexical_weight: float = Field(default=0.4, ge=0, le=1)
    # Refinement merges two groups only while that mean similarity is also at least
    # this share of each group's cohesion (mean similarity between its distinct
    # prompts). 0 (off): leave-one-source-out prefers it off (docs/topics.md).
    topic_cohesion_ratio: float = Field(default=0.0, ge=0, le=1)
    # A topic of at least `topic_support` threads is established: two established
    # topics merge at `topic_merge_threshold`, a smaller group joins one at
    # `topic_absorb_threshold`, and two smaller groups merge only when that mean is
    # also `topic_seed_ratio` of the tighter one's cohesion (a conversation that
    # stays on one subject founds a topic only with one nearly as close).
    # `topic_support` 1: one flat threshold (docs/topics.md).
    topic_support: int = Field(default=3, ge=1)
    topic_seed_ratio: float = Field(default=0.6, ge=0, le=1)
    topic_absorb_threshold: float = Field(default=0.12, ge=-1, le=1)
    # Units (threads or prompts) one user may add to one cross-user release: the
    # L1 sensitivity of a count; sums are clipped per unit on top.
    contribution_bound: int = Field(default=15, ge=1, le=10_000)
    # Groups one user is counted in by a release's count of people (the L1
    # sensitivity of that count, which decides k-suppression).
    people_bound: int = Field(default=8, ge=1, le=10_000)
    # Tenants whose analysts may search other users' prompts.
    cross_user_search: dict[str, bool] = {}
    # When (crontab, UTC) `semtrace serve` makes each tenant's daily releases of the
    # topics and models figures (and at start), so that no query has to.
    release_cron: str = "5 0 * * *"

    @field_validator("release_cron")
    @classmethod
    def _crontab(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value)
        except ValueError:
            raise ValueError(f"release_cron {value!r} is not a crontab expression "
                             "(five fields, e.g. \"5 0 * * *\").") from None
        return value

    @field_validator("release_epsilon")
    @classmethod
    def _release_epsilons(cls, value: dict[str, float], info: ValidationInfo
                          ) -> dict[str, float]:
        per_day = info.data.get("epsilon_per_day", 4.0)
        for kind, eps in value.items():
            if kind not in RELEASE_KINDS:
                raise ValueError(f"{kind!r} is no kind of release (one of "
                                 f"{', '.join(RELEASE_KINDS)})")
            if not 0 < eps <= per_day:
                raise ValueError(f"{kind} = {eps:g} must be above 0 and at most "
                                 f"epsilon_per_day ({per_day:g}), or it can never be released")
        return value

    def epsilon_for(self, kind: str | None) -> float:
        """What one release of `kind` spends (`epsilon_per_release` unless overridden)."""
        if kind is None:
            return self.epsilon_per_release
        return self.release_epsilon.get(kind, self.epsilon_per_release)

    def release_epsilons(self) -> dict[str, float]:
        """What one release of each kind spends."""
        return {kind: self.epsilon_for(kind) for kind in RELEASE_KINDS}


class ModelPrice(_Strict):
    """List prices of one model, per million tokens, in `PricingSettings.currency`."""

    provider: str = Field(default="", max_length=64)  # "" = whichever provider serves it
    model: str = Field(min_length=1, max_length=256)
    input_per_million: float = Field(ge=0, le=1_000_000)
    output_per_million: float = Field(ge=0, le=1_000_000)

    @field_validator("provider", "model")
    @classmethod
    def _bare(cls, value: str) -> str:
        if "/" in value or value != value.strip():
            raise ValueError("must be a bare name without '/' or surrounding spaces")
        return value


class PricingSettings(_Strict):
    """`policies/pricing.toml` (optional): what a call costs when the gateway says nothing."""

    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")  # ISO 4217
    # Cross-user cost sums clip each thread's cost to this (the sensitivity of a sum).
    thread_cost_bound: float = Field(default=1.0, gt=0, le=1_000_000)
    models: list[ModelPrice] = []

    @field_validator("models")
    @classmethod
    def _unique(cls, value: list[ModelPrice]) -> list[ModelPrice]:
        seen = set()
        for m in value:
            key = (m.provider, m.model)
            if key in seen:
                raise ValueError(f"lists {'/'.join(filter(None, key))} twice")
            seen.add(key)
        return value


class ServiceSettings(_Strict):
    max_frame_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    queue_max: int = Field(default=2048, ge=1)
    batch_max: int = Field(default=64, ge=1, le=4096)
    inflight_per_connection: int = Field(default=256, ge=1)
    idle_timeout_s: float = Field(default=600.0, gt=0)
    synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    busy_retry_after_ms: int = Field(default=50, ge=1)
    # Connections open at once; one more is answered `busy` and closed.
    max_connections: int = Field(default=256, ge=1, le=65536)
    # An ingest's `ts` must lie within this window around the service's clock.
    ts_past_days: float = Field(default=365.0, gt=0, le=3650)
    ts_future_s: float = Field(default=300.0, ge=0, le=86400)


_LOOPBACK = ("127.0.0.1", "::1", "[::1]", "localhost")


class TracingSettings(_Strict):
    """OpenTelemetry spans; exported over OTLP/HTTP only when `otlp_endpoint` is set."""

    otlp_endpoint: str = ""  # e.g. "http://127.0.0.1:4318/v1/traces"; "" = no export
    service_name: str = Field(default="semtrace", min_length=1, max_length=64)

    @field_validator("otlp_endpoint")
    @classmethod
    def _same_host(cls, value: str) -> str:
        if value and (urlsplit(value).scheme not in ("http", "https")
                      or urlsplit(value).hostname not in _LOOPBACK):
            raise ValueError("must be an http(s) URL of a collector on this host "
                             "(127.0.0.1, ::1 or localhost), or empty")
        return value


class MetricsSettings(_Strict):
    """Prometheus exposition; off unless `listen` is set."""

    listen: str = ""  # "127.0.0.1:9464" or "unix:/run/semtrace/metrics.sock"; "" = off
    tenant_labels: int = Field(default=20, ge=0, le=1000)  # largest tenants labelled by name
    agreement_sample_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    agreement_window: int = Field(default=500, ge=10, le=100_000)

    @field_validator("listen")
    @classmethod
    def _address(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if value.startswith("unix:"):
            if not value[5:].startswith("/"):
                raise ValueError("a Unix socket must be an absolute path: unix:/path")
        elif value and (not sep or not host or not port.isdigit() or int(port) > 65535):
            raise ValueError("must be host:port, unix:/path, or empty")
        return value


class LogSettings(_Strict):
    each_request: bool = True  # one `ingested` line per prompt (ids only, never text)


class TelemetrySettings(_Strict):
    """`policies/telemetry.toml` (optional: defaults export nothing)."""

    tracing: TracingSettings = TracingSettings()
    metrics: MetricsSettings = MetricsSettings()
    logs: LogSettings = LogSettings()


M = TypeVar("M", bound=BaseModel)


# Keys earlier versions accepted but never enforced: a policy naming one is refused
# with the reason, rather than seeming to promise something.
REMOVED_KEYS = {
    "sample_rate": "every prompt is embedded; sampling was never implemented",
    "checkpoint_every": "every audit write ends with a signed checkpoint",
    "vectors_days": "vectors are kept exactly as long as their prompts (prompts_days)",
    "threads_days": "thread summaries go with their prompts (prompts_days)",
}


def _describe(err: ValidationError) -> str:
    first = err.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    last = str(first["loc"][-1]) if first["loc"] else ""
    if first["type"] == "extra_forbidden" and last in REMOVED_KEYS:
        return f"key '{key}' was removed (it was never enforced: {REMOVED_KEYS[last]})"
    if not first["loc"] and first["type"] == "value_error":
        # A check across keys (a model validator): its message names the keys itself.
        return str(first["msg"]).removeprefix("Value error, ")
    return f"key '{key}': {first['msg']}"


def load_policy(name: str, model: type[M], *, directory: Path | None = None) -> M:
    """Load and validate `policies/<name>.toml`; ConfigError names the file and key."""
    path = (directory or policy_dir()) / f"{name}.toml"
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Policy file {path} is missing.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Policy file {path} is not valid TOML: {exc}.") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"Policy file {path}: {_describe(exc)}.") from None


_NATS_SCHEMES = ("nats", "tls")


class ClusterSecurity(_Strict):
    """How a node authenticates to NATS and protects the connection (all paths, all optional)."""

    creds_file: str = ""  # a NATS .creds file (user JWT + nkey seed)
    nkey_seed_file: str = ""  # a bare nkey seed file (nkey authentication)
    user: str = ""  # user/password authentication: the user ...
    password_file: str = ""  # ... and a file (mode 0600) holding only the password
    tls_ca_file: str = ""  # CA that signed the server's certificate; set = TLS on
    tls_cert_file: str = ""  # client certificate (mutual TLS), with tls_key_file
    tls_key_file: str = ""

    @field_validator("*")
    @classmethod
    def _absolute(cls, value: str, info: Any) -> str:
        if value and info.field_name != "user" and not value.startswith("/"):
            raise ValueError("must be an absolute path, or empty")
        return value


class ClusterSettings(_Strict):
    """`policies/cluster.toml`: scale-out over NATS JetStream (off while `url` is empty)."""

    url: str = ""  # "nats://127.0.0.1:4222", several comma-separated; "" = no cluster
    partitions: int = Field(default=16, ge=1, le=1024)
    own: str = ""  # partitions this node consumes, e.g. "0-7" or "0-3,12"; "" = all
    node: str = Field(default="", max_length=64)  # this node's name; "" = the host name
    stream: str = Field(default="SEMTRACE", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    replicas: int = Field(default=1, ge=1, le=5)  # JetStream replicas of the stream
    ack_wait_s: float = Field(default=30.0, ge=1.0, le=3600.0)  # redelivery after this
    fetch_batch: int = Field(default=64, ge=1, le=4096)  # messages pulled at once per partition
    owner_ttl_s: float = Field(default=15.0, ge=2.0, le=600.0)  # a silent owner's claim expires
    security: ClusterSecurity = ClusterSecurity()

    @field_validator("url")
    @classmethod
    def _urls(cls, value: str) -> str:
        for url in filter(None, (u.strip() for u in value.split(","))):
            parts = urlsplit(url)
            if parts.scheme not in _NATS_SCHEMES or not parts.hostname:
                raise ValueError("must be nats://host:port (or tls://), comma-separated, or empty")
            if parts.password:
                raise ValueError("must not carry a password: use security.password_file")
        return value

    @field_validator("own")
    @classmethod
    def _own(cls, value: str) -> str:
        from appliance.cluster.partition import parse_own

        if value:
            parse_own(value, 1 << 20)  # syntax here; the range is checked against partitions
        return value

    def owned(self) -> list[int]:
        """The partitions this node consumes (all when `own` is empty)."""
        from appliance.cluster.partition import parse_own

        return parse_own(self.own, self.partitions) if self.own else list(range(self.partitions))


class Policies(_Strict):
    """All policies, validated together at start."""

    correlation: CorrelationSettings
    redaction: RedactionSettings
    access: AccessSettings
    retention: RetentionSettings
    privacy: PrivacySettings
    service: ServiceSettings = ServiceSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    cluster: ClusterSettings = ClusterSettings()
    pricing: PricingSettings = PricingSettings()


def load_policies(directory: Path | None = None) -> Policies:
    """Load every policy file."""
    return Policies(
        correlation=load_policy("correlation", CorrelationSettings, directory=directory),
        redaction=load_policy("redaction", RedactionSettings, directory=directory),
        access=load_policy("access", AccessSettings, directory=directory),
        retention=load_policy("retention", RetentionSettings, directory=directory),
        privacy=load_policy("privacy", PrivacySettings, directory=directory),
        service=load_policy("service", ServiceSettings, directory=directory),
        telemetry=load_optional_policy("telemetry", TelemetrySettings, directory=directory),
        cluster=load_cluster(directory),
        pricing=load_optional_policy("pricing", PricingSettings, directory=directory),
    )


def load_cluster(directory: Path | None = None) -> ClusterSettings:
    """`cluster.toml` (optional), with its partition range checked against `partitions`."""
    settings = load_optional_policy("cluster", ClusterSettings, directory=directory)
    try:
        settings.owned()
    except ValueError as exc:
        path = (directory or policy_dir()) / "cluster.toml"
        raise ConfigError(f"Policy file {path}: key 'own': {exc}") from None
    return settings


def load_optional_policy(name: str, model: type[M], *, directory: Path | None = None) -> M:
    """Like `load_policy`, but the defaults when the file is absent."""
    if not ((directory or policy_dir()) / f"{name}.toml").exists():
        return model()
    return load_policy(name, model, directory=directory)
