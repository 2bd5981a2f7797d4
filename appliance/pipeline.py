"""One prompt or a batch through redact -> embed -> link -> store/index.

Used by `semtrace replay` and by the service alike, so the benchmarks measure
the code path that production runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np

from appliance import history, pricing
from appliance.config import Policies
from appliance.embed import Embedder
from appliance.index import VectorIndex
from appliance.ingest import content_digest
from appliance.keys import Keyring
from appliance.link import Linker, LinkInput, calibrate
from appliance.outcomes import new_outcome, stored_outcome
from appliance.records import (
    Candidate,
    Erased,
    HeldTurn,
    Link,
    NewRecord,
    Outcome,
    Prompt,
    Redacted,
    Response,
    Unredactable,
)
from appliance.redact import entity_keys, number_placeholders
from appliance.staging import (
    STAGE_CHUNK,
    EmbeddingThread,
    Staged,
    StageTimer,
    StageTimes,
    collect,
    merged,
    redact_and_embed,
)
from appliance.staging import StageClock as _StageClock
from appliance.store import Store
from appliance.store.erasures import ErasedMeanwhile
from appliance.thresholds import TenantThresholds
from appliance.turn_keys import gateway_context, turn_keys


class TopicAssigner(Protocol):
    """Assigns a prompt to a topic of its tenant (see topics.py)."""

    def assign(self, *, tenant: str, thread_id: str, vector: np.ndarray, text: str,
               synthetic: bool, user: str | None = None,
               ts: datetime | None = None) -> str | None: ...


class RedactorLike(Protocol):
    """Redacts prompts one by one or a batch at once (Presidio in production)."""

    def redact(self, prompt: Prompt) -> Redacted: ...

    def redact_many(self, prompts: Sequence[Prompt]) -> Sequence[Redacted | Unredactable]: ...


@dataclass
class UserHistory:
    """A user's recent prompts and per-thread placeholder maps, in memory."""

    candidates: list[Candidate] = field(default_factory=list)
    placeholders: dict[str, dict[str, str]] = field(default_factory=dict)

    def prune(self, oldest_ts: float) -> None:
        keep = [c for c in self.candidates if c.ts.timestamp() >= oldest_ts]
        live_threads = {c.thread_id for c in keep}
        self.placeholders = {t: m for t, m in self.placeholders.items() if t in live_threads}
        self.candidates = keep


def new_thread_id() -> str:
    """A fresh, opaque conversation id."""
    return "th_" + secrets.token_hex(8)


class Pipeline:
    """Wires the stages over one store and index."""

    def __init__(self, *, store: Store, index: VectorIndex, keyring: Keyring,
                 redactor: RedactorLike, embedder: Embedder, linker: Linker,
                 policies: Policies, topics: TopicAssigner | None = None) -> None:
        self.store = store
        self.topics = topics
        self.index = index
        self.keys = keyring
        self.redactor = redactor
        self.embedder = embedder
        self.linker = linker
        self.policies = policies
        self.stage_timer: StageTimer | None = None  # set by telemetry
        self._horizon = timedelta(hours=policies.correlation.horizon_hours)
        self._users: dict[tuple[str, str], UserHistory] = {}
        # digests of this batch's records, not yet committed: (tenant, user) -> turns
        self._pending: dict[tuple[str, str], list[HeldTurn]] = {}
        self._shred_mark = self.store.shred_watermark()
        self.thresholds = TenantThresholds(policies.correlation, store.link_tallies())

    def rebuild_index(self) -> int:
        """Fill the in-memory index from the store (at start)."""
        return self.index.rebuild(list(self.store.iter_vectors(model_id=self.embedder.model_id)))

    def _history(self, tenant: str, user: str, now_ts: float) -> UserHistory:
        key = (tenant, user)
        hist = self._users.get(key)
        if hist is None:
            since = now_ts - self._horizon.total_seconds()
            hist = UserHistory(candidates=self.store.candidates(
                tenant, user, since, model_id=self.embedder.model_id))
            self._users[key] = hist
        return hist

    def forget(self, tenant: str, user: str | None = None) -> None:
        """Drop cached history (after shredding), and what the linker holds in memory."""
        for key in [k for k in self._users if k[0] == tenant and (user is None or k[1] == user)]:
            del self._users[key]
        forget_linked = getattr(self.linker, "forget", None)
        if forget_linked is not None:
            forget_linked()
        forget_user = getattr(self.topics, "forget_user", None)
        if forget_user is not None and user is not None:
            forget_user(tenant, user)

    def _discard(self, prompts: Sequence[Prompt]) -> None:
        """After a failed batch, drop what memory learnt from it: the users' histories and
        the tenants' topics reload from the store, so memory is exactly as the store."""
        tenants = set()
        for p in prompts:
            self._users.pop((p.tenant, self.keys.pseudonym(p.tenant, p.user_id)), None)
            tenants.add(p.tenant)
        discard = getattr(self.topics, "discard", None)
        for tenant in sorted(tenants):
            if discard is not None:
                discard(tenant)

    def sync_shredded(self) -> int:
        """Drop cached history and index entries of buckets shredded by another process.

        A bucket anonymised before this look (no batch for a day after an erasure) no
        longer names its user: then every user of its tenant is forgotten (histories
        reload from the store) and every vector of the tenant no longer stored goes."""
        mark, users = self.store.shredded_since(self._shred_mark)
        self._shred_mark = mark
        for tenant, user in sorted(users, key=lambda u: (u[0], u[1] or "")):
            self.forget(tenant, user)
            held = self.index.keys(tenant) if user is None else self.index.user_keys(tenant, user)
            gone = held - self.store.record_ids_of(tenant, user)
            self.index.remove(tenant, sorted(gone))
        return len(users)

    def _existing(self, prompt: Prompt) -> Outcome | None:
        return stored_outcome(self.store, prompt)

    def _erased(self, prompt: Prompt) -> Erased | None:
        """An `Erased` for a prompt sent before its user's erasure completed."""
        stone = self.store.tombstone(prompt.tenant,
                                     self.keys.pseudonym(prompt.tenant, prompt.user_id))
        if stone is None or not stone.covers(prompt.ts.timestamp()):
            return None
        return Erased(request_id=prompt.request_id, index=prompt.index,
                      trace_id=prompt.trace_id, span_id=prompt.span_id)

    def process(self, prompts: Sequence[Prompt], *, ahead: EmbeddingThread | None = None,
                ) -> list[Outcome | Erased | Unredactable]:
        """Ingest a batch: one redaction and embedding pass, one transaction. A prompt of a
        user erased after it was sent is not stored: its result is `Erased`; nor is one whose
        redaction did not finish (fail closed): its result is `Unredactable`. With `ahead`,
        a batch of more than `STAGE_CHUNK` prompts is embedded on its thread while the rest
        is redacted and the first ones linked (appliance/staging.py); the same results."""
        return self.finish(self.stage(prompts, ahead=ahead if len(prompts) > STAGE_CHUNK
                                      else None))

    def _fresh(self, prompts: Sequence[Prompt], outcomes: Sequence[object],
               ) -> tuple[list[int], dict[tuple[str, str], int], list[int]]:
        """(positions without an outcome, first position of each request id, those firsts)."""
        todo = [i for i, o in enumerate(outcomes) if o is None]
        seen: dict[tuple[str, str], int] = {}
        for i in todo:
            seen.setdefault((prompts[i].tenant, prompts[i].request_id), i)
        return todo, seen, sorted(seen.values())

    def stage(self, prompts: Sequence[Prompt], *, ahead: EmbeddingThread | None = None,
              ) -> Staged:
        """The first half of `process`, on the worker thread: redact what is to be stored
        and start its embedding, on `ahead`'s thread (which runs while the worker finishes
        the batch before, and while it redacts the rest of this one) or, without one,
        here. Writes nothing, links nothing."""
        outcomes = [self._existing(p) or self._erased(p) for p in prompts]
        fresh = self._fresh(prompts, outcomes)[2]
        times: StageTimes = []
        timer = collect(times) if self.stage_timer else None
        got, vectors = redact_and_embed(self.redactor.redact_many, self.embedder,
                                        [prompts[i] for i in fresh], ahead,
                                        _StageClock(timer), lambda: _StageClock(timer))
        redacted = {fresh[k]: red for k, red in got.items()}
        embedded = tuple(i for i in fresh if isinstance(redacted[i], Redacted))
        return Staged(tuple(prompts), redacted, embedded, vectors, times)

    def finish(self, staged: Staged) -> list[Outcome | Erased | Unredactable]:
        """The second half of `process`, on the worker thread, after the batches staged
        before this one are finished: link, store and index a staged batch."""
        try:
            try:
                return self._finish(staged)
            except ErasedMeanwhile:  # an erasure landed between the check and the commit:
                return self._finish(staged)  # nothing was written; checked again, refused
        finally:
            if self.stage_timer is not None:
                staged.vectors.settle()
                for stage, start, end in merged(staged.times):
                    self.stage_timer(stage, start, end)

    def _finish(self, staged: Staged) -> list[Outcome | Erased | Unredactable]:
        prompts = staged.prompts
        self.sync_shredded()
        # checked again: the batch finished before this one (or an erasure) may have
        # stored (or refused) one of its requests since it was staged
        outcomes: list[Outcome | Erased | Unredactable | None] = [
            self._existing(p) or self._erased(p) for p in prompts]
        todo, seen, fresh = self._fresh(prompts, outcomes)
        if any(i not in staged.redacted for i in fresh):  # stored when staged, shredded since
            again = self.stage(prompts)
            done = self._finish(again)
            staged.times[:] = again.times
            return done
        row = {i: n for n, i in enumerate(staged.embedded)}
        clock = _StageClock(collect(staged.times) if self.stage_timer else None)
        for i in fresh:
            if isinstance(red := staged.redacted[i], Unredactable):  # refused: never stored
                outcomes[i] = red  # partly redacted
        kept = [i for i in fresh if i in row]
        rows: list[NewRecord] = []
        try:
            for i in kept:
                red = staged.redacted[i]
                assert isinstance(red, Redacted)
                vector, truncated = staged.vectors.row(row[i])  # waits for it if need be
                new = self._link_one(red, vector, truncated)
                rows.append(new)
                outcomes[i] = self._outcome(new, prompts[i].index, truncated)
            clock("linking")
            # each thread's row gets its topic as of the commit (a refinement may have
            # moved it since its prompt was assigned)
            self.store.insert(rows, self.thresholds.pending(),
                              thread_topic=getattr(self.topics, "current_topic", None))
            self.thresholds.committed()
        except BaseException:
            self.thresholds.discard()
            self._discard([prompts[i] for i in kept])
            raise
        finally:
            self._pending.clear()
        clock("commit")
        for new in rows:
            self.index.add(new.prompt.tenant, new.user, [new.record_id], new.vector[None, :])
        clock("index")
        for i in todo:
            if outcomes[i] is None:  # a repeat of a request earlier in this batch
                first = outcomes[seen[(prompts[i].tenant, prompts[i].request_id)]]
                if isinstance(first, Unredactable):
                    outcomes[i] = replace(first, prompt=prompts[i])
                    continue
                assert isinstance(first, Outcome)
                outcomes[i] = replace(first, index=prompts[i].index, duplicate=True)
        self._answered_again(prompts, outcomes)
        return [o for o in outcomes if o is not None]

    def _answered_again(self, prompts: Sequence[Prompt],
                        outcomes: Sequence[Outcome | Erased | Unredactable | None]) -> None:
        """A repeated ingest that carries the answer is also its update. A gateway sends a
        call whole after the answer when its registration got no reply, though that
        registration may still land (queued on the bus for a node that is down, or a
        service slower than the gateway's timeout): the repeat's tokens, cost and response
        id were dropped with it, and the next call naming that id found no turn. Setting
        them is idempotent (`update`), so a plain retry changes nothing."""
        for p, o in zip(prompts, outcomes, strict=True):
            if isinstance(o, Outcome) and o.duplicate and p.response is not None:
                self.update(p.tenant, p.request_id, p.response, p.model)

    def _link_one(self, red: Redacted, vec: np.ndarray, truncated: bool) -> NewRecord:
        p = red.prompt
        user = self.keys.pseudonym(p.tenant, p.user_id)
        skey = self.keys.session_key(p.tenant, p.session_id) if p.session_id else None
        ts = p.ts.timestamp()
        hist = self._history(p.tenant, user, ts)
        hist.prune(ts - self._horizon.total_seconds())
        ekeys = entity_keys(red, lambda v: self.keys.entity_key(p.tenant, v))
        cands = [c for c in hist.candidates if c.ts <= p.ts]
        query = LinkInput(ts=p.ts, vector=vec, text=red.text, session_key=skey,
                          entity_keys=ekeys)
        asked: list[tuple[str, Link]] = []  # the threshold's source and the content link

        def content() -> Link:
            choice = self.thresholds.choice(p.tenant)
            found = self.linker(query, cands, threshold=choice.threshold)
            asked.append((choice.source, found))
            return found

        context = gateway_context(self.keys, self.store, self._pending.get((p.tenant, user), []),
                                  p, user)
        link = history.decide(query, context, cands, content, self.policies.correlation)
        if asked:
            link = replace(link, evidence={**link.evidence, "threshold_source": asked[-1][0]})
        if p.truncated:  # the stored text is the start of the prompt only
            link = replace(link, evidence={**link.evidence, "text_truncated": True})
        self._learn(p.tenant, link, query, cands, asked[-1][1] if asked else None)
        thread_id = link.thread_id or new_thread_id()
        text, vault = number_placeholders(red, ekeys, hist.placeholders.setdefault(thread_id, {}),
                                          mask=self.policies.redaction.operator == "mask")
        topic_id = None
        if self.topics is not None:
            topic_id = self.topics.assign(tenant=p.tenant, thread_id=thread_id, vector=vec,
                                          text=text, synthetic=p.synthetic, user=user, ts=p.ts)
        rid = self.store.allocate_id()
        resp = p.response or Response()
        cost = pricing.call_cost(self.policies.pricing, p.model, resp.input_tokens,
                                 resp.output_tokens, resp.cost)
        tkeys = turn_keys(self.keys, p.tenant, user, p.response,
                          p.digest or content_digest(p.text))
        self._pending.setdefault((p.tenant, user), []).extend(
            HeldTurn(record_id=rid, request_id=p.request_id, thread_id=thread_id, ts=p.ts,
                     parent_id=link.parent_id, kind=kind, digest=digest)
            for kind, digest in tkeys)
        record = NewRecord(record_id=rid, prompt=p, user=user, session_key=skey, link=link,
                           thread_id=thread_id, text=text, vector=vec,
                           model_id=self.embedder.model_id, truncated=truncated, vault=vault,
                           topic_id=topic_id, trace_id=p.trace_id, span_id=p.span_id,
                           entity_keys=ekeys, turn_keys=tuple(tkeys),
                           cost=cost.amount if cost else None,
                           cost_source=cost.source if cost else None)
        hist.candidates.append(Candidate(
            record_id=rid, request_id=p.request_id, thread_id=thread_id, ts=p.ts, vector=vec,
            text=text, session_key=skey, parent_id=link.parent_id, position=link.position,
            entity_keys=ekeys))
        return record

    def _learn(self, tenant: str, link: Link, query: LinkInput, cands: list[Candidate],
               asked: Link | None = None) -> None:
        """Tally what the content linker would have decided for a prompt whose thread the
        gateway's history (or previous response id) decided: the tenant's threshold learns
        from it (appliance/thresholds.py). `asked`: the content linker's answer when the
        decision already asked it (an empty history that refers back); a new conversation's
        lesson is its score alone, and the score does not depend on the threshold, so it is
        not asked twice."""
        if not self.thresholds.learning or not cands:
            return
        if link.evidence.get("link_source") not in ("history", "previous_response_id"):
            return
        if link.thread_id is None and asked is not None:
            self.thresholds.learn(tenant, asked.score or 0.0, "new")
            return
        probe = self.linker(query, cands, threshold=0.0)
        taught = calibrate.outcome(link.thread_id, probe.thread_id)
        if taught is not None:
            self.thresholds.learn(tenant, probe.score or 0.0, taught)

    def update(self, tenant: str, request_id: str, response: Response | None,
               model: str | None) -> bool:
        """Record what the gateway learned after the answer; False if the request is unknown."""
        resp = response or Response()
        return self.store.update_response(
            tenant, request_id, resp, model,
            lambda user: turn_keys(self.keys, tenant, user, resp),
            lambda m, tin, tout: pricing.price(self.policies.pricing, m, tin, tout))

    def attach(self, tenant: str, request_id: str, user_id: str, previous_response_id: str,
               response: Response | None, model: str | None) -> tuple[str, str] | None:
        """A tool loop's call (no user text) becomes part of the user's turn that answered
        `previous_response_id`, its figures added to the turn's: (the turn's request id,
        its thread id), or None when no turn of this user answered with it."""
        resp = response or Response()
        user = self.keys.pseudonym(tenant, user_id)
        return self.store.attach_call(
            tenant, request_id, user,
            self.keys.turn_key(tenant, user, "response", previous_response_id), resp, model,
            lambda u: turn_keys(self.keys, tenant, u, resp),
            lambda m, tin, tout: pricing.price(self.policies.pricing, m, tin, tout),
            owner_key=self.keys.turn_key(tenant, "", "response", previous_response_id))

    def _outcome(self, row: NewRecord, index: int | None, truncated: bool) -> Outcome:
        cands = (self._users[(row.prompt.tenant, row.user)].candidates
                 if row.link.parent_id is not None else [])
        return new_outcome(self.store, cands, row, index, truncated)
