"""What lands between a batch's stage and its finish (appliance/staging.py).

The service stages the next batch (redaction, its embedding started on the embedding
thread) before it finishes the batch before. An erasure, a repeat of a request id, a failed
embedding or a stop can land in between; each must leave the store, the index and the
replies as if the batches had run one after the other. The real pipeline (Presidio,
llama.cpp with the bundled model, SQLCipher, usearch), the real eraser.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import make_prompt, running_service
from held_worker import send_while_held

from appliance.client import Client

LEASE = ["Please send the lease for flat 4 to the landlord today.",
         "Which clauses in the lease cover the deposit?"]


def _erase(runtime: Any, user: str) -> Any:
    from appliance.audit import AuditLog
    from appliance.erasure import erase_user
    from appliance.retention import Shredder

    audit = AuditLog(runtime.store.db, runtime.keyring.audit_signer(),
                     anchor=runtime.store.keys_db)
    return erase_user(Shredder(runtime.store, audit), runtime.policies.retention,
                      runtime.keyring, tenant="acme", user_id=user, reason="DSAR 12")


def test_an_erasure_between_stage_and_finish_leaves_nothing_of_the_user(
        pipeline: Any, runtime: Any) -> None:
    """erin's prompts staged (redacted, embedded on the embedding thread) before her
    erasure, finished after it: refused, nothing of her stored or indexed, bob's stored."""
    from appliance.records import Erased, Outcome
    from appliance.staging import EmbeddingThread

    now = datetime.now(UTC) - timedelta(seconds=30)
    first = pipeline.process([replace(make_prompt(LEASE[0], user="erin", request_id="e-0"),
                                      ts=now)])
    assert isinstance(first[0], Outcome)
    erin = runtime.keyring.pseudonym("acme", "erin")
    with EmbeddingThread() as ahead:
        one = pipeline.stage([replace(make_prompt(LEASE[1], user="erin", request_id="e-1"),
                                      ts=now + timedelta(seconds=1)),
                              replace(make_prompt("Summarise the board minutes.", user="bob",
                                                  request_id="b-1"), ts=now)], ahead=ahead)
        two = pipeline.stage([replace(make_prompt("And the notice period for the flat?",
                                                  user="erin", request_id="e-2"),
                                      ts=now + timedelta(seconds=2))], ahead=ahead)
        assert _erase(runtime, "erin").records == 1
        out_one, out_two = pipeline.finish(one), pipeline.finish(two)
    assert isinstance(out_one[0], Erased) and isinstance(out_one[1], Outcome)
    assert isinstance(out_two[0], Erased)
    assert runtime.store.records("r.user = ?", (erin,)) == []
    assert pipeline.index.user_keys("acme", erin) == set()
    assert not [r for r in runtime.store.records("1 = 1", ()) if "lease" in (r.text or "")]
    # a prompt she sends after the erasure is new data: stored, not linked to the erased ones
    after = pipeline.process([replace(make_prompt("Which clauses cover the deposit?",
                                                  user="erin", request_id="e-3"),
                                      ts=datetime.now(UTC) + timedelta(seconds=1))])
    assert isinstance(after[0], Outcome) and after[0].parent_id is None


def test_a_request_repeated_in_the_next_batch_is_stored_once(pipeline: Any,
                                                              runtime: Any) -> None:
    """The same request id staged in two consecutive batches (a gateway's retry): the
    second is answered as a duplicate of the first, one record and one index entry."""
    from appliance.records import Outcome
    from appliance.staging import EmbeddingThread

    p = make_prompt(LEASE[0], user="ann", request_id="r-1")
    with EmbeddingThread() as ahead:
        one = pipeline.stage([p], ahead=ahead)
        two = pipeline.stage([p, make_prompt(LEASE[1], user="ann", minutes=1,
                                             request_id="r-2")], ahead=ahead)
        a, b = pipeline.finish(one)[0], pipeline.finish(two)
    assert isinstance(a, Outcome) and not a.duplicate
    assert isinstance(b[0], Outcome) and b[0].duplicate and b[0].record_id == a.record_id
    assert isinstance(b[1], Outcome) and b[1].parent_request_id == "r-1"
    ann = runtime.keyring.pseudonym("acme", "ann")
    assert sorted(r.request_id for r in runtime.store.records("r.user = ?", (ann,))) == [
        "r-1", "r-2"]
    assert len(pipeline.index.user_keys("acme", ann)) == 2


class _Failing:
    """The real model, failing for one text (a llama.cpp decode error, say)."""

    def __init__(self, real: Any, marker: str) -> None:
        self.real, self.marker = real, marker
        self.model_id, self.dims = real.model_id, real.dims

    def embed(self, texts: list[str]) -> Any:
        if any(self.marker in t for t in texts):
            raise RuntimeError("llama_decode returned -1")
        return self.real.embed(texts)


def _batches_of_two(pipeline: Any) -> Any:
    service = pipeline.policies.service.model_copy(update={"batch_max": 2})
    return pipeline.policies.model_copy(update={"service": service})


def _req(n: int, text: str, user: str = "zoe") -> dict[str, Any]:
    return {"v": 1, "op": "ingest", "tenant": "acme", "user_id": user,
            "request_id": f"z-{n}", "text": text,
            "ts": (datetime.now(UTC) - timedelta(minutes=60) + timedelta(seconds=10 * n)
                   ).isoformat()}


def test_a_failed_embedding_in_the_staged_batch_costs_only_its_request(
        pipeline: Any, tmp_path: Path) -> None:
    """Batches of two; the second batch's embedding fails for one prompt while the first
    is finished: that request gets an error reply, every other one is stored, and the
    service goes on (a retry of the same id later is stored)."""
    pipeline.embedder = _Failing(pipeline.embedder, "POISON")
    sock = tmp_path / "s.sock"
    texts = ["How do I repot a fiddle leaf fig?", "Which soil suits it best?",
             "POISON what about the drainage holes?", "How often should I water it now?",
             "Does it need more light in winter?", "Should I feed it in spring?"]
    with running_service(pipeline, sock, policies=_batches_of_two(pipeline)) as svc:
        replies = send_while_held(svc, sock, [_req(n, t) for n, t in enumerate(texts)])
        got = {r["request_id"]: r for r in replies}
        assert len(got) == len(texts)
        assert got["z-2"]["ok"] is False
        assert all(got[f"z-{n}"]["ok"] for n in (0, 1, 3, 4, 5)), replies
        pipeline.embedder = pipeline.embedder.real
        with Client(sock, timeout=120) as c:
            again = c.request(_req(2, texts[2]))
            assert again["ok"] and not again["duplicate"]
            assert c.request({"v": 1, "op": "stats"})["store"]["records"] == len(texts)


def test_a_stop_with_a_batch_staged_answers_every_request_and_stops_the_thread(
        pipeline: Any, tmp_path: Path) -> None:
    """The service stops (drain, as on SIGTERM) while batches are queued and one is staged:
    every accepted request is answered and stored, and the embedding thread is gone (a
    thread left inside llama.cpp at exit aborts the process)."""
    from appliance.service import Service

    sock = tmp_path / "s.sock"
    svc = Service(pipeline, _batches_of_two(pipeline), socket_path=sock)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(svc.start(), loop).result(60)
    texts = [f"Question {n} about the quarterly sales figures for region {n}?"
             for n in range(7)]
    gate = threading.Event()
    svc._pool.submit(gate.wait)
    replies: list[dict[str, Any]] = []

    def send() -> None:
        with Client(sock, timeout=120) as c:
            replies.extend(c.stream([_req(n, t, "yan") for n, t in enumerate(texts)],
                                    window=len(texts)))

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 60
    while len(svc._pending) < len(texts) and time.monotonic() < deadline:
        time.sleep(0.01)
    stopping = asyncio.run_coroutine_threadsafe(svc.drain(), loop)
    gate.set()
    stopping.result(120)
    sender.join(120)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(30)
    assert len(replies) == len(texts) and all(r["ok"] for r in replies), replies
    assert pipeline.store.counts()["records"] == len(texts)
    assert not [t for t in threading.enumerate() if t.name.startswith("semtrace-embed")]


def test_searches_while_batches_are_staged_and_embedded_never_share_the_model(
        pipeline: Any, data_dir: Path) -> None:
    """A reader's searches (their text embedded with the service's one model) while the
    service stages and embeds batches back to back: every search and every ingest is
    answered (llama.cpp used by two threads at once crashes the process)."""
    import os

    from conftest import serving

    from appliance.config import RoleSettings

    me = os.getuid()
    roles = {"analyst-acme": RoleSettings(permissions=["threads:read", "search"], uids=[me],
                                          tenants=["acme"])}
    texts = [f"How do I configure the VPN client on laptop number {n} for the office?"
             for n in range(24)]
    searched: list[dict[str, Any]] = []
    stop = threading.Event()

    def search(qsock: Path) -> None:
        with Client(qsock, timeout=120) as c:
            while not stop.is_set():
                searched.append(c.request({"v": 1, "op": "search", "role": "analyst-acme",
                                           "tenant": "acme", "text": "VPN client laptop"}))

    with serving(pipeline, roles, data_dir) as qsock:
        svc_sock = data_dir / "s.sock"
        reader = threading.Thread(target=search, args=(qsock,))
        reader.start()
        try:
            with Client(svc_sock, timeout=120) as c:
                replies = list(c.stream([_req(n, t, "vic") for n, t in enumerate(texts)],
                                        window=8))
        finally:
            stop.set()
            reader.join(120)
    assert all(r["ok"] for r in replies), [r for r in replies if not r["ok"]]
    assert searched and all(r["ok"] for r in searched), searched[:3]


def test_sigterm_with_batches_staged_stores_every_accepted_prompt_and_exits_cleanly(
        tmp_path: Path, passphrase_file: Path) -> None:
    """`semtrace serve` stopped by SIGTERM while async ingests are queued and staged: it
    exits 0 (no abort from a thread left inside llama.cpp), and every prompt it accepted
    is stored."""
    import json
    import signal
    import subprocess
    import sys

    from test_spine import run_cli

    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *args).returncode == 0
    sock = tmp_path / "s.sock"
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", *args, "--socket",
                             str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 300
        while not sock.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "serve never listened"
            time.sleep(0.2)
        reqs = [{**_req(n, f"Where do I file expense report {n} for the Berlin trip?",
                        "wes"), "mode": "async"} for n in range(60)]
        with Client(sock, timeout=120) as c:
            replies = list(c.stream(reqs, window=60))
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    accepted = sum(1 for r in replies if r.get("ok"))
    assert accepted == len(reqs)
    listed = json.loads(run_cli("threads", "list", "--json", *args).stdout)
    assert sum(t["turns"] for t in listed) == accepted


def test_feedback_and_update_for_a_prompt_not_yet_stored_wait_for_its_commit(
        pipeline: Any, tmp_path: Path) -> None:
    """A gateway sends an async ingest, then the user's rating and the answer's figures at
    once, while the prompt is still queued or staged (redacted, embedding, not stored):
    both are applied once it is stored, neither is refused as an unknown request."""
    sock = tmp_path / "s.sock"
    with running_service(pipeline, sock, policies=_batches_of_two(pipeline)) as svc:
        reqs: list[dict[str, Any]] = [{**_req(n, t, "uma"), "mode": "async"} for n, t in
                                      enumerate(["How do I descale my espresso machine?",
                                                 "How often should I replace its gasket?",
                                                 "Which water filter suits it?"])]
        reqs += [{"v": 1, "op": "feedback", "tenant": "acme", "request_id": "z-2",
                  "rating": 4},
                 {"v": 1, "op": "update", "tenant": "acme", "request_id": "z-2",
                  "model": "gpt-4o", "response": {"input_tokens": 12, "output_tokens": 80}}]
        # released once the three are queued and the feedback and the update have come in
        # (both waiting for the last ingest's commit)
        replies = send_while_held(
            svc, sock, reqs, until=lambda s: len(s._pending) >= 3 and s._side >= 2)
        assert [r["ok"] for r in replies] == [True] * len(reqs), replies
        with Client(sock, timeout=120) as c:
            looked = c.request({"v": 1, "op": "lookup", "tenant": "acme", "request_id": "z-2"})
        assert looked["ok"] and looked["feedback"]["rating"] == 4, looked


def test_a_replay_stopped_by_a_failing_batch_keeps_the_batches_before_it(
        pipeline: Any, runtime: Any) -> None:
    """Replay stages each batch before it finishes the one before: when staging a batch
    fails (the redactor raised), the batch before it is still stored, as when batches ran
    one after the other (before: lost, though staged and embedded already)."""
    import io

    import pytest

    from appliance.replay import ReplayReport, replay

    real = pipeline.redactor.redact_many

    def failing(prompts: Any) -> Any:
        if any("BROKEN" in p.text for p in prompts):
            raise RuntimeError("spaCy failed")
        return real(prompts)

    pipeline.redactor = type("R", (), {"redact_many": staticmethod(failing),
                                       "redact": pipeline.redactor.redact})()
    prompts = [make_prompt(t, user="kim", minutes=n, request_id=f"k-{n}") for n, t in
               enumerate(["How do I prune an apple tree?", "When is the best month?",
                          "BROKEN which tools do I need?", "How far back should I cut?"])]
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        replay(pipeline, prompts, out, batch=2, report=ReplayReport())
    kim = runtime.keyring.pseudonym("acme", "kim")
    assert sorted(r.request_id for r in runtime.store.records("r.user = ?", (kim,))) == [
        "k-0", "k-1"]


def test_a_long_next_batch_does_not_hold_up_the_replies_of_the_one_before(
        pipeline: Any, tmp_path: Path) -> None:
    """A short prompt taken from the queue, then long ones (pasted documents) queued behind
    it: its reply is sent before their redaction ends (before: it waited for the whole
    next batch to be redacted, seconds, a gateway's timeout)."""
    sock = tmp_path / "s.sock"
    ended: list[float] = []
    real = pipeline.redactor

    class Recording:  # the real redactor; notes when it ends a batch of the long prompts
        def redact(self, prompt: Any) -> Any:
            return real.redact(prompt)

        def redact_many(self, prompts: Any) -> Any:
            out = real.redact_many(prompts)
            if any(p.request_id.startswith("doc") for p in prompts):
                ended.append(time.monotonic())
            return out

    pipeline.redactor = Recording()
    page = ("Clause {n}: the tenant at 4 Elm Road pays the deposit to Mr Smith by 3 March; "
            "mail smith@example.com about the schedule and the repairs. ")
    doc = "".join(page.format(n=n) for n in range(400))[:30_000]
    policies = pipeline.policies.model_copy(update={
        "service": pipeline.policies.service.model_copy(update={"batch_max": 3})})
    with running_service(pipeline, sock, policies=policies) as svc:
        gate = threading.Event()
        svc._pool.submit(gate.wait)
        got: dict[str, float] = {}
        replies: list[dict[str, Any]] = []

        def short() -> None:
            with Client(sock, timeout=300) as c:
                replies.append(c.request(_req(0, "How do I renew my parking permit?", "ivy")))
                got["short"] = time.monotonic()

        def longs() -> None:
            with Client(sock, timeout=300) as c:
                replies.extend(c.stream([{**_req(n, doc, "ivy"), "request_id": f"doc-{n}"}
                                         for n in range(1, 4)], window=3))

        first = threading.Thread(target=short)
        first.start()
        deadline = time.monotonic() + 60
        while not (svc._pending and svc._queue.empty()) and time.monotonic() < deadline:
            time.sleep(0.01)  # the short one taken from the queue, its staging held
        second = threading.Thread(target=longs)
        second.start()
        while len(svc._pending) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        first.join(300)
        second.join(300)
    assert len(replies) == 4 and all(r["ok"] for r in replies), replies
    assert ended and got["short"] < ended[0]
