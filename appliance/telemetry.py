"""Telemetry: structured JSON logs, OpenTelemetry spans, and the service observer.

Never prompt text, user ids or session ids: spans, log lines and metric labels
carry ids the appliance made (trace, span, conversation) or closed-set values.
Spans are built only when an exporter is configured (`make_tracer_provider`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from appliance import __version__
from appliance.config import TelemetrySettings, TracingSettings
from appliance.errors import ConfigError
from appliance.metrics import SessionAgreement
from appliance.records import Outcome, Prompt, ServiceHealth

if TYPE_CHECKING:
    from appliance.metrics import Metrics
    from appliance.pipeline import Pipeline
    from appliance.retention import RunReport

_STD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}
log = logging.getLogger("semtrace.telemetry")
ingest_log = logging.getLogger("semtrace.ingest")

# The gateway's model id may carry a LiteLLM-style provider prefix ("bedrock/...");
# mapped to the GenAI semantic conventions' `gen_ai.provider.name` values.
PROVIDERS = {"openai": "openai", "anthropic": "anthropic", "bedrock": "aws.bedrock",
             "azure": "azure.ai.openai", "azure_ai": "azure.ai.inference",
             "vertex_ai": "gcp.vertex_ai", "gemini": "gcp.gemini", "cohere": "cohere",
             "mistral": "mistral_ai", "groq": "groq", "deepseek": "deepseek",
             "perplexity": "perplexity", "xai": "x_ai", "watsonx": "ibm.watsonx.ai"}
# Pipeline stages as spans: the store span covers the commit and the index update.
SPAN_STAGES = (("redaction", ("redaction",)), ("embedding", ("embedding",)),
               ("linking", ("linking",)), ("store", ("commit", "index")))


# ---------------------------------------------------------------- logs

class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD and not key.startswith("_"):
                out[key] = value
        if "trace_id" not in out:  # inside an active span (e.g. a gateway's process)
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                out["trace_id"] = format(ctx.trace_id, "032x")
                out["span_id"] = format(ctx.span_id, "016x")
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__  # the type only: messages may hold data
        return json.dumps(out, default=str)


def setup_logging(level: str = "info", stream: Any = None) -> None:
    """Route the `semtrace` loggers to JSON lines on stderr (or `stream`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("semtrace")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


# ---------------------------------------------------------------- spans

class PresetIds(IdGenerator):
    """Random ids, except inside `preset(...)`: the ids the service already replied with."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._next = threading.local()

    @contextlib.contextmanager
    def preset(self, trace_id: str | None, span_id: str | None) -> Iterator[None]:
        self._next.trace_id = int(trace_id, 16) if trace_id else None
        self._next.span_id = int(span_id, 16) if span_id else None
        try:
            yield
        finally:
            self._next.trace_id = self._next.span_id = None

    def generate_span_id(self) -> int:
        value = getattr(self._next, "span_id", None)
        self._next.span_id = None
        return value or self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        value = getattr(self._next, "trace_id", None)
        self._next.trace_id = None
        return value or self._random.generate_trace_id()


def make_tracer_provider(settings: TracingSettings, *,
                         exporter: SpanExporter | None = None) -> TracerProvider | None:
    """A provider exporting to `exporter` (tests) or the configured local collector; else None.

    Not installed globally: only the appliance's own spans go through it.
    """
    if exporter is None and not settings.otlp_endpoint:
        return None
    if exporter is None:
        processor: Any = BatchSpanProcessor(otlp_exporter()(endpoint=settings.otlp_endpoint))
    else:
        processor = SimpleSpanProcessor(exporter)
    provider = TracerProvider(id_generator=PresetIds(), resource=Resource.create(
        {"service.name": settings.service_name, "service.version": __version__}))
    provider.add_span_processor(processor)
    return provider


def otlp_exporter() -> Any:
    """The OTLP/HTTP span exporter class; ConfigError in one sentence when the `otlp` extra
    is not installed (`serve` asks before the models load)."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError("Exporting spans needs the OTLP exporter: "
                          "pip install 'semtrace[otlp]'.") from None
    return OTLPSpanExporter


def provider_name(model: str | None) -> str | None:
    """`gen_ai.provider.name` from a "provider/model" id, when the provider is known."""
    if not model or "/" not in model:
        return None
    return PROVIDERS.get(model.split("/", 1)[0].lower())


def span_attributes(prompt: Prompt, outcome: Outcome | None,
                    turns: int | None) -> dict[str, Any]:
    """The ingress span's attributes: GenAI conventions plus `semtrace.*`; never text."""
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "semtrace.tenant": prompt.tenant,
                             "semtrace.request_id": prompt.request_id,
                             "semtrace.synthetic": prompt.synthetic}
    if prompt.model:
        attrs["gen_ai.request.model"] = prompt.model
        if (provider := provider_name(prompt.model)) is not None:
            attrs["gen_ai.provider.name"] = provider
    resp = prompt.response
    if resp is not None and resp.input_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = resp.input_tokens
    if resp is not None and resp.output_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = resp.output_tokens
    if outcome is None:
        return attrs
    attrs.update({"gen_ai.conversation.id": outcome.thread_id,
                  "semtrace.position": outcome.position, "semtrace.duplicate": outcome.duplicate})
    optional = {"semtrace.intent": outcome.intent, "semtrace.topic_id": outcome.topic_id,
                "semtrace.parent_request_id": outcome.parent_request_id,
                "semtrace.link_source": outcome.link_source,
                "semtrace.thread.turns": turns,
                "semtrace.similarity": None if outcome.similarity is None
                else round(float(outcome.similarity), 4)}
    attrs.update({k: v for k, v in optional.items() if v is not None})
    return attrs


class QueuedLike(Protocol):
    """What the service hands over per prompt (service.core._Item)."""

    prompt: Prompt
    traceparent: str | None
    arrived_ns: int


class SpanWriter:
    """Writes each prompt's ingress span and its stage children after the fact."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("semtrace", __version__)
        ids = provider.id_generator
        self._ids = ids if isinstance(ids, PresetIds) else None
        self._propagator = TraceContextTextMapPropagator()

    def write(self, item: QueuedLike, outcome: Outcome | None, *, turns: int | None,
              stages: dict[str, tuple[int, int]], end_ns: int, batch: int) -> None:
        """One `semtrace.ingress` span (the reply's span id), child of the gateway's span."""
        p = item.prompt
        parent = None
        if item.traceparent:
            parent = self._propagator.extract({"traceparent": item.traceparent.strip().lower()})
        preset = self._ids.preset(p.trace_id, p.span_id) if self._ids else contextlib.nullcontext()
        with preset:
            span = self.tracer.start_span("semtrace.ingress", context=parent, kind=SpanKind.SERVER,
                                          start_time=item.arrived_ns,
                                          attributes=span_attributes(p, outcome, turns))
        if outcome is None:
            span.set_status(Status(StatusCode.ERROR, "the prompt could not be recorded"))
            span.set_attribute("error.type", "internal")
        elif not outcome.duplicate:
            ctx = trace.set_span_in_context(span)
            for name, parts in SPAN_STAGES:
                times = [stages[s] for s in parts if s in stages]
                if times:
                    child = self.tracer.start_span(
                        f"semtrace.{name}", context=ctx, start_time=times[0][0],
                        attributes={"semtrace.batch.size": batch})
                    child.end(end_time=times[-1][1])
        span.end(end_time=max(end_ns, item.arrived_ns))

    def shutdown(self) -> None:
        self.provider.shutdown()  # flushes what is pending


# ---------------------------------------------------------------- observer

class Telemetry:
    """The service's observer: metrics, spans and per-request log lines from each batch."""

    def __init__(self, settings: TelemetrySettings, *, metrics: Metrics | None = None,
                 spans: SpanWriter | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.spans = spans
        self.agreement = SessionAgreement(settings.metrics.agreement_sample_rate)
        self.pipeline: Pipeline | None = None
        self._stages: list[tuple[str, int, int]] = []

    def attach(self, pipeline: Pipeline) -> None:
        """Time the pipeline's stages and linker queries."""
        self.pipeline = pipeline
        pipeline.stage_timer = self._stage
        if self.metrics is not None:
            from appliance.metrics import timed

            pipeline.linker = timed(pipeline.linker, self.metrics.index_query.labels("history"),
                                    time.perf_counter)
            self.refresh_sizes()

    def refresh_sizes(self) -> None:
        """Copy the index sizes for scrapes (call on the worker thread)."""
        if self.metrics is not None and self.pipeline is not None:
            self.metrics.index_sizes.sizes = self.pipeline.index.sizes()
            self.metrics.index_sizes.slots = self.pipeline.index.slots()

    def _stage(self, stage: str, start_ns: int, end_ns: int) -> None:
        if stage == "redaction":  # the first stage: a new `process` call
            self._stages.clear()
        self._stages.append((stage, start_ns, end_ns))

    def reply(self, op: str, reply: dict[str, Any]) -> None:
        """Count a reply (event loop); never raises into the service."""
        if self.metrics is not None:
            try:
                self.metrics.reply(op, reply)
            except Exception:
                log.exception("telemetry failed", extra={"event": "telemetry_failed"})

    def batch(self, items: Sequence[QueuedLike], outcomes: Sequence[Outcome] | None) -> None:
        """Record a committed (or failed) batch (worker thread)."""
        stages = {s: (a, b) for s, a, b in self._stages}
        self._stages = []
        end_ns = max((b for _, b in stages.values()), default=time.time_ns())
        if outcomes is None:
            for item in items:
                self._failed(item)
            return
        m = self.metrics
        if m is not None:
            for name, (a, b) in stages.items():
                m.stage.labels(name).observe((b - a) / 1e9)
            m.batch_size.observe(len(items))
            self.refresh_sizes()
        turns = self._turns(outcomes) if self.spans is not None else {}
        for item, outcome in zip(items, outcomes, strict=True):
            self._one(item, outcome, end_ns)
            if self.spans is not None:
                self.spans.write(item, outcome, turns=turns.get(outcome.thread_id),
                                 stages=stages, end_ns=end_ns, batch=len(items))

    def _one(self, item: QueuedLike, o: Outcome, end_ns: int) -> None:
        latency = max(0, end_ns - item.arrived_ns) / 1e9
        m = self.metrics
        if m is not None:
            if not o.duplicate:
                m.ingest_latency.labels(o.position).observe(latency)
                if o.position == "orphaned":
                    m.failures.labels("orphaned").inc()
                for signal in o.unmatched:  # a gateway whose digests or ids never match
                    m.unmatched.labels(signal).inc()
            if self.agreement.rate > 0 and (result := self.agreement.observe(item.prompt, o)):
                m.agreement_result(result)
        if self.settings.logs.each_request:
            ingest_log.info("ingested", extra={
                "event": "ingested", "request_id": o.request_id, "tenant": item.prompt.tenant,
                "trace_id": o.trace_id, "span_id": o.span_id, "conversation_id": o.thread_id,
                "position": o.position, "intent": o.intent, "duplicate": o.duplicate,
                "link_source": o.link_source,
                "latency_ms": round(latency * 1000, 2)})

    def _failed(self, item: QueuedLike) -> None:
        p = item.prompt
        if self.metrics is not None:
            self.metrics.failures.labels("error").inc()
        log.warning("not recorded", extra={"event": "ingest_failed", "request_id": p.request_id,
                                           "tenant": p.tenant, "trace_id": p.trace_id,
                                           "span_id": p.span_id})
        if self.spans is not None:
            self.spans.write(item, None, turns=None, stages={}, end_ns=time.time_ns(), batch=1)

    def _turns(self, outcomes: Sequence[Outcome]) -> dict[str, int]:
        """Turns per thread of this batch (worker thread: the store's one connection)."""
        if self.pipeline is None or not outcomes:
            return {}
        ids = sorted({o.thread_id for o in outcomes})
        rows = self.pipeline.store.db.execute(
            f"SELECT thread_id, turns FROM threads WHERE thread_id IN ({','.join('?' * len(ids))})",
            ids)
        return {tid: int(n) for tid, n in rows}

    def retention_done(self, report: RunReport | None) -> None:
        """After a retention run (None: it failed): count it, re-verify the audit chain."""
        if self.metrics is None or self.pipeline is None:
            return
        from appliance.audit import verify_chain

        now = time.time()
        self.metrics.retention(ok=report is not None, finished_at=now,
                               buckets=report.shredded if report else 0,
                               records=report.records if report else 0)
        verification = verify_chain(self.pipeline.store.db, self.pipeline.store.keys_db)
        self.metrics.audit(valid=verification.ok, checked_at=time.time())
        if not verification.ok:
            log.error("audit chain does not verify", extra={
                "event": "audit_invalid", "first_bad_seq": verification.first_bad_seq})
        self.refresh_sizes()

    def shutdown(self) -> None:
        """Flush spans still pending."""
        if self.spans is not None:
            self.spans.shutdown()


def start_telemetry(settings: TelemetrySettings, pipeline: Pipeline, *,
                    queue_depth: Callable[[], int],
                    exporter: SpanExporter | None = None,
                    health: Callable[[], ServiceHealth] | None = None
                    ) -> tuple[Telemetry, Any]:
    """Build the observer for a service; returns it and the metrics server (or None)."""
    from appliance.metrics import Metrics, MetricsServer, unreachable

    metrics = server = None
    if settings.metrics.listen:
        metrics = Metrics(tenant_labels=settings.metrics.tenant_labels,
                          agreement_window=settings.metrics.agreement_window)
        metrics.bind(queue_depth=queue_depth, model_id=pipeline.embedder.model_id,
                     dims=pipeline.embedder.dims, health=health)
    provider = make_tracer_provider(settings.tracing, exporter=exporter)
    telemetry = Telemetry(settings, metrics=metrics,
                          spans=SpanWriter(provider) if provider is not None else None)
    telemetry.attach(pipeline)
    if metrics is not None:
        try:
            server = MetricsServer(metrics.registry, settings.metrics.listen,
                                   group=settings.metrics.socket_group)
        except (OSError, ValueError) as exc:
            why = str(getattr(exc, "strerror", None) or exc).rstrip(".")
            raise ConfigError(f"Metrics cannot listen on {settings.metrics.listen}: {why}.") \
                from None
        log.info("metrics listening", extra={"event": "metrics", "address": server.address})
        if (hidden := unreachable(settings.metrics.listen)) is not None:
            log.warning("metrics unreachable: %s", hidden, extra={
                "event": "metrics_unreachable", "address": server.address})
    return telemetry, server
