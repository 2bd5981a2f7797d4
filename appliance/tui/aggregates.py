"""The topics and model screens' figures: today's differentially private releases.

Nothing here shows an exact cross-user count. The screens read the release that
`semtrace stats topics|models` makes for the default window (the 7 UTC days
ending tonight, filed under the same cache key), so reading spends no budget and
the CLI and the TUI show the same figures. When a tenant has no release yet
today, the screen offers to make it (`n`, confirmed): that spends
the kind's epsilon (`release_epsilon`) once, on a short-lived connection of its own, exactly as
the CLI command would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from appliance import analytics
from appliance.analytics import GroupStats
from appliance.config import Policies
from appliance.privacy import Ledger, PrivacyGate, Release
from appliance.query import topic_aliases
from appliance.reads import reads_threads
from appliance.releases import ReleaseCache
from appliance.roles import require
from appliance.runtime import open_runtime
from appliance.store import Store
from appliance.trend import with_trends
from appliance.tui.data import StoreReader

KINDS = ("topics", "models")


@dataclass(frozen=True)
class Released:
    """One tenant's released rows (empty with `released_at` None: no release today)."""

    tenant: str
    rows: tuple[GroupStats, ...]
    released_at: datetime | None
    # topics: the tenant's are per user (cross_user_topics off): one person each, withheld
    per_user_topics: bool = False
    # models on a topic: ids merged into it since its release, with no release of their
    # own that day (their threads are in no figure: floors), as `stats models --topic`
    uncounted: tuple[str, ...] = ()
    # without a release today: the epsilon today's budget has left (None: released)
    budget_left: float | None = None
    # the window holds no thread of the tenant, told only to a role that may list its
    # threads (which say it exactly): nothing to show, and `n` makes no release of it,
    # as `semtrace stats` spends nothing on it (`reads.run_stats`, docs/topics.md)
    empty: bool = False


@dataclass(frozen=True)
class AggregateView:
    """Every tenant in scope's release of one kind for the default window."""

    kind: str
    start: datetime
    end: datetime
    tenants: tuple[Released, ...]
    currency: str
    k_min_users: int
    topic: str | None = None  # models compared on this topic only (its live id)
    # topics: ids the release counted that a refinement merged into another topic since ->
    # the live id (their figures are summed into the live topic's row)
    aliases: tuple[tuple[str, str], ...] = ()
    epsilon: float = 0.0  # what a release of `kind` spends

    @property
    def last_day(self) -> datetime:
        """The last UTC day of the window (`end` is the midnight after it)."""
        return self.end - timedelta(days=1)

    def _unpaid(self, t: Released) -> bool:
        return t.budget_left is not None and t.budget_left + 1e-9 < self.epsilon

    @property
    def missing(self) -> tuple[str, ...]:
        """Tenants without a release today that today's budget can still pay for (`n`);
        not one whose window holds no thread (`empty`): there is nothing to release."""
        return tuple(t.tenant for t in self.tenants
                     if t.released_at is None and not t.empty and not self._unpaid(t))

    @property
    def spent(self) -> tuple[str, ...]:
        """Tenants without a release today whose budget for today cannot pay for one."""
        return tuple(t.tenant for t in self.tenants
                     if t.released_at is None and not t.empty and self._unpaid(t))

    @property
    def empty(self) -> tuple[str, ...]:
        """Tenants whose window holds no thread (said only to a role that may list their
        threads: `Released.empty`)."""
        return tuple(t.tenant for t in self.tenants if t.empty)

    def empty_note(self) -> str:
        """What the screens say of the `empty` tenants, as `semtrace stats` says it."""
        return (f"No threads of {', '.join(self.empty)} in this window: nothing to show, "
                "and nothing to release (no budget spent)")

    def spent_note(self) -> str:
        """Why `n` cannot make the release of the `spent` tenants (it offered to: the
        release it made was refused, 'budget ... is spent', after the dialog)."""
        left = sorted({t.budget_left or 0.0 for t in self.tenants if self._unpaid(t)})
        return (f"No release today for {', '.join(self.spent)}: today's privacy budget is "
                f"spent (epsilon {' / '.join(f'{x:g}' for x in left)} left, a release of "
                f"{self.kind} needs {self.epsilon:g}); figures resume tomorrow (UTC)")


def release_key(policies: Policies, kind: str, now: datetime, topic: str | None = None
                ) -> tuple[datetime, datetime, str]:
    """The default window as of `now` and the cache key `semtrace stats KIND` files it under."""
    start, end = analytics.default_window(now)
    bound = policies.pricing.thread_cost_bound
    extra = (f"topic={topic}",) if topic is not None else ()
    return start, end, analytics.group_key(kind, start, end, cost_bound=bound, extra=extra)


def aggregate_view(store: Store, policies: Policies, tenants: list[str], kind: str,
                   now: datetime, *, topic: str | None = None,
                   role: str | None = None) -> AggregateView:
    """Today's releases of `kind` for `tenants`, read from the release cache (spends nothing).

    A `topic` merged into another since is that live topic: `semtrace stats models
    --topic` files its release under the live id, and the threads carry only that id.
    A tenant whose window holds no thread is marked `empty` only where `role` may list
    its threads (`reads.reads_threads`): to a role of figures only, "nothing there" would
    itself be a release, which the budget is spent to hide (docs/topics.md).
    """
    merged = topic_aliases(store)
    if topic is not None:
        topic = merged.get(topic, topic)
    start, end, key = release_key(policies, kind, now, topic)
    day = now.astimezone(UTC).strftime("%Y-%m-%d")
    cache = ReleaseCache(store.db)
    ledger = Ledger(store.db, per_day=policies.privacy.epsilon_per_day, clock=now.timestamp)
    out = []
    counted: set[str] = set()  # the topic ids today's releases counted
    for tenant in tenants:
        rel = cache.get(tenant, key, day)
        labels = (analytics.topic_labels(store, tenant) if kind == "topics" else
                  {analytics.NO_MODEL: analytics.NO_MODEL_LABEL})
        shared = (analytics.shared_topics(store, tenant, policies.privacy.k_min_users)
                  if kind == "topics" else None)
        if kind == "topics" and rel is not None:
            counted.update(g.group for g in rel.groups)
            rel = analytics.merge_topics(rel, merged)  # one row per topic as it is now
            # topics of fewer than k_min_users people: one row (analytics.small_topics)
            rel = analytics.fold_small(rel, shared)
            labels[analytics.OTHER_TOPICS] = analytics.other_label(
                policies.privacy.k_min_users)
        parts: dict[str, tuple[str, ...]] = {}
        uncounted: tuple[str, ...] = ()
        if kind == "models" and topic is not None and rel is not None:
            # the topics merged into it since: their own releases of that day summed in
            rel, parts, uncounted = _with_merged(cache, policies, tenant, rel, topic, merged,
                                                 now)
        rows = tuple(replace(r, merged=parts[r.key]) if r.key in parts else r
                     for r in analytics.group_rows(rel, labels)) if rel is not None else ()
        if kind == "topics":  # each topic's trend, from the stored releases (spends nothing)
            rows = tuple(analytics.other_last(with_trends(
                store.db, tenant, rows, (end - timedelta(days=1)).date(),
                cost_bound=policies.pricing.thread_cost_bound, aliases=merged,
                shared=shared)))
        at = (datetime.fromtimestamp(rel.released_at, UTC)
              if rel is not None and rel.released_at is not None else None)
        per_user = kind == "topics" and not policies.privacy.cross_user_topics.get(tenant, False)
        left = ledger.remaining(tenant) if rel is None else None
        empty = (role is not None and reads_threads(policies, role, tenant)
                 and not analytics.has_threads(store, tenant, start, end))
        out.append(Released(tenant, rows, at if rel is not None else None, per_user,
                            uncounted, left, empty))
    return AggregateView(kind=kind, start=start, end=end, tenants=tuple(out),
                         currency=policies.pricing.currency,
                         k_min_users=policies.privacy.k_min_users, topic=topic,
                         aliases=tuple(sorted((k, merged[k]) for k in counted if k in merged)),
                         epsilon=policies.privacy.epsilon_for(kind))


def _with_merged(cache: ReleaseCache, policies: Policies, tenant: str, rel: Release,
                 topic: str, merged: dict[str, str], now: datetime
                 ) -> tuple[Release, dict[str, tuple[str, ...]], tuple[str, ...]]:
    """A topic's models release with those of the ids merged into it since added
    (`analytics.topic_parts`, what `semtrace stats models --topic` shows)."""
    made = (datetime.fromtimestamp(rel.released_at, UTC) if rel.released_at is not None
            else now).strftime("%Y-%m-%d")
    members = sorted(k for k, v in merged.items() if v == topic)

    def released(member: str) -> Release | None:
        return cache.get(tenant, release_key(policies, "models", now, member)[2], made)

    return analytics.topic_parts(rel, topic, members, released)


class AggregateReader:
    """Reads (and, when asked, makes) today's topic and model releases, as `role`."""

    def __init__(self, reader: StoreReader, role: str | None = None) -> None:
        self.reader = reader
        self.role = role

    def view(self, kind: str, now: datetime, *, topic: str | None = None) -> AggregateView:
        """Today's releases of `kind` (models: on one topic) for the tenants in scope (reads)."""
        tenants = self.reader.tenants()
        with self.reader.lock:
            return aggregate_view(self.reader.rt.store, self.reader.rt.policies, tenants, kind,
                                  now, topic=topic, role=self.role)

    def release(self, kind: str, now: datetime, *, role: str,
                topic: str | None = None) -> tuple[str, ...]:
        """Make today's release of `kind` for the tenants in scope that lack one.

        Spends each such tenant's epsilon for `kind` (BudgetSpent when it does
        not fit); returns the tenants released.
        """
        rt = self.reader.rt
        require(rt.policies.access, role, "aggregates")
        view = self.view(kind, now, topic=topic)
        missing, topic = view.missing, view.topic  # a merged topic: its live id
        if not missing:
            return ()
        start, end = analytics.default_window(now)
        bound = rt.policies.pricing.thread_cost_bound
        writer = open_runtime(rt.data_dir, keyring=rt.keyring, policies=rt.policies)
        try:
            gate = PrivacyGate(writer.store.db, rt.policies.privacy, clock=now.timestamp)
            # the ids merged into the topic, whose threads the release counts (its covers)
            members = sorted(k for k, v in topic_aliases(writer.store).items() if v == topic)
            for tenant in missing:
                threads = analytics.load_threads(writer.store, tenant, start, end)
                if kind == "topics":
                    analytics.topic_stats(threads, gate, tenant=tenant, start=start, end=end,
                                          labels={}, cost_bound=bound,
                                          shared=analytics.shared_topics(
                                              writer.store, tenant,
                                              rt.policies.privacy.k_min_users))
                else:
                    analytics.model_stats(threads, gate, tenant=tenant, start=start, end=end,
                                          labels={}, topic=topic, cost_bound=bound,
                                          members=members if topic is not None else ())
        finally:
            writer.close()
        return missing
