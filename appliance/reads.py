"""The reads behind `semtrace search` and `semtrace stats`, answered the same way whether an
operator's CLI opened the store itself or the service answers over its query socket.

Both paths check the caller's role with `roles.require` first (the permission of a stats
query is `user_stats` for one user's exact view, `aggregates` otherwise); what a role may
then see is decided here: the tenants a search covers (`cross_user_search`), and every
cross-user figure goes through `privacy.PrivacyGate`, so a query over the socket spends,
or reads the cached release, exactly as the direct one does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from appliance import analytics
from appliance.config import Policies
from appliance.embed import Embedder
from appliance.errors import AccessDenied, InputError, SemtraceError
from appliance.keys import Keyring
from appliance.privacy import NoRelease, PrivacyGate
from appliance.query import (
    has_held,
    has_topic,
    live_topic,
    no_topic,
    topic_aliases,
    users_with_prefix,
)
from appliance.query import tenants as all_tenants
from appliance.readindex import ReaderIndex
from appliance.records import Hit
from appliance.roles import allowed, sees
from appliance.search import build_search_index, search
from appliance.store import Store
from appliance.trend import last_day_of, with_trends

STATS_KINDS = ("topics", "models", "cost", "positions", "blocks", "incident")


def stats_permission(user: str | None) -> str:
    """One user's figures are exact and spend no budget: not an analyst's to ask for."""
    return "user_stats" if user is not None else "aggregates"


# ---------------------------------------------------------------- search


def search_tenants(store: Store, policies: Policies, role: str, tenant: str | None,
                   user: str | None) -> list[str]:
    """Tenants a search may cover: one user's prompts, or other users' where policy allows."""
    if user is not None:
        return [tenant] if tenant else []
    wanted = [t for t in ([tenant] if tenant else all_tenants(store))
              if sees(policies.access, role, t)]
    auditor = allowed(policies.access, role, "audit")
    ok = [t for t in wanted if auditor or policies.privacy.cross_user_search.get(t, False)]
    if tenant is not None and not ok:
        raise AccessDenied(f"Searching across users of tenant {tenant} is off in privacy.toml "
                           "(cross_user_search); search one user's prompts with --user.")
    if wanted and not ok:  # not an empty answer: the store was never searched
        raise AccessDenied(f"Searching across users is off in privacy.toml (cross_user_search) "
                           f"for every tenant in scope ({', '.join(wanted)}); search one "
                           "user's prompts with --tenant and --user.")
    return ok


def search_skipped(store: Store, policies: Policies, role: str, tenant: str | None,
                   user: str | None) -> list[str]:
    """Tenants a search without --tenant and --user left out because cross-user search is
    off there (the TUI's search says so; without a word the CLI read as "no hits there")."""
    if user is not None or tenant is not None or allowed(policies.access, role, "audit"):
        return []
    return [t for t in all_tenants(store) if sees(policies.access, role, t)
            and not policies.privacy.cross_user_search.get(t, False)]


def user_pseudonym(store: Store, keyring: Keyring, tenant: str | None,
                   user: str | None) -> str | None:
    """The pseudonym of `--user` in `tenant` (`user_named`); None without `--user`."""
    if user is None:
        return None
    if tenant is None:
        raise InputError("--user needs --tenant (user ids are pseudonymised per tenant).")
    return user_named(store, keyring, tenant, user)


def run_search(store: Store, keyring: Keyring, policies: Policies, role: str,
               embedder: Embedder, text: str, *, tenant: str | None, user: str | None,
               since: datetime | None, limit: int,
               kept: ReaderIndex | None = None,
               progress: Callable[[int, int], None] | None = None) -> list[Hit]:
    """Prompts similar to `text` that `role` (already checked for `search`) may see.

    Args:
        kept: the service's in-memory index, brought up to date and searched instead of
            building one for this query (`semtrace search` run directly builds one).
    """
    if not text.strip():
        raise InputError("The search text is empty.")
    check_tenant(store, policies, tenant)
    pseudo = user_pseudonym(store, keyring, tenant, user)
    tenants = search_tenants(store, policies, role, tenant, user)
    if kept is not None and kept.model_id == embedder.model_id:
        kept.refresh(store, tenants)
        return search(store, kept.scoped(tenants, since), embedder, text, tenant=tenant,
                      user=pseudo, k=limit, since=since)
    index = build_search_index(store, embedder, tenants=tenants, user=pseudo, since=since,
                               progress=progress)
    return search(store, index, embedder, text, tenant=tenant, user=pseudo, k=limit,
                  since=since)


# ---------------------------------------------------------------- stats


@dataclass(frozen=True)
class StatsQuery:
    """One `semtrace stats` query (times already resolved)."""

    kind: str
    tenant: str
    user: str | None  # a one-user view's user id, or its pseudonym (`user_named`)
    start: datetime
    end: datetime
    topic: str | None = None  # models: on this topic only
    bucket: str = "day"  # positions
    baseline: tuple[datetime, datetime] | None = None  # incident


def policy_tenants(policies: Policies) -> set[str]:
    """Tenants the policies name (access, retention, legal holds, privacy settings)."""
    named = {t for r in policies.access.roles.values() for t in r.tenants}
    named |= set(policies.retention.tenants) | {h.tenant for h in policies.retention.legal_holds}
    named |= set(policies.privacy.cross_user_search) | set(policies.privacy.cross_user_topics)
    return named


def check_tenant(store: Store, policies: Policies, tenant: str | None) -> None:
    """A `--tenant` the store never held data of and no policy names is a typo: one
    sentence, not an empty listing that reads as "this tenant has no threads"."""
    if tenant is not None and tenant not in policy_tenants(policies) \
            and not has_held(store, tenant):
        raise InputError(f"This store has never held data of tenant {tenant!r} (tenant "
                         "names are case-sensitive, as the gateway sends them).")


def check_stats_query(q: StatsQuery, store: Store, policies: Policies, *,
                      now: datetime | None = None) -> None:
    """Refuse, before anything is spent, a query whose answer is known without the data.

    A blank or unknown tenant (one the store never held data of and no policy names: a
    typo) and a window that starts in the future are bad input. A known tenant's window
    in the past is answered through the gate even when it holds nothing, unless the role
    may list the tenant's threads (`run_stats`): skipping the spend there would tell any
    other role, exactly, that nobody was active (docs/topics.md).
    """
    if not q.tenant.strip():
        raise InputError("--tenant must name a tenant.")
    if q.start >= (now or datetime.now(UTC)):
        raise InputError(f"The window starts in the future ({q.start:%Y-%m-%d %H:%M} UTC): "
                         "there is nothing to count yet; nothing was spent.")
    if q.tenant not in policy_tenants(policies) and not has_held(store, q.tenant):
        raise InputError(f"This store has never held data of tenant {q.tenant!r}; "
                         "nothing was spent.")
    if q.topic is not None and q.topic != analytics.NO_TOPIC and not has_topic(
            store, q.tenant, q.topic):  # topic ids are shown to every reader (docs/topics.md)
        lists = "`stats topics` lists them by id and label"
        near = no_topic(store, q.topic, [q.tenant], lists)
        # a word of two labels ("ticket") named them in `threads list --topic`, here nothing
        if near != f"No topic '{q.topic}' in scope ({lists}).":
            raise InputError(f"{near} Nothing was spent.")
        raise InputError(f"Tenant {q.tenant} has no topic {q.topic!r} ({lists}); "
                         "nothing was spent.")


# a pseudonym as the product shows it: whole (`threads list`, `threads show`) or its start
# (the TUI's threads screen shows 10 characters; its `user:` filter takes a start too)
PSEUDONYM_START = re.compile(r"u_[0-9a-f]{0,20}")


def user_named(store: Store, keyring: Keyring, tenant: str, user: str) -> str:
    """The pseudonym `--user` names (stats, threads list, search): the user id as the gateway
    sends it, or the user as the product shows them, the pseudonym or its start, when that
    names a user of `tenant`.

    InputError (the value is never echoed: it may be a raw user id) where a start names
    several users, or where the value is both a user id of the tenant and the start of
    another user's pseudonym.
    """
    own = keyring.pseudonym(tenant, user)
    if PSEUDONYM_START.fullmatch(user) is None:
        return own
    named = users_with_prefix(store, tenant, user, limit=2)
    if len(named) > 1:
        raise InputError(f"That --user is the start of the pseudonyms of several users of "
                         f"{tenant}: give the whole pseudonym, as `threads list` prints it.")
    if not named or named[0] == own:
        return own
    if users_with_prefix(store, tenant, own, limit=1):
        raise InputError(f"That --user is both a user id of {tenant} and the start of "
                         "another user's pseudonym: give the whole pseudonym, as `threads "
                         "list` prints it.")
    return named[0]


def reads_threads(policies: Policies, role: str, tenant: str) -> bool:
    """Whether `role` may list `tenant`'s threads (`threads list --since --until` tells it
    exactly whether a window holds any): its cross-user `stats` of a window with no thread
    say so without a release, spending nothing (`run_stats`)."""
    return allowed(policies.access, role, "threads:read") and sees(policies.access, role,
                                                                   tenant)


def nothing_held(q: StatsQuery, gate: PrivacyGate, policies: Policies,
                 baseline: tuple[datetime, datetime] | None = None) -> analytics.Report[Any]:
    """The answer to a cross-user query of a window with no thread: no rows, nothing spent
    (no release made or cached, no ledger row), the budget left as it was."""
    b_start, b_end = baseline or (None, None)
    return analytics.Report(kind=q.kind, tenant=q.tenant, start=q.start, end=q.end,
                            exact=False, epsilon=0.0,
                            budget_remaining=gate.ledger.remaining(q.tenant),
                            k_min_users=policies.privacy.k_min_users, rows=(),
                            topic=q.topic if q.kind == "models" else None,
                            baseline_start=b_start, baseline_end=b_end, empty=True)


def run_stats(q: StatsQuery, store: Store, keyring: Keyring, policies: Policies, *,
              ledger_db: Any = None, reads_threads: bool = False) -> analytics.Report[Any]:
    """The report of `q` (the role was checked for `stats_permission(q.user)`).

    Args:
        ledger_db: the connection the privacy gate spends and caches releases on
            (default the store's own; the service reads from a read-only store).
        reads_threads: the role may list the tenant's threads (`reads_threads`): a
            cross-user query of a window (and an incident's baseline) holding no thread
            of the tenant is answered `empty`, spending nothing. For any other role it is
            released and spends as any window does: answering "nothing" for free would
            tell it, exactly, that nobody was active then (docs/topics.md).
    """
    if q.kind not in STATS_KINDS:
        raise SemtraceError(f"Unknown stats kind {q.kind!r}; use one of "
                            f"{', '.join(STATS_KINDS)}.")
    if q.topic is not None and q.topic != analytics.NO_TOPIC:  # a label names its topic
        q = replace(q, topic=live_topic(store, q.topic, [q.tenant]) or q.topic)
    check_stats_query(q, store, policies)
    # an incident is compared with a baseline (default: as long a window just before);
    # no other kind has one
    q = replace(q, baseline=(q.baseline or analytics.window_before(q.start, q.end))
                if q.kind == "incident" else None)
    pseudo = user_named(store, keyring, q.tenant, q.user) if q.user is not None else None
    gate = PrivacyGate(ledger_db if ledger_db is not None else store.db, policies.privacy)
    # one map of merged ids for the threads' topics and the topic's members: a refinement
    # merging meanwhile must not put threads in a release that does not say it covers them
    aliases = topic_aliases(store)
    threads = analytics.load_threads(store, q.tenant, q.start, q.end, user=pseudo,
                                     aliases=aliases)
    base = (analytics.load_threads(store, q.tenant, *q.baseline, user=pseudo)
            if q.baseline is not None else [])
    if pseudo is None and reads_threads and not threads and not base:
        try:  # today's release of it, where one was made (read: nothing spent)
            return _stats_report(q, store, policies, PrivacyGate(
                gate.ledger.db, policies.privacy, spend=False, today_only=True), pseudo,
                threads, base, aliases)
        except NoRelease:  # none: no new one of nothing, nothing spent
            empty = nothing_held(q, gate, policies, q.baseline)
        if q.kind == "models" and q.topic:  # what the figures would have been of
            live = aliases.get(q.topic, q.topic)
            empty = replace(empty, topic=live, topic_label=analytics.topic_labels(
                store, q.tenant).get(live))
        return empty
    return _stats_report(q, store, policies, gate, pseudo, threads, base, aliases)


def _stats_report(q: StatsQuery, store: Store, policies: Policies, gate: PrivacyGate,
                  pseudo: str | None, threads: list[analytics.ThreadRow],
                  base: list[analytics.ThreadRow], aliases: dict[str, str]
                  ) -> analytics.Report[Any]:
    """`run_stats`'s report of the threads of its window (and baseline: `base`)."""
    bound = policies.pricing.thread_cost_bound
    common: dict[str, Any] = {"tenant": q.tenant, "start": q.start, "end": q.end,
                              "single_user": pseudo}
    if q.kind in ("topics", "blocks", "incident"):
        labels = analytics.topic_labels(store, q.tenant)
        # one row per topic as it is now: a release keeps the topic ids of its moment all day
        merged = topic_aliases(store)
        # topics of fewer than k_min_users people: one row (analytics.small_topics)
        shared = analytics.shared_topics(store, q.tenant, policies.privacy.k_min_users)
        # the tenant's topics are one person's each, so all are in that row: each command's
        # text and --json say why (one user's exact view keeps a row per topic: not said)
        per_user = pseudo is None and not policies.privacy.cross_user_topics.get(q.tenant,
                                                                                 False)
    if q.kind == "topics":
        report = analytics.topic_stats(threads, gate, labels=labels, cost_bound=bound,
                                       aliases=merged, shared=shared, **common)
        if pseudo is not None:
            return report
        rows = with_trends(gate.cache.db, q.tenant, report.rows, last_day_of(q.end),
                           cost_bound=bound, aliases=merged, shared=shared)  # spends nothing
        return replace(report, rows=rows, per_user_topics=per_user)
    if q.kind == "models":  # a topic merged since is its live topic, as the rows' are
        topic = aliases.get(q.topic, q.topic) if q.topic else None
        members = sorted(k for k, v in aliases.items() if v == topic) if topic else []
        report = analytics.model_stats(threads, gate, labels={}, topic=topic,
                                       cost_bound=bound, members=members, **common)
        label = analytics.topic_labels(store, q.tenant).get(topic) if topic else None
        return replace(report, topic=topic, topic_label=label)  # what the figures are of
    if q.kind == "cost":
        return analytics.cost_outcomes(threads, gate, cost_bound=bound, **common)
    if q.kind == "positions":
        return analytics.position_mix(threads, gate, bucket=q.bucket, **common)
    if q.kind == "blocks":
        blocks = analytics.block_stats(threads, gate, labels=labels, aliases=merged,
                                       shared=shared, **common)
        return replace(blocks, per_user_topics=per_user)
    b_start, b_end = q.baseline or analytics.window_before(q.start, q.end)
    lifts = analytics.incident_lifts(threads, base, gate, labels=labels, aliases=merged,
                                     shared=shared, baseline_window=(b_start, b_end),
                                     **common)
    return replace(lifts, baseline_start=b_start, baseline_end=b_end,  # what it compared to
                   per_user_topics=per_user)
