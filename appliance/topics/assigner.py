"""Topics of a tenant: threads assigned online, re-clustered in the background.

A topic is a group of threads (conversations), not of prompts: each thread is
one unit whose direction is the mean of its content prompts' vectors, so a
thread's prompts vote and a "thanks." or "<LOCATION_1>." follow-up steers
nothing. Two levels:

* Online, in the ingest path (O(topics) numpy, no I/O): a thread joins the topic
  whose threads are on average most similar to it by the refinement's
  similarity (embeddings and words) and levels (an established topic at
  `topic_absorb_threshold`, a small one at `topic_threshold` and the seed
  ratio), else it starts a topic of its own. As its prompts arrive the thread
  may move to a topic that now fits it clearly better.
* In the background, every `topic_refine_every` content prompts (a daemon
  thread; `refine` runs it synchronously): all live threads of a scope are
  re-clustered by exact average linkage, merging while the mean similarity
  between two groups' threads is at least `topic_merge_threshold` (a small group
  joins an established topic at `topic_absorb_threshold`; two small groups merge
  only relative to their own cohesion, `topic_seed_ratio`). A topic can
  therefore never grow by chaining, and a topic that drifted online is split.
  New clusters keep the ids that most of their threads had (stable ids); ids
  that no cluster keeps are recorded as merged into the one holding most of
  their threads, so every id ever handed out resolves.

The refinement publishes counts and readable labels to the store through its
own connection; only threads active within `aggregates_days` count, and a
topic left without live threads keeps no words (`tables.purge_orphans`).

This module holds the lock and the order of the steps; the background thread is
`background.py`, a tenant's state `tenant.py`, a refinement's snapshot, clustering and
install `refinement.py`, and the published counts and labels `rows.py`.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import numpy as np

from appliance.config import PrivacySettings, RetentionSettings
from appliance.store import Store
from appliance.topics import tables
from appliance.topics.background import Background
from appliance.topics.model import ScopeTopics, Sparse, Unit, new_topic_id
from appliance.topics.refinement import install, recluster, snapshot
from appliance.topics.rows import topic_rows
from appliance.topics.tenant import TenantTopics, cohesion, share
from appliance.topics.terms import content_terms

RECENT_SECONDS = 3600.0  # a contentless new thread inherits its user's topic this long
MOVE_MARGIN = 0.05  # a thread moves online only to a topic that fits it this much better
DAY = 86400.0


class TopicAssigner(Background):
    """Assigns threads to topics online (the pipeline's `topics` hook) and refines them."""

    def __init__(self, store: Store, settings: PrivacySettings, *, dims: int = 384,
                 retention: RetentionSettings | None = None) -> None:
        self.settings = settings
        self.retention = retention
        self.dims = dims
        self._store = store
        self._tenants: dict[str, TenantTopics] = {}
        self._lock = threading.RLock()
        self._refine_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._writer: Any = None
        self._shred_mark: float | None = None
        self.refinements = 0

    # ------------------------------------------------------------ policy

    def aggregates_days(self, tenant: str) -> float | None:
        """How long a thread counts towards its topic after its last prompt (retention.toml)."""
        if self.retention is None:
            return None
        rules = self.retention.tenants.get(tenant, self.retention.default)
        return rules.aggregates_days

    def scope_of(self, tenant: str, user: str | None, thread_id: str) -> str:
        """'' (tenant-wide) when policy allows cross-user topics, else the user (or thread)."""
        if self.settings.cross_user_topics.get(tenant, False):
            return ""
        return f"user:{user}" if user is not None else f"thread:{thread_id}"

    # ------------------------------------------------------------ state

    def _state(self, tenant: str) -> TenantTopics:
        state = self._tenants.get(tenant)
        if state is None:
            if self._shred_mark is None:
                self._shred_mark = self._store.shred_watermark()
            state = self._tenants[tenant] = self._load(tenant)
        return state

    def _scope(self, state: TenantTopics, scope: str) -> ScopeTopics:
        sc = state.scopes.get(scope)
        if sc is None:
            sc = state.scopes[scope] = ScopeTopics(self.dims)
        return sc

    def _load(self, tenant: str) -> TenantTopics:
        """Rebuild a tenant's topics from its encrypted records (at start, or first use)."""
        state = TenantTopics(alias=tables.aliases(self._store.db, tenant))
        current = tables.live_threads(self._store.db, tenant)
        days = self.aggregates_days(tenant)
        since = time.time() - days * DAY if days is not None else 0.0
        for thread, user, ts, vec, text in tables.load_prompts(self._store, tenant, since):
            if not content_terms(text):
                continue
            unit = state.units.get(thread)
            if unit is None:
                scope = self.scope_of(tenant, user, thread)
                unit = state.units[thread] = Unit(thread, scope, user,
                                                  np.zeros(self.dims, np.float32))
                unit.topic = state.resolve(current.get(thread))
            state.feed(unit, vec, text, ts)
        weight = self.settings.topic_lexical_weight
        for unit in state.units.values():
            if unit.topic is None:
                unit.topic = new_topic_id()
            unit.lexical = state.lexical(unit, weight)
            self._scope(state, unit.scope).add(unit.topic, *share(unit, weight))
            state.created.setdefault(unit.topic, unit.last_ts)
        return state

    def resolve(self, tenant: str, topic_id: str | None) -> str | None:
        """The live topic an id handed out earlier now belongs to."""
        with self._lock:
            return self._state(tenant).resolve(topic_id)

    def thread_topic(self, tenant: str, thread_id: str) -> str | None:
        """A thread's current topic (after the refinements so far)."""
        with self._lock:
            state = self._state(tenant)
            unit = state.units.get(thread_id)
            if unit is not None:
                return unit.topic
            return state.resolve(state.contentless.get(thread_id))

    def current_topic(self, tenant: str, thread_id: str) -> str | None:
        """A thread's topic now, if its tenant's topics are in memory (else None: never
        loaded here, as the store's write transaction asks it)."""
        with self._lock:
            state = self._tenants.get(tenant)
            if state is None:
                return None
            unit = state.units.get(thread_id)
            if unit is not None:
                return unit.topic
            return state.resolve(state.contentless.get(thread_id))

    # ------------------------------------------------------------ assignment

    def assign(self, *, tenant: str, thread_id: str, vector: np.ndarray, text: str,
               synthetic: bool, user: str | None = None,
               ts: datetime | None = None) -> str | None:
        """The topic of one prompt: its thread's topic once this prompt has voted.

        None for synthetic prompts and for a contentless prompt that starts a
        thread with no recent topic of its user to take.
        """
        if synthetic:
            return None
        now = ts.timestamp() if ts is not None else time.time()
        with self._lock:
            state = self._state(tenant)
            unit = state.units.get(thread_id)
            if not content_terms(text):
                if unit is not None:
                    return unit.topic
                if thread_id not in state.contentless:
                    state.contentless[thread_id] = self._inherit(state, user, now)
                return state.resolve(state.contentless[thread_id])
            if unit is None:
                scope = self.scope_of(tenant, user, thread_id)
                unit = state.units[thread_id] = Unit(thread_id, scope, user or thread_id,
                                                     np.zeros(self.dims, np.float32))
                state.contentless.pop(thread_id, None)
            before = share(unit, self.settings.topic_lexical_weight) if unit.prompts else None
            before = None if before is None else (before[0].copy(), *before[1:])
            state.feed(unit, vector, text, now)
            self._place(state, unit, before)
            if user is not None:
                state.recent[user] = (unit.topic or "", now)
            state.pending += 1
            topic = unit.topic
        if state.pending >= self.settings.topic_refine_every:
            if self._worker is not None:
                self._wake.set()
            else:  # no background thread (replay, tests): refine in line, deterministically
                self.refine(tenant, now=now)
                topic = self.thread_topic(tenant, thread_id)
        return topic

    def _place(self, state: TenantTopics, unit: Unit,
               before: tuple[np.ndarray, float, Sparse | None, float, float] | None) -> None:
        """Place a thread as the refinement would join it to a topic: by embeddings and
        words, an established topic at `topic_absorb_threshold`, a small one at
        `topic_threshold`; else it starts a topic. It moves only to a clearly better one."""
        sc = self._scope(state, unit.scope)
        vec = unit.vector
        if unit.topic is not None and before is not None:
            sc.remove(unit.topic, *before)
        weight = self.settings.topic_lexical_weight
        unit.lexical = state.lexical(unit, weight)
        mean = None if unit.lexical is None else \
            (unit.lexical[0], unit.lexical[1] / max(unit.weight, 1e-9))
        best, score = sc.best(vec, mean, weight=weight,
                              threshold=self.settings.topic_threshold,
                              absorb=self.settings.topic_absorb_threshold,
                              support=self.settings.topic_support,
                              seed=self.settings.topic_seed_ratio,
                              cohesion=cohesion(unit, weight))
        topic = unit.topic
        if topic is None:
            topic = best if best is not None else new_topic_id()
        elif best is not None and best != topic \
                and score > sc.score(topic, vec, mean, weight) + MOVE_MARGIN:
            topic = best
        sc.add(topic, *share(unit, weight))
        unit.topic = topic
        state.created.setdefault(topic, unit.last_ts)

    def _inherit(self, state: TenantTopics, user: str | None, now: float) -> str | None:
        if user is None:
            return None
        recent = state.recent.get(user)
        if recent is None or now - recent[1] > RECENT_SECONDS or not recent[0]:
            return None
        return state.resolve(recent[0])

    # ------------------------------------------------------------ refinement

    def refine(self, tenant: str, scope: str | None = None, *,
               now: float | None = None, loaded_only: bool = False) -> dict[str, str]:
        """Re-cluster a tenant's threads (one scope, or all) and publish; merged id -> id.

        The clustering runs without the ingest lock: prompts keep flowing and
        are placed online meanwhile. `loaded_only` (the background thread): a tenant
        dropped from memory meanwhile (`discard`) is left for the ingest path to
        reload, never read from the store off its thread.
        """
        with self._refine_lock:
            now = time.time() if now is None else now
            with self._lock:
                if loaded_only and tenant not in self._tenants:
                    return {}
                state = self._state(tenant)
                self._prune()
                self._expire(tenant, state, now)
                scopes = [scope] if scope is not None else sorted(state.scopes)
                state.pending = 0
                snaps = [snapshot(tenant, state, s, self.dims) for s in scopes]
            merged: dict[str, str] = {}
            changed: dict[str, str] = {}
            for snap in snaps:
                if not snap.threads:
                    continue
                topics, gone = recluster(snap, self.settings)
                with self._lock:
                    changed.update(install(state, snap, topics, gone,
                                           self._scope(state, snap.scope),
                                           weight=self.settings.topic_lexical_weight))
                merged.update(gone)
            with self._lock:
                rows = topic_rows(state, self.settings.k_min_users)
            self._publish(tenant, rows, merged, sorted(changed.items()))
            self.refinements += 1
            return merged

    def _prune(self) -> None:
        """Forget threads shredded since the last look (by this process or another)."""
        if self._shred_mark is None:
            self._shred_mark = self._store.shred_watermark()
            return
        touched = tables.shredded_tenants(self._store.db, self._shred_mark)
        self._shred_mark, users = self._store.shredded_since(self._shred_mark)
        for tenant, user in users:  # (an anonymised bucket's threads: by day, below)
            state = self._tenants.get(tenant)
            if state is not None and user is not None:
                self._drop_gone(tenant, state, user)
        for tenant in sorted(touched):  # retention may have taken a thread's older days
            state = self._tenants.get(tenant)
            if state is not None:
                self._drop_days(state, tables.stored_days(self._store.db, tenant))

    def _drop_days(self, state: TenantTopics, stored: dict[str, set[str]]) -> None:
        """Take the shredded days of each thread out of memory (its words, vector, weight):
        a thread only partly shredded no longer lends them to its topic's label."""
        weight = self.settings.topic_lexical_weight
        for unit in list(state.units.values()):
            before = share(unit, weight)
            if not state.drop_days(unit, stored.get(unit.thread_id, ()), self._shred_mark or 0):
                continue
            sc = self._scope(state, unit.scope)
            if unit.topic is not None:
                sc.remove(unit.topic, *before)
            if not unit.prompts:
                del state.units[unit.thread_id]
            elif unit.topic is not None:
                unit.lexical = state.lexical(unit, weight)
                sc.add(unit.topic, *share(unit, weight))
        state.pending += 1

    def _drop_gone(self, tenant: str, state: TenantTopics, user: str) -> None:
        present = {r[0] for r in self._store.db.execute(
            "SELECT thread_id FROM threads WHERE tenant=? AND user=?", (tenant, user))}
        gone = [u for u in state.units.values() if u.user == user and u.thread_id not in present]
        for unit in gone:
            self._drop(state, unit)
        # the shred withdrew the labels of the topics it touched (a thread only partly
        # shredded by retention included): publish them again from what remains
        state.pending += 1

    def _expire(self, tenant: str, state: TenantTopics, now: float) -> None:
        """Forget threads idle for longer than `aggregates_days`."""
        days = self.aggregates_days(tenant)
        if days is None:
            return
        for unit in [u for u in state.units.values() if u.last_ts < now - days * DAY]:
            self._drop(state, unit)

    def _drop(self, state: TenantTopics, unit: Unit) -> None:
        if unit.topic is not None and unit.prompts:
            self._scope(state, unit.scope).remove(
                unit.topic, *share(unit, self.settings.topic_lexical_weight))
        for word in unit.phrases:  # a shredded thread's words leave memory too
            if " " not in word:
                state.df[word] -= 1
                if state.df[word] <= 0:
                    del state.df[word]
        del state.units[unit.thread_id]

    def discard(self, tenant: str) -> None:
        """Drop a tenant's topics from memory (after a failed batch): they reload from the
        store on next use, without the prompts that were never stored."""
        with self._lock:
            self._tenants.pop(tenant, None)

    def forget_user(self, tenant: str, user: str) -> None:
        """Drop a shredded user's threads from memory now (their words leave every topic)."""
        with self._lock:
            state = self._tenants.get(tenant)
            if state is None:
                return
            self._drop_gone(tenant, state, user)
            state.recent.pop(user, None)

    # ------------------------------------------------------------ publishing

    def _publish(self, tenant: str, rows: list[tables.TopicRow], merged: dict[str, str],
                 threads: list[tuple[str, str]]) -> None:
        if self._writer is None:
            self._writer = self._store.side_connection()
        tables.publish(self._writer, tenant, rows, merged, threads)

    def labels(self, tenant: str) -> dict[str, str]:
        """Readable labels of the tenant's live topics (those with k_min_users users)."""
        with self._lock:
            rows = topic_rows(self._state(tenant), self.settings.k_min_users)
        return {r.topic_id: r.label for r in rows if r.label}
