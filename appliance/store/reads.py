"""Reading records back: decrypted text and vectors, link candidates, revealed originals.

What the query side, the linker's candidate history and the index rebuild read
from `Store`; a record whose bucket key is destroyed reads as None (or is skipped).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from appliance.keys import RevealOpener
from appliance.link.calibrate import Tally
from appliance.pricing import as_read
from appliance.records import Candidate, Record
from appliance.store.maintenance import _aad


class Reads:
    """Record reads over the connection and decryption `Store` sets up."""

    _db: Any

    if TYPE_CHECKING:  # provided by Store
        def _decrypt(self, record_id: int, bucket_id: int, blob: bytes | None,
                     what: str) -> bytes | None: ...

        def text(self, record_id: int, bucket_id: int, blob: bytes | None) -> str | None: ...

        def vector(self, record_id: int, bucket_id: int, blob: bytes | None
                   ) -> np.ndarray | None: ...

    def reveal(self, record_id: int, opener: RevealOpener) -> list[tuple[str, str]] | None:
        """The original values behind a record's placeholders; None if none are held."""
        row = self._db.execute("SELECT bucket_id, ct FROM vault WHERE record_id=?",
                               (record_id,)).fetchone()
        if row is None:
            return None
        inner = self._decrypt(record_id, row[0], row[1], "vault")
        if inner is None:
            return None
        pairs = json.loads(opener.open(inner, _aad(record_id, "vault")))
        return [(str(a), str(b)) for a, b in pairs]

    def vault_shred(self, record_id: int) -> tuple[bool, float | None]:
        """Whether a record's originals were ever kept, as far as the buckets tell, and
        when their vault bucket was shredded: (True, None) held now or once, (True, ts)
        shredded then, (False, None) never kept (its day's vault bucket holds none of it,
        or it has none and its tenant has no shredded vault bucket whose user and day are
        already forgotten)."""
        row = self._db.execute(
            "SELECT b.id, b.destroyed_at, v.record_id IS NOT NULL FROM records r "
            "JOIN buckets p ON p.id = r.bucket_id LEFT JOIN buckets b ON b.tenant = r.tenant "
            "AND b.user = r.user AND b.day = p.day AND b.kind = 'vault' "
            "LEFT JOIN vault v ON v.record_id = r.id WHERE r.id = ?", (record_id,)).fetchone()
        if row is None or row[2]:
            return True, None
        if row[0] is not None:  # its day's vault bucket: shredded, or live without it
            return (True, float(row[1])) if row[1] is not None else (False, None)
        forgotten = self._db.execute(
            "SELECT 1 FROM buckets WHERE kind = 'vault' AND destroyed_at IS NOT NULL AND "
            "(user IS NULL OR day IS NULL) AND tenant = (SELECT tenant FROM records WHERE "
            "id = ?) LIMIT 1", (record_id,)).fetchone()
        return forgotten is not None, None

    def record_tenant(self, record_id: int) -> str | None:
        """The tenant a record belongs to (None: no such record, or shredded)."""
        row = self._db.execute("SELECT tenant FROM records WHERE id=?", (record_id,)).fetchone()
        return None if row is None else str(row[0])

    def record_user(self, record_id: int) -> str | None:
        """The pseudonym of the user who wrote a record (None: no such record)."""
        row = self._db.execute("SELECT user FROM records WHERE id=?", (record_id,)).fetchone()
        return None if row is None else str(row[0])

    def link_tallies(self) -> dict[str, Tally]:
        """Every tenant's link-threshold tally (appliance/link/calibrate.py)."""
        return {tenant: Tally(tuple(json.loads(a)), tuple(json.loads(n)))
                for tenant, a, n in self._db.execute(
                    "SELECT tenant, attach, new FROM link_tallies ORDER BY tenant")}

    def counts(self) -> dict[str, int]:
        """Row counts for stats."""
        q = self._db.execute
        return {"records": int(q("SELECT count(*) FROM records").fetchone()[0]),
                "threads": int(q("SELECT count(*) FROM threads").fetchone()[0]),
                "buckets": int(q("SELECT count(*) FROM buckets").fetchone()[0])}

    def has_request_prefix(self, prefix: str) -> bool:
        """Whether any record's request id starts with `prefix` (any tenant)."""
        row = self._db.execute("SELECT 1 FROM records WHERE substr(request_id, 1, ?) = ? "
                               "LIMIT 1", (len(prefix), prefix)).fetchone()
        return row is not None

    def request_exists(self, tenant: str, request_id: str) -> int | None:
        """Record id of an already stored request, for idempotent ingest."""
        row = self._db.execute("SELECT id FROM records WHERE tenant=? AND request_id=?",
                               (tenant, request_id)).fetchone()
        return int(row[0]) if row else None

    def candidates(self, tenant: str, user: str, since: float, *,
                   model_id: str) -> list[Candidate]:
        """The user's prompts since `since` (epoch s) with vectors of `model_id`, oldest first."""
        rows = self._db.execute(
            "SELECT id, request_id, thread_id, ts, bucket_id, vector_ct, text_ct, session_key, "
            "parent_id, position, entities_ct FROM records "
            "WHERE tenant=? AND user=? AND ts>=? AND model_id=? ORDER BY ts, id",
            (tenant, user, since, model_id)).fetchall()
        out = []
        for rid, req, thread, ts, bid, vct, tct, skey, parent, pos, ect in rows:
            vec = self.vector(rid, bid, vct)
            text = self.text(rid, bid, tct)
            if vec is None or text is None:
                continue
            ents = self._decrypt(rid, bid, ect, "entities")
            out.append(Candidate(record_id=rid, request_id=req, thread_id=thread,
                                 ts=datetime.fromtimestamp(ts, UTC), vector=vec, text=text,
                                 session_key=skey, parent_id=parent, position=pos,
                                 entity_keys=tuple(json.loads(ents)) if ents else ()))
        return out

    def iter_vectors(self, *, model_id: str) -> Iterator[tuple[int, str, str, np.ndarray]]:
        """(record id, tenant, user, vector) of every readable record of `model_id`."""
        cur = self._db.execute(
            "SELECT id, tenant, user, bucket_id, vector_ct FROM records WHERE model_id=? "
            "ORDER BY id", (model_id,))
        for rid, tenant, user, bid, vct in cur:
            vec = self.vector(rid, bid, vct)
            if vec is not None:
                yield rid, tenant, user, vec

    def records(self, where: str, params: tuple[Any, ...], *, order: str = "r.ts, r.id",
                limit: int | None = None) -> list[Record]:
        """Records matching a WHERE clause written by this package (never user text)."""
        sql = (
            "SELECT r.id, r.request_id, r.tenant, r.user, r.ts, r.thread_id, r.parent_id, "
            "p.request_id, r.position, r.intent, r.similarity, r.topic_id, r.bucket_id, "
            "r.text_ct, r.model, r.input_tokens, r.output_tokens, r.latency_ms, r.status, "
            "r.synthetic, r.stream_index, r.evidence, r.trace_id, r.span_id, r.feedback, "
            "r.cost, r.cost_source "
            "FROM records r "
            f"LEFT JOIN records p ON p.id = r.parent_id WHERE {where} ORDER BY {order}"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        out = []
        for row in self._db.execute(sql, params):
            (rid, req, tenant, user, ts, thread, parent, parent_req, pos, intent, sim, topic,
             bid, tct, model, tin, tout, lat, status, synth, idx, evidence, trace, span,
             feedback, cost, cost_source) = row
            ev = json.loads(evidence) if evidence else None
            out.append(Record(
                record_id=rid, request_id=req, tenant=tenant, user=user,
                ts=datetime.fromtimestamp(ts, UTC), thread_id=thread, parent_id=parent,
                parent_request_id=parent_req, position=pos, intent=intent, similarity=sim,
                topic_id=topic, text=self.text(rid, bid, tct), model=model, input_tokens=tin,
                output_tokens=tout, latency_ms=lat, status=status, synthetic=bool(synth),
                index=idx, evidence=ev, link_source=(ev or {}).get("link_source"),
                trace_id=trace, span_id=span, feedback=json.loads(feedback) if feedback else None,
                cost=as_read(cost), cost_source=cost_source))
        return out
