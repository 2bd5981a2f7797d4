"""Telemetry: spans under the gateway's trace, /metrics, JSON logs without canaries."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from exposition_check import check_text
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_service import Server
from test_spine import run_cli

from appliance.client import AsyncClient, Client
from appliance.config import TelemetrySettings

GATEWAY_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_SPAN = "00f067aa0ba902b7"
TEXTS = ["How do I rotate the VPN certificate on the Oslo gateway?",
         "And which port does it listen on after that?",
         "Recommend a thriller novel set in Iceland."]
ALLOWED_ATTRS = re.compile(r"^(gen_ai\.(conversation\.id|operation\.name|provider\.name|"
                           r"request\.model|usage\.(input|output)_tokens)|semtrace\.[a-z_.]+|"
                           r"error\.type)$")


def _ingest(rid: str, text: str, minute: int, **kw: Any) -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "request_id": rid, "tenant": "acme", "user_id": "u-secret-17",
            "session_id": "win-secret-4", "ts": f"2026-03-02T09:{minute:02d}:00Z", "text": text,
            "model": "openai/gpt-4o", "response": {"input_tokens": 12, "output_tokens": 80},
            **kw}


async def _drive(service: Any, telemetry: Any) -> list[dict[str, Any]]:
    """Start the service in this process, send a few requests, run a retention check, drain."""
    await service.start()
    client = await AsyncClient.connect(service.socket_path)
    replies = []
    for i, text in enumerate(TEXTS):
        tp = f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01" if i < 2 else None
        replies.append(await client.request(_ingest(f"t-{i}", text, i, traceparent=tp)))
    replies.append(await client.request(_ingest("t-0", TEXTS[0], 0)))  # a retry
    replies.append(await client.request(_ingest("t-unsampled", "Is UDP faster than TCP?", 9,
                                                traceparent=f"00-{'a' * 32}-{'b' * 16}-00")))
    replies.append(await client.request({"v": 1, "op": "ingest", "tenant": "acme",
                                         "request_id": "bad"}))
    await client.close()
    await service.in_worker(telemetry.retention_done, None)
    await service.drain()
    return replies


@pytest.fixture
def observed(pipeline: Any, runtime: Any) -> dict[str, Any]:
    """A real in-process Service with an in-memory span exporter and metrics on TCP."""
    from appliance.service import Service
    from appliance.telemetry import start_telemetry

    settings = TelemetrySettings.model_validate(
        {"metrics": {"listen": "127.0.0.1:0", "agreement_sample_rate": 1.0}})
    exporter = InMemorySpanExporter()
    service = Service(pipeline, runtime.policies, socket_path=runtime.data_dir / "t.sock")
    telemetry, server = start_telemetry(settings, pipeline, queue_depth=service.queue_depth,
                                        exporter=exporter, health=service.health)
    service.observer = telemetry
    try:
        replies = asyncio.run(_drive(service, telemetry))
        host, port = server.address.rsplit(":", 1)
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as resp:
            exposition = resp.read().decode()
    finally:
        server.close()
        telemetry.shutdown()
    return {"replies": replies, "spans": list(exporter.get_finished_spans()),
            "exposition": exposition}


def _hex(n: int, width: int) -> str:
    return format(n, f"0{width}x")


def test_each_prompt_gets_an_ingress_span_under_the_gateway_span_with_stage_children(
        observed: dict[str, Any]) -> None:
    spans: list[ReadableSpan] = observed["spans"]
    first, second, third = observed["replies"][:3]
    ingress = {_hex(s.context.span_id, 16): s for s in spans if s.name == "semtrace.ingress"}
    # the span the reply names is the exported ingress span, continuing the gateway's trace
    for reply in (first, second):
        span = ingress[reply["span_id"]]
        assert _hex(span.context.trace_id, 32) == GATEWAY_TRACE == reply["trace_id"]
        assert span.parent is not None and _hex(span.parent.span_id, 16) == GATEWAY_SPAN
        assert span.kind.name == "SERVER"
        children = {c.name: c for c in spans if c.parent is not None
                    and c.parent.span_id == span.context.span_id}
        assert set(children) == {"semtrace.redaction", "semtrace.embedding",
                                 "semtrace.linking", "semtrace.store"}
        for child in children.values():
            assert span.start_time <= child.start_time <= child.end_time <= span.end_time
    root = ingress[third["span_id"]]  # no traceparent: a new trace, the reply's id
    assert root.parent is None and _hex(root.context.trace_id, 32) == third["trace_id"]
    assert observed["replies"][4]["span_id"] not in ingress  # the gateway did not sample it


def test_span_attributes_follow_genai_conventions_and_semtrace_prefix(
        observed: dict[str, Any]) -> None:
    first, second = observed["replies"][:2]
    ingress = {_hex(s.context.span_id, 16): s for s in observed["spans"]
               if s.name == "semtrace.ingress"}
    a1, a2 = dict(ingress[first["span_id"]].attributes), dict(ingress[second["span_id"]].attributes)
    assert a1["gen_ai.conversation.id"] == first["conversation_id"]
    assert a1["gen_ai.operation.name"] == "chat" and a1["gen_ai.provider.name"] == "openai"
    assert a1["gen_ai.request.model"] == "openai/gpt-4o"
    assert (a1["gen_ai.usage.input_tokens"], a1["gen_ai.usage.output_tokens"]) == (12, 80)
    assert a1["semtrace.position"] == first["position"] and a1["semtrace.thread.turns"] >= 1
    assert a2["semtrace.position"] == second["position"]
    assert a2.get("semtrace.parent_request_id") == second["parent_request_id"]
    if second["conversation_id"] == first["conversation_id"]:
        assert a2["semtrace.thread.turns"] == 2
    assert isinstance(a2["semtrace.similarity"], float) and "semtrace.intent" in a2
    retry = [s for s in ingress.values() if s.attributes.get("semtrace.duplicate")]
    assert len(retry) == 1 and retry[0].attributes["gen_ai.conversation.id"] == \
        first["conversation_id"]


def test_no_span_carries_prompt_text_or_user_or_session_ids(observed: dict[str, Any]) -> None:
    secrets = ["u-secret-17", "win-secret-4", *TEXTS, "Is UDP faster"]
    fragments = {w.lower() for t in TEXTS for w in re.findall(r"[A-Za-z]{5,}", t)}
    for span in observed["spans"]:
        for key, value in (span.attributes or {}).items():
            assert ALLOWED_ATTRS.match(key), key
            text = str(value).lower()
            assert not any(s.lower() in text for s in secrets), (key, value)
            if key != "gen_ai.request.model":
                assert not any(f in text for f in fragments), (key, value)
        assert not span.events


def _families(text: str) -> dict[str, Any]:
    return dict(check_text(text))  # read as strictly as Prometheus does


def _samples(families: dict[str, Any], sample: str, **labels: str) -> list[Any]:
    return [s for f in families.values() for s in f.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]


def _value(families: dict[str, Any], sample: str, **labels: str) -> float:
    found = _samples(families, sample, **labels)
    assert found, f"no sample {sample}{labels}"
    return float(found[0].value)


def test_metrics_exposition_has_the_expected_series(observed: dict[str, Any]) -> None:
    fam = _families(observed["exposition"])
    first = observed["replies"][0]
    assert _value(fam, "semtrace_requests_total", op="ingest", status="ok",
                  position=first["position"]) >= 1
    assert _value(fam, "semtrace_requests_total", op="ingest", status="duplicate") == 1
    assert _value(fam, "semtrace_requests_total", op="ingest", status="bad_request",
                  position="none") == 1
    for stage in ("redaction", "embedding", "linking", "commit", "index"):
        assert _value(fam, "semtrace_stage_duration_seconds_count", stage=stage) >= 1
    assert _value(fam, "semtrace_ingest_latency_seconds_count", position=first["position"]) >= 1
    assert _value(fam, "semtrace_index_query_seconds_count", index="history") == 4
    assert _value(fam, "semtrace_index_vectors", tenant="acme") == 4
    assert _value(fam, "semtrace_queue_depth") == 0
    model = _samples(fam, "semtrace_embedding_model_info")[0]
    assert model.labels["model_id"] and model.labels["dims"] == "384"
    assert _value(fam, "semtrace_audit_chain_valid") == 1
    assert _value(fam, "semtrace_retention_runs_total", result="failed") == 1
    assert _value(fam, "semtrace_correlation_failures_total", reason="error") == 0
    agreed = sum(_value(fam, "semtrace_thread_agreement_total", result=r)
                 for r in ("agree", "split", "merge"))
    assert agreed >= 2  # every prompt sampled; the first of a session always agrees
    assert 0 <= _value(fam, "semtrace_thread_reconstruction_accuracy") <= 1
    labels = {v for f in fam.values() for s in f.samples for v in s.labels.values()}
    assert not labels & {"u-secret-17", "win-secret-4", "t-0", "t-1"}


def test_tenant_labels_are_bounded() -> None:
    from appliance.metrics import bounded_tenants

    sizes = {f"t{i}": i for i in range(1, 31)} | {"_other": 5}
    out = dict(bounded_tenants(sizes, 3))
    assert out == {"t30": 30, "t29": 29, "t28": 28, "_other": sum(sizes.values()) - 87}
    assert bounded_tenants(sizes, 0) == [("_all", sum(sizes.values()))]
    assert bounded_tenants({"a": 1}, 5) == [("a", 1)]


def test_session_agreement_detects_splits_and_merges() -> None:
    from conftest import make_prompt

    from appliance.metrics import SessionAgreement
    from appliance.records import Outcome

    agree = SessionAgreement(rate=1.0)

    def see(rid: str, session: str, thread: str, parent: str | None) -> str | None:
        p = make_prompt("x", request_id=rid, session_id=session)
        o = Outcome(request_id=rid, record_id=1, thread_id=thread, parent_id=None,
                    parent_request_id=parent, position="new", intent=None, similarity=None)
        return agree.observe(p, o)

    assert see("a1", "s1", "th1", None) == "agree"
    assert see("a2", "s1", "th1", "a1") == "agree"
    assert see("a3", "s1", "th2", None) == "split"
    assert see("b1", "s2", "th2", "a3") == "merge"
    assert see("c1", "s3", "th3", "unknown") is None
    assert SessionAgreement(rate=0.0).observe(make_prompt("x", session_id="s"), Outcome(
        request_id="r", record_id=1, thread_id="t", parent_id=None, parent_request_id=None,
        position="new", intent=None, similarity=None)) is None


def test_a_remote_otlp_endpoint_is_refused_with_one_sentence(tmp_path: Path,
                                                             passphrase_file: Path) -> None:
    srv = Server(tmp_path, passphrase_file)
    out = run_cli("serve", *srv.args, "--otlp-endpoint", "http://collector.example:4318/v1/traces",
                  env={"SEMTRACE_POLICY_DIR": srv.env["SEMTRACE_POLICY_DIR"]})
    assert out.returncode == 2 and "on this host" in out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------- the real service

class _Collector(BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP collector on 127.0.0.1 that keeps the decoded spans."""

    received: list[Any] = []

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        msg = ExportTraceServiceRequest()
        msg.ParseFromString(body)
        type(self).received.append(msg)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def _scrape_unix(path: Path) -> str:
    conn = _UnixHTTP(str(path))
    conn.request("GET", "/metrics")
    body = conn.getresponse().read().decode()
    conn.close()
    return body


CANARIES = ["Quillfeather-8841", "canary.vole@example.org", "Zorbanian", "+44 7700 900461"]
CANARY_USER, CANARY_SESSION = "user-canary-5521", "session-canary-9931"


@pytest.mark.slow
def test_serve_logs_ids_and_never_canaries_exports_spans_and_serves_metrics(
        tmp_path: Path, passphrase_file: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    pytest.importorskip("opentelemetry.proto")
    _Collector.received = []
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    metrics_sock = tmp_path / "m" / "metrics.sock"
    srv = Server(tmp_path, passphrase_file)
    srv.args = [*srv.args, "--metrics", f"unix:{metrics_sock}", "--otlp-endpoint",
                f"http://127.0.0.1:{collector.server_port}/v1/traces"]
    srv.start()
    texts = [f"My name is {CANARIES[2]}, write to {CANARIES[1]} about order {CANARIES[0]}",
             f"Also call me on {CANARIES[3]} about {CANARIES[0]} tomorrow",
             f"What did {CANARIES[2]} order last week?"]
    with Client(srv.sock) as c:
        replies = [c.ingest(tenant="acme", user_id=CANARY_USER, session_id=CANARY_SESSION,
                            text=t, request_id=f"can-{i}", ts=f"2026-03-02T09:0{i}:00Z",
                            traceparent=f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01")
                   for i, t in enumerate(texts)]
        bad = c.request({"v": 1, "op": "ingest", "tenant": "acme", "request_id": "can-bad",
                         "user_id": CANARY_USER, "text": 42, "note": CANARIES[0]})
    assert all(r["ok"] for r in replies) and bad["error"]["code"] == "bad_request"
    exposition = _scrape_unix(metrics_sock)
    assert srv.stop() == 0
    collector.shutdown()
    secrets = [*CANARIES, CANARY_USER, CANARY_SESSION]

    log_text = srv.log.read_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.strip()]
    for s in secrets:
        assert s.lower() not in log_text.lower(), s
    ingested = {r["request_id"]: r for r in lines if r.get("event") == "ingested"}
    for reply in replies:
        line = ingested[reply["request_id"]]
        assert (line["trace_id"], line["span_id"], line["conversation_id"]) == (
            reply["trace_id"], reply["span_id"], reply["conversation_id"])

    fam = _families(exposition)
    assert _value(fam, "semtrace_requests_total", op="ingest", status="bad_request") == 1
    assert not any(s.lower() in exposition.lower() for s in secrets)

    spans = [s for msg in _Collector.received for rs in msg.resource_spans
             for ss in rs.scope_spans for s in ss.spans]
    exported = {s.span_id.hex(): s for s in spans if s.name == "semtrace.ingress"}
    for reply in replies:
        span = exported[reply["span_id"]]
        assert span.trace_id.hex() == GATEWAY_TRACE and span.parent_span_id.hex() == GATEWAY_SPAN
        attrs = {a.key: a.value for a in span.attributes}
        assert attrs["gen_ai.conversation.id"].string_value == reply["conversation_id"]
    raw = b"".join(msg.SerializeToString() for msg in _Collector.received)
    for s in secrets:
        assert s.encode() not in raw and s.lower().encode() not in raw.lower(), s


def test_alert_rules_and_metrics_doc_name_only_exported_series(observed: dict[str, Any]) -> None:
    root = Path(__file__).resolve().parents[1] / "docs"
    families = list(check_text(observed["exposition"]).values())
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    for doc in ("alerts.yml", "metrics.md"):
        used = set(re.findall(r"\bsemtrace_[a-z_]+[a-z]", (root / doc).read_text()))
        used = {u for u in used if not u.startswith("semtrace_cluster_")}  # --nats only:
        assert used and used <= exported, (doc, used - exported)  # test_metrics_docs.py
