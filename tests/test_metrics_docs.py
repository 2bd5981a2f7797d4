"""docs/metrics.md and docs/otel.md against what is exported: every series and attribute
documented exists with the documented type and labels, and nothing else is exported;
the metrics address is refused in one sentence before anything is taken over."""

from __future__ import annotations

import math
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from exposition_check import check_text
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

DOCS = Path(__file__).resolve().parents[1] / "docs"
ROW = re.compile(r"^\| `(semtrace_[a-z_]+)` \| ([a-z ()]+) \|\s*(.*?)\s*\|.*\|$", re.M)
LABEL = re.compile(r"`([a-z_]+)`(?: \(([^)]*)\))?")
TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
         "gauge (info)": "gauge"}  # an info series is exposed as a gauge of value 1


@dataclass(frozen=True)
class _Lag:
    lag: int
    ack_pending: int
    redelivered: int


def _documented() -> dict[str, tuple[str, dict[str, set[str]]]]:
    """family name -> (type, {label: documented closed-set values (empty: open)})."""
    out = {}
    known: dict[str, set[str]] = {}  # a label's values, given at its first row
    for name, kind, labels in ROW.findall((DOCS / "metrics.md").read_text()):
        family = name.removesuffix("_total") if kind == "counter" else name
        values = {}
        for label, closed in LABEL.findall(labels):
            words = {w.replace("`", "").strip() for w in re.split(r"[,:;]", closed)} \
                if closed else set()
            values[label] = {w.split(" ")[0] for w in words if w} or known.get(label, set())
            known.setdefault(label, values[label])
        out[family] = (TYPES[kind], values)
    return out


def _exported() -> dict[str, Any]:
    """Every family a node with --nats exports, after traffic of every kind."""
    from appliance.metrics import Metrics
    from appliance.records import ServiceHealth

    m = Metrics()
    m.bind(queue_depth=lambda: 0, model_id="model", dims=384,
           health=lambda: ServiceHealth("retention_catchup", 3, 10))
    m.bind_cluster(lambda: {3: _Lag(2, 1, 0)}, node="node-a",
                   counters=lambda: {"consumed": 4, "refused": 1, "plain": 1})
    m.reply("ingest", {"ok": True, "position": "continuation"})
    m.reply("update", {"ok": True})
    m.reply("ingest", {"ok": False, "error": {"code": "disk_full"}})
    m.reply("ingest", {"ok": False, "error": {"code": "io_error"}})
    m.reply("nonsense", {"ok": False, "error": {"code": "made-up"}})
    m.index_sizes.sizes = {"acme": 3}
    m.agreement_result("agree")
    m.retention(ok=True, buckets=1, records=2, finished_at=1.0)
    return dict(check_text(generate_latest(m.registry).decode()))  # as Prometheus reads it


def test_every_documented_series_is_exported_with_its_type_and_labels() -> None:
    documented, exported = _documented(), _exported()
    assert set(documented) == set(exported), (set(documented) ^ set(exported))
    for name, family in exported.items():
        kind, labels = documented[name]
        assert family.type == kind, (name, family.type, kind)
        names = {k for s in family.samples for k in s.labels if k != "le"}
        assert names == set(labels), (name, names, set(labels))
        for label, allowed in labels.items():
            if label in ("model_id", "dims", "version", "tenant", "node", "partition"):
                continue
            seen = {s.labels[label] for s in family.samples if label in s.labels}
            assert seen <= allowed, (name, label, seen - allowed)


def test_storage_errors_are_counted_by_their_code_not_as_other() -> None:
    fam = _exported()["semtrace_requests"]
    status = {s.labels["status"]: s.value for s in fam.samples if s.name.endswith("_total")
              and s.value}
    assert status.get("disk_full") == 1 and status.get("io_error") == 1  # alert on a full disk
    assert status.get("other") == 1  # only the code no reply uses


def test_the_audit_gauge_says_nothing_before_the_first_check() -> None:
    from appliance.metrics import Metrics

    m = Metrics()
    before = [s.value for f in text_string_to_metric_families(generate_latest(m.registry)
                                                              .decode())
              if f.name == "semtrace_audit_chain_valid" for s in f.samples]
    assert len(before) == 1 and math.isnan(before[0])  # `== 0` (chain broken) must not fire
    m.audit(valid=False, checked_at=1.0)
    assert m.audit_valid._value.get() == 0  # type: ignore[attr-defined]


def test_no_label_takes_a_user_id_request_id_or_text() -> None:
    """Only closed sets, tenant names and the node's own name: documented as such."""
    for name, (_, labels) in _documented().items():
        for label, allowed in labels.items():
            assert allowed or label in ("tenant", "node", "partition", "model_id", "dims",
                                        "version"), (name, label)


# ---------------------------------------------------------------- spans

OTEL_ROW = re.compile(r"^\| `([a-z_.]+)` \| (string|int|double|boolean) \|", re.M)
PYTHON = {"string": str, "int": int, "double": float, "boolean": bool}


def test_every_span_attribute_is_documented_with_its_type() -> None:
    from conftest import make_prompt

    from appliance.records import Outcome, Response
    from appliance.telemetry import span_attributes

    documented = dict(OTEL_ROW.findall((DOCS / "otel.md").read_text()))
    prompt = make_prompt("How warm should the tank be?", model="anthropic/claude-3",
                         response=Response(input_tokens=3, output_tokens=9))
    outcome = Outcome(request_id="r-2", record_id=7, thread_id="th_0123456789abcdef",
                      parent_id=6, parent_request_id="r-1", position="continuation",
                      intent="information_seeking", similarity=0.61234, topic_id="tp_1",
                      link_source="content")
    attrs = span_attributes(prompt, outcome, 2)
    attrs["error.type"] = "internal"  # set on a prompt that could not be recorded
    assert set(attrs) == set(documented), set(attrs) ^ set(documented)
    for key, value in attrs.items():
        assert type(value) is PYTHON[documented[key]], (key, value, documented[key])
    new = span_attributes(prompt, Outcome(
        request_id="r-3", record_id=8, thread_id="th_1", parent_id=None,
        parent_request_id=None, position="new", intent=None, similarity=None), 1)
    assert "semtrace.similarity" not in new and "semtrace.parent_request_id" not in new


# ---------------------------------------------------------------- the address


def test_a_metrics_socket_path_that_is_a_file_is_refused_and_left_alone(
        tmp_path: Path, passphrase_file: Path) -> None:
    from test_service import Server
    from test_spine import run_cli

    victim = tmp_path / "important.txt"
    victim.write_text("not a socket")
    srv = Server(tmp_path, passphrase_file)
    out = run_cli("serve", *srv.args, "--metrics", f"unix:{victim}", env=srv.env)
    assert out.returncode == 2 and "is not a socket" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert victim.read_text() == "not a socket"


def test_a_metrics_address_in_use_is_refused_before_the_service_starts(tmp_path: Path) -> None:
    from appliance.metrics import check_listen

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(tmp_path / "m.sock"))
    live.listen()
    try:
        # and what to do (it said 'address already in use' alone)
        said = r"; give another address \(`serve --metrics`, or listen under \[metrics\] in "
        with pytest.raises(ValueError, match="in use" + said):
            check_listen(f"127.0.0.1:{port}")
        with pytest.raises(ValueError, match="already serves on .*" + said):
            check_listen(f"unix:{tmp_path / 'm.sock'}")
        check_listen(f"127.0.0.1:{port}", in_use=False)  # `serve --check` beside the service
    finally:
        busy.close()
        live.close()
    check_listen(f"unix:{tmp_path / 'm.sock'}")  # stale: replaced at start
    with pytest.raises(ValueError, match="not an address of this host"):
        check_listen("no-such-host.invalid:9464")


# ---------------------------------------------------------------- log events

EVENT = re.compile(r"\"event\": \"([a-z_]+)\"(?:\s+if[^}]*?else\s+\"([a-z_]+)\")?", re.S)


def test_every_logged_event_is_in_the_log_table_of_otel_md() -> None:
    """Operators alert on `event`: each one the service can log is documented, and the
    table names none that is never logged."""
    root = Path(__file__).resolve().parents[1] / "appliance"
    logged: set[str] = set()
    for path in root.rglob("*.py"):
        if "integrations" in path.parts:  # the gateway's process: docs/gateways.md
            continue
        for found in EVENT.findall(path.read_text()):
            logged |= {e for e in found if e}
    logged.discard("ingested")  # its own example above the table
    table = (DOCS / "otel.md").read_text().split("for log-based alerts:", 1)[1]
    documented = {e for row in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", table, re.M)
                  for e in re.findall(r"`([a-z_]+)`", row)}
    assert logged == documented, (logged - documented, documented - logged)


def test_a_missing_otlp_exporter_is_named_before_the_service_loads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing is opened or loaded: the data dir named does not even exist."""
    import sys

    from appliance.cli import main

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                        None)  # an install without the `otlp` extra
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--data-dir", str(tmp_path / "none"), "--otlp-endpoint",
              "http://127.0.0.1:4318/v1/traces"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "needs the OTLP exporter" in err, err
    assert not (tmp_path / "none").exists()
