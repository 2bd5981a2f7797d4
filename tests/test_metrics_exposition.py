"""/metrics read as Prometheus reads it (tests/exposition_check.py; there is no promtool
here): a running service's exposition in the text format and in the OpenMetrics format a
scraper negotiates, before and after a reload, with tenant names that need escaping; the
series of a cluster node; and the check itself refusing what Prometheus refuses."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from exposition_check import check_openmetrics, check_text
from prometheus_client.core import Metric

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ODD_TENANT = 'ops "blue"\\eu\nwest'  # a quote, a backslash and a newline: each escaped
# the service refuses a tenant with a control character (protocol: a newline would split a
# table row), so the one it is sent has the quote and the backslash to escape
SERVED_TENANT = 'ops "blue"\\eu west'


@pytest.mark.parametrize(("exposition", "said"), [
    ("# HELP a one\n# HELP a two\n# TYPE a gauge\na 1\n", "a second HELP for a"),
    ("# TYPE a gauge\n# TYPE a gauge\na 1\n", "a second TYPE for a"),
    ('# TYPE a gauge\na{tenant="x\\q"} 1\n', "malformed sample or label escape"),
    ('# TYPE a gauge\na{tenant=x} 1\n', "malformed sample or label escape"),
    ("# HELP a one \\q\n# TYPE a gauge\na 1\n", "malformed or badly escaped HELP"),
    ("# TYPE a gauge\na one\n", "a value Prometheus cannot read"),
    ("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n", "outside its family's block"),
    ('# TYPE a gauge\na{x="1",y="2"} 1\na{y="2",x="1"} 2\n', "the same series twice"),
    ("# TYPE a gauge\na 1", "does not end with a newline"),
])
def test_the_check_refuses_what_prometheus_refuses(exposition: str, said: str) -> None:
    """Each of these passes prometheus_client's text parser or fails only deep inside it."""
    with pytest.raises(AssertionError, match=said):
        check_text(exposition)


def test_the_openmetrics_check_refuses_a_family_given_twice_and_a_missing_eof() -> None:
    with pytest.raises(Exception, match="Clashing name|outside its family"):
        check_openmetrics("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n# EOF\n")
    with pytest.raises(AssertionError, match="# EOF"):
        check_openmetrics("# TYPE a gauge\na 1\n")


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(self._path))


def _scrape(path: Path, accept: str | None = None) -> tuple[str, str]:
    conn = _UnixHTTP(path)
    conn.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    assert resp.status == 200, body
    return resp.getheader("Content-Type") or "", body


def _series(families: dict[str, Metric]) -> set[str]:
    return {s.name for f in families.values() for s in f.samples}


def _index_vectors(families: dict[str, Metric]) -> dict[str, float]:
    return {s.labels["tenant"]: s.value for s in families["semtrace_index_vectors"].samples}


@pytest.mark.slow
def test_a_running_services_metrics_read_strictly_in_both_formats_and_after_a_reload(
        tmp_path: Path, passphrase_file: Path) -> None:
    from test_service import Server

    from appliance.client import Client

    metrics = tmp_path / "m" / "metrics.sock"
    srv = Server(tmp_path, passphrase_file)
    srv.args = [*srv.args, "--metrics", f"unix:{metrics}"]
    srv.start()
    try:
        with Client(srv.sock) as c:
            for i, (tenant, text) in enumerate([
                    (SERVED_TENANT, "How do I rotate the VPN certificate on the Oslo gateway?"),
                    (SERVED_TENANT, "And which port does it listen on after that?"),
                    ("acme", "Recommend a thriller novel set in Iceland.")]):
                reply = c.ingest(tenant=tenant, user_id="u-1", session_id="s-1", text=text,
                                 request_id=f"r-{i}", ts=f"2026-03-02T09:0{i}:00Z")
                assert reply["ok"], reply
        for _ in range(300):  # the sizes are copied for scrapes just after the reply
            kind, text = _scrape(metrics)
            families = check_text(text)
            if len(_index_vectors(families)) == 2:
                break
            time.sleep(0.1)
        assert kind.startswith("text/plain; version=0.0.4"), kind
        kind, om = _scrape(metrics, OPENMETRICS)
        assert kind.startswith("application/openmetrics-text"), kind
        om_families = check_openmetrics(om)
        assert _series(om_families) == _series(families)
        # the operator's dashboard shows each tenant by its own name, counted apart
        assert _index_vectors(families) == {SERVED_TENANT: 2, "acme": 1}
        assert _index_vectors(om_families) == _index_vectors(families)
        srv.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        for _ in range(300):
            if '"event": "reload"' in srv.log.read_text():
                break
            time.sleep(0.1)
        assert '"event": "reload"' in srv.log.read_text(), srv.log.read_text()[-2000:]
        after = check_text(_scrape(metrics)[1])
        assert set(after) == set(families)  # a reload registers nothing a second time
        check_openmetrics(_scrape(metrics, OPENMETRICS)[1])
    finally:
        assert srv.stop() == 0


@dataclass(frozen=True)
class _Lag:
    lag: int
    ack_pending: int
    redelivered: int


def test_a_cluster_nodes_series_read_strictly_in_both_formats() -> None:
    """The collectors a node with --nats adds, under a node name that needs escaping."""
    from prometheus_client import generate_latest
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    from appliance.metrics import Metrics
    from appliance.records import ServiceHealth

    m = Metrics()
    m.bind(queue_depth=lambda: 0, model_id="model", dims=384,
           health=lambda: ServiceHealth("retention_catchup", 3, 10))
    node = 'rack "2"\\b'
    m.bind_cluster(lambda: {0: _Lag(2, 1, 0), 7: _Lag(0, 0, 3)}, node=node,
                   counters=lambda: {"consumed": 4, "refused": 1, "plain": 1})
    m.index_sizes.sizes = {ODD_TENANT: 3, "acme": 1}
    families = check_text(generate_latest(m.registry).decode())
    om_families = check_openmetrics(openmetrics(m.registry).decode())
    assert _series(om_families) == _series(families)
    lag = families["semtrace_cluster_consumer_lag"].samples
    assert {(s.labels["node"], s.labels["partition"], s.value) for s in lag} == {
        (node, "0", 2), (node, "7", 0)}


def _can_unshare_net() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_unshare_net(), reason="needs a network namespace (unshare -n)")
@pytest.mark.parametrize("network", ["its own, as under the unit", "the host's"])
def test_metrics_on_a_tcp_address_no_scraper_can_reach_are_named_at_start(
        tmp_path: Path, passphrase_file: Path, network: str) -> None:
    """Under the unit (PrivateNetwork=yes) metrics on 127.0.0.1:9464 listened on the
    service's own loopback: the log said 'metrics listening' and every scrape was refused."""
    from test_service import STARTUP_S, Server

    from appliance.client import Client
    from appliance.errors import SemtraceError

    srv = Server(tmp_path, passphrase_file)
    argv = [sys.executable, "-m", "appliance", "serve", *srv.args, "--metrics", "127.0.0.1:0"]
    own = network.startswith("its own")
    proc = subprocess.Popen((["unshare", "-n"] if own else []) + argv, env=srv.env,
                            stdout=subprocess.DEVNULL, stderr=srv.log.open("ab"))
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:  # until the Unix socket answers (across network namespaces)
            assert proc.poll() is None, srv.log.read_text()[-2000:]
            assert time.monotonic() < deadline, srv.log.read_text()[-2000:]
            try:
                with Client(srv.sock, timeout=5) as c:
                    if c.ping()["ok"]:
                        break
            except (OSError, SemtraceError):  # not listening yet
                time.sleep(0.1)
        events = [json.loads(line) for line in srv.log.read_text().splitlines()
                  if line.startswith("{")]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    said = [e for e in events if e.get("event") == "metrics_unreachable"]
    listening = next(e for e in events if e.get("event") == "metrics")  # it did start
    if own:
        assert [(e["level"], e["address"]) for e in said] == [
            ("warning", listening["address"])]
        assert "PrivateNetwork=yes" in said[0]["msg"]
        assert "unix:/run/semtrace/metrics.sock" in said[0]["msg"]
    else:
        assert said == []
