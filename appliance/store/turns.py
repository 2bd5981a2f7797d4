"""Keyed turn digests: what a request's history or previous response id is matched against.

Per stored prompt the store keeps keyed digests (HMAC under the pseudonym key,
per tenant and user; computed by the pipeline) of its content, its answer's
content and its response id, never the values. Rows go with their record
(ON DELETE CASCADE), so shredding and erasure remove them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from appliance.records import HeldTurn, Response

# (model, input tokens, output tokens) -> the priced cost of a call, or None
Pricer = Callable[[str | None, int | None, int | None], float | None]
# A turn's response id keyed per tenant alone (its row's user is ''): says that some user's
# turn answered with it, never whose; a tool loop's call carrying another user is then
# refused as such (`OtherUsersTurn`) instead of as an unknown id
OWNER = "response_owner"


class OtherUsersTurn(LookupError):
    """A tool loop's call names a response id that another user's turn answered with."""


def digest_rows(record_id: int, tenant: str, user: str,
                keys: Iterable[tuple[str, str]]) -> list[tuple[int, str, str, str, str]]:
    """The turn_digests rows of a record's (kind, keyed digest) pairs."""
    return [(record_id, kind, tenant, "" if kind == OWNER else user, digest)
            for kind, digest in keys]


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
        if row is None:  # a call of a turn's tool loop, attached to the turn before
            return self.update_call(tenant, request_id, response, model, turn_keys, price)
        rid, user, thread, old_in, old_out, old_model, old_cost, old_source = row
        # the turn's record holds its tool loop's calls too: they stay added
        loop_in, loop_out, loop_ms, loop_cost, unpriced = self._db.execute(
            "SELECT sum(input_tokens), sum(output_tokens), sum(latency_ms), sum(cost), "
            "count(*) - count(cost) FROM turn_calls WHERE record_id=?", (rid,)).fetchone()
        new_in = (response.input_tokens + (loop_in or 0) if response.input_tokens is not None
                  else old_in)
        new_out = (response.output_tokens + (loop_out or 0)
                   if response.output_tokens is not None else old_out)
        latency = (response.latency_ms + (loop_ms or 0) if response.latency_ms is not None
                   else None)
        cost, source = old_cost, old_source
        if response.cost is not None and not unpriced:
            cost, source = response.cost + (loop_cost or 0), "reported"
        elif response.cost is not None or old_source != "reported":
            cost = price(model or old_model, new_in, new_out)
            source = "priced" if cost is not None else None
        with self._db:
            self._db.execute(
                "UPDATE records SET input_tokens=?, output_tokens=?, "
                "latency_ms=coalesce(?, latency_ms), status=coalesce(?, status), "
                "model=coalesce(?, model), cost=?, cost_source=? WHERE id=?",
                (new_in, new_out, latency, response.status, model, cost, source, rid))
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
                "VALUES (?,?,?,?,?)", digest_rows(rid, tenant, user, turn_keys(user)))
        return True

    def attach_call(self, tenant: str, request_id: str, user: str, response_key: str,
                    response: Response, model: str | None,
                    turn_keys: Callable[[str], list[tuple[str, str]]],
                    price: Pricer = lambda model, tin, tout: None, *,
                    owner_key: str | None = None) -> tuple[str, str] | None:
        """Make the call `request_id` (a tool loop's, without user text) part of the user's
        turn that answered with the response whose keyed id is `response_key`, and add its
        `response` to the turn; (the turn's request id, its thread id), or None when no
        such turn is held. Idempotent: a call attached before keeps its turn.

        Raises OtherUsersTurn when no turn of the user but another user's answered with
        it (`owner_key`: the response id keyed per tenant): never added to that turn."""
        found = self._db.execute(
            "SELECT r.request_id, r.thread_id FROM turn_calls c JOIN records r "
            "ON r.id = c.record_id WHERE c.tenant=? AND c.request_id=?",
            (tenant, request_id)).fetchone()
        if found is None:
            turn = self._db.execute(
                "SELECT r.id, r.request_id, r.thread_id FROM turn_digests d JOIN records r "
                "ON r.id = d.record_id WHERE d.tenant=? AND d.user=? AND d.digest=? "
                "AND d.kind='response_id' ORDER BY r.ts DESC LIMIT 1",
                (tenant, user, response_key)).fetchone()
            if turn is None:
                if owner_key is not None and self._db.execute(
                        "SELECT 1 FROM turn_digests WHERE tenant=? AND user='' AND digest=? "
                        "AND kind=?", (tenant, owner_key, OWNER)).fetchone() is not None:
                    raise OtherUsersTurn("another user's turn answered with this response id")
                return None
            with self._db:
                self._db.execute("INSERT INTO turn_calls (tenant, request_id, record_id) "
                                 "VALUES (?,?,?)", (tenant, request_id, turn[0]))
            found = turn[1:]
        if response != Response() or model is not None:
            self.update_call(tenant, request_id, response, model, turn_keys, price)
        return str(found[0]), str(found[1])

    def update_call(self, tenant: str, request_id: str, response: Response,
                    model: str | None, turn_keys: Callable[[str], list[tuple[str, str]]],
                    price: Pricer = lambda model, tin, tout: None) -> bool:
        """Set what an attached tool loop call cost (its own figures, so a retry changes
        nothing) and move its turn's totals by the difference; its answer's digest and
        response id are added to the turn's (the turn's earlier ones stay), so the loop's
        next call and the user's next message continue the turn, whichever of its
        response ids they name. False if the call is not attached."""
        call = self._db.execute(
            "SELECT c.record_id, c.input_tokens, c.output_tokens, c.latency_ms, c.cost, "
            "r.user, r.thread_id, r.input_tokens, r.output_tokens, r.latency_ms, r.model, "
            "r.cost, r.cost_source FROM turn_calls c JOIN records r ON r.id = c.record_id "
            "WHERE c.tenant=? AND c.request_id=?", (tenant, request_id)).fetchone()
        if call is None:
            return False
        (rid, c_in, c_out, c_ms, c_cost, user, thread, r_in, r_out, r_ms, r_model, r_cost,
         r_source) = call

        def moved(total: Any, old: Any, new: Any) -> Any:
            return total if new is None else (total or 0) - (old or 0) + new

        n_in, n_out = moved(r_in, c_in, response.input_tokens), moved(
            r_out, c_out, response.output_tokens)
        source: str | None = "reported"
        if r_source == "reported" and response.cost is not None:
            cost = moved(r_cost, c_cost, response.cost)
        else:  # a call without a reported cost: the turn's summed tokens are priced
            cost = price(model or r_model, n_in, n_out)
            source = "priced" if cost is not None else None
        with self._db:
            self._db.execute(
                "UPDATE turn_calls SET input_tokens=coalesce(?, input_tokens), "
                "output_tokens=coalesce(?, output_tokens), latency_ms=coalesce(?, latency_ms), "
                "cost=? WHERE tenant=? AND request_id=?",
                (response.input_tokens, response.output_tokens, response.latency_ms,
                 response.cost, tenant, request_id))
            self._db.execute(
                "UPDATE records SET input_tokens=?, output_tokens=?, latency_ms=?, "
                "status=coalesce(?, status), cost=?, cost_source=? WHERE id=?",
                (n_in, n_out, moved(r_ms, c_ms, response.latency_ms), response.status, cost,
                 source, rid))
            self._db.execute(
                "UPDATE threads SET input_tokens=input_tokens+?, output_tokens=output_tokens+?, "
                "cost=(SELECT sum(cost) FROM records WHERE thread_id=?) WHERE thread_id=?",
                ((n_in or 0) - (r_in or 0), (n_out or 0) - (r_out or 0), thread, thread))
            self._db.executemany(
                "INSERT OR REPLACE INTO turn_digests (record_id, kind, tenant, user, digest) "
                "VALUES (?,?,?,?,?)", digest_rows(rid, tenant, user, [
                    (kind, d) for kind, d in turn_keys(user) if kind != "prompt"]))
        return True

    def awaiting_update(self, tenant: str, user: str, since: float) -> bool:
        """Whether a turn of the user registered since `since` (a timestamp), or a call of
        its tool loop attached before it ran, has had no update yet (its answer's response
        id is not known)."""
        return self._db.execute(
            "SELECT 1 FROM records r WHERE r.tenant=? AND r.user=? AND r.ts>=? AND "
            "(r.status IS NULL OR EXISTS (SELECT 1 FROM turn_calls c WHERE c.record_id=r.id "
            "AND c.latency_ms IS NULL AND c.input_tokens IS NULL)) LIMIT 1",
            (tenant, user, since)).fetchone() is not None

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
