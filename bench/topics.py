"""Topic benchmark: leave-one-source-out topic ARI on dev + wide, giant topics, ingest latency.

Runs `topics.TopicAssigner` (the production code, over a scratch SQLCipher
store) on the dev and wide streams, redacted and embedded once by the real
Presidio and llama.cpp and cached under the temp dir (bench/topic_data.py).
Topic ARI is scored only on sources whose gold topic names a subject (KVRET
intents and CAsT titles on dev; STAR, MultiDoGO and M2M domains on wide);
MT-Bench-101 labels name the skill tested and Taskmaster-4 has one topic, so
they are not scored (they still flow through the stream).

* "final": each prompt's thread topic after the last refinement (what
  `semtrace replay` writes and the screens show); "emitted": the topic handed
  out at ingest, before later prompts and refinements.
* Thread ids: the gold threads (`--threads gold`, a perfect linker), one thread
  per prompt (`--threads prompt`, no linker), or a `semtrace replay` output
  (`--replay OUT.jsonl`, this branch's linker).
* Leave-one-source-out: for each subject source, the lexical weight, the
  merge threshold, the cohesion ratio, the support levels (seed ratio,
  absorb threshold, support) and the merge ratio between established topics are
  chosen on the other five (highest mean ARI) and scored on it.
* Latency: `assign` p50/p99 on a synthetic stream while a background
  refinement of thousands of topics runs (`--latency N`).
Prints figures; asserts nothing.

    .venv/bin/python bench/topics.py [--threads gold|prompt] [--replay OUT.jsonl]
                                     [--lexical W ...] [--merge M ...] [--ratio R ...]
                                     [--seed S ...] [--absorb A ...] [--support N ...]
                                     [--merge-ratio R ...] [--latency 20000] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from topic_data import SUBJECT_SOURCES, Stream, load_stream  # noqa: E402

from appliance.config import PrivacySettings, load_policies  # noqa: E402
from appliance.keys import Keyring  # noqa: E402
from appliance.store import Store  # noqa: E402
from appliance.topics import TopicAssigner  # noqa: E402

MERGE = (0.13, 0.14, 0.15, 0.16, 0.17, 0.18, 0.2, 0.22)
LEXICAL = (0.0, 0.4)  # topic_lexical_weight: embeddings only, or 40 % shared words
RATIO = (0.0,)  # topic_cohesion_ratio: 0 = off (0.35-0.45 were tried: docs/topics.md)
SEED = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)  # topic_seed_ratio (small-small pairs)
ABSORB = (0.12, 0.13, 0.14)  # topic_absorb_threshold: an established topic takes small ones
SUPPORT = (1, 3, 5)  # topic_support: threads that make a topic established; 1 = flat
MERGE_RATIO = (0.0, 0.4, 0.45, 0.5, 0.55, 0.6)  # topic_merge_ratio (established pairs)


def ari(a: Sequence[object], b: Sequence[object]) -> float:
    """Adjusted Rand index of two labelings."""
    _, ai = np.unique(np.asarray([str(x) for x in a]), return_inverse=True)
    _, bi = np.unique(np.asarray([str(x) for x in b]), return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) // 2).sum())

    n = pairs(np.array([len(ai)]))
    index, ra, rb = pairs(table), pairs(table.sum(1)), pairs(table.sum(0))
    expected = ra * rb / n
    top = (ra + rb) / 2 - expected
    return (index - expected) / top if top else 1.0


def settings(**over: Any) -> PrivacySettings:
    base = load_policies().privacy.model_dump()
    base["cross_user_topics"] = {"acme": True}
    return PrivacySettings(**{**base, **over})


def run(stream: Stream, threads: Sequence[str], cfg: PrivacySettings
        ) -> tuple[list[str | None], list[str | None], list[float], TopicAssigner]:
    """Emitted and final topic per prompt, and ms per assign (refinements in line)."""
    tmp = Path(tempfile.mkdtemp(prefix="semtrace-topics-"))
    store = Store.open(tmp, Keyring.random())
    ta = TopicAssigner(store, cfg)
    emitted: list[str | None] = []
    lat = []
    for i, r in enumerate(stream.rows):
        ts = datetime.fromisoformat(str(r["ts"]).replace("Z", "+00:00"))
        t0 = time.perf_counter()
        emitted.append(ta.assign(tenant="acme", thread_id=threads[i], vector=stream.vectors[i],
                                 text=stream.texts[i], synthetic=False,
                                 user=str(r["user_id"]), ts=ts))
        lat.append((time.perf_counter() - t0) * 1e3)
    ta.refine("acme", now=datetime.fromisoformat(
        str(stream.rows[-1]["ts"]).replace("Z", "+00:00")).timestamp())
    final = [ta.thread_topic("acme", threads[i]) or emitted[i] for i in range(len(threads))]
    store.close()
    return emitted, final, lat, ta


def scores(stream: Stream, topics: Sequence[str | None]) -> dict[str, float]:
    """Topic ARI per subject source, and the largest topic against the largest gold topic."""
    out = {}
    for src in SUBJECT_SOURCES[stream.name]:
        keep = [i for i, r in enumerate(stream.rows)
                if r["source"] == src and r["gold_topic_id"] is not None]
        out[src] = ari([stream.rows[i]["gold_topic_id"] for i in keep],
                       [topics[i] if topics[i] is not None else f"single{i}" for i in keep])
    sizes = Counter(t for t in topics if t is not None)
    gold = Counter(r["gold_topic_id"] for r in stream.rows if r["gold_topic_id"] is not None)
    out["largest_topic_share"] = max(sizes.values()) / len(topics)
    out["largest_gold_share"] = max(gold.values()) / len(topics)
    out["topics"] = float(len(sizes))
    return out


def thread_ids(stream: Stream, mode: str, replay: Path | None) -> list[str]:
    if replay is not None:
        pred = {json.loads(x)["index"]: json.loads(x) for x in replay.read_text().splitlines()}
        return [str(pred[int(r["index"])]["thread_id"]) for r in stream.rows]
    if mode == "prompt":
        return [str(i) for i in range(len(stream.rows))]
    return [str(r["gold_thread_id"]) for r in stream.rows]


# (lexical weight, merge threshold, cohesion ratio, seed ratio, absorb threshold, support,
#  merge ratio)
Key = tuple[float, float, float, float, float, int, float]


def keys(lexicals: Sequence[float], merges: Sequence[float], ratios: Sequence[float],
         seeds: Sequence[float], absorbs: Sequence[float], supports: Sequence[int],
         merge_ratios: Sequence[float] = (0.0,)) -> list[Key]:
    """The grid's cells; with support 1 (one flat threshold) seed, absorb and merge ratio
    play no part."""
    out: list[Key] = []
    for lexical, merge, ratio, support in itertools.product(lexicals, merges, ratios, supports):
        if support <= 1:
            out.append((lexical, merge, ratio, 0.0, merge, 1, 0.0))
            continue
        out += [(lexical, merge, ratio, seed, absorb, support, mr)
                for seed, absorb, mr in itertools.product(seeds, absorbs, merge_ratios)]
    return out


def grid(streams: list[Stream], threads: dict[str, list[str]], cells: Sequence[Key], *,
         refine_every: int = 1000) -> dict[Key, dict[str, dict[str, float]]]:
    """Scores for every cell: {"final"/"emitted": {source: ARI}}.

    The online join threshold is the merge threshold (it does not change the
    final topics, only the ids emitted before the first refinement). Each
    refinement re-clusters every live thread, so `refine_every` changes the
    emitted topics only, not the final ones.
    """
    table: dict[Key, dict[str, dict[str, float]]] = {}
    for key in cells:
        lexical, merge, ratio, seed, absorb, support, merge_ratio = key
        join = merge
        cfg = settings(topic_merge_threshold=merge, topic_threshold=join,
                       topic_lexical_weight=lexical, topic_cohesion_ratio=ratio,
                       topic_seed_ratio=seed, topic_absorb_threshold=absorb,
                       topic_support=support, topic_refine_every=refine_every,
                       topic_merge_ratio=merge_ratio)
        row: dict[str, dict[str, float]] = {"final": {}, "emitted": {}}
        for s in streams:
            emitted, final, _, _ = run(s, threads[s.name], cfg)
            for kind, topics in (("final", final), ("emitted", emitted)):
                sc = scores(s, topics)
                row[kind].update({k: v for k, v in sc.items() if k in SUBJECT_SOURCES[s.name]})
                row[kind][f"{s.name}:largest"] = sc["largest_topic_share"]
        table[key] = row
        print(f"  lexical {lexical:.2f} merge {merge:.2f} ratio {ratio:.2f} seed {seed:.2f} "
              f"absorb {absorb:.2f} support {support} merge ratio {merge_ratio:.2f}: " + " ".join(
            f"{k}={v:.2f}" for k, v in row["final"].items()), file=sys.stderr)
    return table


def loso(table: dict[Key, dict[str, dict[str, float]]], kind: str) -> list[dict[str, Any]]:
    """Per left-out source: thresholds chosen on the others, and the ARI on it."""
    sources = [s for v in SUBJECT_SOURCES.values() for s in v]
    folds = []
    for held in sources:
        train = [s for s in sources if s != held]

        def fitness(key: Key, train: list[str] = train) -> float:
            return float(np.mean([table[key][kind][s] for s in train]))

        best = max(table, key=fitness)
        folds.append({"held_out": held, "lexical": best[0], "merge": best[1],
                      "ratio": best[2], "seed": best[3], "absorb": best[4],
                      "support": best[5], "merge_ratio": best[6],
                      "train_mean": round(fitness(best), 3),
                      "ari": round(table[best][kind][held], 3)})
    return folds


def latency(n: int, centres: int = 3000) -> dict[str, float]:
    """assign() latency on n clustered vectors while refinements run in the background."""
    rng = np.random.default_rng(0)
    c = rng.standard_normal((centres, 384)).astype(np.float32)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    pick = rng.integers(0, centres, n)
    vecs = c[pick] + 0.06 * rng.standard_normal((n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    words = [f"subject{p} detail{p % 97} request" for p in pick]
    tmp = Path(tempfile.mkdtemp(prefix="semtrace-topics-"))
    store = Store.open(tmp, Keyring.random())
    ta = TopicAssigner(store, settings(topic_refine_every=2000))
    ta.start(interval=3600)
    busy: list[float] = []
    idle: list[float] = []
    refining = threading.Event()
    original = ta.refine

    def watched(*args: Any, **kw: Any) -> dict[str, str]:
        refining.set()
        try:
            return original(*args, **kw)
        finally:
            refining.clear()

    ta.refine = watched  # type: ignore[method-assign]
    for i in range(n):
        t = time.perf_counter()
        ta.assign(tenant="acme", thread_id=f"t{i % (n // 3)}", vector=vecs[i], text=words[i],
                  synthetic=False, user=f"u{i % 500}")
        ms = (time.perf_counter() - t) * 1e3
        (busy if refining.is_set() else idle).append(ms)
        time.sleep(0.0005)  # a gateway's pace, so that ingest and refinement overlap
    refinements = ta.refinements
    ta.stop()
    store.close()
    every = busy + idle
    return {"prompts": n, "refinements": refinements,
            "during_refinement": len(busy),
            "p50_ms": statistics.median(every), "p99_ms": float(np.percentile(every, 99)),
            "p99_during_refinement_ms": float(np.percentile(busy, 99)) if busy else float("nan"),
            "max_ms": max(every)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", choices=("gold", "prompt"), default="gold")
    ap.add_argument("--replay", type=Path, nargs="*", default=[],
                    help="`semtrace replay` outputs of dev then wide, to use the linker's threads")
    ap.add_argument("--latency", type=int, default=20_000)
    ap.add_argument("--no-grid", action="store_true", help="Only the shipped thresholds.")
    ap.add_argument("--no-shipped", action="store_true", help="Only the grid.")
    ap.add_argument("--refine-every", type=int, default=1000,
                    help="the grid's refinement cadence (final topics do not depend on it)")
    ap.add_argument("--lexical", type=float, nargs="*", default=list(LEXICAL),
                    help="topic_lexical_weight values of the grid")
    ap.add_argument("--merge", type=float, nargs="*", default=list(MERGE),
                    help="topic_merge_threshold values of the grid")
    ap.add_argument("--ratio", type=float, nargs="*", default=list(RATIO),
                    help="topic_cohesion_ratio values of the grid")
    ap.add_argument("--seed", type=float, nargs="*", default=list(SEED),
                    help="topic_seed_ratio values of the grid")
    ap.add_argument("--absorb", type=float, nargs="*", default=list(ABSORB),
                    help="topic_absorb_threshold values of the grid")
    ap.add_argument("--support", type=int, nargs="*", default=list(SUPPORT),
                    help="topic_support values of the grid (1: one flat threshold)")
    ap.add_argument("--merge-ratio", type=float, nargs="*", default=list(MERGE_RATIO),
                    help="topic_merge_ratio values of the grid (established pairs; 0 = off)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    streams = [load_stream("dev"), load_stream("wide")]
    replays = dict(zip(("dev", "wide"), args.replay, strict=False))
    threads = {s.name: thread_ids(s, args.threads, replays.get(s.name)) for s in streams}
    report: dict[str, Any] = {"threads": "replay" if replays else args.threads}
    shipped = settings()
    report["shipped"] = {"merge": shipped.topic_merge_threshold,
                         "join": shipped.topic_threshold,
                         "lexical": shipped.topic_lexical_weight,
                         "cohesion_ratio": shipped.topic_cohesion_ratio,
                         "seed_ratio": shipped.topic_seed_ratio,
                         "absorb": shipped.topic_absorb_threshold,
                         "support": shipped.topic_support,
                         "merge_ratio": shipped.topic_merge_ratio,
                         "refine_every": shipped.topic_refine_every}
    for s in [] if args.no_shipped else streams:
        emitted, final, lat, ta = run(s, threads[s.name], shipped)
        report[s.name] = {"final": scores(s, final), "emitted": scores(s, emitted),
                          "assign_p50_ms": statistics.median(lat),
                          "assign_p99_ms": float(np.percentile(lat, 99)),
                          "refinements": ta.refinements}
    if not args.no_grid:
        cells = keys(args.lexical, args.merge, args.ratio, args.seed, args.absorb, args.support,
                     args.merge_ratio)
        table = grid(streams, threads, cells, refine_every=args.refine_every)
        report["loso_final"] = loso(table, "final")
        report["loso_emitted"] = loso(table, "emitted")
        report["grid"] = [{"lexical": k[0], "merge": k[1], "ratio": k[2], "seed": k[3],
                           "absorb": k[4], "support": k[5], "merge_ratio": k[6],
                           **v["final"]}
                          for k, v in table.items()]
    if args.latency:
        report["latency"] = latency(args.latency)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(json.dumps({k: v for k, v in report.items() if k != "grid"}, indent=1))


if __name__ == "__main__":
    main()
