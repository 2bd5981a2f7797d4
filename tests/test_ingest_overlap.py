"""Batches ingested back to back link as if they came one at a time.

The service stages the next batch (redaction, and its embedding on a thread of its own)
while the worker links and stores the batch before it (appliance/staging.py). Linking must
still run batch after batch: a turn in one batch whose conversation began in the batch
before is found only if that batch is stored first. The real service, pipeline, model and
store; the worker is held until every prompt is queued, so they come as batches of two
(`batch_max`), each staged before the one before it is finished.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import running_service
from held_worker import send_while_held

from appliance.client import Client

# one user's two conversations, interleaved: each batch of two holds a turn of each
TRIP = ["I'm planning a week in Lisbon in May, which neighbourhood should I stay in?",
        "Is Alfama too hilly to walk around with a suitcase?",
        "And how do I get there from the airport by metro?",
        "What does a day ticket for the trams there cost?",
        "Which of those trams goes up to the castle?"]
BREAD = ["My sourdough starter smells like nail polish remover, is it dead?",
         "How often should I feed the starter to fix that smell?",
         "Should the flour for feeding it be wholemeal or white?",
         "Once it recovers, how long should the dough proof overnight in the fridge?",
         "Why does my loaf come out flat even after that proof?"]
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def _requests(tenant: str, *, history: bool) -> list[dict[str, Any]]:
    """The two conversations' turns, alternating, a minute apart; with `history` each turn
    carries its conversation's earlier prompts as a gateway sends them."""
    out = []
    for k in range(len(TRIP)):
        for name, turns in (("trip", TRIP), ("bread", BREAD)):
            req: dict[str, Any] = {
                "v": 1, "op": "ingest", "tenant": tenant, "user_id": "amira",
                "request_id": f"{name}-{k}", "text": turns[k],
                "ts": (START + timedelta(minutes=len(out))).isoformat()}
            if history:
                req["history"] = [{"role": "user", "content": t} for t in turns[:k]]
            out.append(req)
    return out


def _shape(replies: list[dict[str, Any]]) -> list[tuple[str, int, str | None]]:
    """Each reply's request id, its conversation numbered by first appearance, its
    parent: what stays when the random conversation ids are set aside."""
    number: dict[str, int] = {}
    return [(r["request_id"], number.setdefault(r["conversation_id"], len(number)),
             r["parent_request_id"]) for r in replies]


def _one_at_a_time(sock: Path, reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    with Client(sock, timeout=120) as c:
        return [c.request(r) for r in reqs]


def _overlapping(pipeline: Any) -> list[tuple[str, tuple[str, ...]]]:
    """Record the order of the pipeline's stage and finish calls (by request ids)."""
    calls: list[tuple[str, tuple[str, ...]]] = []
    stage, finish = pipeline.stage, pipeline.finish

    def staging(prompts: Any, **kw: Any) -> Any:
        calls.append(("stage", tuple(p.request_id for p in prompts)))
        return stage(prompts, **kw)

    def finishing(staged: Any) -> Any:
        calls.append(("finish", tuple(p.request_id for p in staged.prompts)))
        return finish(staged)

    pipeline.stage, pipeline.finish = staging, finishing
    return calls


def _batches_of_two(pipeline: Any) -> Any:
    service = pipeline.policies.service.model_copy(update={"batch_max": 2})
    return pipeline.policies.model_copy(update={"service": service})


def _assert_overlapped(calls: list[tuple[str, tuple[str, ...]]]) -> None:
    """Several batches, each staged before the one before it was finished (but the first
    after the next: a batch taken off an empty queue is finished at once, in one worker job),
    and finished in the order they were queued."""
    staged = [ids for op, ids in calls if op == "stage"]
    assert [ids for op, ids in calls if op == "finish"] == staged
    assert len(staged) >= 4
    ahead = [n for n in range(1, len(staged))
             if calls.index(("stage", staged[n])) < calls.index(("finish", staged[n - 1]))]
    assert ahead in (list(range(1, len(staged))), list(range(2, len(staged))))


def test_a_turn_whose_conversation_began_in_the_batch_before_is_linked_to_it(
        pipeline: Any, tmp_path: Path) -> None:
    sock = tmp_path / "s.sock"
    calls = _overlapping(pipeline)
    with running_service(pipeline, sock, policies=_batches_of_two(pipeline)) as svc:
        replies = send_while_held(svc, sock, _requests("acme", history=True))
    assert all(r["ok"] for r in replies), replies
    _assert_overlapped(calls)
    got = {r["request_id"]: r for r in replies}
    for name, turns in (("trip", TRIP), ("bread", BREAD)):
        assert len({got[f"{name}-{k}"]["conversation_id"] for k in range(len(turns))}) == 1
        assert [got[f"{name}-{k}"]["parent_request_id"] for k in range(len(turns))] == [
            None, *(f"{name}-{k}" for k in range(len(turns) - 1))]
        assert {got[f"{name}-{k}"]["link_source"] for k in range(1, len(turns))} == {"history"}
    assert got["trip-0"]["conversation_id"] != got["bread-0"]["conversation_id"]


def test_back_to_back_batches_give_the_threads_of_one_prompt_at_a_time(
        pipeline: Any, tmp_path: Path) -> None:
    """Without the gateway's history the linker decides from content and time: the same
    decisions, batch by batch, as for the same turns sent one by one (another tenant)."""
    sock = tmp_path / "s.sock"
    calls = _overlapping(pipeline)
    with running_service(pipeline, sock, policies=_batches_of_two(pipeline)) as svc:
        alone = _one_at_a_time(sock, _requests("solo", history=False))
        calls.clear()
        together = send_while_held(svc, sock, _requests("acme", history=False))
    assert all(r["ok"] for r in alone + together)
    _assert_overlapped(calls)
    assert _shape(together) == _shape(alone)
    assert len({r["conversation_id"] for r in together}) < len(together)  # turns joined
