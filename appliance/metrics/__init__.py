"""Prometheus metrics of the appliance (their exposition: `metrics/exposition.py`).

Label values come from closed sets (ops, error codes, positions, stages) or are
tenant names bounded to the largest `tenant_labels` tenants; never user ids,
session ids, request ids or text. Cross-user dimensions such as topics are left
out: they are only released through the privacy gate (`semtrace stats`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance import __version__
from appliance.metrics.exposition import MetricsServer, check_listen, parse_listen, unreachable
from appliance.protocol import OPS
from appliance.records import POSITIONS, SERVICE_STATES, Outcome, Prompt, ServiceHealth

STAGES = ("redaction", "embedding", "linking", "commit", "index")
ERROR_CODES = ("bad_frame", "bad_json", "bad_version", "unknown_op", "bad_request", "not_found",
               "busy", "shutting_down", "internal", "frame_too_large", "forbidden",
               "disk_full", "io_error", "erased", "other_user", "unredactable",
               "not_forwarded", "unanswered")
AGREEMENT = ("agree", "split", "merge")
FAILURES = ("error", "orphaned")
SIGNALS = ("history", "previous_response_id")  # a gateway's, named by history.unmatched_signals
# Seconds: a cached-model embedding of a short prompt is ~1-20 ms; a batch up to seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
OTHER_TENANTS = "_other"
ALL_TENANTS = "_all"


def bounded_tenants(sizes: dict[str, int], limit: int) -> list[tuple[str, int]]:
    """(label, value): the `limit` largest tenants by name, the rest summed as `_other`."""
    if limit <= 0:
        return [(ALL_TENANTS, sum(sizes.values()))]
    ranked = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    named = [(t, n) for t, n in ranked if not t.startswith("_")][:limit]  # "_" is ours
    rest = sum(sizes.values()) - sum(n for _, n in named)
    return named + ([(OTHER_TENANTS, rest)] if len(named) < len(ranked) else [])


class _IndexSizes(Collector):
    """semtrace_index_vectors{tenant} and semtrace_index_slots{tenant}: read from caches
    the worker thread refreshes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: dict[str, int] = {}
        self.slots: dict[str, int] = {}  # a tenant missing here: as many as its vectors

    def collect(self) -> Iterator[Metric]:
        sizes = dict(self.sizes)
        slots = {t: n for t, n in self.slots.items() if t in sizes}
        for name, what, values in (
                ("semtrace_index_vectors", "Vectors in the in-memory index", sizes),
                ("semtrace_index_slots", "Slots the in-memory index holds (vectors and the "
                 "fillers of removed ones)", sizes | slots)):
            family = GaugeMetricFamily(name, f"{what} per tenant (largest tenants by name, "
                                       "the rest as _other).", labels=["tenant"])
            for tenant, n in bounded_tenants(values, self.limit):
                family.add_metric([tenant], n)
            yield family


class _Health(Collector):
    """semtrace_service_state{state} and the progress of the retention run in progress."""

    def __init__(self, health: Callable[[], ServiceHealth]) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        now = self.health()
        state = GaugeMetricFamily(
            "semtrace_service_state", "1 for what the service is doing (starting, "
            "retention_catchup: the start-up retention run, prompts are still committed; "
            "serving; stopping), 0 for the others.", labels=["state"])
        for name in SERVICE_STATES:
            state.add_metric([name], 1 if now.state == name else 0)
        yield state
        yield GaugeMetricFamily(
            "semtrace_retention_run_buckets_due", "Buckets the retention run in progress "
            "found due (0 when none runs).", value=now.retention_buckets_due or 0)
        yield GaugeMetricFamily(
            "semtrace_retention_run_buckets_shredded", "Buckets the retention run in "
            "progress has shredded so far (0 when none runs).",
            value=now.retention_buckets_shredded or 0)


class _ConsumerLag(Collector):
    """semtrace_cluster_consumer_* {partition}: the NATS front door's last poll of JetStream."""

    def __init__(self, lag: Callable[[], dict[int, Any]], node: str) -> None:
        self.lag = lag
        self.node = node

    def collect(self) -> Iterator[Metric]:
        families = {
            "lag": GaugeMetricFamily(
                "semtrace_cluster_consumer_lag", "Messages of an owned partition not yet "
                "acknowledged (stored but undelivered, plus delivered and in work).",
                labels=["node", "partition"]),
            "ack_pending": GaugeMetricFamily(
                "semtrace_cluster_consumer_ack_pending", "Messages delivered to this node and "
                "not yet acknowledged (in work, or lost with a crash until redelivery).",
                labels=["node", "partition"]),
            "redelivered": GaugeMetricFamily(
                "semtrace_cluster_consumer_redelivered", "Messages of the partition delivered "
                "more than once since its consumer was created at the node's start.",
                labels=["node", "partition"]),
        }
        for p, state in sorted(dict(self.lag()).items()):
            labels = [self.node, str(p)]
            families["lag"].add_metric(labels, state.lag)
            families["ack_pending"].add_metric(labels, state.ack_pending)
            families["redelivered"].add_metric(labels, state.redelivered)
        yield from families.values()


class _NodeMessages(Collector):
    """semtrace_cluster_messages_total {outcome}: what the NATS front door did with messages."""

    def __init__(self, counters: Callable[[], dict[str, int]], node: str) -> None:
        self.counters = counters
        self.node = node

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "semtrace_cluster_messages", "Messages this node took from its partitions, by "
            "outcome (consumed, refused, retried, redelivered; plain: taken in plain text "
            "under accept_plain, also counted as consumed or refused).",
            labels=["node", "outcome"])
        for outcome, n in sorted(dict(self.counters()).items()):
            family.add_metric([self.node, outcome], n)
        yield family


class Metrics:
    """Every series the appliance exports, in one registry of its own."""

    def __init__(self, *, tenant_labels: int = 20, agreement_window: int = 500,
                 registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # no `_created` twin of every series (process-wide)
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter("semtrace_requests", "Requests answered, by op, status "
                                "(ok, duplicate, queued, forwarded or the error code) and "
                                "position.",
                                ["op", "status", "position"], registry=r)
        self.ingest_latency = Histogram(
            "semtrace_ingest_latency_seconds", "Arrival to commit of one prompt, by position.",
            ["position"], buckets=LATENCY_BUCKETS, registry=r)
        self.stage = Histogram("semtrace_stage_duration_seconds", "Duration of one pipeline "
                               "stage over one batch.", ["stage"], buckets=LATENCY_BUCKETS,
                               registry=r)
        self.batch_size = Histogram("semtrace_batch_size", "Prompts per committed batch.",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.index_query = Histogram(
            "semtrace_index_query_seconds", "One query; history = the linker's query of a "
            "user's candidate history and its scoring, per prompt.", ["index"],
            buckets=LATENCY_BUCKETS, registry=r)
        self.failures = Counter("semtrace_correlation_failures", "Prompts not correlated: "
                                "error = could not be recorded, orphaned = a follow-up whose "
                                "earlier turn was not found.", ["reason"], registry=r)
        self.unmatched = Counter(
            "semtrace_gateway_signals_unmatched", "Prompts whose request carried a gateway "
            "signal (its message history, its previous_response_id) that named no turn held, "
            "so the content decided, by signal.", ["signal"], registry=r)
        self.agreement = Counter("semtrace_thread_agreement", "Sampled linker decisions "
                                 "compared with the client's session id: agree, split (same "
                                 "session, new thread), merge (joined another session).",
                                 ["result"], registry=r)
        self.accuracy = Gauge("semtrace_thread_reconstruction_accuracy", "Share of the last "
                              "sampled decisions that agree with client session ids (NaN "
                              "before any sample).", registry=r)
        self.queue_depth = Gauge("semtrace_queue_depth", "Prompts waiting for the worker.",
                                 registry=r)
        self.model = Info("semtrace_embedding_model", "The embedding model in use.", registry=r)
        self.build = Info("semtrace_build", "Semtrace version.", registry=r)
        self.retention_runs = Counter("semtrace_retention_runs", "Retention (shred) runs.",
                                      ["result"], registry=r)
        self.buckets_shredded = Counter("semtrace_buckets_shredded", "Buckets whose key was "
                                        "destroyed by retention.", registry=r)
        self.records_shredded = Counter("semtrace_records_shredded", "Records shredded by "
                                        "retention.", registry=r)
        self.retention_last = Gauge("semtrace_retention_last_run_timestamp_seconds",
                                    "When the last retention run finished.", registry=r)
        self.audit_valid = Gauge("semtrace_audit_chain_valid", "1 if the audit chain and its "
                                 "signatures verified at the last check, 0 if not, NaN before "
                                 "the first check.", registry=r)
        self.audit_valid.set(float("nan"))  # not checked yet is not 'broken' (0 would alert)
        self.audit_checked = Gauge("semtrace_audit_last_verified_timestamp_seconds",
                                   "When the audit chain was last verified.", registry=r)
        self.index_sizes = _IndexSizes(tenant_labels)
        r.register(self.index_sizes)
        self._window: deque[bool] = deque(maxlen=agreement_window)
        self.accuracy.set_function(self._accuracy)
        self.build.info({"version": __version__})
        self._prime()

    def _prime(self) -> None:
        """Create the closed-set series at 0 so rates and alerts work before traffic."""
        for stage in STAGES:
            self.stage.labels(stage)
        for position in POSITIONS:
            self.ingest_latency.labels(position)
            self.requests.labels("ingest", "ok", position)
        for reason in FAILURES:
            self.failures.labels(reason)
        for result in AGREEMENT:
            self.agreement.labels(result)
        for signal in SIGNALS:
            self.unmatched.labels(signal)
        for result in ("ok", "failed"):
            self.retention_runs.labels(result)
        self.index_query.labels("history")

    def _accuracy(self) -> float:
        window = list(self._window)
        return sum(window) / len(window) if window else float("nan")

    def bind(self, *, queue_depth: Callable[[], int], model_id: str, dims: int,
             health: Callable[[], ServiceHealth] | None = None) -> None:
        """Attach the live service: its queue, its embedding model, its state."""
        self.queue_depth.set_function(queue_depth)
        self.model.info({"model_id": model_id, "dims": str(dims)})
        if health is not None:
            self.registry.register(_Health(health))

    def bind_cluster(self, lag: Callable[[], dict[int, Any]], *, node: str,
                     counters: Callable[[], dict[str, int]] | None = None) -> None:
        """Attach the NATS front door: consumer lag per owned partition, messages by outcome."""
        self.registry.register(_ConsumerLag(lag, node))
        if counters is not None:
            self.registry.register(_NodeMessages(counters, node))

    def reply(self, op: str, reply: dict[str, Any]) -> None:
        """Count one reply (labels from closed sets only)."""
        if reply.get("ok"):  # forwarded: answered by the tenant's owner, which counts it
            status = ("forwarded" if reply.get("forwarded") else
                      "duplicate" if reply.get("duplicate") else
                      "queued" if reply.get("queued") else "ok")
        else:
            code = (reply.get("error") or {}).get("code")
            status = code if code in ERROR_CODES else "other"
        position = None if status == "forwarded" else reply.get("position")
        self.requests.labels(op if op in OPS else "unknown", status,
                             position if position in POSITIONS else "none").inc()

    def agreement_result(self, result: str) -> None:
        """Record one sampled comparison of a linker decision with a client session."""
        self.agreement.labels(result).inc()
        self._window.append(result == "agree")

    def retention(self, *, ok: bool, buckets: int = 0, records: int = 0,
                  finished_at: float) -> None:
        """Record one retention run (from `run_retention`'s RunReport)."""
        self.retention_runs.labels("ok" if ok else "failed").inc()
        self.buckets_shredded.inc(buckets)
        self.records_shredded.inc(records)
        if ok:
            self.retention_last.set(finished_at)

    def audit(self, *, valid: bool, checked_at: float) -> None:
        """Record one verification of the audit chain."""
        self.audit_valid.set(1 if valid else 0)
        self.audit_checked.set(checked_at)


class SessionAgreement:
    """Compares sampled linker decisions with client session ids, in bounded memory.

    Session ids are kept only as keyed digests (the key lives in this process).
    Results: agree; split (the session went on but the linker started a thread);
    merge (the linker joined a turn of another session).
    """

    def __init__(self, rate: float, capacity: int = 50_000) -> None:
        self.rate = rate
        self._key = secrets.token_bytes(16)
        self._cap = capacity
        self._requests: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._sessions: OrderedDict[tuple[str, bytes], str] = OrderedDict()

    def _digest(self, value: str) -> bytes:
        return hashlib.blake2b(value.encode(), key=self._key, digest_size=8).digest()

    def _remember(self, table: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > self._cap:
            table.popitem(last=False)

    def observe(self, prompt: Prompt, outcome: Outcome) -> str | None:
        """The comparison's result for this prompt, or None (not sampled / not knowable)."""
        if prompt.session_id is None or outcome.duplicate:
            return None
        session = self._digest(prompt.session_id)
        earlier = self._sessions.get((prompt.tenant, session))
        parent = None
        if outcome.parent_request_id is not None:
            parent = self._requests.get((prompt.tenant, outcome.parent_request_id))
        self._remember(self._requests, (prompt.tenant, prompt.request_id), session)
        self._remember(self._sessions, (prompt.tenant, session), outcome.thread_id)
        draw = int.from_bytes(self._digest(prompt.request_id), "big") / 2**64
        if draw >= self.rate:
            return None
        if outcome.parent_request_id is None:
            return "agree" if earlier is None else "split"
        if parent is None:
            return None  # the parent's session is not known (older than this process)
        return "agree" if parent == session else "merge"


def timed(fn: Callable[..., Any], histogram: Any, clock: Callable[[], float]) -> Callable[..., Any]:
    """Wrap `fn` so that every call's duration is observed into `histogram`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            histogram.observe(clock() - start)

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper

__all__ = ["Metrics", "MetricsServer", "SessionAgreement", "bounded_tenants", "check_listen",
           "parse_listen", "timed", "unreachable"]
