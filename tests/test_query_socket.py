"""The query socket: readers need no passphrase; each request runs under the role the peer's
OS identity may take, limited to that role's tenants."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt, running_service, serving
from test_spine import run_cli

from appliance.client import Client
from appliance.config import RoleSettings

READ = ["threads:read", "search", "aggregates"]


@pytest.fixture
def served(pipeline: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A service on the real pipeline with its query socket, roles bound to identities."""
    out = pipeline.process([make_prompt("Where is the VPN guide?", tenant=t, user=u,
                                        request_id=f"{t}-{u}")
                            for t in ("acme", "globex") for u in ("ann", "bob")])
    me = os.getuid()
    roles = {"analyst-acme": RoleSettings(permissions=READ, uids=[me, 65534],
                                          tenants=["acme"]),
             "analyst": RoleSettings(permissions=READ, uids=[me + 4242])}
    with serving(pipeline, roles, tmp_path, tmp_path / "pub" / "query.sock") as qsock:
        yield {"sock": qsock, "outcomes": out}


def _ask(sock: Path, **req: Any) -> dict[str, Any]:
    with Client(sock) as c:
        return c.request({"v": 1, **req})


def test_a_tenant_bound_role_lists_and_shows_only_its_tenant(served: dict[str, Any]) -> None:
    listed = _ask(served["sock"], op="threads", role="analyst-acme")
    assert listed["ok"] and {t["tenant"] for t in listed["threads"]} == {"acme"}
    other = next(o.thread_id for o in served["outcomes"] if o.request_id.startswith("globex"))
    hidden = _ask(served["sock"], op="thread", role="analyst-acme", thread_id=other)
    assert hidden["error"]["code"] == "not_found"
    mine = listed["threads"][0]["thread_id"]
    shown = _ask(served["sock"], op="thread", role="analyst-acme", thread_id=mine)
    assert shown["ok"] and shown["thread"]["records"][0]["text"]
    assert _ask(served["sock"], op="threads", role="analyst-acme",
                tenant="globex")["error"]["code"] == "forbidden"


def test_a_role_bound_to_another_identity_is_forbidden(served: dict[str, Any]) -> None:
    refused = _ask(served["sock"], op="threads", role="analyst")
    assert refused["error"]["code"] == "forbidden"
    assert "bound to other users" in refused["error"]["message"]
    assert _ask(served["sock"], op="ingest")["error"]["code"] == "unknown_op"


def test_the_cli_reads_through_the_socket_without_a_passphrase(
        served: dict[str, Any], cli_runner: Any) -> None:
    from appliance.cli import cli

    ok = cli_runner.invoke(cli, ["threads", "list", "--socket", str(served["sock"]),
                                 "--role", "analyst-acme", "--json"])
    assert ok.exit_code == 0, ok.output
    assert {t["tenant"] for t in json.loads(ok.output)} == {"acme"}
    refused = run_cli("threads", "list", "--socket", str(served["sock"]), "--role", "analyst")
    assert refused.returncode == 4 and "bound to other users" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client under another uid")
def test_another_os_user_bound_to_a_role_reads_without_the_key(served: dict[str, Any]) -> None:
    sock = served["sock"]
    dirs = [p for p in sock.parents if p != Path("/")]
    modes = {p: p.stat().st_mode & 0o7777 for p in dirs}  # /tmp keeps its sticky bit
    code = ("import os, socket, json; os.setgroups([]); os.setgid(65534); os.setuid(65534);"
            f"s=socket.socket(socket.AF_UNIX); s.connect({str(sock)!r});"
            "s.sendall(json.dumps({'v':1,'op':'threads','role':'analyst-acme'}).encode()+b'\\n');"
            "print(s.makefile().readline())")
    try:
        for p in dirs:
            os.chmod(p, modes[p] | 0o011)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60)
    finally:
        for p in dirs:
            os.chmod(p, modes[p])
    reply = json.loads(out.stdout)
    assert reply["ok"], (reply, out.stderr)
    assert {t["tenant"] for t in reply["threads"]} == {"acme"}


def test_a_reader_refused_an_unbound_role_is_told_the_line_that_admits_them() -> None:
    """After a service install every default role is unbound, so root's `threads list` over
    /run/semtrace/query.sock was refused with no word of what to change."""
    from appliance.config import AccessSettings
    from appliance.protocol import ProtocolError
    from appliance.queryserver import authorize
    from appliance.roles import Caller

    access = AccessSettings(roles={"analyst": RoleSettings(permissions=READ)})
    with pytest.raises(ProtocolError) as refused:
        authorize(access, {"op": "threads"}, Caller(uid=0, gids=frozenset({0})), owner_uid=999)
    assert refused.value.code == "forbidden"
    assert "uids = [0]" in refused.value.message and "[roles.analyst]" in refused.value.message
    assert authorize(access, {"op": "threads"}, Caller(uid=999, gids=frozenset({999})),
                     owner_uid=999) == "analyst"


def test_a_busy_reply_names_the_request_it_refuses(pipeline: Any, tmp_path: Path) -> None:
    """`queue_max` 1 and the reader thread held: the one query in flight fills the bound,
    the next is `busy`. Before, that reply's `request_id` was null (every other refusal
    echoes it), so a pipelining reader could not tell which request to retry."""
    service = pipeline.policies.service.model_copy(update={"queue_max": 1})
    policies = pipeline.policies.model_copy(update={"service": service})
    qsock = tmp_path / "query.sock"
    held: dict[str, Any] = {}

    def in_flight() -> None:
        with Client(qsock, timeout=600) as c:
            held["reply"] = c.request({"v": 1, "op": "threads", "request_id": "q-held"})

    with running_service(pipeline, tmp_path / "s.sock", policies=policies,
                         query_socket=qsock) as svc:
        gate = threading.Event()
        svc._readers.submit(gate.wait)  # the reader thread is busy: queries wait for it
        first = threading.Thread(target=in_flight)
        first.start()
        try:
            deadline = time.monotonic() + 60
            while svc._side < 1:  # the held query counts against queue_max
                assert time.monotonic() < deadline, "the first query never came in"
                time.sleep(0.02)
            busy = _ask(qsock, op="version", request_id="q-busy")
        finally:
            gate.set()
            first.join(60)
    assert busy["request_id"] == "q-busy" and busy["ok"] is False
    assert busy["error"]["code"] == "busy" and busy["error"]["retry_after_ms"] > 0
    assert held["reply"]["request_id"] == "q-held" and held["reply"]["ok"] is True


def test_a_search_is_answered_while_the_ingest_worker_is_busy(pipeline: Any,
                                                              tmp_path: Path) -> None:
    """The ingest worker held (as by a long batch): a search is answered all the same, its
    text embedded on the reader thread. Before, the text was embedded on the worker, so a
    search waited for every batch queued before it, and the ingests queued after it waited
    for its embedding."""
    pipeline.process([make_prompt("Where is the VPN guide?", request_id="acme-vpn")])
    qsock = tmp_path / "query.sock"
    with running_service(pipeline, tmp_path / "s.sock", query_socket=qsock) as svc:
        gate = threading.Event()
        worker = svc._pool.submit(gate.wait, 120)  # held until the search is answered
        try:
            found = _ask(qsock, op="search", text="VPN guide", tenant="acme",
                         request_id="q-search")
            held = not worker.done()
        finally:
            gate.set()
            worker.result(60)
    assert found["ok"] is True and found["request_id"] == "q-search", found
    assert found["hits"] and "VPN" in found["hits"][0]["text"]
    assert held  # answered while the worker was still busy


def test_a_long_search_text_is_given_to_the_model_cut_as_an_ingest_text(
        pipeline: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's search of a 200 KB line: the model's tokenizer, under the lock an ingest
    batch's embedding waits on, was given all of it (225 ms for 256 KB measured; the
    model keeps only its first 256 tokens). Now its words cut at `max_text_chars`, as an
    ingest's text is: the same tokens, the same hit."""
    pipeline.process([make_prompt("Where is the VPN guide?", request_id="acme-vpn")])
    real = pipeline.embedder
    given: list[int] = []

    class Spy:  # the real model, the lengths it is given noted
        model_id, dims = real.model_id, real.dims

        def embed(self, texts: list[str]) -> Any:
            given.extend(len(t) for t in texts)
            return real.embed(texts)

    qsock = tmp_path / "query.sock"
    text = "Where is the VPN guide? " + "please " * 28_000
    with running_service(pipeline, tmp_path / "s.sock", query_socket=qsock):
        monkeypatch.setattr(pipeline, "embedder", Spy())
        found = _ask(qsock, op="search", text=text, tenant="acme", request_id="q-long")
        monkeypatch.setattr(pipeline, "embedder", real)
    assert found["ok"] is True and found["request_id"] == "q-long", found
    assert found["hits"] and "VPN" in found["hits"][0]["text"]
    assert given and max(given) <= pipeline.policies.correlation.max_text_chars < len(text)
