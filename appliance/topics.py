"""Topics: online assignment of prompts to topics of a tenant, refinement, keyword labels.

A thread takes the topic of its first prompt that carries content: the nearest
centroid of its scope when similar enough, else a new topic. Later prompts of
the thread keep that topic and sharpen its centroid; prompts without content
words ("thanks!", a bare placeholder) never steer a topic. Every
`topic_refine_every` prompts a scope's centroids are merged by average-linkage
agglomeration; a merged topic keeps the id of its largest member and the others
resolve to it, so ids handed out earlier stay valid.

A scope is the whole tenant when `cross_user_topics` allows it, else one user.
Centroids and keyword counts are aggregates: they are written to the store only
once a topic has `k_min_users` contributors; smaller topics are rebuilt at start
from their (encrypted, shreddable) records.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from appliance.config import PrivacySettings
from appliance.store import Store

LABEL_TERMS = 5
MIN_TERM_COUNT = 2  # a keyword seen once is never stored or shown
MAX_TERMS = 400  # keyword counts kept per topic
MAX_REFINE = 2000  # largest topics of a scope considered by one refinement
MAX_THREADS = 200_000  # thread -> topic entries cached (else read from the threads table)
RECENT_SECONDS = 3600.0  # a contentless new thread inherits its user's topic this long
_TOKEN = re.compile(r"<[A-Za-z_]+\d*>|[A-Za-z][A-Za-z'-]*[A-Za-z]")
_STOP_TEXT = """
a about above after again against all almost also am an and any anyone anything are around as at be
because been before being below between both but by can can't cannot could couldn't did didn't do
does doesn't doing don't down during each either else even ever every few for from further get gets
getting give given go goes going gone got had hadn't has hasn't have haven't having he he's her
here here's hers herself him himself his how how's however i i'd i'll i'm i've if in into is isn't
it it's its itself just know last less let let's like likely lot lots made make many may maybe me
might mine more most much must mustn't my myself need needs neither never new next no nor not now
of off often on once one only or other others otherwise ought our ours ourselves out over own per
perhaps please quite rather really said same say says see seem seems several shall shan't she she'd
she'll she's should shouldn't show since so some someone something sometimes still such sure take
tell than that that's the their theirs them themselves then there there's these they they'd they'll
they're they've thing things think this those though through thus to too toward towards under until
up upon us use used using very want wants was wasn't way we we'd we'll we're we've well were
weren't what what's whatever when when's where where's whether which while who who's whom whose why
why's will with within without won't would wouldn't yes yet you you'd you'll you're you've your
yours yourself yourselves ok okay thanks thank thx great good perfect cool fine alright awesome
nice sounds sound right hello hi hey bye goodbye yeah yep nope sorry wow lol help
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def content_terms(text: str) -> list[str]:
    """Lower-case content words of a redacted text: no placeholders, stop words or short words."""
    out = []
    for tok in _TOKEN.findall(text):
        if tok.startswith("<"):
            continue
        word = tok.lower().strip("'-")
        if len(word) > 2 and word not in STOP_WORDS and not word.endswith("'s"):
            out.append(word)
    return out


@dataclass
class Topic:
    """In-memory state of one live topic (the sum of its members' vectors)."""

    topic_id: str
    scope: str
    total: np.ndarray
    n: int = 0
    contributors: set[str] = field(default_factory=set)
    terms: Counter[str] = field(default_factory=Counter)
    created_at: float = 0.0
    persisted: bool = False  # centroid and keywords written to the store

    @property
    def centroid(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.total))
        return self.total / norm if norm > 0 else self.total


class Scope:
    """The live topics of one scope, with a centroid matrix for nearest-topic search."""

    def __init__(self, dims: int) -> None:
        self.ids: list[str] = []
        self.pos: dict[str, int] = {}
        self.matrix = np.zeros((16, dims), dtype=np.float32)
        self.since_refine = 0

    def put(self, topic: Topic) -> None:
        """Insert or refresh a topic's centroid row."""
        i = self.pos.get(topic.topic_id)
        if i is None:
            i = len(self.ids)
            if i == len(self.matrix):
                self.matrix = np.vstack([self.matrix, np.zeros_like(self.matrix)])
            self.ids.append(topic.topic_id)
            self.pos[topic.topic_id] = i
        self.matrix[i] = topic.centroid

    def drop(self, topic_id: str) -> None:
        """Remove a topic (swap the last row into its place)."""
        i = self.pos.pop(topic_id)
        last = len(self.ids) - 1
        if i != last:
            moved = self.ids[last]
            self.ids[i] = moved
            self.matrix[i] = self.matrix[last]
            self.pos[moved] = i
        self.ids.pop()

    def nearest(self, vector: np.ndarray) -> tuple[str | None, float]:
        """The most similar topic and its cosine similarity."""
        if not self.ids:
            return None, -1.0
        rows = self.matrix[: len(self.ids)]
        # blocks of 1024 rows stay below OpenBLAS's threading threshold, which costs
        # more than it saves on a busy 2-core host
        sims = np.concatenate([rows[s:s + 1024] @ vector for s in range(0, len(rows), 1024)])
        i = int(np.argmax(sims))
        return self.ids[i], float(sims[i])


def merge_groups(totals: np.ndarray, counts: np.ndarray, *, similarity: float,
                 cohesion: float) -> list[list[int]]:
    """Greedy agglomeration of topics given as (sum of member vectors, member count).

    Repeatedly merges the two topics with the most similar centroids while that
    cosine is >= `similarity` and the mean similarity between their members (exact
    average linkage, computed from the sums) is >= `cohesion`; the second test
    keeps broad, generic topics from swallowing their neighbours.
    Returns groups of row indices (2+ each).
    """
    n = np.asarray(counts, dtype=np.float64)
    total = np.array(totals, dtype=np.float64)
    if len(n) < 2:
        return []
    groups = {i: [i] for i in range(len(n))}

    def masked(dots: np.ndarray, norms: np.ndarray, counts: np.ndarray) -> np.ndarray:
        sims = dots / np.maximum(norms, 1e-12)
        sims[(dots / np.maximum(counts, 1.0) < cohesion) | (counts == 0)] = -np.inf
        return sims

    def row(i: int) -> np.ndarray:
        norms = np.linalg.norm(total, axis=1)
        out = masked(total @ total[i], norms * norms[i], n * n[i])
        out[i] = -np.inf
        return out

    norms = np.linalg.norm(total, axis=1)
    sim = masked(total @ total.T, norms[:, None] * norms[None, :], n[:, None] * n[None, :])
    np.fill_diagonal(sim, -np.inf)
    best, arg = sim.max(axis=1), sim.argmax(axis=1)
    while True:
        i = int(np.argmax(best))
        j = int(arg[i])
        if best[i] < similarity:
            break
        total[i] += total[j]
        n[i] += n[j]
        total[j], n[j] = 0.0, 0.0
        groups[i] += groups.pop(j)
        sim[:, j] = sim[j, :] = -np.inf
        sim[i, :] = sim[:, i] = row(i)
        stale = (arg == i) | (arg == j)
        stale[[i, j]] = True
        best[stale], arg[stale] = sim[stale].max(axis=1), sim[stale].argmax(axis=1)
        better = sim[:, i] > best
        best[better], arg[better] = sim[better, i], i
    return [g for g in groups.values() if len(g) > 1]


def ctfidf_labels(terms: Mapping[str, Counter[str]], *,
                  top: int = LABEL_TERMS) -> dict[str, tuple[str, ...]]:
    """The most distinctive keywords of each topic, class-based TF-IDF (as in BERTopic)."""
    freq: Counter[str] = Counter()
    for counts in terms.values():
        freq.update(counts)
    sizes = {t: sum(c.values()) for t, c in terms.items()}
    avg = (sum(sizes.values()) / len(sizes)) if sizes else 0.0
    out = {}
    for tid, counts in terms.items():
        total = sizes[tid] or 1
        scored = sorted(((c / total) * math.log(1.0 + avg / freq[w]), w)
                        for w, c in counts.items() if c >= MIN_TERM_COUNT)
        out[tid] = tuple(w for _, w in reversed(scored[-top:]))
    return out


def new_topic_id() -> str:
    """A fresh, opaque topic id."""
    return "tp_" + secrets.token_hex(6)


class TopicTables:
    """Reads and writes the topics tables through the store's connection (idempotent)."""

    def __init__(self, store: Store, *, k_min: int) -> None:
        self.store = store
        self.k_min = k_min

    def _tx(self, statements: list[tuple[str, Any]]) -> None:
        db = self.store.db
        own = not db.in_transaction
        if own:
            db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                if isinstance(params, list):
                    db.executemany(sql, params)
                else:
                    db.execute(sql, params)
            if own:
                db.execute("COMMIT")
        except BaseException:
            if own:
                db.execute("ROLLBACK")
            raise

    def upsert(self, tenant: str, topic: Topic, words: list[str] | None = None) -> None:
        """Write a topic's row; its centroid and keywords only once it has k contributors.

        `words`: the keywords that changed (None: all of them).
        """
        big = len(topic.contributors) >= self.k_min or topic.persisted
        blob = np.asarray(topic.total, dtype=np.float32).tobytes() if big else None
        changed = topic.terms if words is None or not topic.persisted else set(words)
        terms = [(topic.topic_id, w, topic.terms[w]) for w in changed
                 if topic.terms[w] >= MIN_TERM_COUNT]
        stmts: list[tuple[str, Any]] = [(
            "INSERT INTO topics (topic_id, tenant, scope, n, contributors, centroid, created_at, "
            "updated_at) VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(topic_id) DO UPDATE "
            "SET n=excluded.n, contributors=excluded.contributors, centroid=excluded.centroid, "
            "updated_at=excluded.updated_at",
            (topic.topic_id, tenant, topic.scope, topic.n, len(topic.contributors), blob,
             topic.created_at, time.time()))]
        if big and terms:
            stmts.append(("INSERT INTO topic_terms (topic_id, term, n) VALUES (?,?,?) "
                          "ON CONFLICT(topic_id, term) DO UPDATE SET n=excluded.n", terms))
        self._tx(stmts)
        topic.persisted = big

    def set_labels(self, labels: Mapping[str, tuple[str, ...]]) -> None:
        """Store the keyword labels of persisted topics."""
        self._tx([("UPDATE topics SET label=? WHERE topic_id=? AND centroid IS NOT NULL",
                   [(", ".join(lab), tid) for tid, lab in labels.items() if lab])])

    def merged(self, tenant: str, survivor: Topic, gone: list[str]) -> None:
        """Record that `gone` topics now resolve to `survivor`."""
        stmts: list[tuple[str, Any]] = [
            ("UPDATE topics SET merged_into=?, centroid=NULL, updated_at=? WHERE topic_id=?",
             [(survivor.topic_id, time.time(), g) for g in gone]),
            ("UPDATE topics SET merged_into=? WHERE merged_into=?",
             [(survivor.topic_id, g) for g in gone]),
            ("DELETE FROM topic_terms WHERE topic_id=?", [(g,) for g in gone]),
        ]
        self._tx(stmts)
        self.upsert(tenant, survivor)

    def aliases(self, tenant: str) -> dict[str, str]:
        """Merged topic id -> the live id it resolves to."""
        return dict(self.store.db.execute(
            "SELECT topic_id, merged_into FROM topics WHERE tenant=? AND merged_into IS NOT NULL",
            (tenant,)).fetchall())

    def load(self, tenant: str, dims: int) -> list[Topic]:
        """Live topics of a tenant; small ones rebuilt from their records."""
        topics: dict[str, Topic] = {}
        rows = self.store.db.execute(
            "SELECT topic_id, scope, n, contributors, centroid, created_at FROM topics "
            "WHERE tenant=? AND merged_into IS NULL", (tenant,)).fetchall()
        for tid, scope, n, contrib, blob, created in rows:
            big = blob is not None
            total = (np.frombuffer(blob, dtype=np.float32).copy() if big
                     else np.zeros(dims, dtype=np.float32))
            topic = Topic(tid, scope, total, n if big else 0, created_at=created, persisted=big)
            topic.contributors = {f"#{i}" for i in range(contrib)} if big else set()
            topics[tid] = topic
        for tid, term, n in self.store.db.execute(
                "SELECT t.topic_id, t.term, t.n FROM topic_terms t JOIN topics p "
                "ON p.topic_id = t.topic_id WHERE p.tenant=?", (tenant,)):
            if tid in topics:
                topics[tid].terms[term] = n
        self._rebuild_small(tenant, {k: t for k, t in topics.items() if not t.persisted})
        return list(topics.values())

    def _rebuild_small(self, tenant: str, small: dict[str, Topic]) -> None:
        if not small:
            return
        alias = self.aliases(tenant)

        def live(tid: str) -> str:
            while tid in alias:
                tid = alias[tid]
            return tid

        rows = self.store.db.execute(
            "SELECT id, user, topic_id, bucket_id, vector_ct, text_ct FROM records "
            "WHERE tenant=? AND topic_id IS NOT NULL AND synthetic=0", (tenant,))
        for rid, user, tid, bid, vct, tct in rows.fetchall():
            topic = small.get(live(tid))
            if topic is None:
                continue
            text = self.store.text(rid, bid, tct)
            vec = self.store.vector(rid, bid, vct)
            words = content_terms(text) if text is not None else []
            if vec is None or not words:
                continue
            topic.total = topic.total + vec
            topic.n += 1
            topic.contributors.add(user)
            topic.terms.update(words)


class TopicAssigner:
    """Assigns prompts to topics online (the pipeline's `topics` hook)."""

    def __init__(self, store: Store, settings: PrivacySettings, *, dims: int = 384) -> None:
        self.settings = settings
        self.dims = dims
        self.tables = TopicTables(store, k_min=settings.k_min_users)
        self._store = store
        self._topics: dict[str, dict[str, Topic]] = {}  # tenant -> id -> live topic
        self._scopes: dict[tuple[str, str], Scope] = {}
        self._alias: dict[str, dict[str, str]] = {}
        self._threads: dict[str, str | None] = {}
        self._recent: dict[tuple[str, str], tuple[str, float]] = {}

    # ------------------------------------------------------------ lookups

    def _tenant(self, tenant: str) -> dict[str, Topic]:
        live = self._topics.get(tenant)
        if live is None:
            live = self._topics[tenant] = {}
            self._alias[tenant] = self.tables.aliases(tenant)
            for topic in self.tables.load(tenant, self.dims):
                live[topic.topic_id] = topic
                if topic.n:
                    self._scope(tenant, topic.scope).put(topic)
        return live

    def _scope(self, tenant: str, scope: str) -> Scope:
        key = (tenant, scope)
        if key not in self._scopes:
            self._scopes[key] = Scope(self.dims)
        return self._scopes[key]

    def scope_of(self, tenant: str, user: str | None, thread_id: str) -> str:
        """'' (tenant-wide) when policy allows cross-user topics, else the user (or thread)."""
        if self.settings.cross_user_topics.get(tenant, False):
            return ""
        return f"user:{user}" if user is not None else f"thread:{thread_id}"

    def resolve(self, tenant: str, topic_id: str | None) -> str | None:
        """The live topic an id handed out earlier now belongs to."""
        self._tenant(tenant)
        alias = self._alias[tenant]
        seen = 0
        while topic_id in alias and seen < 64:
            topic_id = alias[topic_id]
            seen += 1
        return topic_id

    def _thread_topic(self, tenant: str, thread_id: str) -> str | None:
        if thread_id not in self._threads:
            row = self._store.db.execute("SELECT topic_id FROM threads WHERE thread_id=?",
                                         (thread_id,)).fetchone()
            self._threads[thread_id] = row[0] if row else None
        return self.resolve(tenant, self._threads[thread_id])

    # ------------------------------------------------------------ assignment

    def assign(self, *, tenant: str, thread_id: str, vector: np.ndarray, text: str,
               synthetic: bool, user: str | None = None,
               ts: datetime | None = None) -> str | None:
        """The topic of one prompt (None for synthetic or contentless new-thread prompts).

        Args:
            vector: the L2-normalised embedding of the redacted text.
            text: the redacted text (placeholders are ignored).
            user: the user's pseudonym, when known (per-user scopes, recent-topic fallback).
        """
        if synthetic:
            return None
        live = self._tenant(tenant)
        scope = self.scope_of(tenant, user, thread_id)
        now = ts.timestamp() if ts is not None else time.time()
        words = content_terms(text)
        topic_id = self._thread_topic(tenant, thread_id)
        if topic_id is None and not words:
            topic_id = self._inherit(tenant, user, now)
            self._remember(thread_id, topic_id)
            return topic_id
        if topic_id is None:
            topic_id, sim = self._scope(tenant, scope).nearest(np.asarray(vector, np.float32))
            if topic_id is None or sim < self.settings.topic_threshold:
                topic_id = new_topic_id()
        topic = live.get(topic_id)
        if topic is None:  # new, or known only from records (rebuilt empty)
            topic = live[topic_id] = Topic(topic_id, scope, np.zeros(self.dims, np.float32),
                                           created_at=now)
        if words:
            self._absorb(tenant, topic, vector, words, user or thread_id)
        self._remember(thread_id, topic_id)
        if user is not None:
            self._recent[(tenant, user)] = (topic_id, now)
        return topic_id

    def _remember(self, thread_id: str, topic_id: str | None) -> None:
        self._threads[thread_id] = topic_id
        if len(self._threads) > MAX_THREADS:  # oldest first: dicts keep insertion order
            for key in list(self._threads)[: MAX_THREADS // 4]:
                del self._threads[key]

    def _inherit(self, tenant: str, user: str | None, now: float) -> str | None:
        if user is None:
            return None
        recent = self._recent.get((tenant, user))
        if recent is None or now - recent[1] > RECENT_SECONDS:
            return None
        return self.resolve(tenant, recent[0])

    def _absorb(self, tenant: str, topic: Topic, vector: np.ndarray, words: list[str],
                contributor: str) -> None:
        topic.total = topic.total + np.asarray(vector, dtype=np.float32)
        topic.n += 1
        if len(topic.contributors) < self.settings.k_min_users or topic.persisted:
            topic.contributors.add(contributor)
        topic.terms.update(words)
        if len(topic.terms) > 2 * MAX_TERMS:
            topic.terms = Counter(dict(topic.terms.most_common(MAX_TERMS)))
        scope = self._scope(tenant, topic.scope)
        scope.put(topic)
        if topic.n == 1 or len(topic.contributors) >= self.settings.k_min_users:
            self.tables.upsert(tenant, topic, words)
        scope.since_refine += 1
        # at least as many prompts as live topics between refinements: O(topics) per prompt
        if scope.since_refine >= max(self.settings.topic_refine_every, len(scope.ids)):
            self.refine(tenant, topic.scope)

    # ------------------------------------------------------------ refinement

    def refine(self, tenant: str, scope: str = "") -> dict[str, str]:
        """Merge a scope's similar topics; returns merged id -> surviving id."""
        live = self._tenant(tenant)
        sc = self._scope(tenant, scope)
        sc.since_refine = 0
        ids = sorted(sc.ids, key=lambda t: -live[t].n)[:MAX_REFINE]
        if len(ids) < 2:
            return {}
        groups = merge_groups(np.vstack([live[t].total for t in ids]),
                              np.array([live[t].n for t in ids]),
                              similarity=self.settings.topic_merge_threshold,
                              cohesion=self.settings.topic_merge_cohesion)
        mapping: dict[str, str] = {}
        for group in groups:
            members = sorted((live[ids[i]] for i in group), key=lambda t: (-t.n, t.created_at))
            survivor, gone = members[0], members[1:]
            for t in gone:
                survivor.total = survivor.total + t.total
                survivor.n += t.n
                survivor.contributors |= t.contributors
                survivor.terms.update(t.terms)
                sc.drop(t.topic_id)
                del live[t.topic_id]
                mapping[t.topic_id] = survivor.topic_id
            sc.put(survivor)
            self.tables.merged(tenant, survivor, [t.topic_id for t in gone])
        self._alias[tenant].update(mapping)
        for old, new in list(self._alias[tenant].items()):
            self._alias[tenant][old] = mapping.get(new, new)
        self._relabel(tenant, scope)
        return mapping

    def _relabel(self, tenant: str, scope: str) -> None:
        live = self._tenant(tenant)
        labels = ctfidf_labels({t: live[t].terms for t in self._scope(tenant, scope).ids})
        self.tables.set_labels({t: lab for t, lab in labels.items() if live[t].persisted})

    def labels(self, tenant: str) -> dict[str, tuple[str, ...]]:
        """Keywords of the tenant's live topics (computed per scope)."""
        live = self._tenant(tenant)
        out: dict[str, tuple[str, ...]] = {}
        for (t, _scope), sc in self._scopes.items():
            if t == tenant:
                out.update(ctfidf_labels({tid: live[tid].terms for tid in sc.ids}))
        return out
