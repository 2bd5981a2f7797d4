"""What the gateway gets back for each prompt of a batch: the `Outcome` of a request the
store already holds (a retry) and of a record the batch just linked. Used by `pipeline.py`."""

from __future__ import annotations

from collections.abc import Sequence

from appliance import history
from appliance.records import Candidate, NewRecord, Outcome, Prompt
from appliance.store import Store


def stored_outcome(store: Store, prompt: Prompt) -> Outcome | None:
    """The outcome of a prompt whose request the store already holds (a duplicate), or
    None when it is new."""
    rid = store.request_exists(prompt.tenant, prompt.request_id)
    if rid is None:
        return None
    rec = store.records("r.id = ?", (rid,))[0]
    return Outcome(request_id=rec.request_id, record_id=rid, thread_id=rec.thread_id,
                   parent_id=rec.parent_id, parent_request_id=rec.parent_request_id,
                   position=rec.position, intent=rec.intent, similarity=rec.similarity,
                   topic_id=rec.topic_id, index=prompt.index, duplicate=True,
                   trace_id=rec.trace_id, span_id=rec.span_id, link_source=rec.link_source,
                   text_truncated=bool((rec.evidence or {}).get("text_truncated")))


def new_outcome(store: Store, candidates: Sequence[Candidate], row: NewRecord,
                index: int | None, truncated: bool) -> Outcome:
    """The outcome of a record just linked; `candidates`: its user's history in memory,
    where its parent's request id is looked up first."""
    link = row.link
    parent_req = None
    if link.parent_id is not None:
        parent_req = next((c.request_id for c in candidates
                           if c.record_id == link.parent_id), None)
        if parent_req is None:  # a history link to a turn older than the horizon
            parent_req = store.request_id_of(link.parent_id)
    return Outcome(request_id=row.prompt.request_id, record_id=row.record_id,
                   thread_id=row.thread_id, parent_id=link.parent_id,
                   parent_request_id=parent_req, position=link.position, intent=link.intent,
                   similarity=link.similarity, topic_id=row.topic_id, index=index,
                   truncated=truncated, trace_id=row.trace_id, span_id=row.span_id,
                   link_source=link.evidence.get("link_source"),
                   text_truncated=row.prompt.truncated,
                   unmatched=tuple(history.unmatched_signals(link.evidence)))
