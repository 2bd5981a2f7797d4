"""A batch redacted in parts while its embedding runs on the embedding thread.

A batch of more than `STAGE_CHUNK` prompts given the embedding thread (the service's batch
taken alone, replay's batches) is redacted 16 prompts at a time, each part's texts handed
to the embedding thread before the next part is redacted, and linked as its vectors come
(appliance/staging.py). The model decodes the packs one call over the whole batch makes (a
vector depends on the others in its pack), so nothing decided changes: the same threads,
parents, similarities, stored texts and vectors as the batch redacted and embedded at once
on one thread. The real redactor, model, linker and SQLCipher store; no timing is asserted,
only the order of the calls on the worker and the thread the model ran on.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import make_prompt, running_service
from held_worker import send_while_held

CONVERSATIONS = {
    "trip": ["I'm planning a week in Lisbon in May, which neighbourhood should I stay in?",
             "Is Alfama too hilly to walk around with a suitcase?",
             "And how do I get there from the airport by metro?",
             "What does a day ticket for the trams there cost?",
             "Which of those trams goes up to the castle?",
             "Can you book a table for two at a fado restaurant near it, under Maria Silva?",
             "Send the confirmation to maria.silva@example.com please.",
             "Is Sintra worth a day trip from there?",
             "How early should we leave to beat the queues at Pena Palace?",
             "What should we pack for the evenings in May?"],
    "bread": ["My sourdough starter smells like nail polish remover, is it dead?",
              "How often should I feed the starter to fix that smell?",
              "Should the flour for feeding it be wholemeal or white?",
              "Once it recovers, how long should the dough proof overnight in the fridge?",
              "Why does my loaf come out flat even after that proof?",
              "Would a Dutch oven help with the oven spring?",
              "What hydration would you start with for a first loaf?",
              "How do I know when the bulk fermentation is done?",
              "Can I freeze part of the starter as a backup?",
              "How long does a frozen starter take to wake up again?"],
    "tax": ["Do I have to declare freelance income under 1,000 euros in Germany?",
            "My tax number is 12/345/67890, where do I put it on the form?",
            "Which expenses can I deduct for a home office?",
            "Does a standing desk count as a work expense?",
            "Can you call my accountant Jonas Weber on +49 30 1234 5678 about it?",
            "When is the deadline for filing without an adviser?",
            "What happens if I file a month late?",
            "Is there a penalty for a small correction after filing?",
            "How long do I keep the receipts?",
            "Should I switch to quarterly advance payments next year?"],
    "code": ["Why does my Python script say ModuleNotFoundError for requests?",
             "I installed it with pip but the virtualenv still can't find it.",
             "How do I check which interpreter the venv uses?",
             "The shebang points to /usr/bin/python3, is that the problem?",
             "What is the cleanest way to pin the dependency versions?",
             "Should the lock file be committed to git?",
             ("Here is the whole traceback, line by line, as it printed: "
              + " ".join(f"frame {n} in module_{n}.py calls helper_{n}()" for n in range(60))),
             "Could a stale __pycache__ folder cause it?",
             "How do I run the tests in that venv from the editor?",
             "Is there a way to make CI use the same interpreter?"],
}


def _batch(tenant: str) -> list[Any]:
    """The four conversations' turns interleaved, a minute apart, and one request sent
    twice (its repeat answered as a duplicate): 41 prompts, 40 of them to store."""
    out = []
    for k in range(10):
        for name, turns in CONVERSATIONS.items():
            out.append(make_prompt(turns[k], user=f"{name}-user", tenant=tenant,
                                   minutes=len(out), request_id=f"{name}-{k}"))
    return [*out, replace(out[5])]


def _watched(pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """Record the redactor's batches, the texts handed to the embedding thread, and the
    thread each of the model's decodes ran on."""
    from appliance import staging

    events: list[tuple[str, Any]] = []
    redact_many, decode = pipeline.redactor.redact_many, pipeline.embedder._decode

    def redacting(prompts: Any) -> Any:
        events.append(("redact", len(prompts)))
        return redact_many(prompts)

    def decoding(seqs: Any) -> Any:
        events.append(("decode", threading.current_thread().name))
        return decode(seqs)

    monkeypatch.setattr(pipeline.redactor, "redact_many", redacting)
    monkeypatch.setattr(pipeline.embedder, "_decode", decoding)
    stream = getattr(staging, "EmbeddingStream", None)  # (none before the parts)
    if stream is not None:
        hand = stream.add

        def handing(self: Any, texts: Any) -> None:
            events.append(("hand", len(texts)))
            hand(self, texts)

        monkeypatch.setattr(stream, "add", handing)
    return events


def _on_the_worker(events: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    out = [e for e in events if e[0] != "decode"]
    events.clear()
    return out


def _decoded_on(events: list[tuple[str, Any]]) -> set[str]:
    return {name.rsplit("_", 1)[0] for kind, name in events if kind == "decode"}


def _shape(rows: list[tuple[str, str, str | None, str, str | None, float | None, bool]],
           ) -> list[tuple[Any, ...]]:
    """(request id, conversation numbered by first appearance, parent request id,
    position, intent, similarity, duplicate) with the random conversation ids set aside."""
    number: dict[str, int] = {}
    return [(rid, number.setdefault(conv, len(number)), *rest)
            for rid, conv, *rest in rows]


def _outcomes(outcomes: list[Any]) -> list[tuple[Any, ...]]:
    return _shape([(o.request_id, o.thread_id, o.parent_request_id, o.position, o.intent,
                    o.similarity, o.duplicate) for o in outcomes])


def _stored(pipeline: Any, tenant: str) -> dict[str, tuple[str, bytes]]:
    """Each stored record's redacted text and vector (bytes), by request id."""
    recs = {r.record_id: r for r in pipeline.store.records("r.tenant=?", (tenant,))}
    return {recs[rid].request_id: (recs[rid].text, vec.tobytes())
            for rid, t, _, vec in pipeline.store.iter_vectors(model_id=pipeline.embedder.model_id)
            if t == tenant}


def test_a_batch_redacted_in_parts_and_embedded_beside_it_decides_and_stores_the_same(
        pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.staging import EmbeddingThread

    events = _watched(pipeline, monkeypatch)
    whole = pipeline.process(_batch("whole"))
    assert _on_the_worker(events) == [("redact", 40)]
    with EmbeddingThread() as ahead:
        parts = pipeline.process(_batch("parts"), ahead=ahead)
    decoded = _decoded_on(events)
    # each part's texts handed over before the next part is redacted; the model run on the
    # embedding thread alone
    assert _on_the_worker(events) == [("redact", 16), ("hand", 16), ("redact", 16),
                                      ("hand", 16), ("redact", 8), ("hand", 8)]
    assert decoded == {"semtrace-embed"}
    assert _outcomes(parts) == _outcomes(whole)
    assert [o.truncated for o in parts] == [o.truncated for o in whole]
    assert any(o.truncated for o in whole)  # the traceback was cut to the model's tokens
    assert len({o.thread_id for o in whole}) < len(whole) - 10  # turns were joined
    assert _stored(pipeline, "parts") == _stored(pipeline, "whole")
    assert len(_stored(pipeline, "whole")) == 40
    assert any("<EMAIL_ADDRESS" in text for text, _ in _stored(pipeline, "parts").values())


def test_the_service_embeds_a_batch_taken_alone_beside_its_redaction(
        pipeline: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Queued while the worker is held, the requests come as batches taken off an empty
    queue (each finished in one worker job; how many the first holds depends on when the
    batch loop woke): the model runs on the embedding thread while the worker redacts a
    batch of more than one part, and each batch's replies are what the batch redacted and
    embedded at once gives (the same prompts under another tenant, after)."""
    events = _watched(pipeline, monkeypatch)
    batches: list[tuple[list[Any], list[tuple[str, Any]]]] = []
    process = pipeline.process

    def processing(prompts: Any, **kw: Any) -> Any:
        events.clear()
        try:
            return process(prompts, **kw)
        finally:  # the batch's decodes are done: its last vector was waited for
            batches.append((list(prompts), events[:]))

    monkeypatch.setattr(pipeline, "process", processing)
    sock = tmp_path / "s.sock"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    reqs = [{"v": 1, "op": "ingest", "tenant": "acme", "user_id": p.user_id,
             "request_id": p.request_id, "text": p.text,
             "ts": (start + timedelta(minutes=n)).isoformat()}
            for n, p in enumerate(_batch("acme")[:40])]
    with running_service(pipeline, sock) as svc:
        replies = send_while_held(svc, sock, reqs)
    assert all(r["ok"] for r in replies), replies
    assert sorted(p.request_id for b, _ in batches for p in b) == sorted(
        r["request_id"] for r in reqs)
    assert max(len(b) for b, _ in batches) > 16  # at least one batch of more than one part
    for batch, seen in batches:
        if len(batch) > 16:
            assert _decoded_on(seen) == {"semtrace-embed"}
            on_worker = _on_the_worker(seen)
            assert on_worker[:2] == [("redact", 16), ("hand", 16)]
            assert [k for k, _ in on_worker] == ["redact", "hand"] * (len(on_worker) // 2)
        else:  # a batch of one part: embedded on the worker, as before
            assert _decoded_on(seen) == {"semtrace-worker"}
    got = {r["request_id"]: r for r in replies}
    for batch, _ in batches:
        alone = process([replace(p, tenant="again") for p in batch])
        assert _shape([(r["request_id"], r["conversation_id"], r["parent_request_id"],
                        r["position"], r["intent"], r["similarity"], r["duplicate"])
                       for r in (got[p.request_id] for p in batch)]) == _shape(
            [(o.request_id, o.thread_id, o.parent_request_id, o.position, o.intent,
              None if o.similarity is None else round(float(o.similarity), 4), o.duplicate)
             for o in alone])


def test_a_batch_in_parts_reports_each_stage_once_in_order(pipeline: Any) -> None:
    """The stage timer (metrics, spans) gets one interval a stage, redaction first, for a
    batch redacted and embedded in parts, and for a batch of repeats only (nothing to
    redact: its redaction timed all the same, as before the parts)."""
    from appliance.staging import EmbeddingThread

    reported: list[list[str]] = []
    pipeline.stage_timer = lambda stage, start, end: (
        reported.append([]) if stage == "redaction" else None, reported[-1].append(stage))
    batch = _batch("timed")[:20]
    with EmbeddingThread() as ahead:
        pipeline.process(batch, ahead=ahead)
        again = pipeline.process(batch, ahead=ahead)
    assert all(o.duplicate for o in again)
    assert reported == [["redaction", "embedding", "linking", "commit", "index"]] * 2
