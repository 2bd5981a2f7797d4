"""Pure clustering of topics given as (sum of member vectors, member count)."""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np


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


LEXICAL_DIMS = 2048  # hashed vocabulary of the lexical half of a thread's features


def lexical_vectors(bags: Sequence[Mapping[str, int]], *, dims: int = LEXICAL_DIMS
                    ) -> np.ndarray:
    """Hashed TF-IDF of each thread's content words, unit length (zero for no shared word).

    The idf comes from these threads only (the tenant's own traffic), and a word
    that only one thread uses is left out: it can make no two threads alike.
    """
    df: Counter[str] = Counter()
    for bag in bags:
        df.update(bag.keys())
    n = max(len(bags), 1)
    out = np.zeros((len(bags), dims), dtype=np.float32)
    for row, bag in enumerate(bags):
        for word, count in bag.items():
            if df[word] < 2:
                continue
            col = zlib.crc32(word.encode()) % dims
            out[row, col] += (1.0 + np.log(count)) * np.log(n / df[word])
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


def with_words(totals: np.ndarray, counts: np.ndarray, lexical: np.ndarray, *,
               weight: float) -> np.ndarray:
    """Thread features for average linkage: embedding sums beside their words.

    Each thread's row becomes [sqrt(1-w) * sum of its prompts' vectors,
    sqrt(w) * prompts * its TF-IDF vector], so the mean similarity between two
    groups' prompts is (1-w) x their mean embedding cosine + w x the mean TF-IDF
    cosine of their threads: shared distinctive words pull threads about one
    subject together where the embeddings of short, generic turns do not.
    """
    if weight <= 0:
        return np.asarray(totals, dtype=np.float32)
    return np.hstack([np.sqrt(1.0 - weight) * np.asarray(totals, dtype=np.float32),
                      np.sqrt(weight) * np.asarray(counts, dtype=np.float32)[:, None]
                      * lexical]).astype(np.float32)


def self_similarity(squares: np.ndarray, lexical: np.ndarray, *, weight: float) -> np.ndarray:
    """Per thread, the sum of its prompts' squared feature norms (what `with_words` sums).

    A prompt of weight a has the feature a x [sqrt(1-w) x its unit embedding,
    sqrt(w) x its thread's TF-IDF vector], so this is (sum of a^2) x ((1-w) +
    w |tfidf|^2); with it, the mean similarity between a group's distinct prompts
    (its cohesion) follows from the group's sums alone. `squares`: per thread,
    the sum of its prompts' squared weights (their count when unweighted).
    """
    n = np.asarray(squares, dtype=np.float64)
    if weight <= 0:
        return n.copy()
    norms = np.linalg.norm(np.asarray(lexical, dtype=np.float64), axis=1) ** 2
    return n * ((1.0 - weight) + weight * norms)


# Above this many units a refinement first groups near-duplicates (leader
# clustering) and agglomerates the groups: memory stays O(groups^2).
DIRECT_UNITS = 3000
LEADER_SIMILARITY = 0.8


def average_linkage(totals: np.ndarray, counts: np.ndarray, *, threshold: float,
                    max_direct: int = DIRECT_UNITS, selfsim: np.ndarray | None = None,
                    selfweight: np.ndarray | None = None,
                    cohesion_ratio: float = 0.0, seed_ratio: float = 0.0,
                    absorb_threshold: float | None = None, support: int = 1,
                    merge_ratio: float = 0.0) -> np.ndarray:
    """Cluster units (threads) given as (sum of their prompts' vectors, prompt count).

    Two clusters merge while the mean cosine similarity between their prompts
    is at least `threshold` (exact, from the sums; unit-length prompt vectors),
    so a cluster cannot grow by chaining, and long threads weigh by their
    prompts without looking more alike than their prompts are. With `selfsim`
    (`self_similarity`) and a `cohesion_ratio`, two clusters merge only if that
    mean is also at least the ratio times the cohesion of each of the two
    (see `agglomerate`; `selfweight`: per unit, the sum of its prompts' squared
    weights, default `counts`). With `support` > 1, clusters of fewer than
    `support` units join a larger one at `absorb_threshold`, and each other only
    at `seed_ratio` of the tighter one's cohesion, and two established ones also at
    `merge_ratio` of it (see `agglomerate`). Above `max_direct`
    units, near-duplicate threads are grouped first (leader clustering).
    Returns a cluster label per unit (0..k-1, in first-seen order).
    """
    n = len(totals)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    x = np.asarray(totals, dtype=np.float64)
    w = np.asarray(counts, dtype=np.float64)
    if n > max_direct:
        means = x / np.maximum(w, 1.0)[:, None]
        norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        seeds = leader_groups((means / norms).astype(np.float32), LEADER_SIMILARITY)
    else:
        seeds = np.arange(n)
    k = int(seeds.max()) + 1
    sums = np.zeros((k, x.shape[1]), dtype=np.float64)
    np.add.at(sums, seeds, x)
    sizes = np.bincount(seeds, weights=w, minlength=k)
    own = squares = None
    if selfsim is not None:
        own = np.bincount(seeds, weights=np.asarray(selfsim, dtype=np.float64), minlength=k)
        squares = np.bincount(seeds, weights=np.asarray(
            w if selfweight is None else selfweight, dtype=np.float64), minlength=k)
    groups = agglomerate(sums, sizes, threshold=threshold, selfsim=own, selfweight=squares,
                         cohesion_ratio=cohesion_ratio, seed_ratio=seed_ratio,
                         absorb_threshold=absorb_threshold, support=support,
                         merge_ratio=merge_ratio, members=np.bincount(seeds, minlength=k))
    top = np.arange(k)
    for g in groups:
        top[g] = g[0]
    labels = top[seeds]
    _, first = np.unique(labels, return_index=True)
    order = {int(labels[i]): j for j, i in enumerate(sorted(first))}
    return np.array([order[int(v)] for v in labels], dtype=np.int64)


def cohesion(totals: np.ndarray, counts: np.ndarray, selfsim: np.ndarray,
             selfweight: np.ndarray) -> np.ndarray:
    """(Weighted) mean similarity between the distinct prompts of each group.

    From each group's sum of prompt features, their total weight (`counts`), the
    sum of their squared norms (`selfsim`) and of their squared weights
    (`selfweight`); NaN for a group of one prompt.
    """
    t = np.asarray(totals, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    pairs = n * n - np.asarray(selfweight, dtype=np.float64)
    inner = np.einsum("ij,ij->i", t, t) - np.asarray(selfsim, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 1e-6, inner / np.maximum(pairs, 1e-12), np.nan)


def agglomerate(totals: np.ndarray, counts: np.ndarray, *, threshold: float,
                selfsim: np.ndarray | None = None, selfweight: np.ndarray | None = None,
                cohesion_ratio: float = 0.0, seed_ratio: float = 0.0,
                absorb_threshold: float | None = None, support: int = 1,
                merge_ratio: float = 0.0, members: np.ndarray | None = None
                ) -> list[list[int]]:
    """Exact average-linkage agglomeration of groups given as (member sum, member count).

    Merges the pair with the highest mean similarity between their members
    (S_a . S_b / (n_a n_b)) while it is >= `threshold`. With `selfsim` (the sum
    of each group's members' squared norms) and `cohesion_ratio` r > 0, a pair is
    eligible only when that mean is also >= r x the cohesion (mean similarity
    between distinct members) of each of the two groups: a merge may not dilute
    either group below r of its own spread. `selfweight`: each group's sum of its
    members' squared weights (default `counts`: unweighted members).

    Support (`support` > 1; `members`: units per row, default one each): a
    group of `support` members or more is an established topic. Two
    established topics merge at `threshold`; a smaller group joins an
    established topic at `absorb_threshold` (default `threshold`); two smaller
    groups merge only when their mean similarity is also >= `seed_ratio` x the
    cohesion of the tighter of the two (with `selfsim`; a group of one prompt
    has none). A conversation that stays on one subject therefore founds a topic
    only with one nearly as close to it, while a subject that several conversations
    already share takes looser members: a sparse region of one-off subjects and
    a dense region of short task dialogs are told apart by their own spread and
    density, not by one cosine. With `merge_ratio` > 0 (and `selfsim`), two established
    topics also need that share of the tighter one's cohesion (off by default:
    docs/topics.md, "Distinct support subjects"). Returns the merged groups of row
    indices (2+ each).
    """
    n = np.asarray(counts, dtype=np.float64).copy()
    total = np.array(totals, dtype=np.float64)
    if len(n) < 2:
        return []
    supported = support > 1
    seeded = supported and selfsim is not None and seed_ratio > 0
    guarded = supported and selfsim is not None and merge_ratio > 0
    relative = selfsim is not None and cohesion_ratio > 0
    own = (np.array(selfsim, dtype=np.float64) if selfsim is not None
           else np.zeros(len(n), dtype=np.float64))
    sq = np.array(n if selfweight is None else selfweight, dtype=np.float64)
    tracked = relative or seeded or guarded
    coh = cohesion(total, n, own, sq) if tracked else np.full(len(n), np.nan)
    size = (np.ones(len(n)) if members is None
            else np.asarray(members, dtype=np.float64).copy())
    absorb = threshold if absorb_threshold is None else absorb_threshold
    lowest = min(threshold, absorb) if supported else threshold

    def tighter(c: np.ndarray, others: np.ndarray) -> np.ndarray:
        """The tighter group's cohesion (-inf where neither has two members)."""
        return np.nan_to_num(np.fmax(c, others), nan=-np.inf)

    def needed(a: np.ndarray, b: np.ndarray, ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
        """The similarity a pair of groups (sizes a, b; cohesion ca, cb) needs to merge:
        merge, absorb, or (both small) relative to the tighter one's cohesion."""
        small = (a < support).astype(np.int64) + (b < support).astype(np.int64)
        out = np.where(small == 1, absorb, threshold)
        if seeded:
            out = np.where(small == 2, np.maximum(threshold, seed_ratio * tighter(ca, cb)), out)
        if guarded:
            out = np.where(small == 0, np.maximum(threshold, merge_ratio * tighter(ca, cb)), out)
        if relative:
            out = np.maximum(out, cohesion_ratio * tighter(ca, cb))
        return out

    groups = {i: [i] for i in range(len(n))}
    dots = total @ total.T  # between group sums; a merge adds rows: O(groups) per merge
    sim = dots / np.maximum(np.outer(n, n), 1e-12)
    if supported or relative:
        sim[sim < needed(size[:, None], size[None, :], coh[:, None], coh[None, :])] = -np.inf
    sim[:, n == 0] = -np.inf
    np.fill_diagonal(sim, -np.inf)
    best, arg = sim.max(axis=1), sim.argmax(axis=1)
    while True:
        i = int(np.argmax(best))
        if best[i] < lowest:
            break
        j = int(arg[i])
        dots[i, :] += dots[j, :]
        dots[:, i] += dots[:, j]
        n[i] += n[j]
        own[i] += own[j]
        sq[i] += sq[j]
        size[i] += size[j]
        n[j], own[j], sq[j], size[j] = 0.0, 0.0, 0.0, 0.0
        groups[i] += groups.pop(j)
        row = dots[i] / np.maximum(n * n[i], 1e-12)
        if tracked:
            pairs = n[i] * n[i] - sq[i]
            coh[i] = (dots[i, i] - own[i]) / pairs if pairs > 1e-6 else np.nan
            coh[j] = np.nan
        if supported or relative:
            full = np.full(len(n), 1.0)
            row[row < needed(full * size[i], size, full * coh[i], coh)] = -np.inf
        row[n == 0] = -np.inf
        row[i] = -np.inf
        sim[i, :] = sim[:, i] = row
        sim[j, :] = sim[:, j] = -np.inf
        best[j] = -np.inf
        stale = (arg == i) | (arg == j)
        stale[i] = True
        stale[j] = False
        best[stale], arg[stale] = sim[stale].max(axis=1), sim[stale].argmax(axis=1)
        better = sim[:, i] > best
        best[better], arg[better] = sim[better, i], i
    return [g for g in groups.values() if len(g) > 1]


def leader_groups(vectors: np.ndarray, similarity: float, block: int = 512) -> np.ndarray:
    """Greedy leader clustering: each row joins the first leader at least this similar."""
    leaders = np.zeros((0, vectors.shape[1]), dtype=np.float32)
    out = np.empty(len(vectors), dtype=np.int64)
    for s in range(0, len(vectors), block):
        part = vectors[s:s + block]
        for i, v in enumerate(part):
            if len(leaders):
                sims = leaders @ v
                j = int(np.argmax(sims))
                if sims[j] >= similarity:
                    out[s + i] = j
                    continue
            out[s + i] = len(leaders)
            leaders = np.vstack([leaders, v[None, :]])
    return out


def carry_ids(labels: np.ndarray, previous: list[str | None], weights: np.ndarray,
              fresh: Callable[[], str]) -> tuple[list[str], dict[str, str]]:
    """Topic ids for new clusters, keeping the ids handed out before where they fit.

    A cluster keeps the previous id that most of its weight carried, provided
    that id's weight lies mostly in this cluster (greedy by overlap, each id used
    once); other clusters get a `fresh()` id. Returns the id per cluster and, for
    previous ids that no cluster kept, the cluster id holding most of their weight
    (they resolve to it).
    """
    k = int(labels.max()) + 1 if len(labels) else 0
    overlap: dict[tuple[int, str], float] = defaultdict(float)
    held: dict[str, float] = defaultdict(float)
    for lab, prev, w in zip(labels, previous, weights, strict=True):
        if prev is not None:
            overlap[(int(lab), prev)] += float(w)
            held[prev] += float(w)
    ids: list[str | None] = [None] * k
    used: set[str] = set()
    for (lab, prev), w in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0][1])):
        if ids[lab] is None and prev not in used and w * 2 > held[prev]:
            ids[lab] = prev
            used.add(prev)
    final = [i if i is not None else fresh() for i in ids]
    merged: dict[str, str] = {}
    for prev in held:
        if prev in used:
            continue
        best = max((w, lab) for (lab, p), w in overlap.items() if p == prev)[1]
        merged[prev] = final[best]
    return final, merged
