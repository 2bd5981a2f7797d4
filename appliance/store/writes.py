"""Writing records: a batch in one transaction, text and vectors sealed under their bucket's DEK.

`Store` is the only writer of tables; this is its ingest path (records, turn
digests, vault entries and thread summaries) and its feedback updates.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance import failpoints
from appliance.errors import SemtraceError
from appliance.keys import REVEAL_PUBLIC_FILE, Dek, Keyring, RevealSealer, reveal_sealer
from appliance.link.calibrate import Tally
from appliance.records import NewRecord
from appliance.store.maintenance import VECTOR_DTYPE, _aad, day_of
from appliance.store.turns import digest_rows


class Writes:
    """Record inserts and feedback over the connection and buckets `Store` sets up."""

    _db: Any
    _next_id: int
    _deks: dict[int, Dek | None]
    _bucket_ids: dict[tuple[str, str, str, str], int]
    sealer: RevealSealer | None
    _keys: Keyring
    path: Path

    if TYPE_CHECKING:  # provided by Store
        def _bucket(self, tenant: str, user: str, day: str, kind: str = "prompts"
                    ) -> tuple[int, Dek]: ...

        def _refuse_erased(self, pairs: Iterable[tuple[str, str, float]]) -> None: ...

    def _vault_sealer(self) -> RevealSealer | None:
        """The sealer of new originals, taking a compliance key enrolled while this store is
        open (`compliance enroll` beside the running service: 'originals are kept from now
        on' held only after a restart). A reveal.pub whose tag does not verify (enroll
        writes it, then its tag; or a file planted there) is not taken: nothing is sealed
        to it, and it is looked at again for the next record."""
        if self.sealer is None and (self.path.parent / REVEAL_PUBLIC_FILE).exists():
            with contextlib.suppress(SemtraceError, ValueError, OSError):
                self.sealer = reveal_sealer(self.path.parent, self._keys)
        return self.sealer

    def allocate_id(self) -> int:
        """Reserve the next record id (single writer)."""
        rid = self._next_id
        self._next_id += 1
        return rid

    def insert(self, rows: list[NewRecord], tallies: Mapping[str, Tally] | None = None, *,
               thread_topic: Callable[[str, str], str | None] | None = None) -> None:
        """Write a batch of records, their thread summaries and the link tallies the batch
        changed (tenant -> whole tally) in one transaction.

        Args:
            thread_topic: (tenant, thread id) -> the thread's topic now (the topic
                assigner's), asked inside the write transaction for each thread's row: a
                refinement that moved the thread after its prompt was assigned publishes
                either before this (and is seen here) or after it (and writes its own), so
                the prompt's older topic never overwrites it. None: the record's topic.
        """
        if not rows and not tallies:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._refuse_erased((r.prompt.tenant, r.user, r.prompt.ts.timestamp()) for r in rows)
            for row in rows:
                now_in = thread_topic(row.prompt.tenant, row.thread_id) if thread_topic else None
                self._insert_one(row, now_in or row.topic_id)
            now = time.time()
            self._db.executemany(
                "INSERT OR REPLACE INTO link_tallies (tenant, attach, new, updated_at) "
                "VALUES (?,?,?,?)", [(tenant, json.dumps(t.attach), json.dumps(t.new), now)
                                     for tenant, t in sorted((tallies or {}).items())])
            failpoints.point("batch.commit")
            self._db.execute("COMMIT")
        except BaseException:
            try:  # a failed ROLLBACK (I/O error) must not leave the caches stale either
                if self._db.in_transaction:  # SQLite may have rolled back itself (disk full)
                    self._db.execute("ROLLBACK")
            finally:
                self._forget_uncommitted()
            raise

    def _forget_uncommitted(self) -> None:
        self._bucket_ids.clear()
        self._deks = {k: v for k, v in self._deks.items() if v is None}

    def _insert_one(self, r: NewRecord, thread_topic: str | None) -> None:
        p = r.prompt
        bid, dek = self._bucket(p.tenant, r.user, day_of(p.ts))
        resp = p.response
        text_ct = dek.seal(r.text.encode("utf-8"), _aad(r.record_id, "text"))
        vec_ct = dek.seal(np.asarray(r.vector, dtype=VECTOR_DTYPE).tobytes(),
                          _aad(r.record_id, "vector"))
        link = r.link
        ents_ct = dek.seal(json.dumps(list(r.entity_keys)).encode(),
                           _aad(r.record_id, "entities")) if r.entity_keys else None
        self._db.execute(
            "INSERT INTO records (id, tenant, request_id, user, bucket_id, ts, session_key, "
            "thread_id, parent_id, position, intent, similarity, score, topic_id, model, "
            "input_tokens, output_tokens, latency_ms, status, synthetic, stream_index, model_id, "
            "truncated, text_ct, vector_ct, evidence, trace_id, span_id, entities_ct, cost, "
            "cost_source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (r.record_id, p.tenant, p.request_id, r.user, bid, p.ts.timestamp(), r.session_key,
             r.thread_id, link.parent_id, link.position, link.intent, link.similarity,
             link.score, r.topic_id, p.model, resp.input_tokens if resp else None,
             resp.output_tokens if resp else None, resp.latency_ms if resp else None,
             resp.status if resp else None, int(p.synthetic), p.index, r.model_id,
             int(r.truncated), text_ct, vec_ct, json.dumps(link.evidence, sort_keys=True),
             r.trace_id, r.span_id, ents_ct, r.cost, r.cost_source))
        self._db.executemany(
            "INSERT OR REPLACE INTO turn_digests (record_id, kind, tenant, user, digest) "
            "VALUES (?,?,?,?,?)", digest_rows(r.record_id, p.tenant, r.user, r.turn_keys))
        if r.vault and (sealer := self._vault_sealer()) is not None:
            # originals under their own per-day key, destroyed at the vault's retention
            vid, vdek = self._bucket(p.tenant, r.user, day_of(p.ts), "vault")
            aad = _aad(r.record_id, "vault")
            inner = sealer.seal(json.dumps(list(r.vault)).encode(), aad)
            self._db.execute("INSERT INTO vault (record_id, bucket_id, ct) VALUES (?, ?, ?)",
                             (r.record_id, vid, vdek.seal(inner, aad)))
        self._upsert_thread(r, thread_topic)

    def _upsert_thread(self, r: NewRecord, topic: str | None) -> None:
        p, resp = r.prompt, r.prompt.response
        tin = (resp.input_tokens or 0) if resp else 0
        tout = (resp.output_tokens or 0) if resp else 0
        row = self._db.execute("SELECT models FROM threads WHERE thread_id=?",
                               (r.thread_id,)).fetchone()
        ts = p.ts.timestamp()
        if row is None:
            models = [p.model] if p.model else []
            self._db.execute(
                "INSERT INTO threads (thread_id, tenant, user, first_ts, last_ts, turns, "
                "input_tokens, output_tokens, models, topic_id, cost) "
                "VALUES (?,?,?,?,?,1,?,?,?,?,?)",
                (r.thread_id, p.tenant, r.user, ts, ts, tin, tout, json.dumps(models), topic,
                 r.cost))
            return
        models = json.loads(row[0])
        if p.model and p.model not in models:
            models.append(p.model)
        self._db.execute(
            "UPDATE threads SET first_ts=min(first_ts, ?), last_ts=max(last_ts, ?), "
            "turns=turns+1, input_tokens=input_tokens+?, output_tokens=output_tokens+?, "
            "models=?, topic_id=coalesce(?, topic_id), "
            "cost=CASE WHEN ? IS NULL THEN cost ELSE coalesce(cost, 0) + ? END WHERE thread_id=?",
            (ts, ts, tin, tout, json.dumps(models), topic, r.cost, r.cost, r.thread_id))

    def set_feedback(self, tenant: str, request_id: str, feedback: dict[str, Any]) -> bool:
        """Merge feedback (rating, abandonment) into a stored request; False if unknown."""
        row = self._db.execute("SELECT id, feedback FROM records WHERE tenant=? AND request_id=?",
                               (tenant, request_id)).fetchone()
        if row is None:
            return False
        merged = {**(json.loads(row[1]) if row[1] else {}), **feedback}
        with self._db:
            self._db.execute("UPDATE records SET feedback=? WHERE id=?",
                             (json.dumps(merged, sort_keys=True), row[0]))
        return True
