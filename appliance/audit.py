"""Tamper-evident audit log: hash-chained entries, Ed25519-signed checkpoints.

Entries hold ids, pseudonyms and counts, never prompt text or raw user ids.
`verify_chain` recomputes every hash and checks every checkpoint signature and
names the first bad entry. The chain's head (newest seq and hash) is also kept
in the key store (`anchor`), so cutting entries off the end is detected too.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from appliance.constants import AUDIT_EVENTS
from appliance.keys import AuditSigner, verify_signature

GENESIS = "0" * 64
EVENTS = AUDIT_EVENTS


@dataclass(frozen=True)
class Entry:
    """One audit entry."""

    seq: int
    ts: float
    event: str
    actor: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Verification:
    """The result of checking the chain."""

    ok: bool
    entries: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None
    last_signed_seq: int | None = None


def entry_hash(prev_hash: str, seq: int, ts: float, event: str, actor: str,
               details: dict[str, Any]) -> str:
    body = json.dumps([seq, round(ts, 6), event, actor, details], sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(f"{prev_hash}|{body}".encode()).hexdigest()


def current_actor() -> str:
    """Who acts: the OS user (and sudo user), never a prompt's user."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid:{os.getuid()}"
    sudo = os.environ.get("SUDO_USER")
    return f"{user} (sudo by {sudo})" if sudo else user


class AuditLog:
    """Append-only audit table in the store's database."""

    def __init__(self, db: Any, signer: AuditSigner, *, anchor: Any = None) -> None:
        self._db = db
        self._signer = signer
        self._anchor = anchor
        self._db.execute("INSERT OR IGNORE INTO audit_keys (key_id, public_key, created_at) "
                         "VALUES (?, ?, ?)", (signer.key_id(), signer.public_key_b64(),
                                              time.time()))

    def append(self, event: str, details: dict[str, Any] | None = None, *,
               actor: str | None = None, sign: bool = True) -> Entry:
        """Append one entry (its own transaction) and, by default, sign a checkpoint."""
        details = details or {}
        actor = actor or current_actor()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                   ).fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
            ts = time.time()
            h = entry_hash(prev, seq, ts, event, actor, details)
            self._db.execute("INSERT INTO audit (seq, ts, event, actor, details, prev_hash, hash)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (seq, ts, event, actor, json.dumps(details, sort_keys=True), prev, h))
            if sign:
                self._checkpoint(seq, h)
        self._advance_head(seq, h)
        return Entry(seq, ts, event, actor, details, prev, h)

    def append_many(self, items: list[tuple[str, dict[str, Any]]], *,
                    actor: str | None = None) -> int:
        """Append several entries in one transaction; the last one is signed."""
        if not items:
            return 0
        actor = actor or current_actor()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                   ).fetchone()
            seq, prev = (row[0], row[1]) if row else (0, GENESIS)
            for event, details in items:
                seq, ts = seq + 1, time.time()
                h = entry_hash(prev, seq, ts, event, actor, details)
                self._db.execute("INSERT INTO audit (seq, ts, event, actor, details, prev_hash, "
                                 "hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (seq, ts, event, actor, json.dumps(details, sort_keys=True),
                                  prev, h))
                prev = h
            self._checkpoint(seq, prev)
        self._advance_head(seq, prev)
        return len(items)

    def _advance_head(self, seq: int, h: str) -> None:
        """Record the chain's head in the key store (after the entry committed)."""
        if self._anchor is None:
            return
        with self._anchor:
            self._anchor.execute(
                "INSERT INTO audit_head (id, seq, hash, updated_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET seq=excluded.seq, hash=excluded.hash, "
                "updated_at=excluded.updated_at WHERE excluded.seq > audit_head.seq",
                (seq, h, time.time()))

    def _checkpoint(self, seq: int, h: str) -> None:
        sig = self._signer.sign(f"semtrace-audit|{seq}|{h}".encode())
        self._db.execute("INSERT OR REPLACE INTO audit_checkpoints (seq, hash, key_id, signature,"
                         " ts) VALUES (?, ?, ?, ?, ?)",
                         (seq, h, self._signer.key_id(), sig, time.time()))

    def entries(self, *, since_seq: int = 0, limit: int | None = None,
                events: tuple[str, ...] | None = None) -> list[Entry]:
        sql = "SELECT seq, ts, event, actor, details, prev_hash, hash FROM audit WHERE seq > ?"
        params: list[Any] = [since_seq]
        if events:
            sql += f" AND event IN ({','.join('?' * len(events))})"
            params += list(events)
        sql += " ORDER BY seq"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [Entry(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6])
                for r in self._db.execute(sql, params)]

    def public_keys(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key_id, public_key FROM audit_keys"))


def verify_chain(db: Any, anchor: Any = None) -> Verification:
    """Recompute the chain and check signatures; name the first bad entry.

    With `anchor` (the key store's connection), also check that the chain still
    reaches the head recorded there: a cut-off tail is named. A value of the wrong type
    and a database page that fails its check are damage found, never an exception.
    """
    import sqlcipher3

    try:
        # The head first: a writer advances it only after its entry committed, so the
        # entries read next reach it. Entries and checkpoints are then read in one
        # snapshot: another process appending meanwhile is not a cut-off tail or a
        # deleted entry.
        head = anchor.execute("SELECT seq, hash FROM audit_head WHERE id=1").fetchone() \
            if anchor is not None else None
        own = not db.in_transaction
        if own:
            db.execute("BEGIN")
        try:
            return _verify(db, head)
        finally:
            if own:
                db.execute("ROLLBACK")
    except sqlcipher3.DatabaseError as exc:
        if "locked" in str(exc):  # busy, not damaged: the caller's error to report
            raise
        return Verification(False, 0, 0, None, "the audit log cannot be read: the database "
                            "file is damaged or its audit tables were removed")


def _verify(db: Any, head: Any) -> Verification:
    keys = dict(db.execute("SELECT key_id, public_key FROM audit_keys"))
    prev, expected_seq, n = GENESIS, 1, 0
    hashes: dict[int, str] = {}
    for seq, ts, event, actor, details, prev_hash, h in db.execute(
            "SELECT seq, ts, event, actor, details, prev_hash, hash FROM audit ORDER BY seq"):
        n += 1
        if seq != expected_seq:
            return Verification(False, n, 0, expected_seq, f"entry {expected_seq} is missing")
        if prev_hash != prev:
            return Verification(False, n, 0, seq, f"entry {seq} does not follow entry {seq - 1}")
        try:
            parsed = json.loads(details)
            ok = entry_hash(prev, seq, ts, event, actor, parsed) == h
        except (ValueError, TypeError):  # not JSON, or a value of the wrong type
            return Verification(False, n, 0, seq, f"entry {seq} is damaged")
        if not ok:
            return Verification(False, n, 0, seq, f"entry {seq} was altered")
        hashes[seq] = h
        prev, expected_seq = h, seq + 1
    checkpoints = db.execute("SELECT seq, hash, key_id, signature FROM audit_checkpoints "
                             "ORDER BY seq").fetchall()
    last = None
    for seq, h, key_id, sig in checkpoints:
        if seq not in hashes:
            return Verification(False, n, len(checkpoints), seq,
                                f"signed entry {seq} is missing (entries were deleted)")
        if hashes[seq] != h or key_id not in keys or not _signed(keys[key_id], seq, h, sig):
            return Verification(False, n, len(checkpoints), seq,
                                f"the signature over entry {seq} does not verify")
        last = seq
    # A cut-off tail first: cutting entries off the end also leaves the last ones unsigned
    # (a batch signs only its last entry), which is not what happened.
    if head is not None and not (isinstance(head[0], int) and isinstance(head[1], str)):
        return Verification(False, n, len(checkpoints), None,
                            "the chain's head recorded in the key store is damaged")
    if head is not None and head[0] not in hashes:
        return Verification(False, n, len(checkpoints), int(head[0]),
                            f"the log {_ends(hashes)} but had reached entry {head[0]} "
                            "(its tail was cut off)")
    if head is not None and hashes[head[0]] != head[1]:
        return Verification(False, n, len(checkpoints), int(head[0]),
                            f"entry {head[0]} is not the one the key store recorded")
    if n and last is None:
        return Verification(False, n, 0, 1, "no entry is signed (the signed checkpoints "
                            "were deleted)")
    if n and last != max(hashes):
        return Verification(False, n, len(checkpoints), max(hashes),
                            f"entries after {last} are not signed")
    return Verification(True, n, len(checkpoints), last_signed_seq=last)


def _ends(hashes: dict[int, str]) -> str:
    return f"ends at entry {max(hashes)}" if hashes else "is empty"


def _signed(public_key: str, seq: int, h: str, sig: Any) -> bool:
    """Whether `sig` is the checkpoint signature over (seq, hash); a damaged one is not."""
    try:
        return bool(verify_signature(public_key, f"semtrace-audit|{seq}|{h}".encode(), sig))
    except (ValueError, TypeError):
        return False
