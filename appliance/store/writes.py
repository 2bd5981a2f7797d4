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
            self._insert_rows(rows, thread_topic)
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

    def _insert_rows(self, rows: list[NewRecord],
                     thread_topic: Callable[[str, str], str | None] | None) -> None:
        """The batch's records, turn digests and vault entries, each table in one statement,
        then each record's thread summary in the rows' order."""
        records: list[tuple[Any, ...]] = []
        digests: list[tuple[int, str, str, str, str]] = []
        vault: list[tuple[int, int, bytes]] = []
        topics: list[str | None] = []
        for row in rows:  # buckets (and their keys) are made here, before any record
            now_in = thread_topic(row.prompt.tenant, row.thread_id) if thread_topic else None
            topics.append(now_in or row.topic_id)
            records.append(self._record_row(row))
            digests += digest_rows(row.record_id, row.prompt.tenant, row.user, row.turn_keys)
            if row.vault and (sealer := self._vault_sealer()) is not None:
                # originals under their own per-day key, destroyed at the vault's retention
                p = row.prompt
                vid, vdek = self._bucket(p.tenant, row.user, day_of(p.ts), "vault")
                aad = _aad(row.record_id, "vault")
                inner = sealer.seal(json.dumps(list(row.vault)).encode(), aad)
                vault.append((row.record_id, vid, vdek.seal(inner, aad)))
        self._db.executemany(
            "INSERT INTO records (id, tenant, request_id, user, bucket_id, ts, session_key, "
            "thread_id, parent_id, position, intent, similarity, score, topic_id, model, "
            "input_tokens, output_tokens, latency_ms, status, synthetic, stream_index, model_id, "
            "truncated, text_ct, vector_ct, evidence, trace_id, span_id, entities_ct, cost, "
            "cost_source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            records)
        self._db.executemany(
            "INSERT OR REPLACE INTO turn_digests (record_id, kind, tenant, user, digest) "
            "VALUES (?,?,?,?,?)", digests)
        if vault:
            self._db.executemany("INSERT INTO vault (record_id, bucket_id, ct) VALUES (?, ?, ?)",
                                 vault)
        models = self._thread_models({r.thread_id for r in rows})
        for row, topic in zip(rows, topics, strict=True):
            self._upsert_thread(row, topic, models)

    def _record_row(self, r: NewRecord) -> tuple[Any, ...]:
        """The records row of `r`: text, vector and entity keys sealed under its bucket's DEK."""
        p = r.prompt
        bid, dek = self._bucket(p.tenant, r.user, day_of(p.ts))
        resp = p.response
        text_ct = dek.seal(r.text.encode("utf-8"), _aad(r.record_id, "text"))
        vec_ct = dek.seal(np.asarray(r.vector, dtype=VECTOR_DTYPE).tobytes(),
                          _aad(r.record_id, "vector"))
        link = r.link
        ents_ct = dek.seal(json.dumps(list(r.entity_keys)).encode(),
                           _aad(r.record_id, "entities")) if r.entity_keys else None
        return (r.record_id, p.tenant, p.request_id, r.user, bid, p.ts.timestamp(),
                r.session_key, r.thread_id, link.parent_id, link.position, link.intent,
                link.similarity, link.score, r.topic_id, p.model,
                resp.input_tokens if resp else None, resp.output_tokens if resp else None,
                resp.latency_ms if resp else None, resp.status if resp else None,
                int(p.synthetic), p.index, r.model_id, int(r.truncated), text_ct, vec_ct,
                json.dumps(link.evidence, sort_keys=True), r.trace_id, r.span_id, ents_ct,
                r.cost, r.cost_source)

    def _thread_models(self, thread_ids: set[str]) -> dict[str, list[str]]:
        """The stored model lists of those of these threads that exist (one query a 500)."""
        ids = sorted(thread_ids)
        out: dict[str, list[str]] = {}
        for k in range(0, len(ids), 500):
            chunk = ids[k:k + 500]
            out.update((tid, json.loads(models)) for tid, models in self._db.execute(
                f"SELECT thread_id, models FROM threads WHERE thread_id IN "
                f"({','.join('?' * len(chunk))})", chunk))
        return out

    def _upsert_thread(self, r: NewRecord, topic: str | None,
                       known: dict[str, list[str]]) -> None:
        """Create or extend the thread's summary row; `known`: the model lists of the threads
        that have one, kept up to date here."""
        p, resp = r.prompt, r.prompt.response
        tin = (resp.input_tokens or 0) if resp else 0
        tout = (resp.output_tokens or 0) if resp else 0
        models = known.get(r.thread_id)
        ts = p.ts.timestamp()
        if models is None:
            known[r.thread_id] = models = [p.model] if p.model else []
            self._db.execute(
                "INSERT INTO threads (thread_id, tenant, user, first_ts, last_ts, turns, "
                "input_tokens, output_tokens, models, topic_id, cost) "
                "VALUES (?,?,?,?,?,1,?,?,?,?,?)",
                (r.thread_id, p.tenant, r.user, ts, ts, tin, tout, json.dumps(models), topic,
                 r.cost))
            return
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
