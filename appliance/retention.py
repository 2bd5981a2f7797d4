"""Retention: policy -> buckets to shred (pure), the executor, and the scheduled job.

A bucket is one (tenant, user pseudonym, UTC day). It is due for a data class
when the whole day is older than that class's retention. Legal holds suspend
shredding for a user or a whole tenant.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from appliance import releases
from appliance.audit import AuditLog
from appliance.config import LegalHold, RetentionClass, RetentionSettings
from appliance.index import VectorIndex
from appliance.keys import Keyring
from appliance.store import Store
from appliance.topics.tables import purge_orphans

log = logging.getLogger("semtrace.retention")


@dataclass(frozen=True)
class Bucket:
    """A bucket as the planner sees it."""

    bucket_id: int
    tenant: str
    user: str
    day: str
    has_vault: bool = False  # a prompts bucket holding vault entries from before m007
    kind: str = "prompts"  # "prompts" or "vault" (originals under their own key)


@dataclass(frozen=True)
class Due:
    """One bucket to shred for one data class."""

    bucket: Bucket
    # "prompts" (the bucket's key destroyed: text, vectors, entity digests; or, for a
    # vault bucket, the originals) or "vault" (legacy: vault rows under a prompts key
    # deleted)
    data_class: str

    @property
    def data(self) -> str:
        """The class of data it holds, as the reports name it: "prompts" (the records, their
        vectors and entity digests) or "vault" (originals kept for reveal)."""
        return self.bucket.kind if self.data_class == "prompts" else "vault"

    def as_json(self) -> dict[str, Any]:
        b = self.bucket
        return {"bucket": b.bucket_id, "tenant": b.tenant, "user": b.user, "day": b.day,
                "class": self.data}


@dataclass
class RunReport:
    """What a retention run did."""

    as_of: datetime
    shredded: int = 0
    records: int = 0
    vault_cleared: int = 0
    finished_interrupted: int = 0
    held: list[tuple[str, str, str]] = field(default_factory=list)
    # the same buckets with the class of data each holds (a day's prompts and its vault
    # originals are two buckets of one (tenant, user, day))
    held_buckets: list[dict[str, Any]] = field(default_factory=list)
    topics_expired: int = 0
    releases_expired: int = 0
    buckets_anonymised: int = 0
    buckets_forgotten: int = 0
    idle_holds: list[IdleHold] = field(default_factory=list)


def rules_for(settings: RetentionSettings, tenant: str) -> RetentionClass:
    return settings.tenants.get(tenant, settings.default)


def held_user(hold: LegalHold, keyring: Keyring) -> str | None:
    """The pseudonym of the user a hold keeps (named by user id or by pseudonym), None
    for a hold on the whole tenant."""
    if hold.pseudonym is not None:
        return hold.pseudonym
    return keyring.pseudonym(hold.tenant, hold.user_id) if hold.user_id else None


def held_pairs(settings: RetentionSettings, keyring: Keyring) -> set[tuple[str, str | None]]:
    """Legal holds as (tenant, user pseudonym or None for the whole tenant)."""
    return {(h.tenant, held_user(h, keyring)) for h in settings.legal_holds}


@dataclass(frozen=True)
class IdleHold:
    """A legal hold that names no stored data (position in `legal_holds`, from 0; `hold`
    numbers it from 1, as the warnings, the service's log and `doctor` do)."""

    index: int
    tenant: str
    user: str | None  # the held user's pseudonym, None for a whole tenant
    reason: str
    hold: int = field(init=False)  # in --json beside `index`: 'legal hold 2' is index 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "hold", self.index + 1)


def idle_holds(store: Store, settings: RetentionSettings, keyring: Keyring, *,
               tenant: str | None = None) -> list[IdleHold]:
    """Legal holds that match no live bucket. A tenant or user id written otherwise than
    the gateway sends it (they are case-sensitive) holds nothing, and retention then
    shreds what the hold was meant to keep; the officer is told at every run."""
    idle = []
    for i, h in enumerate(settings.legal_holds):
        if tenant is not None and h.tenant != tenant:
            continue
        user = held_user(h, keyring)
        sql = "SELECT 1 FROM buckets WHERE tenant=? AND destroyed_at IS NULL"
        params = [h.tenant] + ([user] if user else [])
        if store.db.execute(sql + (" AND user=?" if user else "") + " LIMIT 1",
                            params).fetchone() is None:
            idle.append(IdleHold(i, h.tenant, user, h.stated_reason))
    return idle


def is_held(b: Bucket, holds: set[tuple[str, str | None]]) -> bool:
    return (b.tenant, None) in holds or (b.tenant, b.user) in holds


def _expired(day: str, days: float, now: datetime) -> bool:
    end_of_day = datetime.combine(date.fromisoformat(day), datetime.min.time(), UTC) \
        + timedelta(days=1)
    return end_of_day + timedelta(days=days) <= now


def plan(buckets: list[Bucket], settings: RetentionSettings, now: datetime,
         holds: set[tuple[str, str | None]]) -> tuple[list[Due], list[Due]]:
    """Decide what is due (pure). Returns (due, held back by a legal hold)."""
    due: list[Due] = []
    held: list[Due] = []
    for b in buckets:
        rules = rules_for(settings, b.tenant)
        if b.kind == "vault":  # never kept longer than the prompts they came from
            prompts_due = _expired(b.day, min(rules.vault_days, rules.prompts_days), now)
            vault_due = False
        else:
            prompts_due = _expired(b.day, rules.prompts_days, now)
            vault_due = b.has_vault and _expired(b.day, rules.vault_days, now)
        if not (prompts_due or vault_due):
            continue
        (held if is_held(b, holds) else due).append(Due(b, "prompts" if prompts_due
                                                        else "vault"))
    return due, held


def live_buckets(store: Store, *, tenant: str | None = None, user: str | None = None
                 ) -> list[Bucket]:
    """Buckets whose key still exists, with whether they hold vault entries."""
    sql = ("SELECT b.id, b.tenant, b.user, b.day, EXISTS(SELECT 1 FROM vault v "
           "WHERE v.bucket_id = b.id), b.kind FROM buckets b WHERE b.destroyed_at IS NULL")
    params: list[Any] = []
    if tenant:
        sql += " AND b.tenant = ?"
        params.append(tenant)
    if user:
        sql += " AND b.user = ?"
        params.append(user)
    return [Bucket(r[0], r[1], r[2], r[3], bool(r[4]) and r[5] == "prompts", r[5])
            for r in store.db.execute(sql, params) if store.key_exists(r[0])]


class Shredder:
    """Executes shredding against the store, the in-memory index and the audit log."""

    def __init__(self, store: Store, audit: AuditLog, index: VectorIndex | None = None,
                 on_user_shredded: Callable[[str, str], None] | None = None) -> None:
        self.store, self.audit, self.index = store, audit, index
        self.on_user_shredded = on_user_shredded

    def finish_interrupted(self) -> int:
        """Delete rows left behind by a shred that was killed after destroying its key."""
        done = 0
        for bid in self.store.unfinished_buckets():
            row = self.store.db.execute("SELECT tenant FROM buckets WHERE id=?", (bid,)).fetchone()
            ids = self.store.shredded_record_ids(bid)
            self.store.delete_bucket_rows(bid)
            self.store.db.execute("UPDATE buckets SET destroyed_at=coalesce(destroyed_at, "
                                  "strftime('%s','now')) WHERE id=?", (bid,))
            if self.index is not None and row:
                self.index.remove(row[0], ids)
            done += 1
        return done

    def shred_prompts(self, buckets: list[Bucket], *, reason: str,
                      chunk: int = 500) -> int:
        """Crypto-shred many buckets in chunks; returns the prompt records removed."""
        return self.shred_buckets(buckets, reason=reason, chunk=chunk)[0]

    def shred_buckets(self, buckets: list[Bucket], *, reason: str,
                      chunk: int = 500) -> tuple[int, int]:
        """Crypto-shred many buckets (prompts or vault keys) in chunks, one key-store and
        one data transaction each. Returns (prompt records, vault entries) removed.

        Audit entries name the bucket, tenant, class and counts; the user pseudonym
        and the day stay out of them (an erasure's own entry names the user), so the
        log keeps no per-user calendar of shredded days.
        """
        records = vault = 0
        for start in range(0, len(buckets), chunk):
            part = buckets[start:start + chunk]
            removed = self.store.shred_many([b.bucket_id for b in part], reason=reason)
            entries = []
            for b in part:
                ids = removed.get(b.bucket_id, ())
                if self.index is not None and b.kind == "prompts":
                    self.index.remove(b.tenant, list(ids))
                if self.on_user_shredded is not None:
                    self.on_user_shredded(b.tenant, b.user)
                detail: dict[str, Any] = {"bucket": b.bucket_id, "tenant": b.tenant,
                                          "class": b.kind, "reason": reason}
                if reason != "erasure":
                    detail["day"] = b.day
                if b.kind == "vault":
                    detail["entries"] = len(ids)
                    vault += len(ids)
                else:
                    detail["records"] = len(ids)
                    records += len(ids)
                entries.append(("shred", detail))
            for tenant in sorted({b.tenant for b in part}):
                purge_orphans(self.store.db, tenant)
            self.audit.append_many(entries)
        return records, vault

    def clear_legacy_vault(self, b: Bucket, *, reason: str) -> int:
        """Delete vault rows kept under a prompts key (stores from before vault keys)."""
        n = self.store.delete_vault(b.bucket_id)
        self.audit.append("shred", {"bucket": b.bucket_id, "tenant": b.tenant, "day": b.day,
                                    "class": "vault", "entries": n, "reason": reason},
                          sign=False)
        return n


def expire_topics(store: Store, settings: RetentionSettings, now: datetime) -> int:
    """Enforce `aggregates_days`: topics with no thread active within it lose their words.

    Their labels, label phrases and counts are removed (`topics.tables.purge_orphans`);
    the running service stops counting such threads at its next refinement.
    """
    tenants = [r[0] for r in store.db.execute("SELECT DISTINCT tenant FROM topics")] \
        if store.db.execute("SELECT 1 FROM sqlite_master WHERE name='topics'").fetchone() else []
    stripped = 0
    for tenant in tenants:
        days = rules_for(settings, tenant).aggregates_days
        stripped += purge_orphans(store.db, tenant,
                                  active_since=(now - timedelta(days=days)).timestamp())
    return stripped


def expire_releases(store: Store, settings: RetentionSettings, now: datetime) -> int:
    """Daily DP releases (noisy, k-suppressed figures per topic or model; no words, no
    user) are kept `releases.TREND_DAYS` days for the topics screen's trend, never longer
    than the tenant's `aggregates_days`; how many were deleted."""
    db = store.db
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name='dp_releases'").fetchone():
        return 0
    oldest_day = releases.days_before(now.astimezone(UTC).date().isoformat(),
                                      releases.TREND_DAYS - 1)
    gone = 0
    for (tenant,) in db.execute("SELECT DISTINCT tenant FROM dp_releases").fetchall():
        days = rules_for(settings, tenant).aggregates_days
        gone += releases.delete_before(db, tenant, oldest_day)
        gone += db.execute("DELETE FROM dp_releases WHERE tenant=? AND created_at<?",
                           (tenant, (now - timedelta(days=days)).timestamp())).rowcount
    return gone


# Shredded buckets keep their user and day this long (other processes learn of the
# shred from them and drop that user's cached history), then neither.
ANONYMISE_AFTER = timedelta(days=1)


def forget_shredded(store: Store, settings: RetentionSettings, now: datetime) -> tuple[int, int]:
    """Enforce `aggregates_days` on the rows naming shredded buckets (see Store)."""
    anon = gone = 0
    for (tenant,) in store.db.execute("SELECT DISTINCT tenant FROM buckets WHERE "
                                      "destroyed_at IS NOT NULL").fetchall():
        days = rules_for(settings, tenant).aggregates_days
        a, g = store.forget_shredded(tenant,
                                     anonymise_before=(now - ANONYMISE_AFTER).timestamp(),
                                     delete_before=(now - timedelta(days=days)).timestamp())
        anon, gone = anon + a, gone + g
    return anon, gone


def run_retention(shredder: Shredder, settings: RetentionSettings, keyring: Keyring, *,
                  now: datetime | None = None,
                  progress: Callable[[int, int], None] | None = None) -> RunReport:
    """The scheduled job: finish interrupted shreds, then shred what is due."""
    steps = retention_steps(shredder, settings, keyring, now=now)
    while True:
        try:
            done, due = next(steps)
        except StopIteration as finished:
            report: RunReport = finished.value
            return report
        if progress:
            progress(done, due)


def utc_now() -> datetime:
    """The host's clock, as retention reads it when no date is given."""
    return datetime.now(UTC)


def retention_steps(shredder: Shredder, settings: RetentionSettings, keyring: Keyring, *,
                    now: datetime | None = None, chunk: int = 500
                    ) -> Generator[tuple[int, int], None, RunReport]:
    """`run_retention` one chunk of buckets at a time: yields (buckets shredded, buckets
    due) after each chunk's commit, returns the RunReport. The service advances it one
    step per worker job, so prompts are committed between chunks of a long catch-up
    instead of after all of it; each step must run on the store's thread."""
    now = now or utc_now()
    report = RunReport(as_of=now)
    report.finished_interrupted = shredder.finish_interrupted()
    report.idle_holds = idle_holds(shredder.store, settings, keyring)
    due, held = plan(live_buckets(shredder.store), settings, now, held_pairs(settings, keyring))
    keys = [d.bucket for d in due if d.data_class == "prompts"]
    yield 0, len(due)
    for start in range(0, len(keys), chunk):
        records, entries = shredder.shred_buckets(keys[start:start + chunk], reason="retention")
        report.records += records
        report.vault_cleared += entries
        report.shredded += len(keys[start:start + chunk])
        yield report.shredded, len(due)
    for d in due:
        if d.data_class == "vault":
            report.vault_cleared += shredder.clear_legacy_vault(d.bucket, reason="retention")
    for h in held:
        report.held.append((h.bucket.tenant, h.bucket.user, h.bucket.day))
        report.held_buckets.append(h.as_json())
    report.topics_expired = expire_topics(shredder.store, settings, now)
    report.releases_expired = expire_releases(shredder.store, settings, now)
    report.buckets_anonymised, report.buckets_forgotten = forget_shredded(
        shredder.store, settings, now)
    if due or report.finished_interrupted:
        shredder.store.compact()
    shredder.audit.append("retention_run", {
        "as_of": now.isoformat(), "buckets_shredded": report.shredded,
        "records": report.records, "vault_entries": report.vault_cleared,
        "finished_interrupted": report.finished_interrupted, "held_buckets": len(held),
        "topics_expired": report.topics_expired,
        "releases_expired": report.releases_expired,
        "shredded_buckets_anonymised": report.buckets_anonymised,
        "shredded_buckets_forgotten": report.buckets_forgotten,
        "legal_holds_matching_nothing": len(report.idle_holds)})
    log.info("retention run", extra={"event": "retention_run", "buckets": report.shredded,
                                     "records": report.records})
    return report
