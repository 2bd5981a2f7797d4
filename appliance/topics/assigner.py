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
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from appliance.config import PrivacySettings, RetentionSettings
from appliance.store import Store
from appliance.topics import tables
from appliance.topics.cluster import (
    LEXICAL_DIMS,
    average_linkage,
    carry_ids,
    lexical_vectors,
    self_similarity,
    with_words,
)
from appliance.topics.model import ScopeTopics, Sparse, Unit, new_topic_id
from appliance.topics.terms import (
    LABEL_MIN_USERS,
    content_terms,
    phrase_label,
    phrases,
    prompt_weight,
)

log = logging.getLogger("semtrace.topics")

RECENT_SECONDS = 3600.0  # a contentless new thread inherits its user's topic this long
MOVE_MARGIN = 0.05  # a thread moves online only to a topic that fits it this much better
MAX_PHRASES = 200  # phrases kept per thread
DAY = 86400.0


@dataclass
class TenantTopics:
    """The live topic state of one tenant."""

    units: dict[str, Unit] = field(default_factory=dict)  # thread id -> unit
    scopes: dict[str, ScopeTopics] = field(default_factory=dict)
    alias: dict[str, str] = field(default_factory=dict)  # merged id -> id it went into
    created: dict[str, float] = field(default_factory=dict)
    recent: dict[str, tuple[str, float]] = field(default_factory=dict)  # user -> (topic, ts)
    contentless: dict[str, str | None] = field(default_factory=dict)  # thread -> inherited
    pending: int = 0  # content prompts since the last refinement
    df: Counter[str] = field(default_factory=Counter)  # live threads using each word


@dataclass(frozen=True)
class Snapshot:
    """What one refinement of one scope works on (copied under the lock)."""

    tenant: str
    scope: str
    threads: list[str]
    vectors: np.ndarray  # per thread: the weighted sum of its prompts' vectors
    previous: list[str | None]
    weights: np.ndarray  # per thread: the sum of its prompts' weights
    weights2: np.ndarray  # ... and of their squares
    words: list[dict[str, int]]  # per thread: its content words (prompts using each)


class TopicAssigner:
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
                unit.topic = self._resolve(state, current.get(thread))
            self._feed(state, unit, vec, text, ts)
        for unit in state.units.values():
            if unit.topic is None:
                unit.topic = new_topic_id()
            unit.lexical = self._lexical(state, unit)
            self._scope(state, unit.scope).add(unit.topic, *self._share(unit))
            state.created.setdefault(unit.topic, unit.last_ts)
        return state

    @staticmethod
    def _feed(state: TenantTopics, unit: Unit, vector: np.ndarray, text: str,
              ts: float) -> None:
        w = prompt_weight(text)
        unit.total = unit.total + w * np.asarray(vector, dtype=np.float32)
        unit.prompts += 1
        unit.weight += w
        unit.weight2 += w * w
        unit.last_ts = max(unit.last_ts, ts)
        if len(unit.phrases) < MAX_PHRASES:
            found = phrases(text)
            state.df.update(p for p in found if " " not in p and p not in unit.phrases)
            unit.phrases.update(found)

    def _share(self, unit: Unit) -> tuple[np.ndarray, float, Sparse | None, float, float]:
        """What a thread adds to its topic's row: its sum, mass, words, and the sums of
        its prompts' squared feature norms and squared weights (`cluster.self_similarity`)."""
        w = self.settings.topic_lexical_weight
        words = 1.0 if unit.lexical is not None and len(unit.lexical[0]) else 0.0
        return (unit.total, unit.weight, unit.lexical,
                unit.weight2 * ((1.0 - w) + w * words), unit.weight2)

    def _cohesion(self, unit: Unit) -> float:
        """The mean similarity between a thread's own distinct prompts (NaN for one)."""
        _, mass, lexical, own, squares = self._share(unit)
        pairs = mass * mass - squares
        if pairs <= 1e-6:
            return float("nan")
        w = self.settings.topic_lexical_weight
        words = 1.0 if lexical is not None and len(lexical[0]) else 0.0
        norm = (1.0 - w) * float(unit.total @ unit.total) + w * mass * mass * words
        return (norm - own) / pairs

    def _lexical(self, state: TenantTopics, unit: Unit) -> Sparse | None:
        """A thread's words as the refinement sees them (`cluster.lexical_vectors`, with
        the live threads' idf), scaled by its mass: its share of its topic's row."""
        if self.settings.topic_lexical_weight <= 0:
            return None
        n = max(len(state.units), 1)
        row: dict[int, float] = defaultdict(float)
        for word, count in unit.phrases.items():
            df = state.df.get(word, 0)
            if " " in word or df < 2:
                continue
            row[zlib.crc32(word.encode()) % LEXICAL_DIMS] += \
                (1.0 + np.log(count)) * np.log(n / df)
        cols = np.fromiter(row.keys(), dtype=np.int64, count=len(row))
        vals = np.fromiter(row.values(), dtype=np.float32, count=len(row))
        norm = float(np.linalg.norm(vals))
        return cols, (vals * (unit.weight / norm) if norm > 0 else vals)

    @staticmethod
    def _resolve(state: TenantTopics, topic_id: str | None) -> str | None:
        seen = 0
        while topic_id in state.alias and seen < 64:
            topic_id, seen = state.alias[topic_id], seen + 1
        return topic_id

    def resolve(self, tenant: str, topic_id: str | None) -> str | None:
        """The live topic an id handed out earlier now belongs to."""
        with self._lock:
            return self._resolve(self._state(tenant), topic_id)

    def thread_topic(self, tenant: str, thread_id: str) -> str | None:
        """A thread's current topic (after the refinements so far)."""
        with self._lock:
            state = self._state(tenant)
            unit = state.units.get(thread_id)
            if unit is not None:
                return unit.topic
            return self._resolve(state, state.contentless.get(thread_id))

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
                return self._resolve(state, state.contentless[thread_id])
            if unit is None:
                scope = self.scope_of(tenant, user, thread_id)
                unit = state.units[thread_id] = Unit(thread_id, scope, user or thread_id,
                                                     np.zeros(self.dims, np.float32))
                state.contentless.pop(thread_id, None)
            before = self._share(unit) if unit.prompts else None
            before = None if before is None else (before[0].copy(), *before[1:])
            self._feed(state, unit, vector, text, now)
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
        unit.lexical = self._lexical(state, unit)
        weight = self.settings.topic_lexical_weight
        mean = None if unit.lexical is None else \
            (unit.lexical[0], unit.lexical[1] / max(unit.weight, 1e-9))
        best, score = sc.best(vec, mean, weight=weight,
                              threshold=self.settings.topic_threshold,
                              absorb=self.settings.topic_absorb_threshold,
                              support=self.settings.topic_support,
                              seed=self.settings.topic_seed_ratio,
                              cohesion=self._cohesion(unit))
        topic = unit.topic
        if topic is None:
            topic = best if best is not None else new_topic_id()
        elif best is not None and best != topic \
                and score > sc.score(topic, vec, mean, weight) + MOVE_MARGIN:
            topic = best
        sc.add(topic, *self._share(unit))
        unit.topic = topic
        state.created.setdefault(topic, unit.last_ts)

    def _inherit(self, state: TenantTopics, user: str | None, now: float) -> str | None:
        if user is None:
            return None
        recent = state.recent.get(user)
        if recent is None or now - recent[1] > RECENT_SECONDS or not recent[0]:
            return None
        return self._resolve(state, recent[0])

    # ------------------------------------------------------------ refinement

    def refine(self, tenant: str, scope: str | None = None, *,
               now: float | None = None) -> dict[str, str]:
        """Re-cluster a tenant's threads (one scope, or all) and publish; merged id -> id.

        The clustering runs without the ingest lock: prompts keep flowing and
        are placed online meanwhile.
        """
        with self._refine_lock:
            now = time.time() if now is None else now
            with self._lock:
                state = self._state(tenant)
                self._prune()
                self._expire(tenant, state, now)
                scopes = [scope] if scope is not None else sorted(state.scopes)
                state.pending = 0
                snaps = [self._snapshot(tenant, state, s) for s in scopes]
            merged: dict[str, str] = {}
            changed: dict[str, str] = {}
            for snap in snaps:
                if not snap.threads:
                    continue
                weight = self.settings.topic_lexical_weight
                lexical = lexical_vectors(snap.words)
                labels = average_linkage(
                    with_words(snap.vectors, snap.weights, lexical, weight=weight), snap.weights,
                    threshold=self.settings.topic_merge_threshold,
                    selfsim=self_similarity(snap.weights2, lexical, weight=weight),
                    selfweight=snap.weights2,
                    cohesion_ratio=self.settings.topic_cohesion_ratio,
                    seed_ratio=self.settings.topic_seed_ratio,
                    absorb_threshold=self.settings.topic_absorb_threshold,
                    support=self.settings.topic_support)
                ids, gone = carry_ids(labels, snap.previous, snap.weights, new_topic_id)
                with self._lock:
                    changed.update(self._apply(state, snap, [ids[i] for i in labels], gone))
                merged.update(gone)
            with self._lock:
                rows = self._rows(tenant, state)
            self._publish(tenant, rows, merged, sorted(changed.items()))
            self.refinements += 1
            return merged

    def _snapshot(self, tenant: str, state: TenantTopics, scope: str) -> Snapshot:
        units = [u for u in state.units.values() if u.scope == scope and u.prompts]
        vecs = (np.vstack([u.total for u in units]) if units
                else np.zeros((0, self.dims), np.float32))
        return Snapshot(tenant, scope, [u.thread_id for u in units], vecs,
                        [u.topic for u in units],
                        np.array([u.weight for u in units], dtype=np.float64),
                        np.array([u.weight2 for u in units], dtype=np.float64),
                        [{p: n for p, n in u.phrases.items() if " " not in p} for u in units])

    def _apply(self, state: TenantTopics, snap: Snapshot, topics: list[str],
               gone: dict[str, str]) -> dict[str, str]:
        """Install a refinement's clusters (under the lock); returns thread -> new topic."""
        changed = {}
        state.alias.update(gone)
        for old, new in list(state.alias.items()):
            state.alias[old] = gone.get(new, new)
        for thread, topic in zip(snap.threads, topics, strict=True):
            unit = state.units.get(thread)
            if unit is not None and unit.topic != topic:
                unit.topic = topic
                changed[thread] = topic
        members = []
        for unit in state.units.values():
            if unit.scope == snap.scope and unit.prompts:
                resolved = self._resolve(state, unit.topic)
                if resolved != unit.topic:
                    unit.topic = resolved
                    changed[unit.thread_id] = resolved or ""
                unit.lexical = self._lexical(state, unit)
                members.append((unit.topic or "", *self._share(unit)))
                state.created.setdefault(unit.topic or "", unit.last_ts)
        self._scope(state, snap.scope).rebuild(members)
        return changed

    def _prune(self) -> None:
        """Forget threads shredded since the last look (by this process or another)."""
        if self._shred_mark is None:
            self._shred_mark = self._store.shred_watermark()
            return
        self._shred_mark, users = self._store.shredded_since(self._shred_mark)
        for tenant, user in users:
            state = self._tenants.get(tenant)
            if state is not None:
                self._drop_gone(tenant, state, user)

    def _drop_gone(self, tenant: str, state: TenantTopics, user: str) -> None:
        present = {r[0] for r in self._store.db.execute(
            "SELECT thread_id FROM threads WHERE tenant=? AND user=?", (tenant, user))}
        for unit in [u for u in state.units.values()
                     if u.user == user and u.thread_id not in present]:
            self._drop(state, unit)

    def _expire(self, tenant: str, state: TenantTopics, now: float) -> None:
        """Forget threads idle for longer than `aggregates_days`."""
        days = self.aggregates_days(tenant)
        if days is None:
            return
        for unit in [u for u in state.units.values() if u.last_ts < now - days * DAY]:
            self._drop(state, unit)

    def _drop(self, state: TenantTopics, unit: Unit) -> None:
        if unit.topic is not None and unit.prompts:
            self._scope(state, unit.scope).remove(unit.topic, *self._share(unit))
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

    def _rows(self, tenant: str, state: TenantTopics) -> list[tables.TopicRow]:
        """Counts and labels of every live topic (labels only with k_min_users users)."""
        members: dict[str, list[Unit]] = defaultdict(list)
        for unit in state.units.values():
            if unit.topic and unit.prompts:
                members[unit.topic].append(unit)
        rows = []
        for scope in {u.scope for u in state.units.values()}:
            ids = [t for t, us in members.items() if us[0].scope == scope]
            background: Counter[str] = Counter()
            stats: dict[str, dict[str, tuple[int, int]]] = {}
            for tid in ids:
                users: dict[str, set[str]] = defaultdict(set)
                threads: Counter[str] = Counter()
                for u in members[tid]:
                    for p in u.phrases:
                        threads[p] += 1
                        users[p].add(u.user)
                stats[tid] = {p: (n, len(users[p])) for p, n in threads.items()
                              if len(users[p]) >= LABEL_MIN_USERS}
                background.update(threads)
            total = sum(len(members[t]) for t in ids)
            for tid in ids:
                us = members[tid]
                n_users = len({u.user for u in us})
                big = n_users >= self.settings.k_min_users
                label = phrase_label(stats[tid], background, units=len(us), topics=len(ids),
                                     total_units=total) if big else None
                terms = tuple(sorted(((p, n) for p, (n, _) in stats[tid].items()),
                                     key=lambda x: (-x[1], x[0]))[:40]) if big else ()
                rows.append(tables.TopicRow(tid, scope, len(us), n_users, label, terms,
                                            state.created.get(tid, time.time())))
        return rows

    def _publish(self, tenant: str, rows: list[tables.TopicRow], merged: dict[str, str],
                 threads: list[tuple[str, str]]) -> None:
        if self._writer is None:
            self._writer = self._store.side_connection()
        tables.publish(self._writer, tenant, rows, merged, threads)

    def labels(self, tenant: str) -> dict[str, str]:
        """Readable labels of the tenant's live topics (those with k_min_users users)."""
        with self._lock:
            rows = self._rows(tenant, self._state(tenant))
        return {r.topic_id: r.label for r in rows if r.label}

    # ------------------------------------------------------------ background

    def start(self, *, interval: float = 60.0) -> None:
        """Refine in a daemon thread: when enough prompts arrived, or every `interval` s."""
        if self._worker is not None:
            return
        self._stop.clear()
        self._worker = threading.Thread(target=self._run, args=(interval,),
                                        name="semtrace-topics", daemon=True)
        self._worker.start()

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                due = [t for t, s in self._tenants.items() if s.pending]
            for tenant in due:
                try:
                    self.refine(tenant)
                except Exception:  # a failed refinement must not stop the next ones
                    log.exception("topic refinement failed", extra={"event": "topics_refine"})

    def stop(self) -> None:
        """Stop the background refinement and close its connection."""
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
            self._worker = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
