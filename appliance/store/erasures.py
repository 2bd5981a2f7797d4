"""Erasure tombstones: which (tenant, user pseudonym) was erased, and until when a prompt
of theirs counts as sent before the erasure.

A prompt on its way when its user was erased (queued in the service, waiting in JetStream
for a node that is down or behind) arrives after the erasure and would bring the person's
data back. The erasure leaves a tombstone (the keyed pseudonym and times, never the raw
id); such a prompt is refused before it is redacted or embedded, and once more inside the
transaction that would write it, so an erasure running in another process cannot slip
between the check and the commit. A prompt sent after the erasure is new data and stored:
an erasure is not a ban.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tombstone:
    """An erasure of one user in one tenant; `completed_at` None while it runs (or if it
    was interrupted: erasing again completes it)."""

    tenant: str
    user: str
    started_at: float
    completed_at: float | None

    def covers(self, ts: float) -> bool:
        """Whether a prompt sent at `ts` (epoch seconds) predates the erasure's end, and so
        must not be stored. While the erasure runs, every prompt of the user is held off."""
        return self.completed_at is None or ts <= self.completed_at


class ErasedMeanwhile(Exception):
    """A batch would write a prompt of a user erased after the batch was checked; the
    transaction is rolled back and the batch is run again (the check then refuses it)."""


class Erasures:
    """Tombstones over the connection `Store` sets up."""

    _db: Any

    def begin_erasure(self, tenant: str, user: str, started_at: float) -> None:
        """Mark the user as being erased (committed before anything is shredded)."""
        self._db.execute(
            "INSERT INTO erasures (tenant, user, started_at, completed_at) VALUES (?,?,?,NULL) "
            "ON CONFLICT (tenant, user) DO UPDATE SET started_at = excluded.started_at, "
            "completed_at = NULL", (tenant, user, started_at))

    def complete_erasure(self, tenant: str, user: str, completed_at: float) -> None:
        self._db.execute("UPDATE erasures SET completed_at = ? WHERE tenant = ? AND user = ?",
                         (completed_at, tenant, user))

    def tombstone(self, tenant: str, user: str) -> Tombstone | None:
        row = self._db.execute("SELECT started_at, completed_at FROM erasures "
                               "WHERE tenant = ? AND user = ?", (tenant, user)).fetchone()
        return None if row is None else Tombstone(tenant, user, float(row[0]),
                                                  None if row[1] is None else float(row[1]))

    def tombstones(self, tenants: Iterable[str]) -> list[Tombstone]:
        """Every tombstone of these tenants (cluster export)."""
        out = []
        for t in sorted(set(tenants)):
            out += [Tombstone(t, u, float(s), None if c is None else float(c))
                    for u, s, c in self._db.execute(
                        "SELECT user, started_at, completed_at FROM erasures WHERE tenant = ? "
                        "ORDER BY user", (t,))]
        return out

    def keep_tombstones(self, stones: Iterable[Tombstone]) -> None:
        """Add tombstones brought from another node; the later erasure of a user wins."""
        for s in stones:
            old = self.tombstone(s.tenant, s.user)
            if old is None or (old.completed_at is not None and (
                    s.completed_at is None or s.completed_at > old.completed_at)):
                self._db.execute(
                    "INSERT OR REPLACE INTO erasures (tenant, user, started_at, completed_at) "
                    "VALUES (?,?,?,?)", (s.tenant, s.user, s.started_at, s.completed_at))

    def _refuse_erased(self, pairs: Iterable[tuple[str, str, float]]) -> None:
        """Inside the write transaction: raise if any (tenant, user, ts) is covered."""
        for tenant, user, ts in pairs:
            stone = self.tombstone(tenant, user)
            if stone is not None and stone.covers(ts):
                raise ErasedMeanwhile("a user of this batch was erased meanwhile")
