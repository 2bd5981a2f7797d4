"""Keyed turn digests: what a request's history or previous response id is matched against.

Per stored prompt the store keeps keyed digests (HMAC under the pseudonym key,
per tenant and user; computed by the pipeline) of its content, its answer's
content and its response id, never the values. Rows go with their record
(ON DELETE CASCADE), so shredding and erasure remove them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from appliance.records import HeldTurn, Response

# (model, input tokens, output tokens) -> the priced cost of a call, or None
Pricer = Callable[[str | None, int | None, int | None], float | None]


class Turns:
    """History lookups and answer updates over the connection `Store` sets up."""

    _db: Any

    def update_response(self, tenant: str, request_id: str, response: Response,
                        model: str | None,
                        turn_keys: Callable[[str], list[tuple[str, str]]],
                        price: Pricer = lambda model, tin, tout: None) -> bool:
        """Set what the gateway learned after the answer; False if the request is unknown.

        Idempotent: fields are set (not added), so the thread's token totals move by
        the difference to what the record held. A reported cost replaces any other;
        otherwise a priced cost is priced again from the record's tokens and model.
        """
        row = self._db.execute(
            "SELECT id, user, thread_id, input_tokens, output_tokens, model, cost, cost_source "
            "FROM records WHERE tenant=? AND request_id=?", (tenant, request_id)).fetchone()
        if row is None:
            return False
        rid, user, thread, old_in, old_out, old_model, old_cost, old_source = row
        new_in = response.input_tokens if response.input_tokens is not None else old_in
        new_out = response.output_tokens if response.output_tokens is not None else old_out
        cost, source = old_cost, old_source
        if response.cost is not None:
            cost, source = response.cost, "reported"
        elif old_source != "reported":
            cost = price(model or old_model, new_in, new_out)
            source = "priced" if cost is not None else None
        with self._db:
            self._db.execute(
                "UPDATE records SET input_tokens=?, output_tokens=?, "
                "latency_ms=coalesce(?, latency_ms), status=coalesce(?, status), "
                "model=coalesce(?, model), cost=?, cost_source=? WHERE id=?",
                (new_in, new_out, response.latency_ms, response.status, model, cost, source,
                 rid))
            self._db.execute(
                "UPDATE threads SET input_tokens=input_tokens+?, output_tokens=output_tokens+?, "
                "cost=(SELECT sum(cost) FROM records WHERE thread_id=?) WHERE thread_id=?",
                ((new_in or 0) - (old_in or 0), (new_out or 0) - (old_out or 0), thread, thread))
            if model and model != old_model:
                models = json.loads(self._db.execute(
                    "SELECT models FROM threads WHERE thread_id=?", (thread,)).fetchone()[0])
                if model not in models:
                    self._db.execute("UPDATE threads SET models=? WHERE thread_id=?",
                                     (json.dumps([*models, model]), thread))
            self._db.executemany(
                "INSERT OR REPLACE INTO turn_digests (record_id, kind, tenant, user, digest) "
                "VALUES (?,?,?,?,?)", [(rid, kind, tenant, user, d)
                                       for kind, d in turn_keys(user)])
        return True

    def held_turns(self, tenant: str, user: str, digests: list[str]) -> list[HeldTurn]:
        """The user's records whose prompt, answer or response id has one of these keyed
        digests (history lookup), oldest first."""
        out: list[HeldTurn] = []
        for start in range(0, len(digests), 500):
            chunk = digests[start:start + 500]
            rows = self._db.execute(
                "SELECT r.id, r.request_id, r.thread_id, r.ts, r.parent_id, d.kind, d.digest "
                "FROM turn_digests d JOIN records r ON r.id = d.record_id "
                f"WHERE d.tenant=? AND d.user=? AND d.digest IN ({','.join('?' * len(chunk))})",
                (tenant, user, *chunk)).fetchall()
            out.extend(HeldTurn(record_id=rid, request_id=req, thread_id=thread,
                                ts=datetime.fromtimestamp(ts, UTC), parent_id=parent, kind=kind,
                                digest=digest)
                       for rid, req, thread, ts, parent, kind, digest in rows)
        return sorted(out, key=lambda h: (h.ts, h.record_id))

    def request_id_of(self, record_id: int) -> str | None:
        """The request id of a stored record."""
        row = self._db.execute("SELECT request_id FROM records WHERE id=?",
                               (record_id,)).fetchone()
        return str(row[0]) if row else None
